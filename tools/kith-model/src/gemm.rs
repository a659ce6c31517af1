//! `kith-model gemm`: f32 and int8 matrix-product throughput (GMAC/s) on this CPU, over the
//! matrix-product shapes of the given models as the runtime optimises them (matmuls and the
//! convolutions tract lowers to matmuls), with the tract-linalg kernel tract picks for each.
//!
//! Every shape runs as a one-op graph, an activation `[m, k]` times a constant weight `[k, n]`:
//! in f32 as an f32 EinSum, in int8 as the quantised EinSum tract makes of an ONNX
//! QLinearMatMul (s8, zero points 0, per-tensor scales, i8 output), the form of the shipped INT8
//! file. The time includes packing the activation, as in the model. The two precisions run
//! interleaved (one run of each in turn), so their ratio holds on a busy machine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use kith_runtime::model::load_optimized;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
use tract_onnx::tract_core::plan::SimpleState;

/// One matrix-product shape, `C[m, n] = A[m, k] B[k, n]`, as tract's optimised graph has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl Shape {
    fn macs(&self) -> u64 {
        (self.m * self.k * self.n) as u64
    }
}

/// The distinct shapes of the matrix products of `files`, each with the number of products of
/// that shape one run of all the files computes (batch axes count as products).
pub fn model_shapes(files: &[PathBuf]) -> Result<Vec<(Shape, usize)>> {
    let mut shapes = BTreeMap::<Shape, usize>::new();
    for file in files {
        let typed = load_optimized(file)?.model;
        for node in &typed.nodes {
            let Some(op) = node.op_as::<OptMatMul>() else {
                continue;
            };
            let dim = |axis: Option<usize>| axis.map_or(Ok(1), |ix| to_usize(&op.c_fact.shape[ix]));
            let k = op
                .guess_k()
                .with_context(|| format!("{}: no k for `{}`", file.display(), node.name))?;
            let shape = Shape {
                m: dim(op.c_m_axis)?,
                k: to_usize(&k)?,
                n: dim(op.c_n_axis)?,
            };
            let mut batch = 1;
            for (ix, d) in op.c_fact.shape.iter().enumerate() {
                if Some(ix) != op.c_m_axis && Some(ix) != op.c_n_axis {
                    batch *= to_usize(d)?;
                }
            }
            *shapes.entry(shape).or_default() += batch;
        }
    }
    Ok(shapes.into_iter().collect())
}

/// A concrete dimension as usize.
fn to_usize(d: &TDim) -> Result<usize> {
    Ok(usize::try_from(d.to_i64()?)?)
}

/// Throughput of one precision on one shape.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The tract-linalg kernel(s) the product runs on.
    pub kernel: String,
    pub median_ms: f64,
}

impl Timing {
    pub fn gmacs(&self, shape: &Shape) -> f64 {
        shape.macs() as f64 / (self.median_ms * 1e6)
    }
}

/// A one-op graph ready to run, with its input.
struct Product {
    state: SimpleState<TypedFact, Box<dyn TypedOp>>,
    input: TValue,
    kernel: String,
}

impl Product {
    fn new(shape: &Shape, int8: bool, threads: usize) -> Result<Self> {
        let Shape { m, k, n } = *shape;
        let mut model = TypedModel::default();
        let (input, output) = if int8 {
            let a = model.add_source("a", i8::fact([m, k]))?;
            let mut inputs = vec![
                a,
                model.add_const("b", pseudo_random_i8(k * n, -127, [k, n])?)?,
            ];
            // bias, then zero point and scale of A, B and C (QLinearMatMul's order in tract).
            inputs.push(model.add_const("bias", tensor0(0i32))?);
            for (name, scale) in [("a", 0.02f32), ("b", 0.01), ("c", 0.05)] {
                inputs.push(model.add_const(format!("{name}_zp"), tensor0(0i8))?);
                inputs.push(model.add_const(format!("{name}_scale"), tensor0(scale))?);
            }
            let op = EinSum {
                axes: "mk,kn,,,,,,,->mn".parse()?,
                operating_dt: i32::datum_type(),
                q_params: Some(i8::datum_type()),
            };
            let output = model.wire_node("product", op, &inputs)?;
            (pseudo_random_i8(m * k, -128, [m, k])?, output)
        } else {
            let a = model.add_source("a", f32::fact([m, k]))?;
            let b = model.add_const("b", pseudo_random_f32(k * n, [k, n])?)?;
            let op = EinSum::new("mk,kn->mn".parse()?, f32::datum_type());
            let output = model.wire_node("product", op, &[a, b])?;
            (pseudo_random_f32(m * k, [m, k])?, output)
        };
        model.select_output_outlets(&output)?;
        let model = model.into_optimized()?;
        let kernel = model
            .nodes
            .iter()
            .filter_map(|node| node.op_as::<OptMatMul>())
            .flat_map(|op| op.mmm.iter().map(|k| k.name().to_owned()))
            .collect::<Vec<_>>()
            .join("|");
        let mut options = RunOptions::default();
        if threads > 1 {
            options.executor = Some(multithread::Executor::multithread(threads));
        }
        let state = model.into_runnable_with_options(&options)?.spawn()?;
        Ok(Product {
            state,
            input: input.into_tvalue(),
            kernel,
        })
    }

    /// Runs the product once; its time in ms.
    fn run(&mut self) -> Result<f64> {
        let start = Instant::now();
        self.state.run(tvec![self.input.clone()])?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    }
}

