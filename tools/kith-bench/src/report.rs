//! report.json: what a benchmark run measured, in a form `kith-bench compare` and dashboards read.

use std::collections::BTreeMap;

use kith_runtime::model::NodeTime;
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelReport {
    pub role: String,
    pub file: String,
    pub sha256: String,
    /// "int8" or "fp32".
    pub precision: String,
    pub weights: Option<String>,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorProfile {
    pub runs: usize,
    /// Mean time of one run, all nodes, milliseconds.
    pub run_ms: f64,
    /// Share of the run per op type, largest first.
    pub by_op: Vec<OpShare>,
    /// The slowest nodes.
    pub top_nodes: Vec<NodeShare>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpShare {
    pub op: String,
    pub nodes: usize,
    pub ms: f64,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeShare {
    pub name: String,
    pub op: String,
    pub ms: f64,
    pub share: f64,
}

impl OperatorProfile {
    /// Aggregates node timings over `runs` runs; keeps the `top` slowest nodes.
    pub fn from_nodes(nodes: &[NodeTime], runs: usize, top: usize) -> Self {
        let runs_f = runs.max(1) as f64;
        let total: f64 = nodes
            .iter()
            .map(|n| n.time.as_secs_f64())
            .sum::<f64>()
            .max(1e-12);
        let mut by_op: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
        for n in nodes {
            let e = by_op.entry(&n.op).or_default();
            e.0 += 1;
            e.1 += n.time.as_secs_f64();
        }
        let mut by_op: Vec<OpShare> = by_op
            .into_iter()
            .map(|(op, (count, secs))| OpShare {
                op: op.to_owned(),
                nodes: count,
                ms: secs * 1e3 / runs_f,
                share: secs / total,
            })
            .collect();
        by_op.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        let mut top_nodes: Vec<NodeShare> = nodes
            .iter()
            .map(|n| NodeShare {
                name: n.name.clone(),
                op: n.op.clone(),
                ms: n.time.as_secs_f64() * 1e3 / runs_f,
                share: n.time.as_secs_f64() / total,
            })
            .collect();
        top_nodes.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        top_nodes.truncate(top);
        OperatorProfile {
            runs,
            run_ms: total * 1e3 / runs_f,
            by_op,
            top_nodes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn operator_shares_add_up_and_sort() {
        let node = |name: &str, op: &str, ms: u64| NodeTime {
            name: name.into(),
            op: op.into(),
            time: Duration::from_millis(ms),
        };
        let nodes = [
            node("a", "MatMul", 60),
            node("b", "Softmax", 20),
            node("c", "MatMul", 20),
        ];
        let p = OperatorProfile::from_nodes(&nodes, 2, 2);
        assert_eq!(p.by_op[0].op, "MatMul");
        assert_eq!(p.by_op[0].nodes, 2);
        assert!((p.by_op[0].share - 0.8).abs() < 1e-9);
        assert!((p.run_ms - 50.0).abs() < 1e-9);
        assert_eq!(p.top_nodes.len(), 2);
        assert_eq!(p.top_nodes[0].name, "a");
        assert!((p.top_nodes[0].ms - 30.0).abs() < 1e-9);
    }
}
