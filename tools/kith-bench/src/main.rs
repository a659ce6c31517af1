//! `kith-bench`: profiles kith's pipeline on a replay set exactly as `kith run` runs it, and writes
//! report.json (stages, frames/s, allocations, memory, start-up, kernels, per-operator profile),
//! report.csv (one row per frame and stage) and chart.svg. `kith-bench compare OLD NEW` flags a
//! stage that got slower.

mod chart;
mod compare;
mod machine;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use kith::config::BoardConfig;
use kith::display::spec::DisplaySpec;
use kith::service::StopFlag;
use kith::session::{Session, SessionOptions, Step};
use kith_runtime::model::ModelFile;
use kith_runtime::overlay::Privacy;
use kith_runtime::profile::Stage;

use kith_inspect::ops::{profile_nodes, OperatorProfile};
use report::{Allocations, Build, Machine, ModelReport, Report, RunInfo, StageStats};

#[cfg(not(feature = "mimalloc"))]
#[global_allocator]
static ALLOCATOR: kith_runtime::alloc_count::CountingAllocator =
    kith_runtime::alloc_count::CountingAllocator;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: kith_runtime::alloc_count::CountingOver<mimalloc::MiMalloc> =
    kith_runtime::alloc_count::CountingOver(mimalloc::MiMalloc);

/// The allocator under the counting one, for the report.
const BACKING: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system"
};

#[derive(Parser)]
#[command(
    name = "kith-bench",
    version,
    about = "Latency profiling of kith's pipeline",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Per-stage differences between two reports; exit 1 when a stage got slower than --threshold.
    Compare {
        old: PathBuf,
        new: PathBuf,
        /// Percent by which a stage's p50 and mean must both grow to count as slower.
        #[arg(long, default_value_t = 10.0)]
        threshold: f64,
    },
}

/// `--display`: where kith-bench draws, as the display spec a session takes.
fn display_choice() -> impl clap::builder::TypedValueParser<Value = DisplaySpec> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("memory")
            .help("Draw every frame onto an in-memory canvas (the render stage is measured)"),
        PossibleValue::new("none").help("No drawing"),
    ])
    .map(|name| match name.as_str() {
        "memory" => DisplaySpec::Memory,
        _ => DisplaySpec::None,
    })
}

#[derive(Args)]
struct BenchArgs {
    /// Board config (TOML).
    #[arg(long)]
    board: Option<PathBuf>,
    /// Replace the board's camera with an image file or a folder of images (played in a loop).
    #[arg(long)]
    source: Option<PathBuf>,
    /// Frames measured.
    #[arg(long, default_value_t = 50)]
    frames: u64,
    /// Frames run first and not measured.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Threads tract uses per model (default: the board's).
    #[arg(long)]
    threads: Option<usize>,
    /// Folder for report.json, report.csv and chart.svg.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    #[arg(long, value_parser = display_choice(), default_value = "memory")]
    display: DisplaySpec,
    /// Relate frame t on a second thread while frame t+1 is detected (default: the board's setting).
    #[arg(long)]
    pipelined: bool,
    /// Privacy mode, "off", "blur" or "pixelate" (default: the board's); its time is part of render.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Privacy::NAMES))]
    privacy: Option<String>,
    /// Profiled runs of each model for the per-operator profile.
    #[arg(long, default_value_t = 5)]
    op_runs: usize,
    /// How model memory is allocated: `arena` (as `kith run` does) serves each model's requests
    /// from a buffer laid out from a logged run, `system` hands every request to the allocator
    /// underneath (the system's, or mimalloc in a build with `--features kith-bench/mimalloc`).
    #[arg(long, value_enum, default_value_t = AllocatorChoice::Arena)]
    allocator: AllocatorChoice,
}

/// `--allocator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AllocatorChoice {
    Arena,
    System,
}

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    // Only fails when a logger is already installed, which nothing before this line does.
    if let Err(e) = kith::logging::init("kith-bench", kith::logging::Verbosity::Normal) {
        eprintln!("kith-bench: error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Some(Command::Compare {
            old,
            new,
            threshold,
        }) => compare_reports(&old, &new, threshold),
        None => bench(&cli.bench, started).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            log::error!("{}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn load_report(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a kith-bench report", path.display()))
}

/// Prints the comparison; false when a stage got slower.
fn compare_reports(old: &Path, new: &Path, threshold: f64) -> Result<bool> {
    let c = compare::compare(&load_report(old)?, &load_report(new)?, threshold);
    print!("{}", c.table);
    if c.slower.is_empty() {
        println!("no stage slower than {threshold}%");
        Ok(true)
    } else {
        println!("slower than {threshold}%: {}", c.slower.join(", "));
        Ok(false)
    }
}

