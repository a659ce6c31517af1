//! The `kith` binary as a user runs it: `kith check` on every board config, `kith run` on the demo
//! and on a folder with a corrupt image, and the JSON lines contract.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn kith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// board-configs/demo.toml with its paths made absolute, to be written anywhere.
fn demo_config_with_absolute_paths() -> String {
    let demo = std::fs::read_to_string(repo().join("board-configs/demo.toml")).unwrap();
    demo.replace("\"../models/", &format!("\"{}/models/", repo().display()))
        .replace(
            "\"demo/frames\"",
            &format!("\"{}/board-configs/demo/frames\"", repo().display()),
        )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_shipped_board_config_passes_check() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(repo().join("board-configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // This host has none of the boards' cameras and displays: every field but the device
            // nodes is checked, and both models are loaded.
            let out = kith(&["check", "--skip-devices", "--board", path.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                text(&out.stderr)
            );
            assert!(text(&out.stdout).contains(": ok"), "{}", text(&out.stdout));
            checked.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "demo",
            "raspberry-pi-4",
            "raspberry-pi-5",
            "raspberry-pi-zero-2w",
            "rock-5b"
        ]
    );
}

#[test]
fn check_strict_fails_with_exit_2_on_a_missing_device_naming_the_field() {
    let dir = temp_dir("missing-device");
    let boards = repo().join("board-configs");
    for (board, device, field) in [
        ("raspberry-pi-5.toml", "/dev/video0", "`camera.device`"),
        ("raspberry-pi-4.toml", "/dev/spidev0.0", "`display.spi`"),
    ] {
        let text_of = std::fs::read_to_string(boards.join(board)).unwrap();
        // The Pi 4's camera pipe is the one device node of this board that is there.
        let body = text_of
            .replace(device, "/nonexistent/kith-device")
            .replace("/run/kith-camera/frames.yuv", "-")
            .replace("\"../models/", &format!("\"{}/models/", repo().display()));
        let file = dir.join(board);
        std::fs::write(&file, body).unwrap();
        let out = kith(&["check", "--strict", "--board", file.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{board}: {err}");
        assert!(
            err.contains(field) && err.contains("/nonexistent/kith-device"),
            "{field} not in {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn a_broken_config_fails_check_with_exit_2_naming_the_field() {
    let dir = temp_dir("broken");
    let absolute = demo_config_with_absolute_paths();
    let cases = [
        ("threads", absolute.replace("threads = 1", "threads = 0")),
        (
            "detector.nms_iou",
            absolute.replace("nms_iou = 0.45", "nms_iou = 4.5"),
        ),
        (
            "relation.model",
            absolute.replace("gritv2-s.int8.onnx", "missing.onnx"),
        ),
        ("line ", absolute.replace("[display]", "[display")),
    ];
    for (needle, body) in cases {
        let file = dir.join("board.toml");
        std::fs::write(&file, body).unwrap();
        let out = kith(&["check", "--board", file.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{needle}: {err}");
        assert!(
            err.contains(needle) && err.contains("board.toml"),
            "{needle} not in {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
    // A model file that is not a model is a config problem too: exit 2, naming the file.
    let fake = dir.join("fake.onnx");
    std::fs::write(&fake, b"definitely not protobuf").unwrap();
    std::fs::write(
        dir.join("board.toml"),
        absolute.replace(
            &format!("{}/models/gritv2-s.int8.onnx", repo().display()),
            fake.to_str().unwrap(),
        ),
    )
    .unwrap();
    let out = kith(&["check", "--board", dir.join("board.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("fake.onnx"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn read_results(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn run_skips_corrupt_images_and_writes_the_documented_json() {
    let src = temp_dir("source");
    let frames = repo().join("board-configs/demo/frames");
    std::fs::copy(frames.join("frame_005.jpg"), src.join("a.jpg")).unwrap();
    std::fs::write(src.join("b.jpg"), b"\xff\xd8\xff\xe0 truncated").unwrap();
    std::fs::copy(frames.join("frame_012.jpg"), src.join("c.jpg")).unwrap();
    let out_dir = temp_dir("out");
    // The demo board without its fallback file: the INT8 file runs, whatever this CPU's timings.
    let board = out_dir.join("board.toml");
    std::fs::write(&board, common::demo_board()).unwrap();
    let out = kith(&[
        "run",
        "--board",
        board.to_str().unwrap(),
        "--source",
        src.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("b.jpg"),
        "{stderr}"
    );
    assert!(
        stdout.contains("p99") && stdout.contains("total"),
        "no latency table: {stdout}"
    );
    let results = read_results(&out_dir);
    assert_eq!(results.len(), 2);
    for (i, r) in results.iter().enumerate() {
        let keys: Vec<_> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "frame",
                "height",
                "persons",
                "relation_model",
                "relations",
                "source",
                "timings_us",
                "weights",
                "width"
            ]
        );
        assert_eq!(r["frame"], i as u64);
        assert_eq!(r["weights"], "untrained-demo");
        assert_eq!(r["relation_model"], "gritv2-s.int8.onnx");
        assert_eq!(
            (r["width"].as_u64(), r["height"].as_u64()),
            (Some(640), Some(480))
        );
        let n = r["persons"].as_array().unwrap().len();
        let rel = r["relations"].as_array().unwrap();
        assert_eq!(rel.len(), n * (n - 1) / 2, "every unordered pair once");
        for p in rel {
            assert!(p["a"].as_u64() < p["b"].as_u64());
            assert_eq!(p["scores"].as_object().unwrap().len(), 6);
        }
        for stage in [
            "decode",
            "preprocess",
            "detect",
            "relate",
            "render",
            "total",
        ] {
            assert!(r["timings_us"][stage].is_u64(), "{stage}");
        }
    }
    assert_eq!(results[0]["source"], "a.jpg");
    assert_eq!(results[1]["source"], "c.jpg");
    assert_eq!(
        results[0]["persons"].as_array().unwrap().len(),
        3,
        "frame_005 shows three people"
    );
    assert_eq!(
        results[1]["persons"].as_array().unwrap().len(),
        4,
        "frame_012 shows four people"
    );
    for n in 0..2 {
        let png = out_dir.join(format!("frames/{n:06}.png"));
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (640, 480));
    }
    std::fs::remove_dir_all(&src).unwrap();
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn the_demo_runs_with_no_arguments_but_the_frame_limit() {
    let out_dir = temp_dir("demo");
    let out = kith(&["run", "--frames", "3", "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let results = read_results(&out_dir);
    assert_eq!(results.len(), 3);
    assert!(results
        .iter()
        .all(|r| r["persons"].as_array().unwrap().len() >= 2));
    assert!(out_dir.join("frames/000002.png").is_file());
    assert!(
        text(&out.stdout).contains("untrained"),
        "the run must say the labels are untrained"
    );
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn pipelined_runs_give_the_same_results_in_order() {
    let dir = temp_dir("overlap");
    // The demo board runs one tract thread per model, so the arithmetic is the same in both runs
    // and only the scheduling differs.
    let absolute = demo_config_with_absolute_paths();
    let seq_board = dir.join("sequential.toml");
    let pipe_board = dir.join("pipelined.toml");
    std::fs::write(
        &seq_board,
        absolute.replace("pipelined = true", "pipelined = false"),
    )
    .unwrap();
    std::fs::write(&pipe_board, &absolute).unwrap();
    let (seq_out, pipe_out) = (dir.join("seq"), dir.join("pipe"));
    let seq = kith(&[
        "run",
        "--board",
        seq_board.to_str().unwrap(),
        "--frames",
        "6",
        "--out",
        seq_out.to_str().unwrap(),
    ]);
    let pipe = kith(&[
        "run",
        "--board",
        pipe_board.to_str().unwrap(),
        "--out",
        pipe_out.to_str().unwrap(),
    ]);
    assert!(seq.status.success(), "{}", text(&seq.stderr));
    assert!(
        !text(&seq.stdout).contains("relations pipelined"),
        "{}",
        text(&seq.stdout)
    );
    assert!(pipe.status.success(), "{}", text(&pipe.stderr));
    assert!(
        text(&pipe.stdout).contains("relations pipelined"),
        "{}",
        text(&pipe.stdout)
    );
    let (a, b) = (read_results(&seq_out), read_results(&pipe_out));
    assert_eq!(
        b.len(),
        16,
        "every demo frame, the last one flushed at the end"
    );
    for (i, r) in b.iter().enumerate() {
        assert_eq!(r["frame"], i as u64);
        assert_eq!(r["source"], format!("frame_{i:03}.jpg"));
    }
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["persons"], y["persons"]);
        let labels = |r: &Value| {
            r["relations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["label"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(labels(x), labels(y));
    }
    assert!(pipe_out.join("frames/000015.png").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_a_fallback_the_banner_and_the_json_name_the_faster_file() {
    let out_dir = temp_dir("fallback");
    let out = kith(&[
        "run",
        "--frames",
        "1",
        "--board",
        "board-configs/demo.toml",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // "  running   KEPT, faster here than the fallback DROPPED: X ms against Y ms (...)"
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("  running   "))
        .unwrap_or_else(|| panic!("no `running` line in the banner: {stdout}"));
    let (kept, rest) = line.split_once(", faster here than the ").unwrap();
    let (role, rest) = rest.split_once(' ').unwrap();
    let (dropped, rest) = rest.split_once(": ").unwrap();
    let ms: Vec<f64> = rest
        .split(" ms")
        .take(2)
        .map(|s| s.trim_start_matches(" against ").parse().unwrap())
        .collect();
    assert!(ms[0] <= ms[1], "kept the slower file: {line}");
    let files = ["gritv2-s.int8.onnx", "gritv2-s.fp32.onnx"];
    let expected_dropped = if kept == files[0] { files[1] } else { files[0] };
    assert!(files.contains(&kept), "{line}");
    assert_eq!(dropped, expected_dropped, "{line}");
    assert_eq!(role == "fallback", kept == files[0], "{line}");
    assert!(
        stdout.contains(&format!("/models/{kept} (weights")),
        "the relations line names another file: {stdout}"
    );
    let results = read_results(&out_dir);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["relation_model"], kept);
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn a_fallback_that_is_no_relation_model_fails_check_with_exit_2_naming_the_field() {
    let dir = temp_dir("bad-fallback");
    let board = dir.join("board.toml");
    std::fs::write(
        &board,
        demo_config_with_absolute_paths()
            .replace("models/gritv2-s.fp32.onnx", "models/person-detector.onnx"),
    )
    .unwrap();
    let out = kith(&["check", "--board", board.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("relation.fallback_model") && err.contains("person-detector.onnx"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quiet_hides_the_warnings_and_verbose_adds_debug_lines() {
    let src = temp_dir("quiet-source");
    std::fs::write(src.join("b.jpg"), b"\xff\xd8\xff\xe0 truncated").unwrap();
    std::fs::copy(
        repo().join("board-configs/demo/frames/frame_005.jpg"),
        src.join("c.jpg"),
    )
    .unwrap();
    let out_dir = temp_dir("quiet-out");
    let board = out_dir.join("board.toml");
    std::fs::write(&board, common::demo_board()).unwrap();
    let run = |flag: Option<&str>| {
        let mut args = vec![
            "run",
            "--board",
            board.to_str().unwrap(),
            "--source",
            src.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ];
        args.extend(flag);
        let out = kith(&args);
        assert!(out.status.success(), "{flag:?}: {}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let warning = "kith: warning: ";
    let (stdout, stderr) = run(None);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(warning) && l.contains("b.jpg")),
        "{stderr}"
    );
    assert!(!stderr.contains("debug:"), "{stderr}");
    assert!(stdout.contains("skipped 1 unreadable frames"), "{stdout}");
    let (quiet_stdout, quiet_stderr) = run(Some("--quiet"));
    assert!(quiet_stderr.is_empty(), "--quiet: {quiet_stderr}");
    // stdout (frame lines, latency table) is not a log: --quiet leaves it as it is.
    for l in ["frame      0 c.jpg", "p99", "skipped 1 unreadable frames"] {
        assert!(
            stdout.contains(l) && quiet_stdout.contains(l),
            "{l}: {quiet_stdout}"
        );
    }
    let (_, verbose_stderr) = run(Some("-v"));
    assert!(verbose_stderr.contains(warning), "{verbose_stderr}");
    assert!(
        verbose_stderr
            .lines()
            .any(|l| l.starts_with("kith: debug: ") && l.contains("gritv2-s.int8.onnx")),
        "-v: {verbose_stderr}"
    );
    std::fs::remove_dir_all(&src).unwrap();
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn errors_still_show_with_quiet() {
    let out = kith(&["--quiet", "check", "--board", "no-such-board.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("kith: error: ") && stderr.contains("no-such-board.toml"),
        "{stderr}"
    );
}
