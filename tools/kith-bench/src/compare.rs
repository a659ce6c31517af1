//! `kith-bench compare OLD NEW`: per-stage differences between two reports, and whether any stage
//! got slower than a threshold.

use std::fmt::Write as _;

use crate::report::{stage_names, Report};

/// The comparison of two reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The table printed for a person.
    pub table: String,
    /// Stages whose p50 or mean grew by more than the threshold.
    pub slower: Vec<String>,
}

fn change(old: f64, new: f64) -> f64 {
    if old > 0.0 {
        (new - old) / old * 100.0
    } else {
        0.0
    }
}

/// Compares `new` against `old`: a stage is slower when its p50 and its mean both grew by more than
/// `threshold_pct` percent (both, so one outlier frame does not fail a build).
pub fn compare(old: &Report, new: &Report, threshold_pct: f64) -> Comparison {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<11} {:>11} {:>11} {:>8} {:>11} {:>11} {:>8}",
        "stage", "old p50 ms", "new p50 ms", "p50 %", "old mean", "new mean", "mean %"
    );
    let mut slower = Vec::new();
    for stage in stage_names() {
        let (Some(o), Some(n)) = (old.stages.get(stage), new.stages.get(stage)) else {
            continue;
        };
        let p50 = change(o.p50_us as f64, n.p50_us as f64);
        let mean = change(o.mean_us, n.mean_us);
        let flag = if p50 > threshold_pct && mean > threshold_pct {
            slower.push(stage.to_owned());
            "  SLOWER"
        } else {
            ""
        };
        let _ = writeln!(
            table,
            "{:<11} {:>11.2} {:>11.2} {:>+7.1}% {:>11.2} {:>11.2} {:>+7.1}%{flag}",
            stage,
            o.p50_us as f64 / 1e3,
            n.p50_us as f64 / 1e3,
            p50,
            o.mean_us / 1e3,
            n.mean_us / 1e3,
            mean
        );
    }
    let _ = writeln!(
        table,
        "frames/s    {:>11.2} {:>11.2} {:>+7.1}%",
        old.frames_per_second,
        new.frames_per_second,
        change(old.frames_per_second, new.frames_per_second)
    );
    Comparison { table, slower }
}