fn model_report(role: &str, model: &ModelFile) -> Result<ModelReport> {
    let precision = match model.metadata("kith.precision") {
        Some(p) => p.to_owned(),
        None => {
            let info = kith_inspect::info::inspect(model.path())?;
            let quantised = info
                .onnx_ops
                .keys()
                .any(|op| op.starts_with("QLinear") || op == "DequantizeLinear");
            if quantised { "int8" } else { "fp32" }.to_owned()
        }
    };
    Ok(ModelReport {
        role: role.into(),
        file: model.path().display().to_string(),
        sha256: kith_inspect::info::file_sha256(model.path())?,
        precision,
        weights: model.metadata("kith.weights").map(str::to_owned),
        arena: model.arena_stats().into(),
    })
}

fn progress(done: u64, total: u64, label: &str) {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let bar: String = (0..WIDTH)
        .map(|i| if i < filled { '#' } else { '.' })
        .collect();
    eprint!("\r{label} [{bar}] {done}/{total}");
    if done == total {
        eprintln!();
    }
    let _ = std::io::stderr().flush();
}

/// Ends a progress bar line on stderr before a warning is logged there.
fn end_progress_line() {
    if log::log_enabled!(log::Level::Warn) {
        eprintln!();
    }
}

fn bench(args: &BenchArgs, started: Instant) -> Result<()> {
    let Some(board) = &args.board else {
        bail!("--board FILE is required (or use `kith-bench compare OLD NEW`)");
    };
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    let mut config = BoardConfig::load(board)?;
    if let Some(mode) = args.privacy.as_deref().and_then(Privacy::from_name) {
        config.overlay.privacy = mode;
    }
    let options = SessionOptions {
        source: args.source.clone(),
        out: None,
        threads: args.threads,
        repeat: true,
        pipelined: args.pipelined.then_some(true),
        display: Some(args.display.clone()),
        snapshots: None,
        stop: StopFlag::on_signals()?,
    };
    kith_runtime::model_arena::plan_model_memory(args.allocator == AllocatorChoice::Arena);
    let mut session = Session::open(&config, &options)?;
    let threads = args.threads.unwrap_or(config.threads);
    let pipelined = session.pipeline().is_pipelined();
    let mut startup_ms = None;
    let mut series: Vec<Vec<u64>> =
        vec![Vec::with_capacity(args.frames as usize); Stage::ALL.len()];
    let mut frame = 0u64;
    let mut skipped = 0u64;
    let mut measure_start = Instant::now();
    while frame < args.warmup + args.frames {
        match session.step()? {
            Step::End => bail!("the source ran out of frames"),
            Step::Skipped(e) => {
                end_progress_line();
                log::warn!("{e}");
                skipped += 1;
                if skipped > 100 && frame == 0 {
                    bail!("no readable frame in the source");
                }
                continue;
            }
            Step::Pending => continue,
            Step::CameraLost(e) => {
                end_progress_line();
                log::warn!("{e}");
                continue;
            }
            Step::Frame => {}
        }
        if startup_ms.is_none() {
            startup_ms = Some(started.elapsed().as_secs_f64() * 1e3);
        }
        frame += 1;
        if frame == args.warmup {
            session.reset_profile();
            measure_start = Instant::now();
        }
        if frame > args.warmup {
            let t = session.scene().timings;
            for (s, stage) in Stage::ALL.iter().enumerate() {
                series[s].push(t.get(*stage));
            }
            progress(frame - args.warmup, args.frames, "frames");
        }
    }
    let profile = session.pipeline().profile().clone();
    let allocs = profile.allocation_totals();
    let n = profile.frames().max(1) as f64;
    let stages: BTreeMap<String, StageStats> = Stage::ALL
        .iter()
        .map(|s| (s.name().to_owned(), StageStats::of(profile.stage(*s))))
        .collect();
    // Wall clock, not 1 / mean total: pipelined stages overlap.
    let fps = profile.frames() as f64 / measure_start.elapsed().as_secs_f64().max(1e-9);

    eprintln!("profiling operators ({} runs per model)", args.op_runs);
    let (detector, relation) = session.pipeline_mut().models_mut()?;
    let mut operators = BTreeMap::new();
    operators.insert(
        "detector".to_owned(),
        OperatorProfile::from_nodes(&profile_nodes(detector, args.op_runs)?, args.op_runs, 10),
    );
    operators.insert(
        "relation".to_owned(),
        OperatorProfile::from_nodes(&profile_nodes(relation, args.op_runs)?, args.op_runs, 10),
    );
    let models = vec![
        model_report("detector", detector)?,
        model_report("relation", relation)?,
    ];
    let mut kernels_chosen = BTreeSet::new();
    for m in &models {
        let audit = kith_inspect::audit::audit(Path::new(&m.file))?;
        kernels_chosen.extend(audit.nodes.into_iter().filter_map(|n| n.kernel));
    }
    let cpu = kith_inspect::audit::kernels();
    let report = Report {
        machine: Machine {
            cpu: machine::cpu_model(),
            cores: machine::cores(),
            arch: cpu.arch,
            isa: cpu.isa,
            isa_level: cpu.level,
            kernels_chosen: kernels_chosen.into_iter().collect(),
        },
        build: Build {
            version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("KITH_GIT_COMMIT").into(),
            profile: env!("KITH_PROFILE").into(),
            target: env!("KITH_TARGET").into(),
        },
        run: RunInfo {
            board: board.display().to_string(),
            source: args
                .source
                .as_ref()
                .map_or_else(|| "board camera".into(), |p| p.display().to_string()),
            threads,
            pipelined,
            frames: profile.frames(),
            warmup: args.warmup,
            drawing: match config.overlay.privacy {
                Privacy::Off => format!("{:?}", args.display).to_lowercase(),
                mode => format!("{:?}, privacy {mode:?}", args.display).to_lowercase(),
            },
            allocator: match (args.allocator, BACKING) {
                (choice, "system") => format!("{choice:?}").to_lowercase(),
                (choice, backing) => format!("{choice:?} over {backing}").to_lowercase(),
            },
        },
        models,
        stages,
        frames_per_second: fps,
        allocations: Allocations {
            own_per_frame: allocs.own as f64 / n,
            own_bytes_per_frame: allocs.own_bytes as f64 / n,
            tract_per_frame: allocs.model as f64 / n,
            tract_bytes_per_frame: allocs.model_bytes as f64 / n,
            tract_system_per_frame: allocs.model_system as f64 / n,
            tract_system_bytes_per_frame: allocs.model_system_bytes as f64 / n,
        },
        peak_rss_bytes: machine::peak_rss_bytes(),
        startup_to_first_frame_ms: startup_ms.unwrap_or(0.0),
        operators,
    };
    write_outputs(&args.out, &report, &series)?;
    print!("{}", profile.table(true));
    println!(
        "of tract's allocations, per frame {:.1} ({:.0} KiB) reached the system allocator ({} allocator)",
        report.allocations.tract_system_per_frame,
        report.allocations.tract_system_bytes_per_frame / 1024.0,
        report.run.allocator
    );
    for m in &report.models {
        println!(
            "{} arena: {:.0} KiB for {} blocks a run; {} runs unplanned, {} served, {} partly served",
            m.role,
            m.arena.buffer_bytes as f64 / 1024.0,
            m.arena.planned_blocks,
            m.arena.unplanned_runs,
            m.arena.served_runs,
            m.arena.partial_runs
        );
    }
    println!(
        "measured {:.2} frames/s by wall clock ({} thread(s){})",
        report.frames_per_second,
        report.run.threads,
        if pipelined { ", pipelined" } else { "" }
    );
    println!(
        "start-up to first frame {:.0} ms, peak RSS {:.1} MiB",
        report.startup_to_first_frame_ms,
        report.peak_rss_bytes.unwrap_or(0) as f64 / 1048576.0
    );
    for (role, p) in &report.operators {
        let top: Vec<String> = p
            .by_op
            .iter()
            .take(4)
            .map(|o| format!("{} {:.0}%", o.op, o.share * 100.0))
            .collect();
        println!("{role:<9} {:.1} ms per run: {}", p.run_ms, top.join(", "));
    }
    println!(
        "wrote {}/report.json, report.csv and chart.svg",
        args.out.display()
    );
    Ok(())
}

fn write_outputs(out: &Path, report: &Report, series: &[Vec<u64>]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let write = |name: &str, body: &[u8]| {
        let path = out.join(name);
        std::fs::write(&path, body).with_context(|| format!("{}: cannot write", path.display()))
    };
    write(
        "report.json",
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    let mut csv = String::from("frame,stage,us\n");
    for (s, stage) in Stage::ALL.iter().enumerate() {
        for (f, us) in series[s].iter().enumerate() {
            csv.push_str(&format!("{f},{},{us}\n", stage.name()));
        }
    }
    write("report.csv", csv.as_bytes())?;
    let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
    let stats: Vec<StageStats> = names.iter().map(|n| report.stages[*n]).collect();
    let title = format!(
        "kith {} on {} ({} threads, {} frames, {:.2} frames/s)",
        report.build.version,
        report.machine.cpu,
        report.run.threads,
        report.run.frames,
        report.frames_per_second
    );
    write(
        "chart.svg",
        chart::svg(&title, &names, series, &stats).as_bytes(),
    )
}
