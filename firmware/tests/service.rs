//! kith as a long-running service: SIGHUP reloads the board config without reopening the camera
//! (a named pipe whose one writer keeps writing) and rejects an invalid one; `kith status` reads
//! the running kith's state; systemd's watchdog is fed while a pipe has no writer; SIGTERM stops
//! kith within a second while it loads its models and while it runs frames.

mod common;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{board_with_camera, demo_frame, encode, fifo, lines, temp_dir, terminate};
use kith::camera::CameraFormat;

/// Waits up to 60 s for a line for which `found` holds; returns it (every line read goes to `seen`).
fn wait_line(
    rx: &Receiver<String>,
    seen: &mut Vec<String>,
    found: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if found(&line) {
                    return line;
                }
            }
            Err(_) => panic!("no such line; got {seen:#?}"),
        }
    }
}

/// The person count of a `kith run` frame line ("frame  12 name  3 persons, ...").
fn persons(line: &str) -> Option<usize> {
    let rest = line.strip_prefix("frame ")?;
    let before = rest.split(" persons,").next()?;
    before.split_whitespace().last()?.parse().ok()
}

fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// Whether process `pid` has a handler installed for SIGTERM (bit 15 of SigCgt).
fn catches_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (15 - 1)) != 0)
}

/// A board reading raw I420 frames of `w`x`h` from the named pipe `pipe`, one frame at a time.
fn pipe_board(pipe: &Path, w: u32, h: u32, score_threshold: &str) -> String {
    board_with_camera(&format!(
        "kind = \"pipe\"\npath = \"{}\"\nformat = \"yuv420\"\nwidth = {w}\nheight = {h}\n\
         retry_min_ms = 50\nretry_max_ms = 400",
        pipe.display()
    ))
    .replace(
        "score_threshold = 0.35",
        &format!("score_threshold = {score_threshold}"),
    )
}

/// Binds the datagram socket systemd would pass in NOTIFY_SOCKET; its messages are collected
/// into the returned list as they come.
fn notify_socket(path: &Path) -> Arc<Mutex<Vec<(Instant, String)>>> {
    let socket = UnixDatagram::bind(path).unwrap();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&messages);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock().unwrap().push((Instant::now(), text));
        }
    });
    messages
}

