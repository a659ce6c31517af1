//! Steady labels: each tracked pair's relation probabilities are smoothed over time (an exponential
//! moving average with a time constant in seconds), and the label shown for the pair changes only
//! when another label's smoothed probability passes the shown one's by the hysteresis margin.
//! State is kept per pair of track ids ([`crate::track`]), in fixed capacity.

use heapless::Vec as HVec;

use crate::labels::NUM_FINE;
use crate::limits::MAX_SMOOTHED_PAIRS;
use crate::scene::{top_of, Person, Relation};

/// How labels are smoothed, from the board config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothingSettings {
    /// Off: `smoothed` is the frame's own `probs` and the shown label its top label.
    pub enabled: bool,
    /// Seconds after which a new level of evidence has moved the average by 63% (1 - 1/e).
    pub time_constant_s: f32,
    /// How far (0..1) another label's smoothed probability must pass the shown label's to replace it.
    pub hysteresis: f32,
}

impl Default for SmoothingSettings {
    fn default() -> Self {
        SmoothingSettings {
            enabled: false,
            time_constant_s: 1.0,
            hysteresis: 0.1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PairState {
    /// Track ids, the smaller first.
    tracks: (u32, u32),
    smoothed: [f32; NUM_FINE],
    shown: u8,
    /// Frame number of the last update.
    frame: u64,
}

/// The smoothed relations of the tracked pairs.
#[derive(Debug, Clone)]
pub struct Smoother {
    settings: SmoothingSettings,
    /// Frames a pair is remembered without being seen (its tracks may come back).
    memory: u64,
    pairs: HVec<PairState, MAX_SMOOTHED_PAIRS>,
}

impl Smoother {
    /// A smoother that remembers a pair for `memory` frames after it was last seen.
    pub fn new(settings: SmoothingSettings, memory: u32) -> Self {
        Smoother {
            settings,
            memory: memory as u64,
            pairs: HVec::new(),
        }
    }

    /// Sets `smoothed` and `shown` of `relations` (between `persons`, with their track ids) of
    /// frame number `frame`, `dt` seconds after the frame before.
    pub fn update(&mut self, persons: &[Person], relations: &mut [Relation], frame: u64, dt: f32) {
        if !self.settings.enabled {
            for r in relations.iter_mut() {
                r.smoothed = r.probs;
                r.shown = top_of(&r.probs) as u8;
            }
            return;
        }
        let memory = self.memory;
        self.pairs
            .retain(|p| frame.saturating_sub(p.frame) <= memory && p.frame <= frame);
        let rate = if self.settings.time_constant_s > 0.0 {
            1.0 - (-dt.max(0.0) / self.settings.time_constant_s).exp()
        } else {
            1.0
        };
        for r in relations.iter_mut() {
            let track = |i: u8| persons.get(i as usize).map_or(0, |p| p.track);
            let (ta, tb) = (track(r.a), track(r.b));
            let key = (ta.min(tb), ta.max(tb));
            let state = match self.pairs.iter_mut().position(|p| p.tracks == key) {
                Some(i) => {
                    let state = &mut self.pairs[i];
                    for (s, p) in state.smoothed.iter_mut().zip(&r.probs) {
                        *s += rate * (p - *s);
                    }
                    let top = top_of(&state.smoothed);
                    let shown = state.shown as usize;
                    if state.smoothed[top] - state.smoothed[shown] > self.settings.hysteresis {
                        state.shown = top as u8;
                    }
                    state.frame = frame;
                    *state
                }
                None => self.remember(PairState {
                    tracks: key,
                    smoothed: r.probs,
                    shown: top_of(&r.probs) as u8,
                    frame,
                }),
            };
            r.smoothed = state.smoothed;
            r.shown = state.shown;
        }
    }

    /// Adds a pair, forgetting the one seen longest ago when full.
    fn remember(&mut self, state: PairState) -> PairState {
        if self.pairs.is_full() {
            let oldest = (0..self.pairs.len()).min_by_key(|&i| self.pairs[i].frame);
            if let Some(i) = oldest {
                self.pairs.swap_remove(i);
            }
        }
        // Cannot fail: a place was made above.
        let _ = self.pairs.push(state);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(tracks: (u32, u32)) -> [Person; 2] {
        let mut persons = [
            Person::new(0, [0.0, 0.0, 10.0, 10.0], 0.9),
            Person::new(1, [20.0, 0.0, 30.0, 10.0], 0.9),
        ];
        persons[0].track = tracks.0;
        persons[1].track = tracks.1;
        persons
    }

    fn on() -> SmoothingSettings {
        SmoothingSettings {
            enabled: true,
            ..SmoothingSettings::default()
        }
    }

    /// Label changes along a sequence of label indices.
    fn flips(labels: &[usize]) -> usize {
        labels.windows(2).filter(|w| w[0] != w[1]).count()
    }

    #[test]
    fn a_label_flipping_every_other_frame_is_shown_steady() {
        let mut smoother = Smoother::new(on(), 10);
        let persons = pair((3, 5));
        let (mut raw, mut shown) = (Vec::new(), Vec::new());
        // 30 frames/s: 60 frames of friends and family alternating as top label, then 60 frames
        // where the evidence really is family.
        for frame in 0..120u64 {
            let probs = if frame >= 60 || frame % 2 == 1 {
                [0.3, 0.45, 0.1, 0.05, 0.05, 0.05]
            } else {
                [0.45, 0.3, 0.1, 0.05, 0.05, 0.05]
            };
            let mut relations = [Relation::new(0, 1, probs)];
            smoother.update(&persons, &mut relations, frame, 1.0 / 30.0);
            raw.push(relations[0].top());
            shown.push(relations[0].shown as usize);
        }
        println!(
            "120 frames: raw top label flips {} times, shown label {} times",
            flips(&raw),
            flips(&shown)
        );
        assert!(flips(&raw) >= 59);
        assert_eq!(
            &shown[..60],
            &[0; 60],
            "the shown label held while the evidence was mixed"
        );
        assert_eq!(flips(&shown), 1, "the label changed when the evidence did");
        assert_eq!(shown[119], 1);
    }

    #[test]
    fn smoothing_follows_the_time_constant() {
        let mut smoother = Smoother::new(on(), 10);
        let persons = pair((1, 2));
        let mut r = [Relation::new(0, 1, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0])];
        smoother.update(&persons, &mut r, 0, 0.0);
        assert_eq!(r[0].smoothed, r[0].probs);
        // One time constant later, the average has moved 63% of the way.
        let mut r = [Relation::new(0, 1, [0.0, 1.0, 0.0, 0.0, 0.0, 0.0])];
        smoother.update(&persons, &mut r, 1, 1.0);
        assert!(
            (r[0].smoothed[1] - 0.632).abs() < 1e-3,
            "{:?}",
            r[0].smoothed
        );
        assert_eq!(r[0].shown_label(), "family");
        assert!((r[0].shown_score() - 0.632).abs() < 1e-3);
    }

    #[test]
    fn new_pairs_start_from_their_own_scores() {
        let mut smoother = Smoother::new(on(), 10);
        let probs = [0.1, 0.1, 0.6, 0.1, 0.05, 0.05];
        let mut r = [Relation::new(0, 1, [0.9, 0.02, 0.02, 0.02, 0.02, 0.02])];
        smoother.update(&pair((1, 2)), &mut r, 0, 0.0);
        // Other tracks in the same places: strangers, not the pair before.
        let mut r = [Relation::new(0, 1, probs)];
        smoother.update(&pair((3, 4)), &mut r, 1, 0.1);
        assert_eq!(r[0].smoothed, probs);
        assert_eq!(r[0].shown_label(), "couple");
        // The same tracks listed the other way round are the same pair.
        let mut r = [Relation::new(0, 1, [0.0; NUM_FINE])];
        smoother.update(&pair((4, 3)), &mut r, 2, 0.1);
        assert!(r[0].smoothed[2] > 0.5 && r[0].smoothed[2] < 0.6);
    }

    #[test]
    fn off_shows_each_frame_as_it_is() {
        let mut smoother = Smoother::new(SmoothingSettings::default(), 10);
        let persons = pair((1, 2));
        for (frame, probs) in [
            [0.5, 0.3, 0.1, 0.05, 0.03, 0.02],
            [0.3, 0.5, 0.1, 0.05, 0.03, 0.02],
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = [Relation::new(0, 1, probs)];
            r[0].smoothed = [0.0; NUM_FINE];
            smoother.update(&persons, &mut r, frame as u64, 1.0 / 30.0);
            assert_eq!(r[0].smoothed, probs);
            assert_eq!(r[0].shown as usize, r[0].top());
        }
    }
}
