//! Issue 15's hostile frames, through the `kith` binary as systemd runs it: each input that once
//! blew up memory is generated here and replayed or piped into a child kith whose peak resident
//! size (wait4's rusage of that one child) must stay within a few MB of the same run on an
//! ordinary frame; a looped folder of corrupt files must stop with one clear error, not spin.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{board_with_camera, demo_frame, jpeg, repo, temp_dir};

/// How far above the ordinary run a hostile input may take kith's peak resident size.
const PEAK_MARGIN_KB: libc::c_long = 24 * 1024;

/// A finished child kith: exit code, stderr, peak resident size (KiB).
struct Run {
    code: i32,
    stderr: String,
    max_rss_kb: libc::c_long,
    lines: usize,
}

/// Runs `kith run` on `board` (written to `dir`), killed after `limit`.
// The child is reaped by wait4, which std's `Child::wait` does not offer (it drops the rusage).
#[allow(clippy::zombie_processes)]
fn run_kith(dir: &Path, board: &str, limit: Duration) -> Run {
    let board_path = dir.join("board.toml");
    std::fs::write(&board_path, board).unwrap();
    let out = dir.join("out");
    let stderr_path = dir.join("stderr.txt");
    let child = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["run", "--board"])
        .arg(&board_path)
        .arg("--out")
        .arg(&out)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value of the plain C struct wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child with valid pointers to locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break;
        }
        if started.elapsed() > limit {
            // SAFETY: kill on our own child's pid, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above; reaps the killed child.
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!(
                "kith still running after {limit:?}; {} bytes of stderr, starting: {}",
                stderr.len(),
                stderr.chars().take(600).collect::<String>()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let lines = std::fs::read_to_string(out.join("results.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    Run {
        code,
        stderr: std::fs::read_to_string(&stderr_path).unwrap(),
        max_rss_kb: usage.ru_maxrss,
        lines,
    }
}

/// The demo board replaying `path` once, one frame at a time.
fn replay_board(path: &Path, repeat: bool) -> String {
    board_with_camera(&format!(
        "kind = \"replay\"\npath = \"{}\"\nloop = {repeat}",
        path.display()
    ))
}

/// An ordinary demo frame as a 640x480 JPEG.
fn demo_jpeg() -> Vec<u8> {
    jpeg(&demo_frame(1, 640, 480), 90)
}

/// Writes a valid PNG of `side` x `side` RGBA16 (all zero, a few MB compressed), streamed.
fn write_huge_png(path: &Path, side: u32) {
    let file = std::io::BufWriter::new(File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, side, side);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Sixteen);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let row = vec![0u8; side as usize * 8];
    for _ in 0..side {
        stream.write_all(&row).unwrap();
    }
    stream.finish().unwrap();
}

/// A real 16x16 JPEG whose frame header (SOF0) is patched to claim `width` x `height`.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let small = common::Rgb {
        width: 16,
        height: 16,
        data: vec![120; 16 * 16 * 3],
    };
    let mut bytes = jpeg(&small, 90);
    let sof = bytes.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

