//! A faster 2-D max-pool for tract's graphs, f32 and i8.
//!
//! tract 0.23.9's `OptMaxPool` pools a contiguous NCHW input by row spans (`try_row_spans`): per
//! output row, per kernel row, per kernel column, a running maximum over the span of output
//! columns that column reaches. That loop is compiled for the baseline CPU and walks strided
//! columns through an iterator, so it does not vectorise: the person detector's first max-pool
//! (32 x 208 x 208, 3x3, stride 2) took 2-4 ms a run, FP32 or INT8 (docs/perf.md). [`MaxPoolRows`]
//! runs the same loop in the same order, `max = if max < v { v } else { max }` starting from the
//! type's lowest value, compiled per SIMD level and with stride 2 as a loop over pairs, so the
//! output is bit for bit tract's (NaN and signed zeros included). [`speed_up_max_pool`] swaps it
//! in for every 2-D NCHW f32 or i8 `OptMaxPool` without index outputs, but f32 2x2 kernels, for
//! which tract has a path of its own.

use multiversion::multiversion;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{Pad, PadMode};
use tract_onnx::tract_core::ops::cnn::OptMaxPool;

/// tract's `OptMaxPool` on a contiguous NCHW input of fixed shape, see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPoolRows {
    input_shape: TVec<usize>,
    output_shape: TVec<usize>,
    /// Input height and width, output height and width.
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    /// Kernel height, vertical stride and dilation, padding before the first row.
    kh: usize,
    sh: usize,
    dh: usize,
    pt: isize,
    /// Horizontal stride.
    sw: usize,
    /// Per kernel column that reaches the input: the output columns `lo..hi` it covers and the
    /// input column of output column `lo` (tract's column spans).
    spans: Vec<(usize, usize, usize)>,
}

/// `row[i] = max(row[i], taps[i * stride])`, as tract's `fold_max`: the running maximum keeps its
/// value unless it compares less than the tap.
#[inline(always)]
fn fold_max<T: Copy + PartialOrd>(row: &mut [T], taps: &[T], stride: usize) {
    let keep = |o: &mut T, v: T| *o = if *o < v { v } else { *o };
    match stride {
        1 => row.iter_mut().zip(taps).for_each(|(o, &v)| keep(o, v)),
        2 => {
            // whole pairs as far as `taps` has them; the last output may have no partner
            let pairs = row.len().min(taps.len() / 2);
            for (o, pair) in row[..pairs].iter_mut().zip(taps.chunks_exact(2)) {
                keep(o, pair[0]);
            }
            if pairs < row.len() && 2 * pairs < taps.len() {
                keep(&mut row[pairs], taps[2 * pairs]);
            }
        }
        _ => row
            .iter_mut()
            .zip(taps.iter().step_by(stride))
            .for_each(|(o, &v)| keep(o, v)),
    }
}

/// The pooling of every plane of `input` into `output` (already filled with the lowest value).
#[inline(always)]
fn pool<T: Copy + PartialOrd>(op: &MaxPoolRows, input: &[T], output: &mut [T]) {
    let (h, w) = (op.h, op.w);
    for (image, out_image) in input
        .chunks_exact(h * w)
        .zip(output.chunks_exact_mut(op.oh * op.ow))
    {
        for (oy, row) in out_image.chunks_exact_mut(op.ow).enumerate() {
            for ky in 0..op.kh {
                let iy = (oy * op.sh + ky * op.dh) as isize - op.pt;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let irow = &image[iy as usize * w..(iy as usize + 1) * w];
                for &(lo, hi, start) in &op.spans {
                    fold_max(&mut row[lo..hi], &irow[start..], op.sw);
                }
            }
        }
    }
}

#[multiversion(targets = "simd")]
fn pool_f32(op: &MaxPoolRows, input: &[f32], output: &mut [f32]) {
    pool(op, input, output)
}

#[multiversion(targets = "simd")]
fn pool_i8(op: &MaxPoolRows, input: &[i8], output: &mut [i8]) {
    pool(op, input, output)
}

