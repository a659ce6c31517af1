//! `kith`: watches a camera, finds the people in each frame, recognises the social relation of
//! every pair with GRITv2-S and draws the labels. `cargo run --release` with no arguments plays the
//! bundled demo frames (board-configs/demo.toml) into ./out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use kith::camera::spec::CameraSpec;
use kith::camera::Negotiated;
use kith::config::{BoardConfig, Devices};
use kith::logging::{self, Verbosity};
use kith::service::{Notifier, ReloadRequest, StartupExit, StopFlag};
use kith::session::{Session, SessionError, SessionOptions, Step};
use kith::status::{self, StatusFile, Tracker};
use kith_runtime::alloc_count::{self, CountingAllocator};
use kith_runtime::Pipeline;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The board config `kith` runs when given no arguments.
const DEMO_BOARD: &str = "board-configs/demo.toml";

/// Exit status for a bad board config or model file, as `kith check` documents.
const EXIT_BAD_CONFIG: u8 = 2;

/// Exit status of `kith status` when no kith is running or its status is stale (as `systemctl
/// status` for a stopped unit).
const EXIT_NOT_RUNNING: u8 = 3;

/// How often the status summary goes to systemd (`STATUS=`, shown by `systemctl status kith`).
const NOTIFY_STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Parser)]
#[command(
    name = "kith",
    version,
    about = "Social relation recognition on single-board computers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log errors only (no warnings or notices).
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log debug messages too (and other crates' notices, e.g. tract's).
    #[arg(long, short, global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline: camera (or --source) -> persons -> relations -> display and outputs.
    Run(RunArgs),
    /// Validate a board config and load its models, opening no device; exit 2 on any error.
    Check {
        /// Board config (TOML).
        #[arg(long)]
        board: PathBuf,
        /// Check every field but not whether the camera and display device nodes exist (on a host
        /// without the board's devices).
        #[arg(long, conflicts_with = "strict")]
        skip_devices: bool,
        /// A camera or display device node that is not there is an error (exit 2), not a
        /// warning (`kith run` waits for it).
        #[arg(long)]
        strict: bool,
    },
    /// Show how the running kith is doing (uptime, frames, camera, models, memory); exit 3 when
    /// none runs.
    Status {
        /// The board config of the kith to ask (needed only when several run).
        #[arg(long)]
        board: Option<PathBuf>,
        /// Print the status as JSON (the fields README.md documents).
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `kith run`.
#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Board config (TOML).
    #[arg(long, default_value = DEMO_BOARD)]
    board: PathBuf,
    /// Replace the board's camera with an image file or a folder of JPEG/PNG images (name order).
    #[arg(long)]
    source: Option<PathBuf>,
    /// Output folder: results.jsonl and frames/NNNNNN.png.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Besides the board's display, write a PNG of what it shows every N frames to
    /// OUT/frames/NNNNNN.png (same numbering as the png display).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    snapshots: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    // Only fails when a logger is already installed, which nothing before this line does.
    if let Err(e) = logging::init("kith", verbosity) {
        eprintln!("kith: error: {e}");
        return ExitCode::FAILURE;
    }
    let command = cli.command.unwrap_or(Command::Run(RunArgs {
        board: DEMO_BOARD.into(),
        source: None,
        out: "out".into(),
        frames: None,
        snapshots: None,
    }));
    let result = match command {
        Command::Status { board, json } => return status(board.as_deref(), json),
        Command::Run(args) => run(&args),
        Command::Check {
            board,
            skip_devices,
            strict,
        } => check(&board, skip_devices, strict),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", format!("{e:#}").replace('\n', " "));
            let config = e.chain().any(|c| {
                c.downcast_ref::<SessionError>()
                    .is_some_and(SessionError::is_config)
            });
            ExitCode::from(if config { EXIT_BAD_CONFIG } else { 1 })
        }
    }
}