/// Times `shape` in f32 and in int8 with `threads` threads: `warmup` untimed runs, then `runs`
/// timed ones, interleaved. Returns (f32, int8).
pub fn bench_shape(
    shape: &Shape,
    threads: usize,
    runs: usize,
    warmup: usize,
) -> Result<(Timing, Timing)> {
    let mut products = [
        Product::new(shape, false, threads)?,
        Product::new(shape, true, threads)?,
    ];
    let mut times = [Vec::with_capacity(runs), Vec::with_capacity(runs)];
    for run in 0..warmup + runs {
        for (product, times) in products.iter_mut().zip(&mut times) {
            let ms = product.run()?;
            if run >= warmup {
                times.push(ms);
            }
        }
    }
    let [f32_product, i8_product] = products;
    let [f32_times, i8_times] = times;
    Ok((
        Timing {
            kernel: f32_product.kernel,
            median_ms: median(f32_times),
        },
        Timing {
            kernel: i8_product.kernel,
            median_ms: median(i8_times),
        },
    ))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A fixed, reproducible sequence (64-bit LCG): the same operands on every machine.
fn lcg(len: usize) -> impl Iterator<Item = u64> {
    (0..len as u64).scan(0x2545_f491_4f6c_dd1d_u64, |s, _| {
        *s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Some(*s >> 33)
    })
}

/// i8 values in `min..=127`.
fn pseudo_random_i8(len: usize, min: i8, shape: [usize; 2]) -> Result<Tensor> {
    let span = (128 - min as i64) as u64;
    let values: Vec<i8> = lcg(len)
        .map(|x| (min as i64 + (x % span) as i64) as i8)
        .collect();
    Ok(tract_ndarray::Array2::from_shape_vec(shape, values)?.into_tensor())
}

/// f32 values in [-1, 1).
fn pseudo_random_f32(len: usize, shape: [usize; 2]) -> Result<Tensor> {
    let values: Vec<f32> = lcg(len).map(|x| (x % 2048) as f32 / 1024.0 - 1.0).collect();
    Ok(tract_ndarray::Array2::from_shape_vec(shape, values)?.into_tensor())
}

/// `kith-model gemm`: benchmarks every shape of `files` and prints one line per shape (a JSON
/// line each with `json`), then the MAC-weighted throughput of each precision over the models'
/// mix of shapes.
pub fn report(
    files: &[PathBuf],
    threads: usize,
    runs: usize,
    warmup: usize,
    json: bool,
) -> Result<()> {
    anyhow::ensure!(
        (1..=64).contains(&threads) && runs >= 1,
        "--threads must be 1..=64 and --runs >= 1"
    );
    let cpu = kith_runtime::model::tract_isa();
    let shapes = model_shapes(files)?;
    if !json {
        out!(
            "cpu: {} {} (level {}), {threads} thread(s), median of {runs} runs",
            cpu.arch,
            cpu.isa,
            cpu.level
        );
        out!(
            "{:>5} {:>5} {:>5} {:>5}  {:<28} {:>7}  {:<28} {:>7}  {:>6}",
            "m",
            "k",
            "n",
            "count",
            "f32 kernel",
            "GMAC/s",
            "i8 kernel",
            "GMAC/s",
            "i8/f32"
        );
    }
    let (mut macs, mut f32_ms, mut i8_ms) = (0u64, 0f64, 0f64);
    let mut ratios = Vec::with_capacity(shapes.len());
    for (shape, count) in &shapes {
        let (f, q) = bench_shape(shape, threads, runs, warmup)?;
        macs += shape.macs() * *count as u64;
        f32_ms += f.median_ms * *count as f64;
        i8_ms += q.median_ms * *count as f64;
        ratios.push(q.gmacs(shape) / f.gmacs(shape));
        if json {
            let value = serde_json::json!({
                "m": shape.m, "k": shape.k, "n": shape.n, "count": count, "threads": threads,
                "f32_kernel": f.kernel, "f32_gmacs": f.gmacs(shape),
                "i8_kernel": q.kernel, "i8_gmacs": q.gmacs(shape),
            });
            out!("{value}");
        } else {
            out!(
                "{:>5} {:>5} {:>5} {:>5}  {:<28} {:>7.1}  {:<28} {:>7.1}  {:>6.2}",
                shape.m,
                shape.k,
                shape.n,
                count,
                f.kernel,
                f.gmacs(shape),
                q.kernel,
                q.gmacs(shape),
                q.gmacs(shape) / f.gmacs(shape)
            );
        }
    }
    let (f32_gmacs, i8_gmacs) = (macs as f64 / (f32_ms * 1e6), macs as f64 / (i8_ms * 1e6));
    // Robust to a preemption spike on one shape, which the weighted total is not.
    let median_ratio = median(ratios);
    if json {
        let value = serde_json::json!({
            "all_shapes": true, "isa": cpu.isa, "level": cpu.level, "threads": threads,
            "macs": macs, "f32_gmacs": f32_gmacs, "i8_gmacs": i8_gmacs,
            "median_shape_i8_over_f32": median_ratio,
        });
        out!("{value}");
    } else {
        out!(
            "all shapes, weighted by count ({:.2} GMAC): f32 {f32_gmacs:.1} GMAC/s, i8 {i8_gmacs:.1} GMAC/s, i8/f32 {:.2}; median i8/f32 over the shapes {median_ratio:.2}",
            macs as f64 / 1e9,
            i8_gmacs / f32_gmacs
        );
    }
    Ok(())
}
