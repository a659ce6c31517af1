//! `kith-soak`: runs the `kith` binary for N frames and checks that it does not grow.
//!
//! kith reads MJPEG on standard input from a generator that cycles three frame sizes (640x480,
//! 320x240, 160x120, so the decoder's buffers are resized all the time), with the tiny models of
//! tools/vm (microseconds per frame: the soak measures kith's own frame loop, not inference) and
//! a PNG snapshot every 1,000 frames. results.jsonl is rotated every 8 MiB (about 2,300 frames), so
//! the soak crosses several rotations. Every `--sample-every` frames (counted from kith's
//! per-frame lines) it samples kith's resident size, open fds and memory maps from /proc. It
//! passes when, after the warm-up, RSS grew by at most `--max-rss-growth-kb`, fds and maps did
//! not grow, kith's CPU time per frame stayed flat (the last quarter's median within 1.5x of the
//! first's; CPU time, not wall time, so other work on the machine does not fail the soak),
//! results.jsonl was rotated at least once, and the lines of results.jsonl and its rotated files
//! parse, one per frame. Exit 0 on a pass, 1 on a failure.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use image::codecs::jpeg::JpegEncoder;

/// Runs kith for N frames and checks that its memory, fds, maps and CPU time per frame stay flat.
#[derive(Parser, Debug)]
struct Args {
    /// Frames kith runs.
    #[arg(long, default_value_t = 100_000)]
    frames: u64,
    /// Frames between two samples.
    #[arg(long, default_value_t = 1_000)]
    sample_every: u64,
    /// Frames before the baseline sample (allocator pools and caches settle).
    #[arg(long, default_value_t = 5_000)]
    warmup: u64,
    /// Largest RSS growth allowed after the warm-up (KiB).
    #[arg(long, default_value_t = 1024)]
    max_rss_growth_kb: u64,
    /// The kith binary (default: `kith` beside this program).
    #[arg(long)]
    kith: Option<PathBuf>,
    /// Working folder for the models, the board config and kith's output.
    #[arg(long, default_value = "soak")]
    dir: PathBuf,
}

/// One sample of kith's state.
#[derive(Debug, Clone, Copy)]
struct Sample {
    frame: u64,
    rss_kb: u64,
    fds: usize,
    maps: usize,
    /// Wall time per frame since the previous sample (ms).
    ms_per_frame: f64,
    /// kith's CPU time (all its threads, user and system) per frame since the previous sample (ms).
    cpu_ms_per_frame: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.sample_every > 0 && args.warmup < args.frames,
        "need --sample-every > 0 and --warmup < --frames"
    );
    let kith = match &args.kith {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("kith"),
    };
    std::fs::create_dir_all(&args.dir)?;
    let board = write_board(&args.dir)?;
    let out = args.dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let frames = [(640, 480), (320, 240), (160, 120)]
        .map(|(w, h)| test_jpeg(w, h))
        .into_iter()
        .collect::<Result<Vec<_>>>()?;

    let mut child = Command::new(&kith)
        .arg("run")
        .arg("--board")
        .arg(&board)
        .arg("--out")
        .arg(&out)
        .arg("--frames")
        .arg(args.frames.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", kith.display()))?;
    let mut stdin = child.stdin.take().context("kith's stdin")?;
    // The generator: frames until kith has read its N and closed the pipe.
    let writer = std::thread::spawn(move || {
        for jpeg in frames.iter().cycle() {
            if stdin.write_all(jpeg).is_err() {
                break;
            }
        }
    });
    let samples = sample(&mut child, &args)?;
    let status = child.wait()?;
    let _ = writer.join();
    ensure!(status.success(), "kith exited with {status}");
    report(&samples, &args, &out.join("results.jsonl"))
}

/// Reads kith's per-frame lines and samples /proc every `sample_every` frames before the last.
fn sample(child: &mut Child, args: &Args) -> Result<Vec<Sample>> {
    let pid = child.id();
    let stdout = BufReader::new(child.stdout.take().context("kith's stdout")?);
    let mut samples = Vec::new();
    let (mut frames, mut since, mut cpu_since) = (0u64, Instant::now(), cpu_ms(pid)?);
    for line in stdout.lines() {
        if !line?.starts_with("frame ") {
            continue;
        }
        frames += 1;
        // Not at the last frame: kith is then closing its input and writing its summary.
        if frames.is_multiple_of(args.sample_every) && frames < args.frames {
            let ms_per_frame = since.elapsed().as_secs_f64() * 1000.0 / args.sample_every as f64;
            since = Instant::now();
            let cpu = cpu_ms(pid)?;
            let cpu_ms_per_frame = (cpu - cpu_since) / args.sample_every as f64;
            cpu_since = cpu;
            let s = Sample {
                frame: frames,
                rss_kb: rss_kb(pid)?,
                fds: std::fs::read_dir(format!("/proc/{pid}/fd"))?.count(),
                maps: std::fs::read_to_string(format!("/proc/{pid}/maps"))?
                    .lines()
                    .count(),
                ms_per_frame,
                cpu_ms_per_frame,
            };
            println!(
                "frame {:>7}  rss {:>7} KiB  fds {:>3}  maps {:>4}  {:.3} ms/frame  {:.3} CPU ms/frame",
                s.frame, s.rss_kb, s.fds, s.maps, s.ms_per_frame, s.cpu_ms_per_frame
            );
            samples.push(s);
        }
    }
    Ok(samples)
}