/// `kith check`: validates the config and loads both models, opening no device. A device node
/// that is not there is a warning (`kith run` waits for it), an error when `strict`, and not
/// looked for when `skip_devices`.
fn check(board: &Path, skip_devices: bool, strict: bool) -> Result<()> {
    let devices = if strict {
        Devices::Required
    } else {
        Devices::Skipped
    };
    let config = BoardConfig::load_with(board, devices).map_err(SessionError::from)?;
    if !skip_devices {
        for (field, path) in config.missing_devices() {
            log::warn!(
                "{}: field `{field}`: {} is not there (yet): `kith run` waits for it",
                board.display(),
                path.display()
            );
        }
    }
    let pipeline = Pipeline::load(
        &config.detector.model,
        &config.relation.model,
        config.pipeline_settings(),
    )
    .map_err(SessionError::from)?;
    // The fallback must meet the relation model contract too; which of the two is faster is
    // decided when `kith run` starts.
    let fallback = match &config.relation.fallback_model {
        Some(path) => {
            let threads = config.pipeline_settings().threads;
            let model = kith_runtime::relation_choice::load_fallback(path, threads)
                .map_err(|e| SessionError::from(kith_runtime::Error::from(e)))?;
            format!("; fallback {}", model.model().file_name())
        }
        None => String::new(),
    };
    let (w, h) = pipeline.detector().input_size();
    println!(
        "{}: ok (board \"{}\"; detector {} {w}x{h}; relations {} weights={}{fallback})",
        board.display(),
        config.name,
        pipeline.detector().model().file_name(),
        pipeline.relation().file_name(),
        pipeline.relation().weights(),
    );
    Ok(())
}

/// `kith status`: the running kith's status file as text or JSON.
fn status(board: Option<&Path>, json: bool) -> ExitCode {
    let status = match status::read(board) {
        Ok(status) => status,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
    };
    let age = status.age(status::now_unix_ms());
    if !status::is_alive(status.pid) {
        log::error!(
            "no kith is running: pid {} is gone (its status file is {:.0} s old)",
            status.pid,
            age.as_secs_f64()
        );
        return ExitCode::from(EXIT_NOT_RUNNING);
    }
    if age > status::STALE_AFTER {
        log::error!(
            "kith (pid {}) has not updated its status for {:.0} s: stalled or stopping",
            status.pid,
            age.as_secs_f64()
        );
        return ExitCode::from(EXIT_NOT_RUNNING);
    }
    if json {
        match serde_json::to_string_pretty(&status) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                log::error!("{e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", status.text());
    }
    ExitCode::SUCCESS
}

/// The models of the running pipeline, for the status.
fn status_models(pipeline: &Pipeline) -> status::Models {
    status::Models {
        detector: status::Model {
            file: pipeline.detector().model().file_name(),
            kernels: pipeline.detector().model().matmul_kernels(),
        },
        relation: status::Model {
            file: pipeline.relation().file_name(),
            kernels: pipeline.relation().matmul_kernels().to_vec(),
        },
    }
}

/// The status file of this run, or `None` (with a warning) where there is no runtime directory.
fn status_file(board: &Path) -> Option<StatusFile> {
    match status::write_dir().and_then(|dir| StatusFile::create(&dir, board)) {
        Ok(file) => Some(file),
        Err(e) => {
            log::warn!("no status for `kith status`: {e}");
            None
        }
    }
}

/// SIGHUP: re-reads the board config and applies it; an invalid one is reported in one line and
/// the running one kept. Returns the outcome for the status.
fn reload(board: &Path, session: &mut Session) -> String {
    let outcome = match BoardConfig::load(board) {
        Err(e) => Err(e.to_string()),
        Ok(config) => session.reload(config).map_err(|e| e.to_string()),
    };
    match outcome {
        Ok(reloaded) => {
            log::info!("reload: {}: {reloaded}", board.display());
            reloaded.to_string()
        }
        Err(e) => {
            let line = format!("rejected, running config kept: {}", e.replace('\n', " "));
            log::error!("reload: {line}");
            line
        }
    }
}