impl Op for MaxPoolRows {
    fn name(&self) -> StaticName {
        "MaxPoolRows".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} -> {:?}, kernel rows {} stride {}x{}",
            self.input_shape, self.output_shape, self.kh, self.sh, self.sw
        )])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for MaxPoolRows {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        ensure!(
            input.shape() == &*self.input_shape,
            "MaxPoolRows: input of shape {:?}, expected {:?}",
            input.shape(),
            self.input_shape
        );
        let dt = input.datum_type();
        let mut output = Tensor::zero_dt(dt, &self.output_shape)?;
        let source = input.try_as_plain_ram()?;
        let mut target = output.try_as_plain_ram_mut()?;
        if dt == f32::datum_type() {
            let out = target.as_slice_mut::<f32>()?;
            out.fill(f32::MIN);
            pool_f32(self, source.as_slice::<f32>()?, out);
        } else if dt.unquantized() == i8::datum_type() {
            let out = target.as_slice_mut::<i8>()?;
            out.fill(i8::MIN);
            pool_i8(self, source.as_slice::<i8>()?, out);
        } else {
            bail!("MaxPoolRows: {dt:?} input");
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for MaxPoolRows {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&*self.output_shape)))
    }

    tract_onnx::tract_core::as_op!();
}

/// The padding of `node`'s input, when that input is a `Pad` the max-pool can absorb: constant,
/// on the last two axes only, with a value that never wins (NaN or the type's lowest value and
/// below: tract's running maximum starts at the lowest value and keeps it unless it compares less),
/// read by nothing else. Then the max-pool reads the `Pad`'s input and skips the padded cells, as
/// it skips its own padding: the same output, without writing the padded copy.
fn absorbed_pad<'m>(
    model: &'m TypedModel,
    node: &TypedNode,
) -> TractResult<Option<(&'m TypedNode, [usize; 2])>> {
    let source = model.node(node.inputs[0].node);
    let Some(pad) = source.op_as::<Pad>() else {
        return Ok(None);
    };
    let PadMode::Constant(value) = &pad.mode else {
        return Ok(None);
    };
    let never_wins = if value.datum_type() == f32::datum_type() {
        value
            .cast_to_scalar::<f32>()
            .is_ok_and(|v| v.is_nan() || v <= f32::MIN)
    } else if value.datum_type() == i8::datum_type() {
        value.cast_to_scalar::<i8>().is_ok_and(|v| v == i8::MIN)
    } else {
        false
    };
    let rank = pad.pads.len();
    if !never_wins
        || rank < 2
        || pad.pads[..rank - 2].iter().any(|&p| p != (0, 0))
        || model.single_succ(source.id)?.map(|n| n.id) != Some(node.id)
    {
        return Ok(None);
    }
    Ok(Some((source, [pad.pads[rank - 2].0, pad.pads[rank - 1].0])))
}

