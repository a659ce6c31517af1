//! Cameras as kith reads them, emulated with real bytes: frames of every wire format made from a
//! reference image and decoded by the code the V4L2 and pipe sources run; a real named pipe with a
//! writer that sends raw and MJPEG frames, stops mid-frame, goes away and comes back; a session
//! that shows "camera lost" and recovers, and one that writes but does not draw a frame finished
//! after a stop request; and the `kith` binary stopping promptly on SIGTERM while it waits for a
//! camera.
//!
//! What cannot run here: a V4L2 device. v4l2loopback and vivid need kernel modules this machine
//! cannot load; the V4L2 source is tested against vivid in a VM (see the kernel-VM tests).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::*;
use kith::camera::decode::FrameDecoder;
use kith::camera::pipe::PipeSource;
use kith::camera::{CameraFormat, FrameSource, PipeSettings, Retry, SourceError};
use kith::config::BoardConfig;
use kith::display::spec::DisplaySpec;
use kith::service::StopFlag;
use kith::session::{Session, SessionOptions, Step};
use kith_runtime::image::RgbImage;

/// Decodes `bytes` as the sources do and converts the frame to RGB as the pipeline does.
fn to_rgb(format: CameraFormat, w: usize, h: usize, stride: usize, bytes: &[u8]) -> RgbImage {
    let mut decoder = FrameDecoder::default();
    let frame = decoder.decode(format, w, h, stride, bytes).unwrap();
    let mut rgb = RgbImage::default();
    rgb.convert_from(&frame).unwrap();
    rgb
}

/// What a format should give back for `img`: the RGB itself, or its grey for GREY.
fn expected(img: &Rgb, format: CameraFormat) -> Vec<u8> {
    match format {
        CameraFormat::Grey => img
            .data
            .chunks(3)
            .flat_map(|p| [grey_of([p[0], p[1], p[2]]); 3])
            .collect(),
        _ => img.data.clone(),
    }
}

/// Conversion accuracy against the reference, per format: (mean, max) absolute error per channel
/// value on a smooth image, and the mean error on a photograph (measured on x86_64: 4:2:2 1.17 / 4
/// and 1.27 with yuvutils-rs's 6-bit coefficients, 4:2:0 1.35 / 4 and 0.96, MJPEG 0.82 / 4 and
/// 1.08).
///
/// Why these tolerances:
/// - RGB24 and GREY are exact (GREY against the reference's own BT.601 luma).
/// - YUV formats go through 8-bit BT.601 limited-range YCbCr, whose integer transforms lose up to 3
///   levels per channel on a round trip; on a smooth image, whose colour barely changes between
///   neighbours, chroma subsampling adds about one more, hence a max of 5 (4:2:2) and 6 (4:2:0).
/// - On a photograph, chroma subsampling (4:2:2 for YUYV/UYVY, 4:2:0 for NV12/I420) averages the
///   colour of 2 or 4 pixels, which moves pixels at sharp colour edges by tens of levels: there
///   only the mean is bounded, at 1.5 (4:2:2) and 2 (4:2:0) levels of 255.
/// - MJPEG at quality 90 adds its DCT quantisation to 4:2:0: a max of 8 on the smooth image, a
///   mean of 2 on the photograph.
#[test]
fn every_format_converts_to_the_reference_within_tolerance() {
    let smooth = smooth(64, 48);
    let photo = demo_frame(5, 320, 240);
    let cases = [
        (CameraFormat::Rgb24, 0.0, 0, 0.0),
        (CameraFormat::Grey, 0.0, 0, 0.0),
        (CameraFormat::Yuyv, 1.2, 5, 1.5),
        (CameraFormat::Uyvy, 1.2, 5, 1.5),
        (CameraFormat::Nv12, 1.8, 6, 2.0),
        (CameraFormat::Yuv420, 1.8, 6, 2.0),
        (CameraFormat::Mjpeg, 1.5, 8, 2.0),
    ];
    for (format, smooth_mean, smooth_max, photo_mean) in cases {
        for (name, img, mean_limit, max_limit) in [
            ("smooth", &smooth, smooth_mean, smooth_max),
            ("photo", &photo, photo_mean, 255),
        ] {
            let bytes = encode(img, format, 0);
            let (w, h) = (img.width, img.height);
            let stride = format.pixel_format().map_or(0, |p| p.packed_stride(w));
            let rgb = to_rgb(format, w, h, stride, &bytes);
            assert_eq!((rgb.width, rgb.height), (w, h), "{format} {name}");
            let (mean, max) = rgb_error(&rgb.data, &expected(img, format));
            println!("{format:>6} {name:>6}: mean error {mean:.2}, max {max}");
            assert!(
                mean <= mean_limit && max <= max_limit,
                "{format} {name}: mean {mean:.2} (limit {mean_limit}), max {max} (limit {max_limit})"
            );
        }
    }
}

