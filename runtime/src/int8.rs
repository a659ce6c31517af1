//! Graph passes that make tract's INT8 graphs pay, applied to the optimised graph when kith loads a
//! model (see docs/int8.md for the measurements behind them).
//!
//! tract 0.23.9 quantises and dequantises activations with scalar loops around a branchy
//! round-ties-to-even (`QuantizeLinearI8`, `DequantizeLinearF32`): in GRITv2-S's INT8 graph those
//! took about a quarter of the run. [`speed_up_quantisation`] swaps them for [`QuantizeI8`] and
//! [`DequantizeI8`], which compute the same values with loops the compiler vectorises.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ndarray::ArrayD;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::quant::{DequantizeLinearF32, QuantizeLinearI8};

/// 1.5 * 2^23: adding it to an f32 of magnitude below 2^22 rounds it to an integer, ties to even
/// (the default rounding mode), and leaves that integer in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// Rounds `v` (|v| < 2^22) to the nearest integer, ties to even, without a branch.
#[inline(always)]
fn round_ties_even_small(v: f32) -> i32 {
    ((v + ROUND_MAGIC).to_bits() as i32) - (ROUND_MAGIC.to_bits() as i32)
}

/// f32 -> i8 quantisation, `clamp(round_ties_even(x * scale) + zero_point, -128, 127)`, as tract's
/// `QuantizeLinearI8` (whose `scale` is already the reciprocal of ONNX's), vectorisable: clamp
/// first, then round by the magic-number addition. Where they differ, tract's is off: a NaN input
/// gives -128 here (`zero_point` in tract), and with a non-zero zero point, |x * scale| >= 2^31
/// saturates here where tract's i32 addition wraps around.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeI8 {
    pub scale: f32,
    pub zero_point: i8,
}

impl Eq for QuantizeI8 {}

impl QuantizeI8 {
    fn quantize(&self, xs: &[f32]) -> Vec<i8> {
        let zp = self.zero_point as i32;
        let (lo, hi) = ((-128 - zp) as f32, (127 - zp) as f32);
        let scale = self.scale;
        xs.iter()
            .map(|&x| (round_ties_even_small((x * scale).max(lo).min(hi)) + zp) as i8)
            .collect()
    }
}

impl Op for QuantizeI8 {
    fn name(&self) -> StaticName {
        "QuantizeI8".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "scale: {} zero_point: {}",
            self.scale, self.zero_point
        )])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for QuantizeI8 {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let ys = self.quantize(input.try_as_plain_ram()?.as_slice::<f32>()?);
        let out = ArrayD::from_shape_vec(input.shape(), ys)?.into_tensor();
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for QuantizeI8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(i8::fact(inputs[0].shape.clone())))
    }

    tract_onnx::tract_core::as_op!();
}

/// i8 -> f32 dequantisation, `(x - zero_point) * scale`, as tract's `DequantizeLinearF32`.
#[derive(Debug, Clone, PartialEq)]
pub struct DequantizeI8 {
    pub scale: f32,
    pub zero_point: i32,
}

impl Eq for DequantizeI8 {}

impl DequantizeI8 {
    fn dequantize(&self, xs: &[i8]) -> Vec<f32> {
        let (zp, scale) = (self.zero_point, self.scale);
        xs.iter().map(|&x| (x as i32 - zp) as f32 * scale).collect()
    }
}

impl Op for DequantizeI8 {
    fn name(&self) -> StaticName {
        "DequantizeI8".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "scale: {} zero_point: {}",
            self.scale, self.zero_point
        )])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for DequantizeI8 {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let ys = self.dequantize(input.try_as_plain_ram()?.as_slice::<i8>()?);
        let out = ArrayD::from_shape_vec(input.shape(), ys)?.into_tensor();
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for DequantizeI8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type.unquantized() == i8::datum_type());
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    tract_onnx::tract_core::as_op!();
}

/// The vectorised op that computes what `node` computes, if `node` is an f32 -> i8
/// `QuantizeLinearI8` or an i8 -> f32 `DequantizeLinearF32`.
fn replacement(model: &TypedModel, node: &TypedNode) -> TractResult<Option<Box<dyn TypedOp>>> {
    let Some(&input) = node.inputs.first() else {
        return Ok(None);
    };
    let input = model.outlet_fact(input)?.datum_type;
    if let Some(q) = node
        .op_as::<ElementWiseOp>()
        .and_then(|op| op.0.downcast_ref::<QuantizeLinearI8>())
    {
        if input == f32::datum_type() && node.outputs[0].fact.datum_type == i8::datum_type() {
            return Ok(Some(Box::new(QuantizeI8 {
                scale: q.scale,
                zero_point: q.zero_point,
            })));
        }
    }
    if let Some(dq) = node.op_as::<DequantizeLinearF32>() {
        if input.unquantized() == i8::datum_type() {
            return Ok(Some(Box::new(DequantizeI8 {
                scale: dq.scale,
                zero_point: dq.zero_point,
            })));
        }
    }
    Ok(None)
}

