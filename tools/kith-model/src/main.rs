//! `kith-model`: inspect kith's model files. `info` prints a model's inputs, outputs, metadata,
//! parameter count and multiply-accumulates per run; `audit` what tract runs each node on and the
//! quantisation hazards; `kernels` the ISA and kernels tract-linalg uses here; `bench` times a model
//! as the runtime runs it; `gemm` the f32 and int8 matrix-product throughput of those models' shapes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};
use kith_inspect::audit::{audit, fill_fixed_inputs, kernels, Audit, KernelReport};
use kith_inspect::info::{file_sha256, inspect, ModelInfo};
use kith_inspect::ops::{profile_nodes, OperatorProfile};
use kith_runtime::model::{ModelFile, TensorSpec};
use kith_runtime::profile::{micros_since, Histogram};
use serde_json::json;

/// `println!` for the command's output, through [`write_line`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_line(format_args!($($arg)*))
    };
}

mod gemm;

/// Writes one line to standard output. When its reader has gone (`kith-model kernels | head`) the
/// process ends quietly, as a Unix filter does; any other failure (a full disk) ends it with a
/// one-line error. `println!` panics in both cases.
fn write_line(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("Error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

#[derive(Parser)]
#[command(name = "kith-model", version, about = "Inspect kith's model files")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inputs, outputs, metadata, parameters and MACs of an ONNX file.
    Info {
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Per node of the optimised graph: op, datum types, matmul kernel, MACs; integer MAC
    /// fraction and quantisation hazards.
    Audit {
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The ISA features tract-linalg detected on this CPU and the kernels it offers.
    Kernels {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Times FILE as the runtime runs it, on the fixed inputs of ort_bench.py.
    /// Several files are timed interleaved (one run of each in turn), so their ratio holds on a
    /// busy machine.
    Bench {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Threads tract uses for its matrix products (1..=64).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Timed runs.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// GRITv2-S reference input (boxes, mask); default: gritv2-s.reference.json beside each FILE.
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Print JSON lines (one per file) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// f32 and int8 GMAC/s on this CPU over the matrix-product shapes of FILEs, and the kernel
    /// tract picks for each.
    Gemm {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Threads tract uses for its matrix products (1..=64).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Timed runs per shape and precision.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Print JSON lines (one per shape, then the total) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Time per op type and the slowest nodes of FILE's optimised graph, as the runtime runs it.
    Profile {
        file: PathBuf,
        /// Threads tract uses for its matrix products (1..=64).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Profiled runs (after 2 untimed ones).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Slowest nodes to list.
        #[arg(long, default_value_t = 25)]
        top: usize,
        /// GRITv2-S reference input (boxes, mask); default: gritv2-s.reference.json beside FILE.
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Print every node's time as JSON instead of the tables.
        #[arg(long)]
        json: bool,
    },
}

fn millions(n: u64) -> String {
    format!("{:.2} M", n as f64 / 1e6)
}

fn print_table(info: &ModelInfo, sha256: &str) {
    out!("file        {}", info.path.display());
    out!(
        "bytes       {} ({:.1} MiB)",
        info.bytes,
        info.bytes as f64 / (1024.0 * 1024.0)
    );
    out!("sha256      {sha256}");
    for (k, v) in &info.metadata {
        out!("metadata    {k} = {v}");
    }
    for t in &info.inputs {
        out!("input       {} {:?}", t.name, t.shape);
    }
    for t in &info.outputs {
        out!("output      {} {:?}", t.name, t.shape);
    }
    let by_type: Vec<_> = info
        .params_by_type
        .iter()
        .map(|(t, n)| format!("{t} {}", millions(*n)))
        .collect();
    out!(
        "parameters  {} ({})  [{}]",
        info.params,
        millions(info.params),
        by_type.join(", ")
    );
    let by_type: Vec<_> = info
        .macs_by_type
        .iter()
        .map(|(t, n)| format!("{t} {:.3} G", *n as f64 / 1e9))
        .collect();
    out!(
        "MACs/run    {} ({:.3} G)  [{}]",
        info.macs,
        info.macs as f64 / 1e9,
        by_type.join(", ")
    );
    let ops: Vec<_> = info
        .onnx_ops
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    out!("onnx ops    {}", ops.join(", "));
}

fn print_audit(a: &Audit) {
    out!("file  {}", a.file.display());
    out!(
        "{:<48} {:<22} {:<16} {:<10} {:<28} {:>14}",
        "node",
        "op",
        "inputs",
        "outputs",
        "kernel",
        "MACs"
    );
    for n in &a.nodes {
        out!(
            "{:<48} {:<22} {:<16} {:<10} {:<28} {:>14}",
            n.name,
            n.op,
            n.inputs.join(","),
            n.outputs.join(","),
            n.kernel.as_deref().unwrap_or("-"),
            if n.macs > 0 {
                n.macs.to_string()
            } else {
                String::new()
            }
        );
    }
    out!(
        "MACs  {} total, {} on integer kernels ({:.1} %)",
        a.macs_total,
        a.macs_integer,
        100.0 * a.integer_fraction()
    );
    if a.hazards.is_empty() {
        out!("hazards  none");
    }
    for h in &a.hazards {
        out!("HAZARD  {} `{}`: {}", h.kind, h.node, h.detail);
    }
}

fn print_kernels(k: &KernelReport) {
    out!("arch      {}", k.arch);
    out!("isa       {} (level {})", k.isa, k.level);
    out!("tiers     {}", k.tiers.join(" > "));
    for m in &k.matmul_kernels {
        out!(
            "matmul    {:<36} acc {:<4} {:>2}x{:<2} needs {:<24} preference {}",
            m.name,
            m.accumulator,
            m.mr,
            m.nr,
            m.isa,
            m.preference
        );
    }
    for r in &k.routines {
        out!("routine   {:<16} {:<4} {}", r.func, r.dt, r.kernel);
    }
}

/// Median and p90 of one file's timed runs, in milliseconds.
struct Timing {
    median: f64,
    p90: f64,
    /// Products whose weights ran narrowed to 7 bits (`ModelFile::narrowed_products`).
    narrowed_products: usize,
}

/// Loads every file as the runtime does, warms each up, then times `runs` rounds in which each
/// model runs once, in turn.
fn bench(
    files: &[PathBuf],
    threads: usize,
    runs: usize,
    warmup: usize,
    reference: Option<&Path>,
) -> Result<Vec<Timing>> {
    anyhow::ensure!(
        (1..=64).contains(&threads) && runs >= 1,
        "--threads must be 1..=64 and --runs >= 1"
    );
    let mut models = Vec::with_capacity(files.len());
    for file in files {
        let mut model = ModelFile::load(file, threads)?;
        let reference = reference.map_or_else(|| default_reference(file), Path::to_owned);
        fill_fixed_inputs(&mut model, &reference)?;
        for _ in 0..warmup {
            model.run()?;
        }
        models.push(model);
    }
    let mut us = vec![Histogram::default(); files.len()];
    for _ in 0..runs {
        for (model, times) in models.iter_mut().zip(&mut us) {
            let t0 = Instant::now();
            model.run()?;
            times.record(micros_since(t0));
        }
    }
    let ms = |us: u64| us as f64 / 1e3;
    Ok(us
        .iter()
        .zip(&models)
        .map(|(times, model)| Timing {
            median: ms(times.quantile(0.5)),
            p90: ms(times.quantile(0.9)),
            narrowed_products: model.narrowed_products(),
        })
        .collect())
}

fn profile(
    file: &Path,
    threads: usize,
    runs: usize,
    top: usize,
    reference: &Path,
    json: bool,
) -> Result<()> {
    anyhow::ensure!(
        (1..=64).contains(&threads) && runs >= 1,
        "--threads must be 1..=64 and --runs >= 1"
    );
    let mut model = ModelFile::load(file, threads)?;
    fill_fixed_inputs(&mut model, reference)?;
    profile_nodes(&mut model, 2)?;
    let nodes = profile_nodes(&mut model, runs)?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3 / runs as f64;
    if json {
        let total: f64 = nodes.iter().map(|n| ms(n.time)).sum();
        let nodes: Vec<_> = nodes
            .iter()
            .map(|n| json!({"name": n.name, "op": n.op, "ms": round3(ms(n.time))}))
            .collect();
        let value = json!({"file": file, "threads": threads, "runs": runs,
                           "total_ms": round3(total), "nodes": nodes});
        out!("{value}");
        return Ok(());
    }
    let p = OperatorProfile::from_nodes(&nodes, runs, top);
    out!(
        "{}: {:.2} ms per run in the nodes ({runs} runs, {threads} thread(s))",
        file.display(),
        p.run_ms
    );
    out!(
        "{:<28} {:>6} {:>10} {:>7}",
        "op",
        "nodes",
        "ms/run",
        "share"
    );
    for op in &p.by_op {
        out!(
            "{:<28} {:>6} {:>10.3} {:>6.1}%",
            op.op,
            op.nodes,
            op.ms,
            100.0 * op.share
        );
    }
    out!("{:<60} {:<24} {:>10}", "node", "op", "ms/run");
    for n in &p.top_nodes {
        out!("{:<60} {:<24} {:>10.3}", n.name, n.op, n.ms);
    }
    Ok(())
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only fails when a logger is already installed, which nothing before this line does.
    if let Err(e) = kith::logging::init("kith-model", kith::logging::Verbosity::Normal) {
        eprintln!("Error: {e}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the cause chain included, as `Error: ...` (what returning the error from
            // main printed when the library flattened the chain itself).
            eprintln!("Error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { file, json } => {
            let info = inspect(&file)?;
            let sha256 = file_sha256(&file)?;
            if json {
                let spec = |t: &TensorSpec| json!({"name": t.name, "shape": t.shape});
                let value = json!({
                    "file": info.path,
                    "bytes": info.bytes,
                    "sha256": sha256,
                    "metadata": info.metadata,
                    "inputs": info.inputs.iter().map(spec).collect::<Vec<_>>(),
                    "outputs": info.outputs.iter().map(spec).collect::<Vec<_>>(),
                    "params": info.params,
                    "params_by_type": info.params_by_type,
                    "macs": info.macs,
                    "macs_by_type": info.macs_by_type,
                    "onnx_ops": info.onnx_ops,
                });
                out!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print_table(&info, &sha256);
            }
        }
        Command::Audit { file, json } => {
            let a = audit(&file)?;
            if json {
                let value = json!({
                    "file": a.file,
                    "nodes": a.nodes,
                    "macs_total": a.macs_total,
                    "macs_integer": a.macs_integer,
                    "integer_fraction": a.integer_fraction(),
                    "hazards": a.hazards,
                });
                out!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print_audit(&a);
            }
        }
        Command::Kernels { json } => {
            let k = kernels();
            if json {
                out!("{}", serde_json::to_string_pretty(&k)?);
            } else {
                print_kernels(&k);
            }
        }
        Command::Bench {
            files,
            threads,
            runs,
            warmup,
            reference,
            json,
        } => {
            let timings = bench(&files, threads, runs, warmup, reference.as_deref())?;
            for (file, t) in files.iter().zip(&timings) {
                if json {
                    let value = json!({
                        "file": file,
                        "threads": threads,
                        "runs": runs,
                        "median_ms": round3(t.median),
                        "p90_ms": round3(t.p90),
                        "narrowed_products": t.narrowed_products,
                    });
                    out!("{value}");
                } else {
                    let narrowed = match t.narrowed_products {
                        0 => String::new(),
                        n => format!(", weights of {n} products narrowed to 7 bits"),
                    };
                    out!(
                        "{}: median {:.2} ms, p90 {:.2} ms ({runs} runs, {threads} thread(s), tract{narrowed})",
                        file.display(),
                        t.median,
                        t.p90
                    );
                }
            }
            if !json {
                for (file, t) in files.iter().zip(&timings).skip(1) {
                    out!(
                        "median {} / {}: {:.3}",
                        file.display(),
                        files[0].display(),
                        t.median / timings[0].median
                    );
                }
            }
        }
        Command::Gemm {
            files,
            threads,
            runs,
            warmup,
            json,
        } => gemm::report(&files, threads, runs, warmup, json)?,
        Command::Profile {
            file,
            threads,
            runs,
            top,
            reference,
            json,
        } => {
            let reference = reference.unwrap_or_else(|| default_reference(&file));
            profile(&file, threads, runs, top, &reference, json)?;
        }
    }
    Ok(())
}

/// The GRITv2-S reference input beside `file`.
fn default_reference(file: &Path) -> PathBuf {
    file.with_file_name("gritv2-s.reference.json")
}
