//! Steady labels: each tracked pair's relation probabilities are smoothed over time (an exponential
//! moving average with a time constant in seconds), and the label shown for the pair changes only
//! when another label's smoothed probability passes the shown one's by the hysteresis margin.
//! State is kept per pair of track ids ([`crate::track`]), in fixed capacity.

use heapless::Vec as HVec;

use crate::labels::NUM_FINE;
use crate::scene::{top_of, Person, Relation};
use crate::track::MAX_TRACKS;

/// Most pairs remembered: every pair of [`MAX_TRACKS`] tracks.
const MAX_SMOOTHED_PAIRS: usize = MAX_TRACKS * (MAX_TRACKS - 1) / 2;

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
#[derive(Debug)]
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
