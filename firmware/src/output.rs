//! The JSON lines output: one object per frame in OUT/results.jsonl, written whole with one write
//! after each frame so a reader (or a crash) never sees half a line; the file is appended to and
//! rotated by size ([`crate::files::AppendFile`]). The line's form (README, "Output: JSON lines") is
//! defined here, from the runtime's [`Scene`]; the runtime knows nothing of it.

use std::path::{Path, PathBuf};

use kith_runtime::labels::{FINE_LABELS, NUM_FINE};
use kith_runtime::limits::JSON_LINE_CAPACITY;
use kith_runtime::profile::{Stage, StageTimes};
use kith_runtime::{Person, Relation, Scene};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::files::{AppendFile, FileSettings};
use crate::OutputError;

/// Appends scenes to a JSON lines file.
pub struct JsonLines {
    path: PathBuf,
    file: AppendFile,
    line: Vec<u8>,
}

impl JsonLines {
    /// Opens `path` to append to it (creating it), rotating it as `settings` say.
    pub fn open(path: &Path, settings: FileSettings) -> Result<Self, OutputError> {
        Ok(JsonLines {
            path: path.to_owned(),
            file: AppendFile::open(path, settings)?,
            line: Vec::with_capacity(JSON_LINE_CAPACITY),
        })
    }

    /// Writes one scene, with the relation weights and the relation model's file name, as one
    /// line (a full disk loses it, with one warning per outage).
    pub fn write(
        &mut self,
        scene: &Scene,
        weights: &str,
        relation_model: &str,
    ) -> Result<(), OutputError> {
        self.line.clear();
        write_line(scene, weights, relation_model, &mut self.line)
            .map_err(|e| OutputError::new(&self.path, e))?;
        self.file.append(&self.line)
    }
}

/// Appends `scene` as one JSON object and a newline to `out`, with `weights` naming the relation
/// weights ("untrained-demo" or a trained model's name/version) and `relation_model` the file name
/// of the relation model that ran (e.g. "gritv2-s.int8.onnx"). Allocates nothing while `out` has
/// room.
pub fn write_line(
    scene: &Scene,
    weights: &str,
    relation_model: &str,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    serde_json::to_writer(
        &mut *out,
        &SceneRecord {
            scene,
            weights,
            relation_model,
        },
    )?;
    out.push(b'\n');
    Ok(())
}

struct SceneRecord<'a> {
    scene: &'a Scene,
    weights: &'a str,
    relation_model: &'a str,
}

impl Serialize for SceneRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let scene = self.scene;
        let mut st = s.serialize_struct("Scene", 9)?;
        st.serialize_field("frame", &scene.frame)?;
        st.serialize_field("source", scene.source.as_str())?;
        st.serialize_field("width", &scene.width)?;
        st.serialize_field("height", &scene.height)?;
        st.serialize_field("persons", &PersonsRecord(&scene.persons))?;
        st.serialize_field(
            "relations",
            &RelationsRecord(&scene.relations, &scene.persons),
        )?;
        st.serialize_field("weights", self.weights)?;
        st.serialize_field("relation_model", self.relation_model)?;
        st.serialize_field("timings_us", &TimingsRecord(&scene.timings))?;
        st.end()
    }
}

struct PersonsRecord<'a>(&'a [Person]);

impl Serialize for PersonsRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(PersonRecord))
    }
}

struct PersonRecord<'a>(&'a Person);

impl Serialize for PersonRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Person", 4)?;
        st.serialize_field("id", &self.0.id)?;
        st.serialize_field("box", &self.0.bbox.map(round1))?;
        st.serialize_field("score", &round4(self.0.score))?;
        st.serialize_field("track", &self.0.track)?;
        st.end()
    }
}

/// The relations, with the persons they refer to (for their track ids).
struct RelationsRecord<'a>(&'a [Relation], &'a [Person]);

impl Serialize for RelationsRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| RelationRecord(r, self.1)))
    }
}

struct RelationRecord<'a>(&'a Relation, &'a [Person]);

