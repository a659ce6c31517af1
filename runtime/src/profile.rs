//! Per-stage wall time of each frame, and latency distributions over a run (mean, p50, p90, p99,
//! max) kept in fixed-size histograms so a run of any length allocates nothing per frame.

use std::fmt::Write as _;
use std::time::Instant;

use crate::alloc_count::AllocCounts;

/// The stages of one frame, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Capture and decode of the frame into RGB.
    Decode,
    /// Resize and normalisation into the models' inputs.
    Preprocess,
    /// Person detector and its decoding.
    Detect,
    /// GRITv2-S and the pair labels.
    Relate,
    /// Drawing the overlay.
    Render,
    /// The whole frame, decode to render.
    Total,
}

impl Stage {
    /// All stages, in report order.
    pub const ALL: [Stage; 6] = [
        Stage::Decode,
        Stage::Preprocess,
        Stage::Detect,
        Stage::Relate,
        Stage::Render,
        Stage::Total,
    ];

    /// The stage's name in reports and in `timings_us`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Preprocess => "preprocess",
            Stage::Detect => "detect",
            Stage::Relate => "relate",
            Stage::Render => "render",
            Stage::Total => "total",
        }
    }
}

/// Wall time of each stage of one frame, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    pub decode: u64,
    pub preprocess: u64,
    pub detect: u64,
    pub relate: u64,
    pub render: u64,
    pub total: u64,
}

impl StageTimes {
    /// The time of `stage`.
    pub fn get(&self, stage: Stage) -> u64 {
        match stage {
            Stage::Decode => self.decode,
            Stage::Preprocess => self.preprocess,
            Stage::Detect => self.detect,
            Stage::Relate => self.relate,
            Stage::Render => self.render,
            Stage::Total => self.total,
        }
    }
}

/// Microseconds elapsed since `start`.
pub fn micros_since(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

const EXACT: u64 = 128;
const SUB_BUCKETS: u64 = 64;
const BUCKETS: usize = (EXACT + 57 * SUB_BUCKETS) as usize;

/// A log-linear histogram of microsecond values: exact below 128 µs, within 1.6 % above. kith's one
/// percentile implementation (the latency table, kith-bench's report, `kith-model bench`). Kept over
/// hdrhistogram 7 (3 digits, 1 µs..1 h): 15 KB of counts per histogram against 94 KB, a record in
/// a few ns either way, p50/p90/p99 of 10^6 values of 2..400 ms within 0.4 % of exact.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Box<[u32; BUCKETS]>,
    n: u64,
    sum: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            n: 0,
            sum: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn bucket(v: u64) -> usize {
        if v < EXACT {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() as u64 - 6;
        let mantissa = v >> shift;
        (EXACT + (shift - 1) * SUB_BUCKETS + (mantissa - SUB_BUCKETS)) as usize
    }

    /// The middle of bucket `ix`'s value range.
    fn value_of(ix: usize) -> u64 {
        let ix = ix as u64;
        if ix < EXACT {
            return ix;
        }
        let shift = (ix - EXACT) / SUB_BUCKETS + 1;
        let mantissa = (ix - EXACT) % SUB_BUCKETS + SUB_BUCKETS;
        let low = mantissa << shift;
        low + ((1u64 << shift) - 1) / 2
    }

    /// Adds one value.
    pub fn record(&mut self, us: u64) {
        let ix = Self::bucket(us).min(BUCKETS - 1);
        self.counts[ix] = self.counts[ix].saturating_add(1);
        self.n += 1;
        self.sum += us;
        self.max = self.max.max(us);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Mean of the values (exact).
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum as f64 / self.n as f64
        }
    }

    /// Largest value (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The `q` quantile (0..1): the smallest value with at least q of the values at or below it.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        if rank == self.n {
            return self.max;
        }
        let mut seen = 0u64;
        for (ix, &c) in self.counts.iter().enumerate() {
            seen += c as u64;
            if seen >= rank {
                return Self::value_of(ix).min(self.max);
            }
        }
        self.max
    }
}

