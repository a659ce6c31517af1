//! report.json: what a benchmark run measured, in a form `kith-bench compare` and dashboards read.

use std::collections::BTreeMap;

use kith_inspect::ops::OperatorProfile;
use kith_runtime::profile::{Histogram, Stage};
use serde::{Deserialize, Serialize};

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub machine: Machine,
    pub build: Build,
    pub run: RunInfo,
    pub models: Vec<ModelReport>,
    /// Per stage, in microseconds.
    pub stages: BTreeMap<String, StageStats>,
    pub frames_per_second: f64,
    pub allocations: Allocations,
    pub peak_rss_bytes: Option<u64>,
    /// From process start to the end of the first frame (loading included), milliseconds.
    pub startup_to_first_frame_ms: f64,
    /// Per-operator profile of each model, by role ("detector", "relation").
    pub operators: BTreeMap<String, OperatorProfile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub arch: String,
    /// Instruction-set features tract-linalg detected.
    pub isa: String,
    /// tract's name for that level.
    pub isa_level: String,
    /// The tract-linalg matmul kernels the models' matrix products run on.
    pub kernels_chosen: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Build {
    pub version: String,
    pub git_commit: String,
    pub profile: String,
    pub target: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub board: String,
    pub source: String,
    pub threads: usize,
    /// Whether relations ran on a second thread, overlapping detection.
    pub pipelined: bool,
    pub frames: u64,
    pub warmup: u64,
    pub drawing: String,
    /// `--allocator`: "arena" or "system", with " over mimalloc" in a mimalloc build (absent in
    /// older reports).
    #[serde(default)]
    pub allocator: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelReport {
    pub role: String,
    pub file: String,
    pub sha256: String,
    /// "int8" or "fp32".
    pub precision: String,
    pub weights: Option<String>,
    /// What the model's arena did over the whole session (absent in older reports).
    #[serde(default)]
    pub arena: ArenaReport,
}

/// A model's arena (kith_runtime::model_arena): its buffer and how its runs went.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArenaReport {
    pub buffer_bytes: u64,
    /// Blocks of one run that the buffer holds.
    pub planned_blocks: u64,
    /// Runs before the first plan (all on the allocator underneath).
    pub unplanned_runs: u64,
    /// Runs that got every planned block from the buffer.
    pub served_runs: u64,
    /// Runs from the buffer that strayed from the plan: some planned blocks came from the
    /// allocator underneath.
    pub partial_runs: u64,
}

impl From<kith_runtime::model_arena::ArenaStats> for ArenaReport {
    fn from(s: kith_runtime::model_arena::ArenaStats) -> Self {
        ArenaReport {
            buffer_bytes: s.buffer_bytes as u64,
            planned_blocks: s.planned_blocks as u64,
            unplanned_runs: s.unplanned_runs,
            served_runs: s.served_runs,
            partial_runs: s.partial_runs,
        }
    }
}

/// Distribution of one stage, microseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct StageStats {
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl StageStats {
    /// The statistics of a histogram.
    pub fn of(h: &Histogram) -> Self {
        StageStats {
            mean_us: h.mean(),
            p50_us: h.quantile(0.5),
            p90_us: h.quantile(0.9),
            p99_us: h.quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// Stage names in report order.
pub fn stage_names() -> impl Iterator<Item = &'static str> {
    Stage::ALL.iter().map(|s| s.name())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Allocations {
    /// Per measured frame, mean, kith's own code.
    pub own_per_frame: f64,
    pub own_bytes_per_frame: f64,
    /// Per measured frame, mean, inside tract's model calls.
    pub tract_per_frame: f64,
    pub tract_bytes_per_frame: f64,
    /// Of tract's, the ones the allocator did not serve from recycled model memory.
    #[serde(default)]
    pub tract_system_per_frame: f64,
    #[serde(default)]
    pub tract_system_bytes_per_frame: f64,
}