/// `kith run --board BOARD --out DIR/out` with the runtime directory DIR/run and `env`.
fn spawn_kith(dir: &Path, board: &Path, env: &[(&str, &Path)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command
        .args(["run", "--board"])
        .arg(board)
        .arg("--out")
        .arg(dir.join("out"))
        .env("RUNTIME_DIRECTORY", dir.join("run"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// `kith status ARGS` against the runtime directory DIR/run.
fn kith_status(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("status")
        .args(args)
        .env("RUNTIME_DIRECTORY", dir.join("run"))
        .output()
        .unwrap()
}

/// The descriptors of process `pid` open on `path`.
fn fds_on(pid: u32, path: &Path) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|target| target == path))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    fds
}

#[test]
fn sighup_changes_the_threshold_keeps_the_camera_and_rejects_a_bad_config() {
    let dir = temp_dir("service-reload");
    let pipe = fifo(&dir, "cam");
    let (w, h) = (320, 240);
    let board = dir.join("board.toml");
    std::fs::write(&board, pipe_board(&pipe, w, h, "0.35")).unwrap();
    let messages = notify_socket(&dir.join("notify.sock"));
    let mut child = spawn_kith(&dir, &board, &[("NOTIFY_SOCKET", &dir.join("notify.sock"))]);
    let pid = child.id();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());

    // One writer for the whole run: had kith closed its end of the pipe, a write would fail.
    let frame = encode(&demo_frame(5, w, h), CameraFormat::Yuv420, 0);
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = {
        let (pipe, stop) = (pipe.clone(), Arc::clone(&stop_writing));
        std::thread::spawn(move || -> std::io::Result<u64> {
            let mut cam = std::fs::OpenOptions::new().write(true).open(&pipe)?;
            let mut written = 0;
            while !stop.load(Ordering::SeqCst) {
                cam.write_all(&frame)?;
                written += 1;
            }
            Ok(written)
        })
    };

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let is_frame = |l: &str| persons(l).is_some();
    let first = wait_line(&stdout, &mut out, is_frame);
    let before = persons(&first).unwrap();
    assert!(before > 0, "the demo frame has people: {first}");
    let camera_fds = fds_on(pid, &pipe);
    assert_eq!(
        camera_fds.len(),
        1,
        "kith reads the pipe once: {camera_fds:?}"
    );

    // `kith status` against the running kith: text, JSON, and by board.
    let text = kith_status(&dir, &[]);
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{text:?}");
    assert!(
        shown.starts_with(&format!("kith (pid {pid}) running board \"demo\"")),
        "{shown}"
    );
    assert!(
        shown.contains("  camera    running, lost 0 time(s)"),
        "{shown}"
    );
    // Written once a second: wait for a status that counts frames.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let json = kith_status(&dir, &["--json", "--board", board.to_str().unwrap()]);
        assert!(json.status.success(), "{json:?}");
        let status: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        if status["frames"].as_u64().unwrap() > 0 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("kith status --json: {status:#}");
    let mut keys: Vec<&str> = status
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "board",
            "board_file",
            "camera",
            "frames",
            "frames_per_s",
            "last_reload",
            "models",
            "mqtt_dropped",
            "peak_rss_kib",
            "pid",
            "reloads",
            "updated_unix_ms",
            "uptime_s"
        ],
        "the fields README.md documents"
    );
    assert_eq!(status["pid"], pid);
    assert_eq!(status["board"], "demo");
    assert_eq!(status["board_file"], board.to_str().unwrap());
    assert!(status["frames"].as_u64().unwrap() >= 1, "{status}");
    assert!(status["frames_per_s"].as_f64().unwrap() >= 0.0, "{status}");
    assert!(status["uptime_s"].as_f64().unwrap() > 0.0, "{status}");
    assert_eq!(status["camera"]["state"], "running");
    assert_eq!(status["camera"]["losses"], 0);
    assert!(status["camera"]["last_loss"].is_null());
    assert_eq!(status["mqtt_dropped"], 0);
    assert_eq!(
        status["models"]["detector"]["file"],
        "person-detector.int8.onnx"
    );
    assert_eq!(status["models"]["relation"]["file"], "gritv2-s.int8.onnx");
    for model in ["detector", "relation"] {
        let kernels = status["models"][model]["kernels"].as_array().unwrap();
        assert!(!kernels.is_empty(), "{model}: {status}");
    }
    // kith's own peak RSS: the models alone are tens of MB.
    assert!(
        status["peak_rss_kib"].as_u64().unwrap() > 10_000,
        "{status}"
    );
    assert_eq!(status["reloads"], 0);

    // A higher threshold from the next frame on: the same people now score below it.
    std::fs::write(&board, pipe_board(&pipe, w, h, "0.99")).unwrap();
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    let reloaded = wait_line(&stderr, &mut err, |l| l.contains("reload"));
    assert!(
        reloaded.ends_with("applied: detector thresholds"),
        "{reloaded}"
    );
    wait_line(&stdout, &mut out, |l| persons(l) == Some(0));

    // An invalid config: one line, and the running one stays (still nobody at 0.99).
    std::fs::write(&board, pipe_board(&pipe, w, h, "1.5")).unwrap();
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    let rejected = wait_line(&stderr, &mut err, |l| l.contains("reload"));
    assert_eq!(
        rejected,
        format!(
            "kith: error: reload: rejected, running config kept: {}: field `detector.score_threshold` = 1.5 is not within 0..1",
            board.display()
        )
    );
    let mark = out.len();
    for _ in 0..3 {
        wait_line(&stdout, &mut out, is_frame);
    }
    assert!(
        out[mark..].iter().all(|l| persons(l) == Some(0)),
        "{:#?}",
        &out[mark..]
    );

    // Back to 0.35: the people come back.
    std::fs::write(&board, pipe_board(&pipe, w, h, "0.35")).unwrap();
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    wait_line(&stderr, &mut err, |l| l.contains("reload"));
    wait_line(&stdout, &mut out, |l| persons(l) == Some(before));

    // Tracking and overlay change on the running pipeline: no models are loaded again.
    let retuned = pipe_board(&pipe, w, h, "0.35")
        .replace("smoothing = false", "smoothing = true\nmax_missed = 3")
        .replace("# [overlay]", "[overlay]")
        .replace("# min_line_score = 0.5", "min_line_score = 0.7");
    assert!(retuned.contains("max_missed = 3") && retuned.contains("min_line_score = 0.7"));
    std::fs::write(&board, retuned).unwrap();
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    let retuned = wait_line(&stderr, &mut err, |l| l.contains("reload"));
    assert!(retuned.ends_with("applied: overlay, tracking"), "{retuned}");
    wait_line(&stdout, &mut out, |l| persons(l) == Some(before));

    // Same process, the same one descriptor on the pipe, the writer never cut off.
    assert_eq!(
        fds_on(pid, &pipe),
        camera_fds,
        "the camera was not reopened"
    );
    // Status is rewritten once a second: on a fast machine the reloads above all happen before
    // the next write, so read it until it has them (the last may not be in it yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let json = kith_status(&dir, &["--json"]);
        let status: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        if status["reloads"].as_u64().unwrap() >= 3 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["pid"], pid);
    assert!(status["reloads"].as_u64().unwrap() >= 3, "{status}");

    // systemd gets the status summary every 5 s: wait for the first one (a fast machine runs all
    // of the above in less).
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline
        && !messages
            .lock()
            .unwrap()
            .iter()
            .any(|(_, m)| m.starts_with("STATUS=board \"demo\": "))
    {
        std::thread::sleep(Duration::from_millis(100));
    }

    let (took, ok) = terminate(&mut child);
    stop_writing.store(true, Ordering::SeqCst);
    let writer = writer.join().unwrap();
    assert!(ok, "exit status 0 after SIGTERM: {err:#?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    err.extend(stderr.iter());
    assert!(
        !err.iter().any(|l| l.contains("camera lost")),
        "the camera stayed: {err:#?}"
    );
    // The writer ends with a broken pipe only once kith has exited.
    assert!(
        writer
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
        "{writer:?}"
    );

    // systemd saw the status summary, and `kith status` knows kith is gone.
    let messages = messages.lock().unwrap().clone();
    let summaries: Vec<&str> = messages
        .iter()
        .map(|(_, m)| m.as_str())
        .filter(|m| m.starts_with("STATUS=board \"demo\": "))
        .collect();
    println!("STATUS= lines: {summaries:#?}");
    assert!(
        summaries
            .iter()
            .any(|m| m.contains(" frames/s, camera running (0 losses), 0 MQTT dropped, peak RSS ")),
        "{messages:#?}"
    );
    let gone = kith_status(&dir, &[]);
    assert_eq!(gone.status.code(), Some(3), "{gone:?}");
    assert_eq!(
        String::from_utf8_lossy(&gone.stderr),
        format!(
            "kith: error: no kith is running (no status file in {})\n",
            dir.join("run").display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_watchdog_is_fed_while_a_pipe_has_no_writer() {
    let dir = temp_dir("service-watchdog");
    let pipe = fifo(&dir, "cam");
    let board = dir.join("board.toml");
    std::fs::write(&board, pipe_board(&pipe, 64, 48, "0.35")).unwrap();
    let socket = dir.join("notify.sock");
    let messages = notify_socket(&socket);
    // WatchdogSec=1s: a ping at least every 250 ms.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["run", "--board"])
        .arg(&board)
        .arg("--out")
        .arg(dir.join("out"))
        .env("RUNTIME_DIRECTORY", dir.join("run"))
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = loop {
        let ready = messages
            .lock()
            .unwrap()
            .iter()
            .find(|(_, m)| m.starts_with("READY=1"))
            .map(|(at, _)| *at);
        if let Some(at) = ready {
            break at;
        }
        assert!(Instant::now() < deadline, "no READY=1");
        std::thread::sleep(Duration::from_millis(20));
    };
    // No writer ever comes: kith waits in the pipe's read for 2 s.
    std::thread::sleep(Duration::from_secs(2));
    let pings: Vec<Instant> = messages
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, m)| *at > ready && m == "WATCHDOG=1\n")
        .map(|(at, _)| *at)
        .collect();
    let (took, ok) = terminate(&mut child);
    println!("{} pings in 2 s without a writer", pings.len());
    assert!(pings.len() >= 5, "{:#?}", messages.lock().unwrap());
    let longest_gap = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        longest_gap < Duration::from_millis(500),
        "pings {longest_gap:?} apart against WatchdogSec=1s"
    );
    assert!(ok && took < Duration::from_secs(1), "{took:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A demo board playing its frames in a loop (sequential, so a frame is detector then relations).
fn looping_demo_board(dir: &Path) -> PathBuf {
    let board = dir.join("board.toml");
    let text = common::demo_board()
        .replace("loop = false", "loop = true")
        .replace("pipelined = true", "pipelined = false");
    std::fs::write(&board, text).unwrap();
    board
}

#[test]
fn sigterm_stops_kith_within_a_second_while_it_loads_its_models() {
    let dir = temp_dir("service-sigterm-loading");
    let board = looping_demo_board(&dir);
    let mut child = spawn_kith(&dir, &board, &[]);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !catches_sigterm(pid) {
        assert!(
            Instant::now() < deadline,
            "kith installed no SIGTERM handler"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (took, ok) = terminate(&mut child);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    println!("kith exited {took:?} after SIGTERM while loading its models");
    assert!(stdout.is_empty(), "still loading when stopped: {stdout}");
    assert!(ok, "exit status 0");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_stops_kith_within_a_second_while_it_runs_frames() {
    let dir = temp_dir("service-sigterm-frames");
    let board = looping_demo_board(&dir);
    let mut child = spawn_kith(&dir, &board, &[]);
    let stdout = lines(child.stdout.take().unwrap());
    let mut out = Vec::new();
    for _ in 0..3 {
        wait_line(&stdout, &mut out, |l| l.starts_with("frame "));
    }
    // Frames follow each other without a pause: the signal comes during a model run.
    let (took, ok) = terminate(&mut child);
    println!("kith exited {took:?} after SIGTERM while running frames");
    assert!(ok, "exit status 0");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