/// kith's CPU time so far, user and system, all threads (ms): fields 14 and 15 of /proc/PID/stat,
/// in the kernel's USER_HZ ticks, 100 a second on every architecture kith runs on.
fn cpu_ms(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // the command name in parentheses may hold spaces: count the fields after it (state is 3)
    let after_name = stat.rsplit_once(')').context("no ')' in /proc/PID/stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |field: usize| -> Result<f64> {
        Ok(fields
            .get(field - 3)
            .with_context(|| format!("/proc/PID/stat has no field {field}"))?
            .parse::<u64>()? as f64)
    };
    Ok((ticks(14)? + ticks(15)?) * 10.0)
}

/// VmRSS of process `pid` (KiB).
fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS in /proc/PID/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS without a value")?
        .parse()?)
}

/// Checks the samples and the JSON lines; prints the summary.
fn report(samples: &[Sample], args: &Args, results: &Path) -> Result<()> {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.frame >= args.warmup).collect();
    ensure!(after.len() >= 2, "too few samples after the warm-up");
    let base = after[0];
    let last = after[after.len() - 1];
    let peak = after.iter().map(|s| s.rss_kb).max().unwrap_or(base.rss_kb);
    let growth = peak.saturating_sub(base.rss_kb);
    let quarter = after.len().div_ceil(4);
    let median = |s: &[&Sample]| {
        let mut v: Vec<f64> = s.iter().map(|s| s.cpu_ms_per_frame).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // The first window after the baseline sample: its time is measured from the warm-up.
    let (first, final_) = (
        median(&after[1..=quarter.min(after.len() - 1)]),
        median(&after[after.len() - quarter..]),
    );
    let (count, rotated) = count_json_lines(results)?;
    println!(
        "soak: {} frames (last sample at {}); after {} warm-up frames RSS {} -> {} KiB (peak growth {growth} KiB), \
         fds {} -> {}, maps {} -> {}, median {first:.3} -> {final_:.3} CPU ms/frame; {count} JSON lines parse ({rotated} rotated files)",
        args.frames, last.frame, args.warmup, base.rss_kb, last.rss_kb, base.fds, last.fds, base.maps, last.maps
    );
    let mut failures = Vec::new();
    if growth > args.max_rss_growth_kb {
        failures.push(format!(
            "RSS grew by {growth} KiB (at most {})",
            args.max_rss_growth_kb
        ));
    }
    if last.fds > base.fds {
        failures.push(format!("open fds grew from {} to {}", base.fds, last.fds));
    }
    if last.maps > base.maps {
        failures.push(format!(
            "memory maps grew from {} to {}",
            base.maps, last.maps
        ));
    }
    if final_ > first * 1.5 {
        failures.push(format!(
            "CPU time per frame rose from {first:.3} to {final_:.3} ms"
        ));
    }
    if rotated == 0 {
        failures.push("results.jsonl was never rotated".to_string());
    }
    if count != args.frames {
        failures.push(format!("{count} JSON lines for {} frames", args.frames));
    }
    if !failures.is_empty() {
        bail!("soak failed: {}", failures.join("; "));
    }
    println!("soak: passed");
    Ok(())
}

/// Parses every line of `results` and of its rotated files (`results.1`, `results.2`, ...);
/// returns the number of lines and of rotated files.
fn count_json_lines(results: &Path) -> Result<(u64, u32)> {
    let mut count = 0u64;
    let mut rotated = 0u32;
    let mut path = results.to_path_buf();
    loop {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            serde_json::from_str::<serde_json::Value>(line)
                .with_context(|| format!("{} line {} does not parse", path.display(), i + 1))?;
            count += 1;
        }
        let mut next = results.as_os_str().to_owned();
        next.push(format!(".{}", rotated + 1));
        path = PathBuf::from(next);
        if !path.exists() {
            return Ok((count, rotated));
        }
        rotated += 1;
    }
}

/// Writes the tiny models and a board config reading MJPEG from standard input; returns its path.
fn write_board(dir: &Path) -> Result<PathBuf> {
    kith_vm::models::write_detector(&dir.join("detector.onnx"))?;
    kith_vm::models::write_relations(&dir.join("relations.onnx"))?;
    let board = dir.join("board.toml");
    std::fs::write(
        &board,
        r#"# kith-soak: MJPEG of changing sizes on standard input, tiny models.
name = "soak"
threads = 1
pipelined = false

[camera]
kind = "pipe"
path = "-"
format = "mjpeg"
width = 640
height = 480

[display]
kind = "png"
every = 1000

[output]
rotate_mb = 8
keep = 1000

[detector]
model = "detector.onnx"
decoder = "boxes-scores"
score_threshold = 0.3
nms_iou = 0.45

[relation]
model = "relations.onnx"
"#,
    )?;
    Ok(board)
}

/// A JPEG of a `w` x `h` picture with bright patches (the tiny detector finds persons in it).
fn test_jpeg(w: u32, h: u32) -> Result<Vec<u8>> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let bright = (x * 4 / w + y * 4 / h).is_multiple_of(3);
        let v = if bright { 230 } else { 30 };
        image::Rgb([v, (x % 256) as u8, v / 2])
    });
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 85).encode_image(&img)?;
    Ok(out)
}