/// Latency distributions of every stage over a run, and what the models allocated per frame.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    stages: [Histogram; Stage::ALL.len()],
    model_allocs: Histogram,
    model_alloc_bytes: u64,
    /// The model allocations that reached the system allocator (`AllocCounts::model_system`).
    model_system_allocs: u64,
    model_system_bytes: u64,
    own_allocs: u64,
    own_alloc_bytes: u64,
}

impl Profile {
    /// Adds one frame's timings and allocation counts.
    pub(crate) fn record(&mut self, times: &StageTimes, allocs: &AllocCounts) {
        for (h, stage) in self.stages.iter_mut().zip(Stage::ALL) {
            h.record(times.get(stage));
        }
        self.model_allocs.record(allocs.model);
        self.model_alloc_bytes += allocs.model_bytes;
        self.model_system_allocs += allocs.model_system;
        self.model_system_bytes += allocs.model_system_bytes;
        self.own_allocs += allocs.own;
        self.own_alloc_bytes += allocs.own_bytes;
    }

    /// Allocations of all frames recorded, kith's own and the models'.
    pub fn allocation_totals(&self) -> AllocCounts {
        AllocCounts {
            own: self.own_allocs,
            own_bytes: self.own_alloc_bytes,
            model: (self.model_allocs.mean() * self.frames() as f64).round() as u64,
            model_bytes: self.model_alloc_bytes,
            model_system: self.model_system_allocs,
            model_system_bytes: self.model_system_bytes,
        }
    }

    /// The distribution of `stage`.
    pub fn stage(&self, stage: Stage) -> &Histogram {
        &self.stages[Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0)]
    }

    /// Frames recorded.
    pub fn frames(&self) -> u64 {
        self.stages[0].count()
    }

    /// The per-stage latency table printed at exit; with `counting`, the allocation summary too.
    pub fn table(&self, counting: bool) -> String {
        let mut s = String::new();
        let ms = |us: f64| us / 1000.0;
        let _ = writeln!(s, "latency over {} frames (ms)", self.frames());
        let _ = writeln!(
            s,
            "{:<11} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "stage", "mean", "p50", "p90", "p99", "max"
        );
        for stage in Stage::ALL {
            let h = self.stage(stage);
            let _ = writeln!(
                s,
                "{:<11} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                stage.name(),
                ms(h.mean()),
                ms(h.quantile(0.5) as f64),
                ms(h.quantile(0.9) as f64),
                ms(h.quantile(0.99) as f64),
                ms(h.max() as f64),
            );
        }
        if self.frames() > 0 {
            let fps = 1e6 / self.stage(Stage::Total).mean().max(1.0);
            let _ = writeln!(
                s,
                "throughput  {fps:.2} frames/s (1 / mean total; more when stages overlap)"
            );
        }
        if counting && self.frames() > 0 {
            let n = self.frames() as f64;
            let _ = writeln!(
                s,
                "allocations per frame: kith {:.1}, tract {:.1} (mean; {:.0} KiB), tract max {}; \
                 of tract's, {:.1} ({:.0} KiB) reached the system allocator",
                self.own_allocs as f64 / n,
                self.model_allocs.mean(),
                self.model_alloc_bytes as f64 / n / 1024.0,
                self.model_allocs.max(),
                self.model_system_allocs as f64 / n,
                self.model_system_bytes as f64 / n / 1024.0,
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_within_two_percent() {
        for v in [
            0u64,
            1,
            127,
            128,
            129,
            1000,
            12_345,
            999_999,
            40_000_000,
            u32::MAX as u64,
        ] {
            let back = Histogram::value_of(Histogram::bucket(v));
            let err = (back as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err <= 0.016, "{v} -> {back}");
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 50);
        assert_eq!(h.quantile(0.9), 90);
        assert_eq!(h.quantile(0.99), 99);
        assert_eq!(h.max(), 100);
        assert!((h.mean() - 50.5).abs() < 1e-9);
        let mut slow = Histogram::default();
        for v in [10_000u64, 20_000, 30_000, 1_000_000] {
            slow.record(v);
        }
        let p50 = slow.quantile(0.5);
        assert!((19_700..=20_300).contains(&p50), "{p50}");
        assert_eq!(slow.quantile(1.0), 1_000_000);
    }
}