/// The [`MaxPoolRows`] that computes what `node` computes, and the outlet it reads, if it covers
/// it: a 2-D `OptMaxPool` without index outputs on a contiguous NCHW (or CHW) f32 or i8 input of
/// fixed shape, possibly padded by an [`absorbed_pad`].
fn replacement(
    model: &TypedModel,
    node: &TypedNode,
) -> TractResult<Option<(MaxPoolRows, OutletId)>> {
    let Some(op) = node.op_as::<OptMaxPool>() else {
        return Ok(None);
    };
    let input = model.outlet_fact(node.inputs[0])?;
    let dt = input.datum_type.unquantized();
    if op.with_index_outputs.is_some()
        || op.pool_spec.data_format.c_is_last()
        || input.is_exotic()
        || !(dt == f32::datum_type() || dt == i8::datum_type())
    {
        return Ok(None);
    }
    let (Some(padded_shape), Some(output_shape)) = (
        input.shape.as_concrete(),
        node.outputs[0].fact.shape.as_concrete(),
    ) else {
        return Ok(None);
    };
    let geo = op.geometry.to_concrete(padded_shape)?;
    let (patch, ish) = (&geo.patch, &geo.input_shape);
    if patch.rank() != 2 {
        return Ok(None);
    }
    // the input as the pool sees it, before any pad is absorbed: contiguous NCHW
    let (padded_h, padded_w) = (ish.hw_dims()[0], ish.hw_dims()[1]);
    if *ish.w_stride() != 1 || *ish.h_stride() != padded_w || *ish.c_stride() != padded_h * padded_w
    {
        return Ok(None);
    }
    // tract has a path of its own for f32 2x2 kernels, which may keep the other zero of a tie
    // (arm64): it stays tract's
    if dt == f32::datum_type()
        && patch.spec.kernel_shape[..] == [2, 2]
        && patch.spec.dilations[..] == [1, 1]
    {
        return Ok(None);
    }
    let (mut pt, mut pl) = (patch.pad_before[0], patch.pad_before[1]);
    let (mut input_shape, mut reads): (TVec<usize>, OutletId) =
        (padded_shape.into(), node.inputs[0]);
    if let Some((pad, [top, left])) = absorbed_pad(model, node)? {
        reads = pad.inputs[0];
        let Some(shape) = model.outlet_fact(reads)?.shape.as_concrete() else {
            return Ok(None);
        };
        input_shape = shape.into();
        (pt, pl) = (pt + top, pl + left);
    }
    let rank = input_shape.len();
    let (h, w) = (input_shape[rank - 2], input_shape[rank - 1]);
    let spec = &patch.spec;
    let (oh, ow) = (patch.output_shape[0], patch.output_shape[1]);
    if h * w * oh * ow == 0 {
        return Ok(None);
    }
    let (kw, sw, dw) = (spec.kernel_shape[1], spec.strides[1], spec.dilations[1]);
    // tract's column spans (`try_row_spans`)
    let spans = (0..kw)
        .filter_map(|kx| {
            let offset = (kx * dw) as isize - pl as isize;
            let last = w as isize - 1 - offset;
            if last < 0 {
                return None;
            }
            let lo = if offset >= 0 {
                0
            } else {
                (-offset as usize).div_ceil(sw)
            };
            let hi = (last as usize / sw + 1).min(ow);
            (lo < hi).then(|| (lo, hi, ((lo * sw) as isize + offset) as usize))
        })
        .collect();
    let op = MaxPoolRows {
        input_shape,
        output_shape: output_shape.into(),
        h,
        w,
        oh,
        ow,
        kh: spec.kernel_shape[0],
        sh: spec.strides[0],
        dh: spec.dilations[0],
        pt: pt as isize,
        sw,
        spans,
    };
    Ok(Some((op, reads)))
}