/// Issue 15: a 2.3 MB PNG decoding to 8192x8192 RGBA16 took kith to 1.22 GB resident; an MJPEG
/// frame claiming 8192x8192 on a 640x480 camera to 848 MB. Both are refused from their headers:
/// kith's peak stays within [`PEAK_MARGIN_KB`] of the same board on ordinary frames.
#[test]
fn hostile_headers_do_not_raise_peak_memory() {
    let dir = temp_dir("hostile-memory");
    let limit = Duration::from_secs(120);

    let ordinary = dir.join("ordinary");
    std::fs::create_dir_all(&ordinary).unwrap();
    std::fs::write(ordinary.join("a.jpg"), demo_jpeg()).unwrap();
    let base = run_kith(
        &ordinary,
        &replay_board(&ordinary.join("a.jpg"), false),
        limit,
    );
    assert_eq!((base.code, base.lines), (0, 1), "{}", base.stderr);

    let png_dir = dir.join("png");
    std::fs::create_dir_all(&png_dir).unwrap();
    let huge = png_dir.join("huge.png");
    write_huge_png(&huge, 8192);
    std::fs::write(png_dir.join("ordinary.jpg"), demo_jpeg()).unwrap();
    let png_size = std::fs::metadata(&huge).unwrap().len();
    let png = run_kith(&png_dir, &replay_board(&png_dir, false), limit);

    let mjpeg_dir = dir.join("mjpeg");
    std::fs::create_dir_all(&mjpeg_dir).unwrap();
    let stream = mjpeg_dir.join("stream.mjpeg");
    let mut bytes = demo_jpeg();
    bytes.extend(jpeg_claiming(8192, 8192));
    bytes.extend(demo_jpeg());
    std::fs::write(&stream, &bytes).unwrap();
    let camera = format!(
        "kind = \"pipe\"\npath = \"{}\"\nformat = \"mjpeg\"\nwidth = 640\nheight = 480",
        stream.display()
    );
    let mjpeg = run_kith(&mjpeg_dir, &board_with_camera(&camera), limit);

    println!(
        "peak RSS: ordinary frame {} MB, {png_size}-byte 8192x8192 RGBA16 PNG {} MB, \
         MJPEG claiming 8192x8192 {} MB",
        base.max_rss_kb / 1024,
        png.max_rss_kb / 1024,
        mjpeg.max_rss_kb / 1024
    );
    assert_eq!((png.code, png.lines), (0, 1), "{}", png.stderr);
    assert!(png.stderr.contains("huge.png"), "{}", png.stderr);
    assert_eq!((mjpeg.code, mjpeg.lines), (0, 2), "{}", mjpeg.stderr);
    assert!(
        mjpeg
            .stderr
            .contains("8192x8192 is larger than the camera's 640x480"),
        "{}",
        mjpeg.stderr
    );
    for (what, run) in [("PNG", &png), ("MJPEG", &mjpeg)] {
        assert!(
            run.max_rss_kb <= base.max_rss_kb + PEAK_MARGIN_KB,
            "{what}: peak {} KiB against {} KiB on an ordinary frame",
            run.max_rss_kb,
            base.max_rss_kb
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 15: a looped folder whose every file is corrupt spun, printing 510,000 warnings in 6 s.
/// kith now warns once per file and stops with one error naming the folder's state (exit 1, so
/// systemd's restart delay paces the retries; an operator sees the cause in the journal).
#[test]
fn a_looped_folder_of_corrupt_files_stops_with_one_error() {
    let dir = temp_dir("hostile-corrupt-loop");
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for name in ["a.jpg", "b.png", "c.ppm"] {
        std::fs::write(frames.join(name), b"\xff\xd8\xff\xe0 not an image").unwrap();
    }
    let run = run_kith(&dir, &replay_board(&frames, true), Duration::from_secs(60));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("none of the 3 image files decodes"),
        "{}",
        run.stderr
    );
    let warnings = run
        .stderr
        .lines()
        .filter(|l| l.contains("skipping"))
        .count();
    assert!(warnings <= 3, "{warnings} warnings: {}", run.stderr);
    assert!(
        run.stderr.len() < 4096,
        "{} bytes of stderr",
        run.stderr.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A looped folder with one corrupt file among good ones plays on and warns about it once.
#[test]
fn a_corrupt_file_in_a_looped_folder_is_warned_about_once() {
    let dir = temp_dir("hostile-one-corrupt");
    let frames: PathBuf = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::write(frames.join("a.jpg"), demo_jpeg()).unwrap();
    std::fs::write(frames.join("b.jpg"), &demo_jpeg()[..3000]).unwrap();
    let board = replay_board(&frames, true);
    let board_path = dir.join("board.toml");
    std::fs::write(&board_path, board).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["run", "--frames", "4", "--board"])
        .arg(&board_path)
        .arg("--out")
        .arg(dir.join("out"))
        .current_dir(repo())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("b.jpg")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("the file ends before its EOI marker"),
        "{stderr}"
    );
    let jsonl = std::fs::read_to_string(dir.join("out/results.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 4);
    assert!(jsonl.lines().all(|l| l.contains("\"a.jpg\"")), "{jsonl}");
    std::fs::remove_dir_all(&dir).unwrap();
}