/// `kith run`: plays the source through the pipeline into the display and outputs.
fn run(args: &RunArgs) -> Result<()> {
    // Until the loop runs, SIGINT/SIGTERM end kith at once; SIGHUP waits for the loop.
    let startup = StartupExit::arm().context("cannot install the SIGINT/SIGTERM handlers")?;
    let reload_request = ReloadRequest::on_sighup().context("cannot install the SIGHUP handler")?;
    // A camera or display that is not there yet is waited for, like one that is lost.
    let config =
        BoardConfig::load_with(&args.board, Devices::Skipped).map_err(SessionError::from)?;
    let mut notifier = Notifier::from_env();
    let mut stop = StopFlag::on_signals().context("cannot install the SIGINT/SIGTERM handlers")?;
    if let Some(watchdog) = notifier.watchdog() {
        stop = stop.with_watchdog(watchdog);
    }
    let options = SessionOptions {
        source: args.source.clone(),
        out: Some(args.out.clone()),
        threads: None,
        repeat: false,
        pipelined: None,
        display: None,
        snapshots: args.snapshots.map(|n| n as usize),
        stop,
    };
    let mut session = Session::open(&config, &options)?;
    startup.disarm();
    print_banner(&config, session.pipeline());
    println!("  display   {}", session.display().describe());
    if args.source.is_none() {
        print_camera(&config, session.negotiated());
    }
    notifier.ready(&format!("running board \"{}\"", config.name))?;
    let limit = args.frames.unwrap_or(u64::MAX);
    let started = std::time::Instant::now();
    let (mut done, mut skipped, mut outages) = (0u64, 0u64, 0u64);
    // When the camera was lost, and the failed attempts to reopen it since.
    let mut lost: Option<(std::time::Instant, u64)> = None;
    let status_file = status_file(&args.board);
    let mut tracker = Tracker::new();
    let mut notified = std::time::Instant::now();
    // A frame longer than half WatchdogSec is warned about once: a slower one gets kith killed.
    let mut slow_frame_warned = false;
    while done < limit && !options.stop.is_set() {
        if reload_request.take() {
            tracker.reloaded(reload(&args.board, &mut session));
        }
        let step_started = std::time::Instant::now();
        let step = session.step()?;
        notifier.alive()?;
        if let Some(watchdog) = notifier.watchdog().filter(|_| !slow_frame_warned) {
            let took = step_started.elapsed();
            if took > watchdog.timeout() / 2 {
                log::warn!(
                    "a frame took {:.1} s, more than half of WatchdogSec ({:.1} s): raise WatchdogSec in the unit or systemd may restart kith",
                    took.as_secs_f64(),
                    watchdog.timeout().as_secs_f64()
                );
                slow_frame_warned = true;
            }
        }
        match &step {
            Step::Frame => tracker.frame(),
            Step::Pending => tracker.camera_back(),
            Step::CameraLost(e) => tracker.camera_lost(&e.to_string()),
            Step::Skipped(_) | Step::End => {}
        }
        if tracker.due() {
            let config = session.config();
            let mqtt_dropped = session.mqtt().map_or(0, |m| m.dropped());
            let now = tracker.status(
                (&config.name, &args.board),
                status_models(session.pipeline()),
                mqtt_dropped,
            );
            if let Some(file) = &status_file {
                if let Err(e) = file.write(&now) {
                    log::debug!("status not written: {e}");
                }
            }
            if notified.elapsed() >= NOTIFY_STATUS_EVERY {
                notifier.status(&now.summary())?;
                notified = std::time::Instant::now();
            }
        }
        if matches!(step, Step::Frame | Step::Pending) {
            if let Some((since, retries)) = lost.take() {
                log::info!(
                    "camera back after {:.1} s ({retries} failed reconnection attempts)",
                    since.elapsed().as_secs_f64()
                );
            }
        }
        match step {
            Step::End => break,
            Step::Pending => {}
            Step::Skipped(e) => {
                log::warn!("{e}");
                skipped += 1;
            }
            Step::CameraLost(e) => match &mut lost {
                None => {
                    log::warn!("{e}");
                    lost = Some((std::time::Instant::now(), 0));
                    outages += 1;
                }
                Some((_, retries)) => {
                    log::debug!("{e}");
                    *retries += 1;
                }
            },
            Step::Frame => {
                let scene = session.scene();
                println!(
                    "frame {:>6} {:<24} {} persons, {} pairs, {:.1} ms",
                    scene.frame,
                    scene.source.as_str(),
                    scene.persons.len(),
                    scene.relations.len(),
                    scene.timings.total as f64 / 1000.0
                );
                done += 1;
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    if let Some(file) = &status_file {
        if let Err(e) = file.remove() {
            log::warn!("{e}");
        }
    }
    notifier.stopping()?;
    println!();
    print!(
        "{}",
        session
            .pipeline()
            .profile()
            .table(alloc_count::is_counting())
    );
    println!(
        "wall clock  {:.2} frames/s over the run (start-up excluded)",
        done as f64 / wall.max(1e-9)
    );
    let results = args.out.join("results.jsonl");
    match session.snapshot_dir() {
        Some(dir) => println!(
            "wrote {done} frames to {} and PNG snapshots to {}",
            results.display(),
            dir.display()
        ),
        None => println!("wrote {done} frames to {}", results.display()),
    }
    if skipped > 0 {
        println!("skipped {skipped} unreadable frames (see warnings above)");
    }
    if outages > 0 {
        println!("the camera was lost {outages} time(s) (see warnings above)");
    }
    Ok(())
}

/// The camera line of the banner: what the board asked for and what the camera delivers, with a
/// warning when the driver chose another size or format.
fn print_camera(config: &BoardConfig, negotiated: Option<Negotiated>) {
    let (name, kind, asked) = match &config.camera {
        #[cfg(feature = "v4l2")]
        CameraSpec::V4l2(v) => (
            v.device.display().to_string(),
            "v4l2",
            (v.width, v.height, v.format),
        ),
        CameraSpec::Pipe(p) => (
            p.path.display().to_string(),
            "pipe",
            (p.width, p.height, p.format),
        ),
        CameraSpec::Replay { .. } => return,
    };
    let Some(got) = negotiated else {
        println!(
            "  camera    {name} ({kind}): not there yet (camera lost); opened when it appears"
        );
        return;
    };
    println!("  camera    {name} ({kind}): {got}");
    if (got.width, got.height, got.format) != asked {
        log::warn!(
            "camera {name}: asked for {}x{} {}, the driver gave {}x{} {}; using what it gives",
            asked.0,
            asked.1,
            asked.2,
            got.width,
            got.height,
            got.format
        );
    }
}

fn print_banner(config: &BoardConfig, pipeline: &Pipeline) {
    let (w, h) = pipeline.detector().input_size();
    println!(
        "kith {} on board \"{}\", {} thread(s) per model{}",
        env!("CARGO_PKG_VERSION"),
        config.name,
        config.threads,
        if pipeline.is_pipelined() {
            ", relations pipelined on a second thread"
        } else {
            ""
        }
    );
    println!(
        "  detector  {} ({w}x{h}, {:?})",
        pipeline.detector().model().path().display(),
        pipeline.detector().resize_mode()
    );
    println!(
        "  relations {} (weights: {})",
        pipeline.relation().path().display(),
        pipeline.relation().weights()
    );
    if let Some(choice) = pipeline.relation().choice() {
        println!("  running   {choice}");
    }
    for (file, narrowed) in [
        (
            pipeline.detector().model().path(),
            pipeline.detector().model().narrowed_products(),
        ),
        (
            pipeline.relation().path(),
            pipeline.relation().narrowed_products(),
        ),
    ] {
        if narrowed > 0 {
            println!(
                "  int8      {}: weights of {narrowed} products narrowed to 7 bits for this CPU's int8 kernel (docs/int8.md)",
                kith_runtime::model::file_name_of(file)
            );
        }
    }
    let cpu = kith_runtime::model::tract_isa();
    let mut kernels = pipeline.detector().model().matmul_kernels();
    kernels.extend(pipeline.relation().matmul_kernels().iter().cloned());
    kernels.sort();
    kernels.dedup();
    println!(
        "  tract     {} {} ({}), matmul kernels: {}",
        cpu.arch,
        cpu.level,
        cpu.isa,
        kernels.join(", ")
    );
    if pipeline.relation().is_untrained() {
        println!("  NOTE: the relation weights are untrained (not trained on PISC): the labels are NOT recognition.");
    }
}
