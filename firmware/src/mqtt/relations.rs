//! The relations topic: the relations whose shown label changed since the previous frame, and the
//! message that lists them (README, "MQTT").

use std::collections::HashMap;

use kith_runtime::labels::COARSE_OF_FINE;
use kith_runtime::{Person, Relation, Scene};
use serde::Serialize;

use crate::output::round4;

/// The identity of a pair across frames: its two persons' track ids.
type Pair = (u32, u32);

/// A pair's track ids and the label shown for it (smoothed, with hysteresis, when smoothing is
/// on): the one place that says what a change is keyed on.
fn shown(persons: &[Person], relation: &Relation) -> (Pair, &'static str) {
    let track = |i: u8| persons.get(usize::from(i)).map_or(0, |p| p.track);
    (
        (track(relation.a), track(relation.b)),
        relation.shown_label(),
    )
}

/// The shown labels of the previous frame, to find what changed.
#[derive(Debug, Default)]
pub struct RelationChanges {
    previous: HashMap<Pair, &'static str>,
    current: HashMap<Pair, &'static str>,
}

/// A relation whose shown label is new for its pair.
#[derive(Debug, Serialize)]
pub struct Change {
    /// The pair's persons in this frame, as `a` and `b` in the JSON line.
    pub a: u8,
    pub b: u8,
    /// The pair's track ids, as `tracks` in the JSON line: what a change is keyed on.
    pub tracks: [u32; 2],
    pub label: &'static str,
    pub coarse: &'static str,
    pub score: f64,
    /// The pair's label in the previous frame; `None` (JSON null) when the pair is new.
    pub previous: Option<&'static str>,
}

/// The message on `<prefix>/relations`.
#[derive(Debug, Serialize)]
struct ChangesRecord<'a> {
    frame: u64,
    source: &'a str,
    changes: &'a [Change],
}

impl RelationChanges {
    /// The relations whose shown label differs from the previous frame's for the same pair (pairs
    /// not in the previous frame included); this frame's labels become the previous ones.
    pub fn update(&mut self, persons: &[Person], relations: &[Relation]) -> Vec<Change> {
        self.current.clear();
        let mut changes = Vec::new();
        for relation in relations {
            let (pair, label) = shown(persons, relation);
            self.current.insert(pair, label);
            let previous = self.previous.get(&pair).copied();
            if previous != Some(label) {
                changes.push(Change {
                    a: relation.a,
                    b: relation.b,
                    tracks: [pair.0, pair.1],
                    label,
                    coarse: COARSE_OF_FINE[usize::from(relation.shown)],
                    score: round4(relation.shown_score()),
                    previous,
                });
            }
        }
        std::mem::swap(&mut self.previous, &mut self.current);
        changes
    }

    /// The relations message of `scene`, or `None` when no relation changed.
    pub fn message(&mut self, scene: &Scene) -> serde_json::Result<Option<Vec<u8>>> {
        let changes = self.update(&scene.persons, &scene.relations);
        if changes.is_empty() {
            return Ok(None);
        }
        serde_json::to_vec(&ChangesRecord {
            frame: scene.frame,
            source: scene.source.as_str(),
            changes: &changes,
        })
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_runtime::labels::{FINE_LABELS, NUM_FINE};

    fn relation(a: u8, b: u8, top: usize) -> Relation {
        let mut probs = [0.0; NUM_FINE];
        probs[top] = 0.9;
        Relation::new(a, b, probs)
    }

    /// Three persons whose track ids are 10 + their index.
    fn persons() -> Vec<Person> {
        (0..3u8)
            .map(|i| Person {
                track: 10 + u32::from(i),
                ..Person::new(i, [0.0; 4], 1.0)
            })
            .collect()
    }

    #[test]
    fn a_pair_is_a_change_when_new_or_relabelled_and_not_when_its_label_stays() {
        let mut changes = RelationChanges::default();
        let first = changes.update(&persons(), &[relation(0, 1, 0), relation(0, 2, 1)]);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|c| c.previous.is_none()));
        let second = changes.update(&persons(), &[relation(0, 1, 0), relation(0, 2, 2)]);
        assert_eq!(second.len(), 1);
        let c = &second[0];
        assert_eq!(
            (c.a, c.b, c.tracks, c.label),
            (0, 2, [10, 12], FINE_LABELS[2])
        );
        assert_eq!(c.previous, Some(FINE_LABELS[1]));
        // A pair gone for a frame is new again when it comes back.
        assert!(changes.update(&persons(), &[]).is_empty());
        assert_eq!(changes.update(&persons(), &[relation(0, 1, 0)]).len(), 1);
    }

    #[test]
    fn the_message_has_the_documented_fields() {
        let mut scene = Scene {
            frame: 4,
            ..Default::default()
        };
        scene.set_source("f.jpg");
        for p in persons() {
            scene.persons.push(p).unwrap();
        }
        scene.relations.push(relation(1, 2, 3)).unwrap();
        let mut changes = RelationChanges::default();
        let bytes = changes.message(&scene).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["frame"], 4);
        assert_eq!(v["source"], "f.jpg");
        let c = &v["changes"][0];
        let keys: Vec<_> = c.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 7, "{c}");
        assert_eq!((c["a"].as_u64(), c["b"].as_u64()), (Some(1), Some(2)));
        assert_eq!(c["tracks"], serde_json::json!([11, 12]));
        assert_eq!(c["label"], FINE_LABELS[3]);
        assert_eq!(c["score"], 0.9);
        assert!(c["previous"].is_null() && c["coarse"].is_string());
        // The same relations again: nothing changed, no message.
        assert!(changes.message(&scene).unwrap().is_none());
    }
}
