//! `kith-model`: inspect kith's model files. `info` prints a model's inputs, outputs, metadata,
//! parameter count and multiply-accumulates per run; `audit` what tract runs each node on and the
//! quantisation hazards; `kernels` the ISA and kernels tract-linalg uses here; `bench` times a model
//! as the runtime runs it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};
use kith_runtime::audit::{audit, fill_fixed_inputs, kernels, Audit, KernelReport};
use kith_runtime::model::ModelFile;
use kith_runtime::model_info::{inspect, ModelInfo};
use serde_json::json;

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
    Bench {
        file: PathBuf,
        /// Threads tract uses for its matrix products (1..=64).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Timed runs.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// GRITv2-S reference input (boxes, mask); default: gritv2-s.reference.json beside FILE.
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Print JSON instead of a line.
        #[arg(long)]
        json: bool,
    },
}

fn millions(n: u64) -> String {
    format!("{:.2} M", n as f64 / 1e6)
}

fn print_table(info: &ModelInfo, sha256: &str) {
    println!("file        {}", info.path.display());
    println!(
        "bytes       {} ({:.1} MiB)",
        info.bytes,
        info.bytes as f64 / (1024.0 * 1024.0)
    );
    println!("sha256      {sha256}");
    for (k, v) in &info.metadata {
        println!("metadata    {k} = {v}");
    }
    for t in &info.inputs {
        println!("input       {} {:?}", t.name, t.shape);
    }
    for t in &info.outputs {
        println!("output      {} {:?}", t.name, t.shape);
    }
    let by_type: Vec<_> = info
        .params_by_type
        .iter()
        .map(|(t, n)| format!("{t} {}", millions(*n)))
        .collect();
    println!(
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
    println!(
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
    println!("onnx ops    {}", ops.join(", "));
}

fn print_audit(a: &Audit) {
    println!("file  {}", a.file.display());
    println!(
        "{:<48} {:<22} {:<16} {:<10} {:<28} {:>14}",
        "node", "op", "inputs", "outputs", "kernel", "MACs"
    );
    for n in &a.nodes {
        println!(
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
    println!(
        "MACs  {} total, {} on integer kernels ({:.1} %)",
        a.macs_total,
        a.macs_integer,
        100.0 * a.integer_fraction()
    );
    if a.hazards.is_empty() {
        println!("hazards  none");
    }
    for h in &a.hazards {
        println!("HAZARD  {} `{}`: {}", h.kind, h.node, h.detail);
    }
}

fn print_kernels(k: &KernelReport) {
    println!("arch      {}", k.arch);
    println!("isa       {} (level {})", k.isa, k.level);
    println!("tiers     {}", k.tiers.join(" > "));
    for m in &k.matmul_kernels {
        println!(
            "matmul    {:<36} acc {:<4} {:>2}x{:<2} needs {:<24} preference {}",
            m.name, m.accumulator, m.mr, m.nr, m.isa, m.preference
        );
    }
    for r in &k.routines {
        println!("routine   {:<16} {:<4} {}", r.func, r.dt, r.kernel);
    }
}

/// The `p`th percentile of sorted values, interpolated linearly as numpy's default does.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let pos = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn bench(
    file: &Path,
    threads: usize,
    runs: usize,
    warmup: usize,
    reference: &Path,
) -> Result<(f64, f64)> {
    anyhow::ensure!(
        (1..=64).contains(&threads) && runs >= 1,
        "--threads must be 1..=64 and --runs >= 1"
    );
    let mut model = ModelFile::load(file, threads)?;
    fill_fixed_inputs(&mut model, reference)?;
    for _ in 0..warmup {
        model.run()?;
    }
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        model.run()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok((percentile(&ms, 50.0), percentile(&ms, 90.0)))
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

fn main() -> Result<()> {
    kith_runtime::model::avoid_crashing_kernels();
    let cli = Cli::parse();
    match cli.command {
        Command::Info { file, json } => {
            let info = inspect(&file)?;
            let sha256 = kith_runtime::model_info::file_sha256(&file)?;
            if json {
                let spec =
                    |t: &kith_runtime::model::TensorSpec| json!({"name": t.name, "shape": t.shape});
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
                println!("{}", serde_json::to_string_pretty(&value)?);
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
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print_audit(&a);
            }
        }
        Command::Kernels { json } => {
            let k = kernels();
            if json {
                println!("{}", serde_json::to_string_pretty(&k)?);
            } else {
                print_kernels(&k);
            }
        }
        Command::Bench {
            file,
            threads,
            runs,
            warmup,
            reference,
            json,
        } => {
            let reference =
                reference.unwrap_or_else(|| file.with_file_name("gritv2-s.reference.json"));
            let (median, p90) = bench(&file, threads, runs, warmup, &reference)?;
            if json {
                let value = json!({
                    "file": file,
                    "threads": threads,
                    "runs": runs,
                    "median_ms": round3(median),
                    "p90_ms": round3(p90),
                });
                println!("{value}");
            } else {
                println!(
                    "{}: median {median:.2} ms, p90 {p90:.2} ms ({runs} runs, {threads} thread(s), tract)",
                    file.display()
                );
            }
        }
    }
    Ok(())
}