/// Replaces every f32 -> i8 quantisation and i8 -> f32 dequantisation of an optimised graph with
/// its vectorised equivalent; returns how many nodes changed. The values computed are the same.
pub fn speed_up_quantisation(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        if let Some(op) = replacement(model, model.node(id))? {
            model.node_mut(id).op = op;
            replaced += 1;
        }
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::quant::quantize_linear_i8;

    /// Runs `model` on `input`, returning its single output.
    fn run(model: TypedModel, input: Tensor) -> Tensor {
        let plan = model.into_runnable().unwrap();
        plan.run(tvec!(input.into_tvalue()))
            .unwrap()
            .remove(0)
            .into_tensor()
    }

    trait F32Values {
        fn as_slice_f32(&self) -> Vec<f32>;
    }

    impl F32Values for Tensor {
        fn as_slice_f32(&self) -> Vec<f32> {
            self.try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec()
        }
    }

    /// f32 values covering ties (k + 0.5 after scaling), both saturation ends, zero and
    /// ordinary values; the huge ones only for zero point 0, where tract's own i32 arithmetic
    /// does not wrap around.
    fn probe_values(scale: f32, zero_point: i8) -> Vec<f32> {
        let mut xs: Vec<f32> = (-300..=300).map(|i| i as f32 * 0.5 / scale).collect();
        xs.extend((0..2000).map(|i| ((i * 7919) % 4001) as f32 * 0.1234 - 246.0));
        xs.extend([0.0, -0.0, 1e5, -1e5]);
        if zero_point == 0 {
            xs.extend([1e9, -1e9, f32::MAX, f32::MIN, f32::INFINITY, -f32::INFINITY]);
        }
        xs
    }

    /// `x -> QuantizeLinearI8 -> DequantizeLinearF32` optimised as kith loads graphs.
    fn qdq_model(scale: f32, zero_point: i8, len: usize) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([len])).unwrap();
        let q = model
            .wire_node("q", quantize_linear_i8(scale, zero_point), &[x])
            .unwrap();
        let dq = model
            .wire_node(
                "dq",
                DequantizeLinearF32::new(1.0 / scale, zero_point as i32),
                &q,
            )
            .unwrap();
        model.select_output_outlets(&dq).unwrap();
        model.into_optimized().unwrap()
    }

    #[test]
    fn quantise_and_dequantise_match_tract_exactly() {
        for (scale, zp) in [(3.7f32, 0i8), (0.25, 0), (127.0 / 6.0, 0), (10.0, -5), (1.0, 17)] {
            let xs = probe_values(scale, zp);
            let input = tensor1(&xs);
            let stock = qdq_model(scale, zp, xs.len());
            let mut fast = stock.clone();
            assert_eq!(speed_up_quantisation(&mut fast).unwrap(), 2);
            assert!(fast.nodes().iter().any(|n| n.op_is::<QuantizeI8>()));
            assert!(fast.nodes().iter().any(|n| n.op_is::<DequantizeI8>()));
            let want = run(stock, input.clone());
            let got = run(fast, input);
            assert_eq!(got.shape(), want.shape());
            let (got, want) = (got.as_slice_f32(), want.as_slice_f32());
            for ((x, g), w) in xs.iter().zip(&got).zip(&want) {
                assert_eq!(g.to_bits(), w.to_bits(), "x {x} scale {scale} zp {zp}");
            }
        }
    }

    #[test]
    fn quantiser_rounds_ties_to_even_and_saturates() {
        let q = QuantizeI8 {
            scale: 1.0,
            zero_point: 0,
        };
        assert_eq!(
            q.quantize(&[0.5, 1.5, 2.5, -0.5, -1.5, 126.5, 127.5, 300.0, -128.5, -1e30]),
            [0, 2, 2, 0, -2, 126, 127, 127, -128, -128]
        );
    }

    #[test]
    fn other_quantisers_are_left_alone() {
        // u8 quantisation keeps tract's op.
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([4])).unwrap();
        let q = model
            .wire_node(
                "q",
                tract_onnx::tract_core::ops::quant::quantize_linear_u8(2.0, 128),
                &[x],
            )
            .unwrap();
        model.select_output_outlets(&q).unwrap();
        let mut model = model.into_optimized().unwrap();
        assert_eq!(speed_up_quantisation(&mut model).unwrap(), 0);
    }
}
