//! A fused f32 layer normalisation over the last axis, for the chain tract leaves of one.
//!
//! tract 0.23.9 optimises an ONNX `LayerNormalization` (in GRITv2-S its affine part is folded
//! into the next product) into four nodes: a `Reduce<Sum>` over the last axis, a multiply of the
//! sums by `1 / C`, the subtraction of those means, and an `RmsNorm`, whose sum of squares is a
//! scalar loop except on AVX-512 CPUs (so on every ARM board too). GRITv2-S's 37 layer norms
//! cost about 3 ms of a run that way in either file on the AVX2 tier (docs/int8.md, "The layer
//! norms in one op"). [`LayerNormRows`] computes each row in one go while it is in the L1
//! cache: the sum, the mean as the sum times tract's `1 / C`, the differences, their sum of
//! squares, and the scale `1 / sqrt(sum / C + eps)`, tract's formula step for step. Only the
//! order in which the two sums add up differs (eight lanes here), so the outputs agree with
//! tract's to a few units in the last place of the row's scale, not bit for bit.
//! [`fuse_layer_norms`] swaps it in for every such chain.

use crate::lanes::row_sum;
use crate::passes::only_reader;
use multiversion::multiversion;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::{OptBinByScalar, TypedBinOp};
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm};

/// Layer normalisation of an f32 tensor over its last axis of `row_len` values, without the
/// affine part; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNormRows {
    row_len: usize,
    /// The reciprocal of the row length by which tract's graph multiplies the row sums.
    recip_len: f32,
    /// Added to the mean of squares under the root.
    eps: f32,
}

impl Eq for LayerNormRows {}

/// Normalises every `row_len` values of `data` in place, see [`LayerNormRows`].
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn normalise_rows(data: &mut [f32], row_len: usize, recip_len: f32, eps: f32) {
    let len = row_len as f32;
    for row in data.chunks_exact_mut(row_len) {
        let mean = row_sum(row, |x| x) * recip_len;
        for x in row.iter_mut() {
            *x -= mean;
        }
        let inv_std = (row_sum(row, |x| x * x) / len + eps).sqrt().recip();
        for x in row.iter_mut() {
            *x *= inv_std;
        }
    }
}

impl Op for LayerNormRows {
    fn name(&self) -> StaticName {
        "LayerNormRows".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("rows of {} eps: {}", self.row_len, self.eps)])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for LayerNormRows {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        // in place when nothing else holds the input (a copy where the residual still needs it)
        let mut output = input.into_tensor();
        {
            let mut plain = output.try_as_plain_ram_mut()?;
            let data = plain.as_slice_mut::<f32>()?;
            ensure!(
                data.len().is_multiple_of(self.row_len),
                "LayerNormRows: {} values are not rows of {}",
                data.len(),
                self.row_len
            );
            normalise_rows(data, self.row_len, self.recip_len, self.eps);
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for LayerNormRows {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(inputs[0].without_value()))
    }

    tract_onnx::tract_core::as_op!();
}

/// Whether `node` is tract's f32 binary op named `name` ("Mul", "Sub"): its broadcasting
/// `OptBinByScalar`, or the plain `TypedBinOp` it leaves on small tensors.
fn is_binary(node: &TypedNode, name: &str) -> bool {
    let by_scalar = node
        .op_as::<OptBinByScalar>()
        .is_some_and(|op| op.binop.name() == name);
    let plain = node
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.name() == name && op.1.is_none());
    by_scalar || plain
}

/// The patch that replaces the layer norm chain ending at the `RmsNorm` node `id` with one
/// [`LayerNormRows`]: `x - sum(x) * (1 / C)` normalised, every step over the last axis of an f32
/// `x` of a known shape, the intermediate values read by nothing else.
fn layer_norm_patch(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let rms_node = model.node(id);
    let Some(rms) = rms_node.op_as::<RmsNorm>() else {
        return Ok(None);
    };
    let sub = model.node(rms_node.inputs[0].node);
    if !is_binary(sub, "Sub") || sub.inputs.len() != 2 || only_reader(model, sub)?.is_none() {
        return Ok(None);
    }
    let (x, mean) = (sub.inputs[0], model.node(sub.inputs[1].node));
    if !is_binary(mean, "Mul") || mean.inputs.len() != 2 {
        return Ok(None);
    }
    let Some(sum_at) = mean
        .inputs
        .iter()
        .position(|i| model.outlet_fact(*i).is_ok_and(|f| f.konst.is_none()))
    else {
        return Ok(None);
    };
    let sum = model.node(mean.inputs[sum_at].node);
    let recip = model.outlet_fact(mean.inputs[1 - sum_at])?;
    let x_fact = model.outlet_fact(x)?;
    let Some(shape) = x_fact.shape.as_concrete() else {
        return Ok(None);
    };
    let last = shape.len().wrapping_sub(1);
    let sums_last = sum.op_as::<Reduce>().is_some_and(|r| {
        r.reducer == Reducer::Sum && r.axes[..] == [last] && sum.inputs[..] == [x]
    });
    let readers_alone = only_reader(model, mean)?.is_some_and(|n| n.id == sub.id)
        && only_reader(model, sum)?.is_some_and(|n| n.id == mean.id);
    let (Some(recip), Ok(eps)) = (recip.konst.as_ref(), rms.eps.cast_to_scalar::<f32>()) else {
        return Ok(None);
    };
    if x_fact.datum_type != f32::datum_type()
        || x_fact.is_exotic()
        || shape.is_empty()
        || shape[last] == 0
        || rms.axis != last
        || !sums_last
        || !readers_alone
        || recip.len() != 1
        || recip.datum_type() != f32::datum_type()
    {
        return Ok(None);
    }
    let op = LayerNormRows {
        row_len: shape[last],
        recip_len: recip.cast_to_scalar::<f32>()?,
        eps,
    };
    let mut patch = TypedModelPatch::default();
    let x = patch.tap_model(model, x)?;
    let wire = patch.wire_node(&*rms_node.name, op, &[x])?[0];
    patch.shunt_outside(model, OutletId::new(id, 0), wire)?;
    Ok(Some(patch))
}

