//! The replay demo against the results kith gives on x86_64 (`tests/data/demo-x86_64.jsonl`): on
//! any target, and in CI on aarch64 and armv7 under qemu-user, `kith run` on the demo board finds
//! the same persons in the same order with the same track ids, relates the same pairs with the same
//! fine, coarse and shown labels, and puts boxes and scores within the tolerances below of the
//! reference.
//!
//! Regenerate the reference on x86_64 after a deliberate change of models or pipeline:
//! `cargo run --release -- run --out /tmp/kith-ref && cp /tmp/kith-ref/results.jsonl
//! firmware/tests/data/demo-x86_64.jsonl`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Largest difference allowed in a box coordinate, in source pixels (kith writes 0.1 px).
const BOX_TOLERANCE_PX: f64 = 0.5;
/// Largest difference allowed in a detector score. The demo's detector is INT8: its integer
/// products are exact on every kernel, and on the first 4 frames qemu-aarch64 (neoverse-n1,
/// cortex-a72, cortex-a53) and qemu-arm (cortex-a15) gave the x86_64 scores and boxes to the
/// digits kith writes; the f32 rest of the graph may still differ in its last bits.
const PERSON_SCORE_TOLERANCE: f64 = 1e-3;
/// Largest difference allowed in a relation probability. The relation model is INT8, and tract's
/// int8 kernels requantise with other rounding on ARM (`arm64simd_mmm_i32_8x8_dot`) than on x86_64
/// (`avx512vnni_mmm_i32_8x8`): a value one quantisation step apart early in the graph moves the
/// probabilities by up to 0.027 on qemu-aarch64 (15 of the 58 pairs are bit-identical). This is the
/// bound `runtime/tests/int8.rs` holds INT8 to against FP32; the labels must still be the same.
const RELATION_SCORE_TOLERANCE: f64 = 0.06;
/// The same where kith narrowed the relation model's weights to 7 bits for this CPU's int8 kernel
/// (the AVX2 tier, `kith_runtime::narrow_weights`; the banner says so): measured 0.070 against
/// the reference, the bound `runtime/tests/int8.rs` holds narrowed INT8 to against FP32.
const RELATION_SCORE_TOLERANCE_NARROWED: f64 = 0.1;

/// The first demo frames to compare: all 16, or `KITH_REFERENCE_FRAMES` of them (CI under qemu-user,
/// where the first 4 frames take about half a minute of emulation on aarch64, 1.5 min on armv7).
fn frames_to_compare() -> Option<usize> {
    let value = std::env::var("KITH_REFERENCE_FRAMES").ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("KITH_REFERENCE_FRAMES = {value:?} is not a number")),
    )
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {v}"))
}

/// The largest differences seen, for the report.
#[derive(Debug, Default)]
struct MaxDiff {
    box_px: f64,
    person_score: f64,
    relation_score: f64,
}

fn compare_frame(got: &Value, want: &Value, max: &mut MaxDiff) {
    let frame = &want["source"];
    assert_eq!(got["source"], *frame);
    assert_eq!(
        (&got["width"], &got["height"]),
        (&want["width"], &want["height"])
    );
    let (gp, wp) = (
        got["persons"].as_array().unwrap(),
        want["persons"].as_array().unwrap(),
    );
    assert_eq!(gp.len(), wp.len(), "{frame}: persons");
    for (g, w) in gp.iter().zip(wp) {
        assert_eq!(g["id"], w["id"], "{frame}");
        assert_eq!(
            g["track"], w["track"],
            "{frame}: track of person {}",
            w["id"]
        );
        for (a, b) in g["box"]
            .as_array()
            .unwrap()
            .iter()
            .zip(w["box"].as_array().unwrap())
        {
            max.box_px = max.box_px.max((number(a, "box") - number(b, "box")).abs());
        }
        let d = (number(&g["score"], "score") - number(&w["score"], "score")).abs();
        max.person_score = max.person_score.max(d);
    }
    let (gr, wr) = (
        got["relations"].as_array().unwrap(),
        want["relations"].as_array().unwrap(),
    );
    assert_eq!(gr.len(), wr.len(), "{frame}: relations");
    for (g, w) in gr.iter().zip(wr) {
        let pair = (&w["a"], &w["b"]);
        assert_eq!((&g["a"], &g["b"]), pair, "{frame}");
        assert_eq!(g["label"], w["label"], "{frame} pair {pair:?}");
        assert_eq!(g["coarse"], w["coarse"], "{frame} pair {pair:?}");
        assert_eq!(g["tracks"], w["tracks"], "{frame} pair {pair:?}");
        assert_eq!(g["shown"], w["shown"], "{frame} pair {pair:?}");
        let d = (number(&g["score"], "score") - number(&w["score"], "score")).abs();
        max.relation_score = max.relation_score.max(d);
        let (gs, ws) = (
            g["scores"].as_object().unwrap(),
            w["scores"].as_object().unwrap(),
        );
        assert_eq!(
            gs.keys().collect::<Vec<_>>(),
            ws.keys().collect::<Vec<_>>(),
            "{frame}"
        );
        for (label, p) in ws {
            let d = (number(&gs[label], label) - number(p, label)).abs();
            max.relation_score = max.relation_score.max(d);
        }
    }
}

#[test]
fn the_demo_gives_the_x86_64_persons_and_labels() {
    let out = std::env::temp_dir().join(format!("kith-reference-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let limit = frames_to_compare();
    let mut kith = Command::new(env!("CARGO_BIN_EXE_kith"));
    // The demo board without its fallback: the INT8 file is what is compared on every CPU.
    let board = common::write_demo_board(&out.with_extension("board"));
    kith.args(["run", "--board"])
        .arg(&board)
        .arg("--out")
        .arg(&out)
        .current_dir(repo());
    if let Some(n) = limit {
        kith.arg("--frames").arg(n.to_string());
    }
    let run = kith.output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let banner = String::from_utf8_lossy(&run.stdout);
    println!("{}", banner.lines().take(5).collect::<Vec<_>>().join("\n"));
    let relation_tolerance = if banner.contains("narrowed to 7 bits") {
        RELATION_SCORE_TOLERANCE_NARROWED
    } else {
        RELATION_SCORE_TOLERANCE
    };
    let got = read_jsonl(&out.join("results.jsonl"));
    let mut want = read_jsonl(&repo().join("firmware/tests/data/demo-x86_64.jsonl"));
    if let Some(n) = limit {
        want.truncate(n);
    }
    assert_eq!(got.len(), want.len(), "frames");
    let mut max = MaxDiff::default();
    for (g, w) in got.iter().zip(&want) {
        compare_frame(g, w, &mut max);
    }
    let pairs: usize = want
        .iter()
        .map(|r| r["relations"].as_array().unwrap().len())
        .sum();
    println!(
        "{} on {}: {} frames, {pairs} pairs, same persons and labels as x86_64; max |diff| box \
         {:.2} px, person score {:.2e}, relation probability {:.2e}",
        std::env::consts::ARCH,
        std::env::consts::OS,
        got.len(),
        max.box_px,
        max.person_score,
        max.relation_score
    );
    assert!(
        pairs >= want.len(),
        "only {pairs} pairs in {} frames: the comparison says little",
        want.len()
    );
    assert!(
        max.box_px <= BOX_TOLERANCE_PX,
        "a box differs by {} px",
        max.box_px
    );
    assert!(
        max.person_score <= PERSON_SCORE_TOLERANCE && max.relation_score <= relation_tolerance,
        "scores differ by up to {:?}",
        max
    );
    std::fs::remove_dir_all(&out).unwrap();
}
