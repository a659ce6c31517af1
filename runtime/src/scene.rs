//! The result of one frame: the persons found, the relation of every pair, and the stage timings;
//! and its JSON lines form, the contract scripts and dashboards read.

use heapless::{String as HString, Vec as HVec};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::labels::{COARSE_OF_FINE, FINE_LABELS, NUM_FINE};
use crate::limits::{MAX_PAIRS, MAX_PERSONS, SOURCE_NAME_CAPACITY};
use crate::profile::StageTimes;

/// A detected person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Person {
    /// Index in the frame's person list (best detection first).
    pub id: u8,
    /// x1, y1, x2, y2 in source pixels.
    pub bbox: [f32; 4],
    /// Detector confidence, 0..1.
    pub score: f32,
}

impl Person {
    /// Centre of the box.
    pub fn centre(&self) -> (f32, f32) {
        (
            (self.bbox[0] + self.bbox[2]) / 2.0,
            (self.bbox[1] + self.bbox[3]) / 2.0,
        )
    }
}

/// The relation predicted for the unordered pair `a < b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relation {
    pub a: u8,
    pub b: u8,
    /// Softmax probability of each PISC fine label, in [`FINE_LABELS`] order.
    pub probs: [f32; NUM_FINE],
}

impl Relation {
    /// Index of the most probable fine label.
    pub fn top(&self) -> usize {
        let mut best = 0;
        for (i, p) in self.probs.iter().enumerate() {
            if *p > self.probs[best] {
                best = i;
            }
        }
        best
    }

    /// The most probable fine label.
    pub fn label(&self) -> &'static str {
        FINE_LABELS[self.top()]
    }

    /// The coarse group of [`Relation::label`].
    pub fn coarse(&self) -> &'static str {
        COARSE_OF_FINE[self.top()]
    }

    /// Probability of [`Relation::label`].
    pub fn score(&self) -> f32 {
        self.probs[self.top()]
    }
}

/// Everything kith found in one frame.
#[derive(Debug, Clone, Default)]
pub struct Scene {
    /// Frame counter, from 0.
    pub frame: u64,
    /// Where the frame came from (file name or device), cut to [`SOURCE_NAME_CAPACITY`] bytes.
    pub source: HString<SOURCE_NAME_CAPACITY>,
    pub width: usize,
    pub height: usize,
    pub persons: HVec<Person, MAX_PERSONS>,
    /// One entry per unordered pair of persons, `a < b`, in row-major order.
    pub relations: HVec<Relation, MAX_PAIRS>,
    pub timings: StageTimes,
}

impl Scene {
    /// Sets [`Scene::source`], cutting a long name at a character boundary.
    pub fn set_source(&mut self, name: &str) {
        self.source.clear();
        let mut end = name.len().min(SOURCE_NAME_CAPACITY);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        // Cannot fail: `end` is within capacity.
        let _ = self.source.push_str(&name[..end]);
    }

    /// Appends the scene as one JSON object and a newline to `out`, with `weights` naming the
    /// relation weights ("untrained-demo" or a trained model's name/version) and `relation_model`
    /// the file name of the relation model that ran (e.g. "gritv2-s.int8.onnx").
    pub fn write_json_line(
        &self,
        weights: &str,
        relation_model: &str,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<()> {
        serde_json::to_writer(
            &mut *out,
            &SceneRecord {
                scene: self,
                weights,
                relation_model,
            },
        )?;
        out.push(b'\n');
        Ok(())
    }
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
        st.serialize_field("relations", &RelationsRecord(&scene.relations))?;
        st.serialize_field("weights", self.weights)?;
        st.serialize_field("relation_model", self.relation_model)?;
        st.serialize_field("timings_us", &scene.timings)?;
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
        let mut st = s.serialize_struct("Person", 3)?;
        st.serialize_field("id", &self.0.id)?;
        st.serialize_field("box", &self.0.bbox.map(round1))?;
        st.serialize_field("score", &round4(self.0.score))?;
        st.end()
    }
}

struct RelationsRecord<'a>(&'a [Relation]);

impl Serialize for RelationsRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(RelationRecord))
    }
}

struct RelationRecord<'a>(&'a Relation);

impl Serialize for RelationRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut st = s.serialize_struct("Relation", 6)?;
        st.serialize_field("a", &r.a)?;
        st.serialize_field("b", &r.b)?;
        st.serialize_field("label", r.label())?;
        st.serialize_field("coarse", r.coarse())?;
        st.serialize_field("score", &round4(r.score()))?;
        st.serialize_field("scores", &ScoresRecord(&r.probs))?;
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

/// Box coordinates to 0.1 px: finer is noise, and it keeps lines short.
fn round1(v: f32) -> f64 {
    (v as f64 * 10.0).round() / 10.0
}

/// Scores to 4 decimals.
fn round4(v: f32) -> f64 {
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
        scene
            .persons
            .push(Person {
                id: 0,
                bbox: [1.0, 2.0, 30.25, 40.0],
                score: 0.97,
            })
            .unwrap();
        scene
            .persons
            .push(Person {
                id: 1,
                bbox: [50.0, 2.0, 90.0, 40.0],
                score: 0.5,
            })
            .unwrap();
        let probs = [0.61, 0.1, 0.09, 0.1, 0.05, 0.05];
        scene
            .relations
            .push(Relation { a: 0, b: 1, probs })
            .unwrap();
        let mut out = Vec::new();
        scene
            .write_json_line("untrained-demo", "gritv2-s.int8.onnx", &mut out)
            .unwrap();
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
        let rel = &v["relations"][0];
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

    #[test]
    fn long_sources_are_cut_at_a_char_boundary() {
        let mut scene = Scene::default();
        let name = "é".repeat(100);
        scene.set_source(&name);
        assert_eq!(scene.source.len(), 128);
        assert!(name.starts_with(scene.source.as_str()));
    }
}
