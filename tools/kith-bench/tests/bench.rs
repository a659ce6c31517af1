//! kith-bench as a user runs it: a short benchmark of the demo board writes every report field from
//! measurement, and `compare` flags an injected slowdown but passes an identical report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kith-bench"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_short_benchmark_fills_every_field_and_compare_flags_a_slowdown() {
    let out = std::env::temp_dir().join(format!("kith-bench-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = bench(&[
        "--board",
        "board-configs/demo.toml",
        "--frames",
        "4",
        "--warmup",
        "1",
        "--op-runs",
        "1",
        "--threads",
        "1",
        "--allocator",
        "arena",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();

    let m = &report["machine"];
    assert!(!m["cpu"].as_str().unwrap().is_empty());
    assert!(m["cores"].as_u64().unwrap() >= 1);
    assert!(!m["isa"].as_str().unwrap().is_empty());
    assert!(
        !m["kernels_chosen"].as_array().unwrap().is_empty(),
        "kernel names are reported"
    );
    let b = &report["build"];
    assert_eq!(b["version"], env!("CARGO_PKG_VERSION"));
    assert!(!b["git_commit"].as_str().unwrap().is_empty());
    assert!(!b["target"].as_str().unwrap().is_empty());
    assert_eq!(report["run"]["frames"], 4);
    assert_eq!(report["run"]["threads"], 1);
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    for model in models {
        assert_eq!(model["sha256"].as_str().unwrap().len(), 64);
        assert!(["fp32", "int8"].contains(&model["precision"].as_str().unwrap()));
    }
    for stage in [
        "decode",
        "preprocess",
        "detect",
        "relate",
        "render",
        "total",
    ] {
        let s = &report["stages"][stage];
        assert!(s["mean_us"].as_f64().unwrap() > 0.0, "{stage}");
        assert!(s["p50_us"].as_u64().unwrap() <= s["p99_us"].as_u64().unwrap());
        assert!(s["p99_us"].as_u64().unwrap() <= s["max_us"].as_u64().unwrap());
    }
    assert!(report["frames_per_second"].as_f64().unwrap() > 0.0);
    let a = &report["allocations"];
    assert_eq!(
        a["own_per_frame"], 0.0,
        "steady-state frames allocate nothing outside tract"
    );
    assert!(a["tract_per_frame"].as_f64().unwrap() > 0.0);
    // The arenas serve tract's requests: after the warm-up, few of them and few of their bytes
    // reach the system allocator.
    assert_eq!(report["run"]["allocator"], "arena");
    assert!(
        a["tract_system_per_frame"].as_f64().unwrap() * 10.0
            < a["tract_per_frame"].as_f64().unwrap()
    );
    assert!(
        a["tract_system_bytes_per_frame"].as_f64().unwrap() * 10.0
            < a["tract_bytes_per_frame"].as_f64().unwrap()
    );
    assert!(report["peak_rss_bytes"].as_u64().unwrap() > 10 << 20);
    assert!(report["startup_to_first_frame_ms"].as_f64().unwrap() > 0.0);
    for role in ["detector", "relation"] {
        let p = &report["operators"][role];
        let share: f64 = p["by_op"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["share"].as_f64().unwrap())
            .sum();
        assert!(
            (share - 1.0).abs() < 1e-6,
            "{role}: shares add up to {share}"
        );
        assert!(!p["top_nodes"].as_array().unwrap().is_empty());
    }
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 6);
    let svg = std::fs::read_to_string(out.join("chart.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 6);

    let report_path = out.join("report.json");
    let same = bench(&[
        "compare",
        report_path.to_str().unwrap(),
        report_path.to_str().unwrap(),
    ]);
    assert!(same.status.success(), "{}", text(&same.stdout));

    let mut slow = report.clone();
    for key in ["mean_us", "p50_us"] {
        let v = slow["stages"]["detect"][key].as_f64().unwrap() * 1.5;
        slow["stages"]["detect"][key] = if key == "p50_us" {
            Value::from(v as u64)
        } else {
            Value::from(v)
        };
    }
    let slow_path = out.join("slow.json");
    std::fs::write(&slow_path, serde_json::to_string(&slow).unwrap()).unwrap();
    let flagged = bench(&[
        "compare",
        report_path.to_str().unwrap(),
        slow_path.to_str().unwrap(),
        "--threshold",
        "10",
    ]);
    assert_eq!(flagged.status.code(), Some(1), "{}", text(&flagged.stdout));
    assert!(
        text(&flagged.stdout).contains("slower than 10%: detect"),
        "{}",
        text(&flagged.stdout)
    );
    let faster = bench(&[
        "compare",
        slow_path.to_str().unwrap(),
        report_path.to_str().unwrap(),
    ]);
    assert!(faster.status.success(), "a faster run passes");

    let broken = out.join("broken.json");
    std::fs::write(&broken, b"{\"not\": \"a report\"}").unwrap();
    let bad = bench(&[
        "compare",
        broken.to_str().unwrap(),
        report_path.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("broken.json"),
        "{}",
        text(&bad.stderr)
    );
    std::fs::remove_dir_all(&out).unwrap();
}
