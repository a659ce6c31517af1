//! A faster f32 `Softmax` over the last axes, for rows tract runs one at a time.
//!
//! tract 0.23.9 runs an f32 softmax row by row through its per-row kernels (the row max, then
//! `exp(x - max)` summed, then a multiply by `1 / sum`), unless its host has a whole-buffer row
//! kernel and the row length is a multiple of 4 (aarch64 has one, x86_64 none). Each kernel call
//! pads the row into a scratch buffer, so a row costs about 150-250 ns on x86_64 whatever its
//! length: the INT8 person detector's softmax over 3549 x 4 rows of 11 distance bins took 2.1 ms of
//! its 32 ms run (AVX-512 VNNI tier), and GRITv2-S's 19 attention softmaxes (rows of 49, 64 and
//! 196) 3.7 ms (AVX2 tier; docs/perf.md). [`SoftmaxRowsF32`] takes each step over a block of whole
//! rows at a time: the row maxima and `x - max` in one vectorised pass, tract's own `Softmax2`
//! kernel once over the block (so every `exp` is the value tract computes), then the row sums and
//! the scale. Only the order in which a row's exponentials are summed differs from tract's, so the
//! outputs agree with tract's to a few units in the last place on rows as short as the models'
//! (more on rows of thousands, where the order of a long sum shows), not bit for bit.
//! [`speed_up_softmax`] swaps it in wherever tract would take its per-row path.

use crate::lanes::{row_max, row_sum};
use multiversion::multiversion;
use tract_linalg::reduce::MapReduce;
use tract_linalg::routines::Func;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

/// About how many values [`SoftmaxRowsF32`] takes through its three steps at a time: a block
/// stays in the L1 cache between them.
const BLOCK_VALUES: usize = 4096;

// The loops below are compiled for AVX2 at most on x86_64, not AVX-512: with AVX-512 clones, on
// an AVX-512 CPU told to use tract's AVX2 kernels (`TRACT_CPU_ISA=-avx512f,-avx512vnni` on a Zen 4
// EPYC), `perf annotate` put 7 % of the AVX2 int8 kernel's time on its MXCSR loads (0.2 % without)
// and GRITv2-S INT8's int8 products took 8-37 % longer (docs/perf.md). kith's tract-linalg no
// longer touches MXCSR in its integer kernels (docs/int8.md, "Fourth step"), but the Zen 4 case
// was not measured again; these loops are light, and AVX2 costs them nothing measurable.

/// Softmax of an f32 tensor over its last axes, `row_len` values per row (their product); see
/// the module documentation.
#[derive(Debug, Clone)]
pub struct SoftmaxRowsF32 {
    row_len: usize,
    /// tract's `exp(x - max)`-and-sum kernel for this host.
    exp_sum: Box<dyn MapReduce<f32, f32>>,
}

impl PartialEq for SoftmaxRowsF32 {
    fn eq(&self, other: &Self) -> bool {
        self.row_len == other.row_len
    }
}

impl Eq for SoftmaxRowsF32 {}

/// Subtracts from every row of `block` its maximum.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn subtract_row_max(block: &mut [f32], row_len: usize) {
    for row in block.chunks_exact_mut(row_len) {
        let max = row_max(row);
        for x in row.iter_mut() {
            *x -= max;
        }
    }
}

/// Divides every row of `block` by its sum, as a multiply by the sum's reciprocal (as tract).
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn normalise_rows(block: &mut [f32], row_len: usize) {
    for row in block.chunks_exact_mut(row_len) {
        let scale = row_sum(row, |x| x).recip();
        for x in row.iter_mut() {
            *x *= scale;
        }
    }
}

impl SoftmaxRowsF32 {
    fn new(row_len: usize) -> TractResult<Self> {
        ensure!(row_len > 0, "SoftmaxRowsF32: rows of no value");
        Ok(SoftmaxRowsF32 {
            row_len,
            exp_sum: Func::Softmax2.map_reduce_f32()?,
        })
    }