impl Serialize for RelationRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let track = |i: u8| self.1.get(i as usize).map_or(0, |p| p.track);
        let mut st = s.serialize_struct("Relation", 9)?;
        st.serialize_field("a", &r.a)?;
        st.serialize_field("b", &r.b)?;
        st.serialize_field("label", r.label())?;
        st.serialize_field("coarse", r.coarse())?;
        st.serialize_field("score", &round4(r.score()))?;
        st.serialize_field("scores", &ScoresRecord(&r.probs))?;
        st.serialize_field("tracks", &[track(r.a), track(r.b)])?;
        st.serialize_field("smoothed", &ScoresRecord(&r.smoothed))?;
        st.serialize_field("shown", r.shown_label())?;
        st.end()
    }
}

struct ScoresRecord<'a>(&'a [f32; NUM_FINE]);

impl Serialize for ScoresRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(NUM_FINE))?;
        for (label, p) in FINE_LABELS.iter().zip(self.0) {
            map.serialize_entry(label, &round4(*p))?;
        }
        map.end()
    }
}

/// The stage timings in microseconds, keyed by stage name in the stages' order.
struct TimingsRecord<'a>(&'a StageTimes);

impl Serialize for TimingsRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(Stage::ALL.len()))?;
        for stage in Stage::ALL {
            map.serialize_entry(stage.name(), &self.0.get(stage))?;
        }
        map.end()
    }
}

/// Box coordinates to 0.1 px: finer is noise, and it keeps lines short.
fn round1(v: f32) -> f64 {
    (v as f64 * 10.0).round() / 10.0
}

/// Scores to 4 decimals.
pub(crate) fn round4(v: f32) -> f64 {
    (v as f64 * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_exactly_the_documented_fields() {
        let mut scene = Scene {
            frame: 3,
            width: 640,
            height: 480,
            ..Default::default()
        };
        scene.set_source("frame_003.jpg");
        for (id, bbox, score, track) in [
            (0, [1.0, 2.0, 30.25, 40.0], 0.97, 7),
            (1, [50.0, 2.0, 90.0, 40.0], 0.5, 4),
        ] {
            let person = Person {
                track,
                ..Person::new(id, bbox, score)
            };
            scene.persons.push(person).unwrap();
        }
        let probs = [0.61, 0.1, 0.09, 0.1, 0.05, 0.05];
        let relation = Relation {
            smoothed: [0.3, 0.4, 0.1, 0.1, 0.05, 0.05],
            shown: 1,
            ..Relation::new(0, 1, probs)
        };
        scene.relations.push(relation).unwrap();
        let mut out = Vec::new();
        write_line(&scene, "untrained-demo", "gritv2-s.int8.onnx", &mut out).unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "frame",
                "height",
                "persons",
                "relation_model",
                "relations",
                "source",
                "timings_us",
                "weights",
                "width"
            ]
        );
        assert_eq!(
            v["persons"][0]["box"],
            serde_json::json!([1.0, 2.0, 30.3, 40.0])
        );
        let person_keys: Vec<_> = v["persons"][0].as_object().unwrap().keys().collect();
        assert_eq!(person_keys, ["box", "id", "score", "track"]);
        assert_eq!(v["persons"][0]["track"], 7);
        let rel = &v["relations"][0];
        let relation_keys: Vec<_> = rel.as_object().unwrap().keys().collect();
        assert_eq!(
            relation_keys,
            ["a", "b", "coarse", "label", "score", "scores", "shown", "smoothed", "tracks"]
        );
        assert_eq!(rel["tracks"], serde_json::json!([7, 4]));
        assert_eq!(rel["shown"], "family");
        assert_eq!(rel["smoothed"]["family"], 0.4);
        assert_eq!((rel["a"].as_u64(), rel["b"].as_u64()), (Some(0), Some(1)));
        assert_eq!(rel["label"], "friends");
        assert_eq!(rel["coarse"], "intimate");
        assert_eq!(rel["score"], 0.61);
        let scores = rel["scores"].as_object().unwrap();
        assert_eq!(scores.len(), 6);
        assert_eq!(scores["no relation"], 0.05);
        let timing_keys: Vec<_> = v["timings_us"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            timing_keys,
            [
                "decode",
                "detect",
                "preprocess",
                "relate",
                "render",
                "total"
            ]
        );
    }
}
