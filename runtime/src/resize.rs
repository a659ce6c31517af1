//! A faster f32 `Resize` for tract's graphs of fixed shape.
//!
//! tract 0.23.9's `Resize` resamples one axis at a time (`resample_axis`). On the innermost axis it
//! clears and accumulates one element at a time through slices of length 1, and every run it
//! copies its input and rebuilds its plans: the four bilinear resizes of the person detector's
//! feature pyramid took about a tenth of its run, FP32 or INT8 (docs/perf.md). [`ResampleF32`]
//! keeps the plans (tract's own `Resize::plan_axis`), reads the input in place and runs the
//! innermost axis as one loop over its outputs. Every value is computed with the same f32
//! operations in the same order as tract's, so the output is bit for bit the same.
//! [`speed_up_resize`] swaps it in for every f32 `Resize` whose shapes and scales are known.

use multiversion::multiversion;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ndarray::ArrayD;
use tract_onnx::tract_core::ops::nn::Resize;

/// tract's resampling plan for one axis (`AxisPlan`): per output index, the `window` input
/// indices it reads and their weights, or `extrapolated` (the output is 0).
#[derive(Debug, Clone, PartialEq)]
struct AxisPlan {
    axis: usize,
    window: usize,
    indices: Vec<usize>,
    weights: Vec<f32>,
    extrapolated: Vec<bool>,
}

/// `Resize` of an f32 input of fixed shape, see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct ResampleF32 {
    input_shape: TVec<usize>,
    /// The axes that change, in tract's order (first to last).
    plans: Vec<AxisPlan>,
}

impl Eq for ResampleF32 {}

/// Resamples axis `plan.axis` of a row-major `input` of shape `shape` into `output`, as tract's
/// `resample_axis` with an extrapolation value of 0.
#[multiversion(targets = "simd")]
fn resample(input: &[f32], shape: &[usize], plan: &AxisPlan, output: &mut [f32]) {
    let len_in = shape[plan.axis];
    let len_out = plan.extrapolated.len();
    let inner: usize = shape[plan.axis + 1..].iter().product();
    let window = plan.window;
    if len_in * inner == 0 || len_out * inner == 0 {
        return;
    }
    let taps = |x: usize| {
        let range = x * window..(x + 1) * window;
        plan.indices[range.clone()].iter().zip(&plan.weights[range])
    };
    for (src, dst) in input
        .chunks_exact(len_in * inner)
        .zip(output.chunks_exact_mut(len_out * inner))
    {
        if inner == 1 {
            for (x, d) in dst.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                if !plan.extrapolated[x] {
                    for (&i, &w) in taps(x) {
                        if w != 0.0 {
                            acc += w * src[i];
                        }
                    }
                }
                *d = acc;
            }
            continue;
        }
        for (x, dst) in dst.chunks_exact_mut(inner).enumerate() {
            dst.fill(0.0);
            if plan.extrapolated[x] {
                continue;
            }
            for (&i, &w) in taps(x) {
                if w == 0.0 {
                    continue;
                }
                for (d, s) in dst.iter_mut().zip(&src[i * inner..(i + 1) * inner]) {
                    *d += w * s;
                }
            }
        }
    }
}

impl Op for ResampleF32 {
    fn name(&self) -> StaticName {
        "ResampleF32".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let axes: Vec<String> = self
            .plans
            .iter()
            .map(|p| {
                format!(
                    "axis {}: {} -> {}",
                    p.axis,
                    self.input_shape[p.axis],
                    p.extrapolated.len()
                )
            })
            .collect();
        Ok(vec![axes.join(", ")])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for ResampleF32 {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].try_as_plain_ram()?.as_slice::<f32>()?;
        ensure!(
            inputs[0].shape() == &*self.input_shape,
            "ResampleF32: input of shape {:?}, expected {:?}",
            inputs[0].shape(),
            self.input_shape
        );
        let mut shape = self.input_shape.clone();
        let mut data: Option<Vec<f32>> = None;
        for plan in &self.plans {
            let source = data.as_deref().unwrap_or(input);
            let len_out = plan.extrapolated.len();
            let mut resampled = vec![0f32; source.len() / shape[plan.axis].max(1) * len_out];
            resample(source, &shape, plan, &mut resampled);
            data = Some(resampled);
            shape[plan.axis] = len_out;
        }
        let data = data.unwrap_or_else(|| input.to_vec());
        Ok(tvec!(ArrayD::from_shape_vec(&*shape, data)?
            .into_tensor()
            .into_tvalue()))
    }
}

impl TypedOp for ResampleF32 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type());
        let mut shape = self.input_shape.clone();
        for plan in &self.plans {
            shape[plan.axis] = plan.extrapolated.len();
        }
        Ok(tvec!(f32::fact(&*shape)))
    }

    tract_onnx::tract_core::as_op!();
}