#[test]
fn padded_rows_are_read_by_their_stride() {
    // Drivers may pad rows (bytesperline above the packed width): the padding must be skipped.
    let img = smooth(30, 20);
    for (format, stride) in [
        (CameraFormat::Yuyv, 64),
        (CameraFormat::Uyvy, 80),
        (CameraFormat::Rgb24, 96),
        (CameraFormat::Grey, 32),
        (CameraFormat::Nv12, 32),
        (CameraFormat::Yuv420, 48),
    ] {
        let packed = to_rgb(
            format,
            30,
            20,
            format.pixel_format().unwrap().packed_stride(30),
            &encode(&img, format, 0),
        );
        let padded = to_rgb(format, 30, 20, stride, &encode(&img, format, stride));
        assert_eq!(packed.data, padded.data, "{format} with stride {stride}");
    }
}

fn settings(path: &Path, format: CameraFormat, width: u32, height: u32) -> PipeSettings {
    PipeSettings {
        path: path.to_owned(),
        format,
        width,
        height,
        retry: Retry {
            min: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
    }
}

/// Frames that differ and stay smooth: the smooth image darkened by 15 % per step `n` (0..5).
fn numbered(n: usize, w: usize, h: usize) -> Rgb {
    let mut img = smooth(w, h);
    for v in &mut img.data {
        *v = (u32::from(*v) * (20 - 3 * n as u32) / 20) as u8;
    }
    img
}

/// The frame number whose image `rgb` is closest to.
fn which(rgb: &[u8], w: usize, h: usize, candidates: usize) -> usize {
    (0..candidates)
        .min_by(|&a, &b| {
            let ea = rgb_error(rgb, &numbered(a, w, h).data).0;
            let eb = rgb_error(rgb, &numbered(b, w, h).data).0;
            ea.total_cmp(&eb)
        })
        .unwrap()
}

/// Writes `chunks` to the named pipe in pieces of `piece` bytes, then closes it.
fn write_pipe(path: &Path, chunks: &[Vec<u8>], piece: usize) {
    let mut pipe = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    for chunk in chunks {
        for part in chunk.chunks(piece) {
            pipe.write_all(part).unwrap();
        }
    }
}

/// The next frame's RGB, or the error.
fn next_rgb(src: &mut PipeSource) -> Result<Option<Vec<u8>>, SourceError> {
    let frame = src.next_frame()?;
    Ok(frame.map(|f| {
        let mut rgb = RgbImage::default();
        rgb.convert_from(&f.frame).unwrap();
        rgb.data
    }))
}

#[test]
fn raw_and_mjpeg_frames_arrive_through_a_named_pipe() {
    let dir = temp_dir("pipe-formats");
    let (w, h) = (64, 48);
    for (i, format) in [
        CameraFormat::Yuv420,
        CameraFormat::Yuyv,
        CameraFormat::Mjpeg,
    ]
    .into_iter()
    .enumerate()
    {
        let path = fifo(&dir, &format!("cam{i}"));
        let mut chunks: Vec<Vec<u8>> = (0..3)
            .map(|n| encode(&numbered(n, w, h), format, 0))
            .collect();
        if format == CameraFormat::Mjpeg {
            // Bytes before the first image are skipped.
            chunks.insert(0, b"junk".to_vec());
        }
        let writer_path = path.clone();
        // Odd-sized pieces so frames straddle reads.
        let writer = std::thread::spawn(move || write_pipe(&writer_path, &chunks, 777));
        let mut src = PipeSource::open(
            &settings(&path, format, w as u32, h as u32),
            StopFlag::new(),
        )
        .unwrap();
        let negotiated = src.negotiated().unwrap();
        assert_eq!(
            (negotiated.width, negotiated.height, negotiated.format),
            (64, 48, format)
        );
        for n in 0..3 {
            let rgb = next_rgb(&mut src).unwrap().unwrap();
            assert_eq!(which(&rgb, w, h, 3), n, "{format}: frames in order");
            let (mean, _) = rgb_error(&rgb, &numbered(n, w, h).data);
            assert!(mean < 2.0, "{format} frame {n}: mean error {mean:.2}");
        }
        writer.join().unwrap();
        match src.next_frame() {
            Err(SourceError::Lost(lost)) => {
                assert!(lost.detail.contains("writer closed"), "{lost}");
                assert_eq!(lost.retry_in, Duration::from_millis(20));
            }
            other => panic!("{format}: expected the camera to be lost, got {other:?}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_frame_cut_short_at_the_end_of_the_stream_is_skipped() {
    let dir = temp_dir("pipe-truncated");
    let (w, h) = (32, 24);
    for format in [CameraFormat::Yuv420, CameraFormat::Mjpeg] {
        // A plain file: the stream ends for good at its end.
        let path = dir.join(format!("frames.{format}"));
        let whole = encode(&numbered(0, w, h), format, 0);
        let next = encode(&numbered(1, w, h), format, 0);
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&next[..next.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();
        let mut src = PipeSource::open(
            &settings(&path, format, w as u32, h as u32),
            StopFlag::new(),
        )
        .unwrap();
        assert!(
            next_rgb(&mut src).unwrap().is_some(),
            "{format}: the whole frame"
        );
        match src.next_frame() {
            Err(SourceError::Corrupt { detail, .. }) => {
                assert!(detail.contains("truncated frame"), "{detail}")
            }
            other => panic!("{format}: expected a truncated frame, got {other:?}"),
        }
        assert!(
            src.next_frame().unwrap().is_none(),
            "{format}: then the end of the file"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_writer_that_goes_away_is_lost_then_recovered() {
    let dir = temp_dir("pipe-reconnect");
    let (w, h) = (32, 24);
    let path = fifo(&dir, "cam");
    let (go, wait_go) = channel::<()>();
    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        let frames = |range: std::ops::Range<usize>| {
            range
                .map(|n| encode(&numbered(n, w, h), CameraFormat::Yuyv, 0))
                .collect::<Vec<_>>()
        };
        write_pipe(&writer_path, &frames(0..2), 4096);
        wait_go.recv().unwrap();
        // Half a frame, then gone: the reader skips it and loses the camera again.
        let half = frames(2..3)[0][..w * h].to_vec();
        write_pipe(&writer_path, &[half], 4096);
        wait_go.recv().unwrap();
        write_pipe(&writer_path, &frames(3..5), 4096);
    });
    let mut src = PipeSource::open(
        &settings(&path, CameraFormat::Yuyv, w as u32, h as u32),
        StopFlag::new(),
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut lost = Vec::new();
    let mut skipped = 0;
    let start = Instant::now();
    while seen.len() < 4 && start.elapsed() < Duration::from_secs(20) {
        match next_rgb(&mut src) {
            Ok(Some(rgb)) => seen.push(which(&rgb, w, h, 5)),
            Ok(None) => panic!("the pipe source ended"),
            Err(SourceError::Lost(l)) => {
                lost.push(l.retry_in);
                go.send(()).unwrap();
            }
            Err(SourceError::Corrupt { detail, .. }) => {
                assert!(detail.contains("truncated"), "{detail}");
                skipped += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    writer.join().unwrap();
    assert_eq!(seen, [0, 1, 3, 4], "frames before and after the outages");
    assert_eq!(skipped, 1, "the half frame");
    // No whole frame came between the two losses, so the back-off doubled.
    assert_eq!(lost, [Duration::from_millis(20), Duration::from_millis(40)]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_pipe_without_a_writer_returns_promptly_on_a_stop_request() {
    let dir = temp_dir("pipe-stop");
    let path = fifo(&dir, "cam");
    let stop = StopFlag::new();
    let mut src =
        PipeSource::open(&settings(&path, CameraFormat::Yuv420, 32, 24), stop.clone()).unwrap();
    let other = stop.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        other.request();
    });
    let start = Instant::now();
    assert!(src.next_frame().unwrap().is_none());
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    t.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The "camera lost" screen: the status background almost everywhere, white text in the middle.
fn shows_camera_lost(canvas: &kith_runtime::image::RgbImage) -> bool {
    let background = [40, 0, 0];
    let (w, h) = (canvas.width, canvas.height);
    let corners = [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)];
    let white = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| canvas.pixel(x, y) == Some([255, 255, 255]))
        .count();
    corners
        .iter()
        .all(|&(x, y)| canvas.pixel(x, y) == Some(background))
        && white > 30
}

#[test]
fn a_session_shows_camera_lost_and_recovers() {
    let dir = temp_dir("session");
    let path = fifo(&dir, "cam");
    let board = dir.join("board.toml");
    std::fs::write(
        &board,
        board_with_camera(&format!(
            "kind = \"pipe\"\npath = \"{}\"\nformat = \"yuv420\"\nwidth = 640\nheight = 480\n\
             retry_min_ms = 20\nretry_max_ms = 100",
            path.display()
        )),
    )
    .unwrap();
    let config = BoardConfig::load(&board).unwrap();
    let options = SessionOptions {
        source: None,
        out: None,
        threads: None,
        repeat: false,
        pipelined: Some(false),
        display: Some(DisplaySpec::Memory),
        snapshots: None,
        stop: StopFlag::new(),
    };
    let mut session = Session::open(&config, &options).unwrap();
    let frames: Vec<Vec<u8>> = [5, 12]
        .iter()
        .map(|&n| encode(&demo_frame(n, 640, 480), CameraFormat::Yuv420, 0))
        .collect();
    let (go, wait_go) = channel::<()>();
    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        write_pipe(&writer_path, &frames[..1], 65536);
        wait_go.recv().unwrap();
        write_pipe(&writer_path, &frames[1..], 65536);
    });
    let step = |session: &mut Session| {
        let start = Instant::now();
        loop {
            match session.step().unwrap() {
                Step::Pending | Step::Skipped(_) if start.elapsed() < Duration::from_secs(30) => {}
                other => return other,
            }
        }
    };
    assert!(matches!(step(&mut session), Step::Frame));
    assert_eq!(
        session.scene().persons.len(),
        3,
        "frame_005 shows three people"
    );
    assert!(!shows_camera_lost(session.canvas().unwrap()));
    match step(&mut session) {
        Step::CameraLost(lost) => assert!(lost.detail.contains("writer closed"), "{lost}"),
        other => panic!("expected the camera to be lost, got {other:?}"),
    }
    let canvas = session.canvas().unwrap();
    assert_eq!((canvas.width, canvas.height), (640, 480));
    assert!(shows_camera_lost(canvas), "the display says camera lost");
    go.send(()).unwrap();
    assert!(
        matches!(step(&mut session), Step::Frame),
        "the camera is back"
    );
    assert_eq!(
        session.scene().persons.len(),
        4,
        "frame_012 shows four people"
    );
    assert!(!shows_camera_lost(session.canvas().unwrap()));
    writer.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Waits up to 60 s for a line containing `needle`, returning the lines read so far.
fn wait_for(rx: &Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(_) => panic!("no line with {needle:?}; got {seen:#?}"),
        }
    }
}

/// Open file descriptors and memory mappings of process `pid`.
fn fds_and_maps(pid: u32) -> (usize, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .count();
    (fds, maps)
}

fn spawn_kith(board: &Path, out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kith"))
        .args([
            "run",
            "--board",
            board.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn pipe_board(dir: &Path, pipe: &Path, width: u32, height: u32) -> std::path::PathBuf {
    let board = dir.join("board.toml");
    std::fs::write(
        &board,
        board_with_camera(&format!(
            "kind = \"pipe\"\npath = \"{}\"\nformat = \"yuv420\"\nwidth = {width}\nheight = {height}\n\
             retry_min_ms = 50\nretry_max_ms = 400",
            pipe.display()
        )),
    )
    .unwrap();
    board
}

#[test]
fn kith_stops_on_sigterm_while_no_writer_ever_came() {
    let dir = temp_dir("sigterm-idle");
    let pipe = fifo(&dir, "cam");
    let board = pipe_board(&dir, &pipe, 64, 48);
    let mut child = spawn_kith(&board, &dir.join("out"));
    let stdout = lines(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    wait_for(&stdout, "  camera    ", &mut seen);
    std::thread::sleep(Duration::from_millis(300));
    let (took, ok) = terminate(&mut child);
    println!("kith exited {took:?} after SIGTERM (no writer)");
    assert!(ok, "exit status 0 after SIGTERM");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kith_reports_a_lost_camera_recovers_without_leaking_and_stops_on_sigterm() {
    let dir = temp_dir("sigterm-lost");
    let pipe = fifo(&dir, "cam");
    let (w, h) = (160, 120);
    let board = pipe_board(&dir, &pipe, w, h);
    let mut child = spawn_kith(&board, &dir.join("out"));
    let pid = child.id();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    wait_for(&stdout, "  camera    ", &mut out);
    assert!(
        out.iter().any(|l| l.contains("160x120 yuv420")),
        "the banner names the camera's format: {out:#?}"
    );
    let frame = encode(&demo_frame(5, w, h), CameraFormat::Yuv420, 0);
    let frames = vec![frame.clone(), frame.clone()];
    // Writer 1: two frames, then gone.
    write_pipe(&pipe, &frames, 65536);
    wait_for(&stderr, "camera lost", &mut err);
    let lost_line = err.last().unwrap().clone();
    assert!(lost_line.contains("retrying in 50 ms"), "{lost_line}");
    // Let a few reconnection attempts pass, then look at kith's descriptors and mappings.
    std::thread::sleep(Duration::from_millis(300));
    let during_first = fds_and_maps(pid);
    // Writer 2: the camera comes back, then goes away again.
    write_pipe(&pipe, &frames, 65536);
    wait_for(&stderr, "camera back", &mut err);
    wait_for(&stderr, "camera lost", &mut err);
    std::thread::sleep(Duration::from_millis(300));
    let during_second = fds_and_maps(pid);
    // In both outages kith has reopened the pipe and waits for a writer: the same descriptors.
    // (Mappings are printed, not compared: the allocator maps and unmaps memory as it likes.)
    println!("kith (fds, maps) while lost: {during_first:?}, then {during_second:?}");
    assert_eq!(
        during_first.0, during_second.0,
        "reconnecting leaks no file descriptor"
    );
    let (took, ok) = terminate(&mut child);
    println!("kith exited {took:?} after SIGTERM (camera lost)");
    assert!(ok, "exit status 0 after SIGTERM: {err:#?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    out.extend(stdout.iter());
    err.extend(stderr.iter());
    let frame_lines = out.iter().filter(|l| l.starts_with("frame ")).count();
    assert_eq!(
        frame_lines, 4,
        "frames before and after the outage: {out:#?}"
    );
    assert_eq!(
        err.iter().filter(|l| l.contains("camera lost")).count(),
        2,
        "one warning per outage: {err:#?}"
    );
    assert!(out.iter().any(|l| l.contains("lost 2 time(s)")), "{out:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "v4l2")]
#[test]
fn check_strict_fails_for_a_missing_device_but_never_opens_one() {
    let dir = temp_dir("check");
    let board = dir.join("board.toml");
    let kith_check = |camera: &str| {
        std::fs::write(&board, board_with_camera(camera)).unwrap();
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["check", "--strict", "--board", board.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let v4l2 = |device: &str| {
        format!(
            "kind = \"v4l2\"\ndevice = \"{device}\"\nformat = \"mjpeg\"\nwidth = 640\nheight = 480"
        )
    };
    let out = kith_check(&v4l2("/dev/video-kith-missing"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("field `camera.device`: /dev/video-kith-missing does not exist"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    // /dev/null exists but is no camera: check passes because it opens no device, run fails.
    let out = kith_check(&v4l2("/dev/null"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["run", "--board", board.to_str().unwrap(), "--out"])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/dev/null: not a V4L2 device"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_frame_finished_after_a_stop_request_is_written_but_not_drawn() {
    let dir = temp_dir("stop-drawing");
    let board = write_demo_board(&dir);
    let config = BoardConfig::load(&board).unwrap();
    assert!(config.pipelined, "the demo board relates on a worker");
    let out = dir.join("out");
    let stop = StopFlag::new();
    let options = SessionOptions {
        source: Some(repo().join("board-configs/demo/frames/frame_005.jpg")),
        out: Some(out.clone()),
        threads: None,
        repeat: false,
        pipelined: None,
        display: Some(DisplaySpec::Memory),
        snapshots: Some(1),
        stop: stop.clone(),
    };
    let mut session = Session::open(&config, &options).unwrap();
    // Pipelined, the frame is related while the next one would be captured.
    assert!(matches!(session.step().unwrap(), Step::Pending));
    stop.request();
    // The stream has ended: the frame on the worker is finished and completed after the stop.
    assert!(matches!(session.step().unwrap(), Step::Frame));
    assert_eq!(
        session.scene().persons.len(),
        3,
        "frame_005 shows three people"
    );
    let results = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert_eq!(results.lines().count(), 1, "{results}");
    let canvas = session.canvas().unwrap();
    assert!(canvas.data.iter().all(|&v| v == 0), "nothing drawn");
    let snapshots = std::fs::read_dir(out.join("frames")).map_or(0, |d| d.count());
    assert_eq!(snapshots, 0, "no snapshot");
    std::fs::remove_dir_all(&dir).unwrap();
}