/// Replaces every layer norm chain of an optimised graph with a [`LayerNormRows`]; returns how
/// many. The values agree with tract's to a few units in the last place (see the module
/// documentation).
pub fn fuse_layer_norms(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::apply_patches(model, layer_norm_patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{gritv2_inputs, output_bits, shipped_model};
    use tract_onnx::tract_core::ops::math::{mul, sub};

    /// The f32 values of every output of `model` on `inputs`.
    fn outputs(model: TypedModel, inputs: &[Tensor]) -> Vec<Vec<f32>> {
        output_bits(model, inputs)
            .into_iter()
            .map(|bits| bits.into_iter().map(f32::from_bits).collect())
            .collect()
    }

    /// The largest difference between two values of `a` and `b`.
    fn max_difference(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    }

    /// Rows of mixed sign and spread around an offset, one row of equal values (all differences
    /// zero: only `eps` keeps the scale finite).
    fn rows(shape: &[usize]) -> Tensor {
        let len = shape.iter().product::<usize>();
        let row_len = shape[shape.len() - 1];
        let values: Vec<f32> = (0..len)
            .map(|i| match i / row_len {
                1 => 3.25,
                r => ((i * 7919) % 2003) as f32 / 211.0 - 4.0 + (r % 7) as f32 * 0.5,
            })
            .collect();
        Tensor::from_shape(shape, &values).unwrap()
    }

    /// The chain tract leaves of a layer norm over the last axis of `shape`, optimised, with the
    /// input also read by a second output (a residual), as in GRITv2-S.
    fn layer_norm_graph(shape: &[usize]) -> TypedModel {
        let last = shape.len() - 1;
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(shape)).unwrap();
        let sum = model
            .wire_node("sum", Reduce::new(tvec![last], Reducer::Sum), &[x])
            .unwrap();
        let recip = tensor0(1.0 / shape[last] as f32)
            .broadcast_into_rank(shape.len())
            .unwrap();
        let recip = model.add_const("recip", recip).unwrap();
        let mean = model.wire_node("mean", mul(), &[sum[0], recip]).unwrap();
        let d = model.wire_node("d", sub(), &[x, mean[0]]).unwrap();
        let rms = RmsNorm {
            axis: last,
            eps: Arc::new(tensor0(1e-5f32)),
        };
        let y = model.wire_node("rms_norm", rms, &d).unwrap();
        let twice = model.wire_node("twice", mul(), &[x, x]).unwrap();
        model.select_output_outlets(&[y[0], twice[0]]).unwrap();
        model.into_optimized().unwrap()
    }

    /// Against tract's chain over rows of 3 to 448 values: every value within 1e-5 of the row's
    /// unit scale (measured: at most 1.1e-6).
    #[test]
    fn layer_norm_rows_match_tract() {
        for shape in [
            &[16, 49, 128][..],
            &[784, 128],
            &[3, 49, 448],
            &[5, 7],
            &[4, 3],
            &[2, 3, 64],
        ] {
            let model = layer_norm_graph(shape);
            let mut fused = model.clone();
            assert_eq!(fuse_layer_norms(&mut fused).unwrap(), 1, "{shape:?}");
            let input = [rows(shape)];
            let (tract, kith) = (outputs(model, &input), outputs(fused, &input));
            let error = max_difference(&tract[0], &kith[0]);
            assert!(error <= 1e-5, "{shape:?}: off by {error}");
            assert_eq!(tract[1], kith[1], "{shape:?}: the residual changed");
        }
    }

    /// A chain whose mean is also read elsewhere stays tract's.
    #[test]
    fn a_mean_read_elsewhere_stays_tract() {
        let mut model = layer_norm_graph(&[6, 32]);
        let mean = model.node_by_name("mean").unwrap().id;
        let outputs = [model.outputs.clone(), vec![OutletId::new(mean, 0)]].concat();
        model.select_output_outlets(&outputs).unwrap();
        assert_eq!(fuse_layer_norms(&mut model).unwrap(), 0);
    }

    /// GRITv2-S's 37 layer norms, in both files. The FP32 file's outputs stay within 1e-4 of
    /// tract's (measured: 1.8e-6 of outputs up to 3.1). The INT8 file's move by whole
    /// quantisation steps where a changed last place tips a rounding (0.09 of 3.1 here), as
    /// any change of summation order does; tests/int8.rs checks its agreement with FP32 with the
    /// pass in. On x86_64 only: the model loads cost seconds under qemu, and the tests above
    /// check the op itself on every target.
    #[test]
    #[cfg_attr(not(target_arch = "x86_64"), ignore = "x86_64 only: model loads")]
    fn gritv2_layer_norms_are_fused() {
        let inputs = gritv2_inputs();
        let mut int8 = shipped_model("gritv2-s.int8.onnx");
        assert_eq!(fuse_layer_norms(&mut int8).unwrap(), 37);
        let model = shipped_model("gritv2-s.fp32.onnx");
        let mut fused = model.clone();
        assert_eq!(fuse_layer_norms(&mut fused).unwrap(), 37);
        let (tract, kith) = (outputs(model, &inputs), outputs(fused, &inputs));
        for (a, b) in tract.iter().zip(&kith) {
            let error = max_difference(a, b);
            assert!(error <= 1e-4, "off by {error}");
        }
    }
}
