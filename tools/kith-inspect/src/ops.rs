//! Per-node profiling of a loaded model: the time of every node of its optimised graph over a few
//! runs, and the one aggregation of those times per op type that kith-model and kith-bench print.

use std::collections::BTreeMap;
use std::time::Duration;

use kith_runtime::model::ModelFile;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Time spent in one node of the optimised graph over a profiled run.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    pub name: String,
    /// The tract operator, e.g. `OptMatMul`, `Conv`, `Softmax`.
    pub op: String,
    pub time: Duration,
}

/// Runs `model` `runs` times on its current inputs, timing every node of the optimised graph;
/// returns the nodes that ran, with their total time, in plan order.
pub fn profile_nodes(model: &mut ModelFile, runs: usize) -> Result<Vec<NodeTime>> {
    let mut times: Vec<Option<Duration>> = vec![None; model.graph().nodes().len()];
    for _ in 0..runs {
        model.run_timing_nodes(|node, elapsed| {
            if let Some(t) = times.get_mut(node.id) {
                *t = Some(t.unwrap_or_default() + elapsed);
            }
        })?;
    }
    Ok(model
        .graph()
        .nodes()
        .iter()
        .filter_map(|n| {
            Some(NodeTime {
                name: n.name.clone(),
                op: n.op().name().into_owned(),
                time: (*times.get(n.id)?)?,
            })
        })
        .collect())
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
