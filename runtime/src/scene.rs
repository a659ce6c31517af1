//! The result of one frame: the persons found, the relation of every pair, and the stage timings.
//! What is done with it (the overlay, the firmware's JSON lines) is its readers' concern.

use heapless::{String as HString, Vec as HVec};

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
    /// The person's id across frames, from 1 ([`crate::track`]); 0 until the tracker has run.
    pub track: u32,
}

impl Person {
    /// A detection not yet tracked.
    pub fn new(id: u8, bbox: [f32; 4], score: f32) -> Self {
        Person {
            id,
            bbox,
            score,
            track: 0,
        }
    }

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
    /// Softmax probability of each PISC fine label, in [`FINE_LABELS`] order: this frame's own.
    pub probs: [f32; NUM_FINE],
    /// `probs` smoothed over time for this pair of tracks ([`crate::smooth`]); equal to `probs`
    /// when smoothing is off or the pair is new.
    pub smoothed: [f32; NUM_FINE],
    /// Index of the label shown for the pair: the smoothed top label, changed only past the
    /// hysteresis margin.
    pub shown: u8,
}

impl Relation {
    /// The relation of `a < b` with this frame's `probs`, shown as they are (not yet smoothed).
    pub fn new(a: u8, b: u8, probs: [f32; NUM_FINE]) -> Self {
        Relation {
            a,
            b,
            probs,
            smoothed: probs,
            shown: top_of(&probs) as u8,
        }
    }

    /// Index of the most probable fine label.
    pub fn top(&self) -> usize {
        top_of(&self.probs)
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

    /// The fine label shown for the pair (the steady one, see [`Relation::shown`]).
    pub fn shown_label(&self) -> &'static str {
        FINE_LABELS[self.shown_index()]
    }

    /// Smoothed probability of [`Relation::shown_label`].
    pub fn shown_score(&self) -> f32 {
        self.smoothed[self.shown_index()]
    }

    fn shown_index(&self) -> usize {
        (self.shown as usize).min(NUM_FINE - 1)
    }
}

/// Index of the largest of `probs` (the first of equals).
pub(crate) fn top_of(probs: &[f32; NUM_FINE]) -> usize {
    let mut best = 0;
    for (i, p) in probs.iter().enumerate() {
        if *p > probs[best] {
            best = i;
        }
    }
    best
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_sources_are_cut_at_a_char_boundary() {
        let mut scene = Scene::default();
        let name = "é".repeat(100);
        scene.set_source(&name);
        assert_eq!(scene.source.len(), 128);
        assert!(name.starts_with(scene.source.as_str()));
    }
}
