//! Months unattended (issue 15): devices that come after kith started, results that survive
//! restarts, symlinks and full disks, and configs that cannot work under systemd. Each test runs
//! the real `kith` binary on the demo models.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{board_with_camera, demo_board, encode, fifo, repo, smooth, temp_dir};
use kith::camera::CameraFormat;

/// Generous: model loading on a shared 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

fn kith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `kith run --board BOARD --out OUT ARGS...`, the demo board's frames unless the board says
/// otherwise.
fn run(board: &Path, out: &Path, args: &[&str]) -> Output {
    let mut all = vec!["run", "--board", board.to_str().unwrap()];
    all.extend(["--out", out.to_str().unwrap()]);
    all.extend(args);
    kith(&all)
}

/// Every line of `path`, each parsed as JSON (a line that does not parse fails the test).
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// A running `kith run` whose stderr lines arrive on a channel.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(board: &Path, out: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["run", "--board", board.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr: ChildStderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` (or finds it among those logged already);
    /// panics with what was logged after [`PATIENCE`] or when kith exits first.
    fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let end = Instant::now() + PATIENCE;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < end => {}
                Err(_) => panic!(
                    "no \"{needle}\" from kith (exit: {:?}); it logged:\n{}",
                    self.child.try_wait().unwrap(),
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits until `done` holds, checking every 50 ms; panics after [`PATIENCE`].
    fn wait_until(&mut self, what: &str, mut done: impl FnMut() -> bool) {
        let end = Instant::now() + PATIENCE;
        while !done() {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "kith exited before {what}"
            );
            assert!(Instant::now() < end, "{what}: not within {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM; returns whether kith exited with 0, and everything it logged.
    fn stop(mut self) -> (bool, Vec<String>) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.iter());
        (status.success(), self.seen)
    }
}

// ---------------------------------------------------------------------------------------------
// Nothing recorded is lost