    /// Softmax in place over every `row_len` values of `data`.
    fn run(&self, data: &mut [f32]) -> TractResult<()> {
        ensure!(
            data.len().is_multiple_of(self.row_len),
            "SoftmaxRowsF32: {} values are not rows of {}",
            data.len(),
            self.row_len
        );
        let rows_per_block = (BLOCK_VALUES / self.row_len).max(1);
        for block in data.chunks_mut(rows_per_block * self.row_len) {
            subtract_row_max(block, self.row_len);
            // exp(x - 0), the value tract's per-row call gives exp(x - max); the sum is unused
            self.exp_sum.run_with_params(block, 0.0)?;
            normalise_rows(block, self.row_len);
        }
        Ok(())
    }
}

impl Op for SoftmaxRowsF32 {
    fn name(&self) -> StaticName {
        "SoftmaxRowsF32".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("rows of {}", self.row_len)])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for SoftmaxRowsF32 {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        // in place when nothing else holds the input, as tract's own op
        let mut output = input.into_tensor();
        {
            let mut plain = output.try_as_plain_ram_mut()?;
            self.run(plain.as_slice_mut::<f32>()?)?;
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for SoftmaxRowsF32 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(inputs[0].without_value()))
    }

    tract_onnx::tract_core::as_op!();
}

/// Whether tract runs a softmax over rows of `row_len` with its whole-buffer row kernel rather
/// than row by row.
fn tract_has_row_kernel(row_len: usize) -> bool {
    row_len.is_multiple_of(4) && tract_linalg::routines::softmax_rows_f32().is_some()
}

/// The [`SoftmaxRowsF32`] that computes what `node` computes, if it covers it and tract would run
/// it row by row: an f32 (not quantised) softmax over the last axes of a fixed shape, where tract
/// has no whole-buffer row kernel for it.
fn replacement(model: &TypedModel, node: &TypedNode) -> TractResult<Option<SoftmaxRowsF32>> {
    let Some(op) = node.op_as::<Softmax>() else {
        return Ok(None);
    };
    let input = model.outlet_fact(node.inputs[0])?;
    if op.kind != SoftmaxKind::Softmax
        || op.quant_output_dt.is_some()
        || input.datum_type != f32::datum_type()
        || input.is_exotic()
    {
        return Ok(None);
    }
    let Some(shape) = input.shape.as_concrete() else {
        return Ok(None);
    };
    let mut axes: Vec<usize> = op.axes.to_vec();
    axes.sort_unstable();
    axes.dedup();
    let rank = shape.len();
    let trailing = !axes.is_empty()
        && axes.len() <= rank
        && axes
            .iter()
            .enumerate()
            .all(|(i, &a)| a == rank - axes.len() + i);
    if !trailing {
        return Ok(None);
    }
    let row_len: usize = axes.iter().map(|&a| shape[a]).product();
    if row_len == 0 || tract_has_row_kernel(row_len) {
        return Ok(None);
    }
    Ok(Some(SoftmaxRowsF32::new(row_len)?))
}