/// The [`ResampleF32`] that computes what `node` computes, if it covers it: an f32 `Resize` whose
/// input and output shapes are fixed and whose scales, if given, are constant.
fn replacement(model: &TypedModel, node: &TypedNode) -> TractResult<Option<ResampleF32>> {
    let Some(op) = node.op_as::<Resize>() else {
        return Ok(None);
    };
    let input = model.outlet_fact(node.inputs[0])?;
    let output = &node.outputs[0].fact;
    if input.datum_type != f32::datum_type() || input.is_exotic() {
        return Ok(None);
    }
    let (Some(input_shape), Some(output_shape)) =
        (input.shape.as_concrete(), output.shape.as_concrete())
    else {
        return Ok(None);
    };
    // tract's scales: the scales input when it gives one per axis, else output / input
    let scales: Vec<f32> = match op.optional_scales_input.and_then(|i| node.inputs.get(i)) {
        Some(&scales) => match &model.outlet_fact(scales)?.konst {
            Some(t) if t.len() == input_shape.len() => {
                // anything but f32 scales stays tract's to judge
                match t
                    .try_as_plain_ram()
                    .ok()
                    .and_then(|t| t.as_slice::<f32>().ok())
                {
                    Some(scales) => scales.to_vec(),
                    None => return Ok(None),
                }
            }
            Some(_) => output_shape
                .iter()
                .zip(input_shape)
                .map(|(o, i)| *o as f32 / *i as f32)
                .collect(),
            None => return Ok(None),
        },
        None => output_shape
            .iter()
            .zip(input_shape)
            .map(|(o, i)| *o as f32 / *i as f32)
            .collect(),
    };
    let plans = scales
        .iter()
        .enumerate()
        .filter(|&(axis, &scale)| !(input_shape[axis] == output_shape[axis] && scale == 1.0))
        .map(|(axis, &scale)| {
            let plan = op.plan_axis(scale, input_shape[axis], output_shape[axis]);
            AxisPlan {
                axis,
                window: plan.window,
                indices: plan.indices,
                weights: plan.weights,
                extrapolated: plan.extrapolated,
            }
        })
        .collect();
    Ok(Some(ResampleF32 {
        input_shape: input_shape.into(),
        plans,
    }))
}

/// Replaces every f32 `Resize` of an optimised graph that [`ResampleF32`] covers; returns how many
/// changed. The values computed are the same. The scales and sizes inputs stay wired, unread.
pub fn speed_up_resize(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::swap_ops(model, |model, node| {
        Ok(replacement(model, node)?.map(|op| Box::new(op) as _))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{output_bits, shipped_model};
    use tract_onnx::tract_core::ops::nn::{CoordTransformer, Interpolator, Nearest};

    /// Values of both signs, zeros of both signs, large and tiny magnitudes.
    fn pattern(shape: &[usize]) -> Tensor {
        let len = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..len)
            .map(|i| match i % 11 {
                0 => -0.0,
                1 => 0.0,
                2 => 3.0e7 * if i % 3 == 0 { -1.0 } else { 1.0 },
                3 => 1.0e-30,
                _ => ((i * 7919) % 2003) as f32 / 97.0 - 10.0,
            })
            .collect();
        Tensor::from_shape(shape, &values).unwrap()
    }

    /// `model` with and without the pass gives bit-identical outputs on `inputs`, and the pass
    /// replaced `expected` nodes.
    fn check(model: TypedModel, inputs: &[Tensor], expected: usize, what: &str) {
        let mut patched = model.clone();
        assert_eq!(speed_up_resize(&mut patched).unwrap(), expected, "{what}");
        assert_eq!(
            output_bits(model, inputs),
            output_bits(patched, inputs),
            "{what}"
        );
    }

    /// Every interpolator and coordinate transform tract's `Resize` has, scales up, down, by
    /// fractions and per axis (the last axis alone too, so that its input still holds -0.0),
    /// against tract's own op, bit for bit.
    #[test]
    fn resample_matches_tract_bit_for_bit() {
        let transforms = [
            CoordTransformer::HalfPixel,
            CoordTransformer::AlignCorners,
            CoordTransformer::Asymmetric,
            CoordTransformer::PytorchHalfPixel,
            CoordTransformer::HalfPixelSymmetric,
            CoordTransformer::TfHalfPixelForNn,
        ];
        let interpolators = [
            (Interpolator::Linear, Nearest::Floor),
            (Interpolator::Cubic, Nearest::Floor),
            (Interpolator::Nearest, Nearest::Floor),
            (Interpolator::Nearest, Nearest::RoundPreferCeil),
        ];
        let scales = [
            [1.0f32, 1.0, 2.0, 2.0],
            [1.0, 1.0, 0.5, 0.5],
            [1.0, 1.0, 1.5, 0.75],
            [1.0, 2.0, 3.0, 1.0],
            [1.0, 1.0, 1.0, 2.5],
        ];
        let shape = [1usize, 3, 7, 10];
        for coord_transformer in &transforms {
            for (interpolator, nearest) in &interpolators {
                for scale in &scales {
                    let op = Resize {
                        coord_transformer: coord_transformer.clone(),
                        interpolator: interpolator.clone(),
                        nearest: *nearest,
                        optional_scales_input: Some(1),
                        optional_sizes_input: None,
                    };
                    let mut model = TypedModel::default();
                    let x = model.add_source("x", f32::fact(shape)).unwrap();
                    let s = model.add_const("scales", tensor1(scale)).unwrap();
                    let y = model.wire_node("resize", op, &[x, s]).unwrap();
                    model.select_output_outlets(&y).unwrap();
                    let what =
                        format!("{coord_transformer:?} {interpolator:?} {nearest:?} {scale:?}");
                    check(model, &[pattern(&shape)], 1, &what);
                }
            }
        }
    }

    /// The person detector's feature pyramid (bilinear, half-pixel, x2 and x0.5), FP32 and INT8:
    /// all four of its resizes replaced, its outputs unchanged bit for bit. On x86_64 only: under
    /// qemu its four detector runs cost about half a minute of CI, and the test above compares
    /// every resize configuration bit for bit on every target.
    #[test]
    #[cfg_attr(
        not(target_arch = "x86_64"),
        ignore = "x86_64 only: four detector runs"
    )]
    fn resample_pass_gives_bit_identical_detector_outputs() {
        for file in ["person-detector.onnx", "person-detector.int8.onnx"] {
            check(shipped_model(file), &[pattern(&[1, 3, 416, 416])], 4, file);
        }
    }
}