#[test]
fn a_restart_appends_to_results_jsonl_instead_of_truncating_it() {
    let dir = temp_dir("unattended-append");
    let board = common::write_demo_board(&dir);
    let out = dir.join("out");
    for _ in 0..2 {
        let o = run(&board, &out, &["--frames", "2"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let lines = json_lines(&out.join("results.jsonl"));
    let frames: Vec<_> = lines.iter().map(|l| l["frame"].as_u64().unwrap()).collect();
    assert_eq!(frames, [0, 1, 0, 1], "both runs' lines, in order");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn results_jsonl_rotates_by_size_keeping_the_configured_files() {
    let dir = temp_dir("unattended-rotate");
    let board = dir.join("board.toml");
    std::fs::write(
        &board,
        format!("{}\n[output]\nrotate_mb = 1\nkeep = 2\n", demo_board()),
    )
    .unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A results file one line short of its limit: the next frame's line goes to a new file.
    let old = "{\"frame\":7}\n".repeat((1 << 20) / 12);
    std::fs::write(out.join("results.jsonl"), &old).unwrap();
    std::fs::write(out.join("results.jsonl.1"), "{\"frame\":6}\n").unwrap();
    let o = run(&board, &out, &["--frames", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(json_lines(&out.join("results.jsonl")).len(), 1);
    assert_eq!(
        std::fs::read_to_string(out.join("results.jsonl.1")).unwrap(),
        old
    );
    assert_eq!(
        std::fs::read_to_string(out.join("results.jsonl.2")).unwrap(),
        "{\"frame\":6}\n"
    );
    assert!(!out.join("results.jsonl.3").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_symlinked_results_jsonl_is_refused_and_its_target_kept() {
    let dir = temp_dir("unattended-symlink");
    let board = common::write_demo_board(&dir);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let precious = dir.join("precious.txt");
    std::fs::write(&precious, "not kith's").unwrap();
    std::os::unix::fs::symlink(&precious, out.join("results.jsonl")).unwrap();
    let o = run(&board, &out, &["--frames", "1"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("results.jsonl: cannot open: is a symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "not kith's");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` when this process may not mount (not root).
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with one file until a write fails with ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    filler
}

#[test]
fn a_full_disk_is_warned_once_and_kith_runs_on() {
    let dir = temp_dir("unattended-full");
    let Some(disk) = Tmpfs::mount(&dir.join("disk"), "16m") else {
        // Not root: the JSON writer's full-disk path is tested on /dev/full in files.rs.
        eprintln!("skipped: cannot mount a tmpfs (not root)");
        return;
    };
    let board = dir.join("board.toml");
    std::fs::write(&board, demo_board().replace("loop = false", "loop = true")).unwrap();
    let out = disk.0.join("out");
    std::fs::create_dir_all(out.join("frames")).unwrap();
    let filler = fill(&disk.0);
    let mut kith = Running::spawn(&board, &out);
    kith.wait_for("results.jsonl: the disk is full");
    kith.wait_for(".png: the disk is full");
    // Frames go on while nothing can be written; then there is room again.
    std::fs::remove_file(&filler).unwrap();
    kith.wait_for("results.jsonl: recording again;");
    let results = out.join("results.jsonl");
    kith.wait_until("three lines recorded after the outage", || {
        std::fs::read_to_string(&results).is_ok_and(|t| t.lines().count() >= 3)
    });
    let (ok, logged) = kith.stop();
    assert!(ok, "{logged:#?}");
    let warnings = logged.iter().filter(|l| l.contains("disk is full")).count();
    println!(
        "{} lines logged, {warnings} full-disk warnings",
        logged.len()
    );
    assert_eq!(
        warnings, 2,
        "one for results.jsonl, one for the PNGs: {logged:#?}"
    );
    let lost: u64 = logged
        .iter()
        .find_map(|l| l.split("recording again; ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let lines = json_lines(&results);
    // The lines after the outage continue the frame numbers past the lost ones.
    assert_eq!(lines[0]["frame"].as_u64(), Some(lost), "{lost} lost");
    for png in std::fs::read_dir(out.join("frames")).unwrap() {
        let png = png.unwrap().path();
        let name = png.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "a temporary file was left: {name}");
        image::open(&png).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    drop(disk);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Devices that come later

#[test]
fn a_camera_pipe_that_appears_after_the_start_is_picked_up() {
    let dir = temp_dir("unattended-camera-later");
    let path = dir.join("cam");
    let board = dir.join("board.toml");
    std::fs::write(
        &board,
        board_with_camera(&format!(
            "kind = \"pipe\"\npath = \"{}\"\nformat = \"yuv420\"\nwidth = 64\nheight = 48\n\
             retry_min_ms = 50\nretry_max_ms = 200",
            path.display()
        )),
    )
    .unwrap();
    let out = dir.join("out");
    let mut kith = Running::spawn(&board, &out);
    let lost = kith.wait_for("camera lost");
    assert!(lost.contains(&path.display().to_string()), "{lost}");
    fifo(&dir, "cam");
    // Opening for writing succeeds once kith has opened the pipe: the reconnection.
    let end = Instant::now() + PATIENCE;
    let mut writer = loop {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(w) => break w,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("kith did not open the pipe: {e}"),
        }
    };
    let frame = encode(&smooth(64, 48), CameraFormat::Yuv420, 0);
    for _ in 0..3 {
        writer.write_all(&frame).unwrap();
    }
    let results = out.join("results.jsonl");
    kith.wait_until("three frames from the pipe", || {
        std::fs::read_to_string(&results).is_ok_and(|t| t.lines().count() >= 3)
    });
    kith.wait_for("camera back after");
    drop(writer);
    let (ok, logged) = kith.stop();
    assert!(ok, "{logged:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_framebuffer_that_appears_after_the_start_is_picked_up() {
    let dir = temp_dir("unattended-display-later");
    let fb = dir.join("fb0");
    let (w, h) = (64usize, 48usize);
    let board = dir.join("board.toml");
    std::fs::write(
        &board,
        demo_board().replace("loop = false", "loop = true").replace(
            "kind = \"png\"\nevery = 1",
            &format!(
                "kind = \"fbdev\"\nemulated = true\ndevice = \"{}\"\nwidth = {w}\nheight = {h}\npixel_format = \"rgb565\"",
                fb.display()
            ),
        ),
    )
    .unwrap();
    let mut kith = Running::spawn(&board, &dir.join("out"));
    let lost = kith.wait_for("display lost");
    assert!(lost.contains(&fb.display().to_string()), "{lost}");
    // The node appears whole (as a device node does).
    let temp = dir.join("fb0.new");
    std::fs::write(&temp, vec![0u8; w * h * 2]).unwrap();
    std::fs::rename(&temp, &fb).unwrap();
    kith.wait_for("display back after");
    kith.wait_until("a frame drawn on the framebuffer", || {
        std::fs::read(&fb).is_ok_and(|b| b.iter().any(|&v| v != 0))
    });
    let (ok, logged) = kith.stop();
    assert!(ok, "{logged:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_warns_about_a_missing_device_and_strict_makes_it_an_error() {
    let dir = temp_dir("unattended-check");
    let board = dir.join("board.toml");
    std::fs::write(
        &board,
        demo_board().replace(
            "kind = \"png\"\nevery = 1",
            "kind = \"fbdev\"\ndevice = \"/dev/fb-kith-not-yet\"",
        ),
    )
    .unwrap();
    let b = board.to_str().unwrap();
    let o = kith(&["check", "--board", b]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(text(&o.stdout).contains(": ok"), "{}", text(&o.stdout));
    assert!(
        err.contains("warning")
            && err.contains("field `display.device`: /dev/fb-kith-not-yet is not there"),
        "{err}"
    );
    let o = kith(&["check", "--strict", "--board", b]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("field `display.device`: /dev/fb-kith-not-yet does not exist"),
        "{err}"
    );
    let o = kith(&["check", "--skip-devices", "--board", b]);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        text(&o.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Configs that cannot work under systemd

#[test]
fn the_pi_4_config_under_systemd_waits_for_its_camera_and_panel() {
    // As installed: stdin is /dev/null, the camera pipe and the SPI panel are not there (yet).
    let dir = temp_dir("unattended-pi4");
    let text_of =
        std::fs::read_to_string(repo().join("board-configs/raspberry-pi-4.toml")).unwrap();
    let pipe = dir.join("frames.yuv");
    let board = dir.join("board.toml");
    std::fs::write(
        &board,
        text_of
            .replace("/run/kith-camera/frames.yuv", pipe.to_str().unwrap())
            .replace("\"../models/", &format!("\"{}/models/", repo().display())),
    )
    .unwrap();
    let mut kith = Running::spawn(&board, &dir.join("out"));
    kith.wait_for("display lost");
    kith.wait_for("camera lost");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        kith.child.try_wait().unwrap().is_none(),
        "kith keeps waiting"
    );
    let (ok, logged) = kith.stop();
    assert!(ok, "{logged:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stdin_camera_with_stdin_at_dev_null_is_a_config_error() {
    let dir = temp_dir("unattended-stdin");
    let board = dir.join("board.toml");
    std::fs::write(
        &board,
        board_with_camera(
            "kind = \"pipe\"\npath = \"-\"\nformat = \"yuv420\"\nwidth = 64\nheight = 48",
        ),
    )
    .unwrap();
    let o = run(&board, &dir.join("out"), &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("field `camera.path` = \"-\" but standard input is /dev/null"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