/// Replaces every softmax of an optimised graph that [`SoftmaxRowsF32`] covers; returns how many
/// changed. The values agree with tract's to a few units in the last place (see the module
/// documentation).
pub fn speed_up_softmax(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::swap_ops(model, |model, node| {
        Ok(replacement(model, node)?.map(|op| Box::new(op) as _))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{output_bits, shipped_model};

    /// The first output of `model` on `inputs`, through the passes' shared runner.
    fn first_output(model: TypedModel, inputs: &[Tensor]) -> Vec<f32> {
        output_bits(model, inputs)[0]
            .iter()
            .map(|&bits| f32::from_bits(bits))
            .collect()
    }

    /// Largest difference between `a` and `b` in units of `f32::EPSILON` of the larger magnitude
    /// (at least 1e-30, so that tiny values compare absolutely).
    fn max_relative_error(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / (x.abs().max(y.abs()).max(1e-30) * f32::EPSILON))
            .fold(0.0, f32::max)
    }

    /// Logits of both signs and of small and large spread, a row of equal values, and a row with
    /// a value far below the rest (its exponential underflows to 0).
    fn logits(shape: &[usize]) -> Tensor {
        let len = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..len)
            .map(|i| match i % 37 {
                5 => -150.0,
                _ if (i / 13) % 7 == 3 => 2.5,
                _ => ((i * 7919) % 2003) as f32 / 97.0 - 10.0,
            })
            .collect();
        Tensor::from_shape(shape, &values).unwrap()
    }

    /// A graph of one softmax over `axes` of an input of `shape`.
    fn softmax_graph(shape: &[usize], axes: &[usize]) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(shape)).unwrap();
        let op = Softmax::new(axes.into(), None, SoftmaxKind::Softmax);
        let y = model.wire_node("softmax", op, &[x]).unwrap();
        model.select_output_outlets(&y).unwrap();
        model
    }

    /// Against tract's own op, over rows of 1 to 5001 values (several rows per block, and one),
    /// one or two trailing axes: every value within 8 units in the last place, or half the square
    /// root of the row length where that is more (measured: at most 4.3 on rows of up to 200,
    /// 18.5 on 5001), each row summing to 1.
    #[test]
    fn softmax_rows_match_tract() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[3549, 4, 11], &[2]),
            (&[8, 49, 49], &[2]),
            (&[2, 3, 7, 5], &[2, 3]),
            (&[5, 1], &[1]),
            (&[3, 200], &[1]),
            (&[1, 2, 64, 64], &[3]),
            (&[4, 196], &[1]),
            (&[6, 33], &[1]),
            // rows longer than a block: one row per block
            (&[2, 5001], &[1]),
        ];
        for &(shape, axes) in cases {
            let model = softmax_graph(shape, axes);
            let mut fast = model.clone();
            let replaced = speed_up_softmax(&mut fast).unwrap();
            let row_len: usize = axes.iter().map(|&a| shape[a]).product();
            assert_eq!(
                replaced,
                usize::from(!tract_has_row_kernel(row_len)),
                "{shape:?}"
            );
            let input = [logits(shape)];
            let (tract, kith) = (first_output(model, &input), first_output(fast, &input));
            // a long row's sum moves with the order it is added in, by about its square root
            let allowed = ((row_len as f32).sqrt() / 2.0).max(8.0);
            let error = max_relative_error(&tract, &kith);
            assert!(error <= allowed, "{shape:?} over {axes:?}: {error} ulp");
            for row in kith.chunks(row_len) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{shape:?}: a row sums to {sum}");
            }
        }
    }

    /// A softmax over a leading axis and a log-softmax stay tract's.
    #[test]
    fn other_softmaxes_stay_tract() {
        let mut model = softmax_graph(&[4, 11], &[0]);
        assert_eq!(speed_up_softmax(&mut model).unwrap(), 0);
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([4, 11])).unwrap();
        let op = Softmax::new(tvec![1], None, SoftmaxKind::LogSoftmax);
        let y = model.wire_node("log_softmax", op, &[x]).unwrap();
        model.select_output_outlets(&y).unwrap();
        assert_eq!(speed_up_softmax(&mut model).unwrap(), 0);
    }

    /// The shipped models' softmaxes, all of them on x86_64 (tract has no whole-buffer row
    /// kernel there): the detector's over its distance bins and GRITv2-S's 19 attention ones. On
    /// x86_64 only: the model loads cost seconds under qemu, and the tests above check the op
    /// itself on every target.
    #[test]
    #[cfg_attr(not(target_arch = "x86_64"), ignore = "x86_64 only: model loads")]
    fn shipped_models_softmaxes_are_swapped() {
        for (file, expected) in [
            ("person-detector.onnx", 1),
            ("person-detector.int8.onnx", 1),
            ("gritv2-s.fp32.onnx", 19),
            ("gritv2-s.int8.onnx", 19),
        ] {
            let mut model = shipped_model(file);
            assert_eq!(speed_up_softmax(&mut model).unwrap(), expected, "{file}");
        }
    }
}