/// Replaces every `OptMaxPool` of an optimised graph that [`MaxPoolRows`] covers, with the `Pad`
/// in front of it where it can absorb it; returns how many changed. The values computed are the
/// same.
pub fn speed_up_max_pool(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::apply_patches(model, |model, id| {
        let node = model.node(id);
        let Some((op, reads)) = replacement(model, node)? else {
            return Ok(None);
        };
        let mut patch = TypedModelPatch::default();
        let input = patch.tap_model(model, reads)?;
        let wire = patch.wire_node(&*node.name, op, &[input])?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), wire)?;
        Ok(Some(patch))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::output_bits;
    use tract_onnx::tract_core::ops::cnn::{MaxPool, PaddingSpec, PoolSpec};
    use tract_onnx::tract_core::ops::nn::DataFormat;

    /// f32 values with both zeros, NaN, infinities and ties; i8 values over the whole range.
    fn input(dt: DatumType, shape: &[usize]) -> Tensor {
        let len = shape.iter().product::<usize>();
        if dt == i8::datum_type() {
            let values: Vec<i8> = (0..len).map(|i| (i * 53 % 256) as u8 as i8).collect();
            return Tensor::from_shape(shape, &values).unwrap();
        }
        let values: Vec<f32> = (0..len)
            .map(|i| match i % 13 {
                0 => -0.0,
                1 => 0.0,
                2 => f32::NAN,
                3 => f32::NEG_INFINITY,
                4 => f32::INFINITY,
                5 => 1.0,
                _ => ((i * 7919) % 1009) as f32 / 50.0 - 10.0,
            })
            .collect();
        Tensor::from_shape(shape, &values).unwrap()
    }

    /// tract's `OptMaxPool` and [`MaxPoolRows`] agree bit for bit over kernels, strides,
    /// dilations and paddings (odd and even widths, a kernel column that reaches no input); f32
    /// 2x2 kernels are left to tract's own path.
    #[test]
    fn max_pool_matches_tract_bit_for_bit() {
        type Case = ([usize; 2], [usize; 2], [usize; 2], ([usize; 2], [usize; 2]));
        let cases: [Case; 6] = [
            ([3, 3], [2, 2], [1, 1], ([1, 1], [1, 1])),
            ([2, 2], [2, 2], [1, 1], ([0, 0], [0, 0])),
            ([3, 3], [1, 1], [1, 1], ([1, 1], [1, 1])),
            ([3, 3], [2, 2], [2, 2], ([2, 0], [1, 2])),
            ([5, 5], [3, 3], [1, 1], ([2, 2], [2, 2])),
            ([1, 4], [1, 3], [1, 1], ([0, 3], [0, 3])),
        ];
        for dt in [f32::datum_type(), i8::datum_type()] {
            for (kernel, strides, dilations, (before, after)) in cases {
                for shape in [[1usize, 3, 11, 13], [1, 2, 12, 8]] {
                    let spec = PoolSpec {
                        data_format: DataFormat::NCHW,
                        kernel_shape: kernel.to_vec().into(),
                        padding: PaddingSpec::Explicit(
                            before.to_vec().into(),
                            after.to_vec().into(),
                        ),
                        dilations: Some(dilations.to_vec().into()),
                        strides: Some(strides.to_vec().into()),
                        input_channels: shape[1],
                        output_channels: shape[1],
                    };
                    let op = MaxPool {
                        pool_spec: spec,
                        with_index_outputs: None,
                    };
                    let mut model = TypedModel::default();
                    let x = model.add_source("x", dt.fact(shape)).unwrap();
                    let y = model.wire_node("pool", op, &[x]).unwrap();
                    model.select_output_outlets(&y).unwrap();
                    let model = model.into_optimized().unwrap();
                    let mut fast = model.clone();
                    let what = format!("{dt:?} {kernel:?} {strides:?} {dilations:?} {before:?} {after:?} {shape:?}");
                    let tract_2x2 =
                        dt == f32::datum_type() && kernel == [2, 2] && dilations == [1, 1];
                    let expected = usize::from(!tract_2x2);
                    assert_eq!(speed_up_max_pool(&mut fast).unwrap(), expected, "{what}");
                    let x = input(dt, &shape);
                    assert_eq!(
                        output_bits(model, std::slice::from_ref(&x)),
                        output_bits(fast, &[x]),
                        "{what}"
                    );
                }
            }
        }
    }

    /// A `Pad` in front of the max-pool (the FP32 detector's -inf pad before its first max-pool)
    /// is absorbed when its value never wins, and kept otherwise; the outputs are tract's either
    /// way.
    #[test]
    fn a_pad_that_never_wins_is_absorbed() {
        use tract_onnx::tract_core::ops::array::{Pad, PadMode};
        for (value, absorbed) in [
            (f32::NEG_INFINITY, true),
            (f32::MIN, true),
            (f32::NAN, true),
            (0.0, false),
            (-3.0e38, false),
        ] {
            let shape = [1usize, 3, 11, 12];
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact(shape)).unwrap();
            let pad = Pad {
                pads: vec![(0, 0), (0, 0), (1, 2), (2, 1)],
                mode: PadMode::Constant(Arc::new(tensor0(value))),
            };
            let padded = model.wire_node("pad", pad, &[x]).unwrap();
            let spec = PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![3, 3],
                padding: PaddingSpec::Valid,
                dilations: None,
                strides: Some(tvec![2, 2]),
                input_channels: 3,
                output_channels: 3,
            };
            let op = MaxPool {
                pool_spec: spec,
                with_index_outputs: None,
            };
            let y = model.wire_node("pool", op, &padded).unwrap();
            model.select_output_outlets(&y).unwrap();
            let model = model.into_optimized().unwrap();
            let mut fast = model.clone();
            assert_eq!(speed_up_max_pool(&mut fast).unwrap(), 1, "{value}");
            let pads = fast.nodes().iter().filter(|n| n.op_is::<Pad>()).count();
            assert_eq!(pads, usize::from(!absorbed), "{value}");
            let x = input(f32::datum_type(), &shape);
            assert_eq!(
                output_bits(model, std::slice::from_ref(&x)),
                output_bits(fast, &[x]),
                "{value}"
            );
        }
    }
}
