//! A faster f32 depthwise 2-D convolution (NCHW or CHW, one filter per channel), for GRITv2-S's 15
//! depthwise convolutions.
//!
//! tract 0.23.9 runs a depthwise convolution (`DepthWiseConv`) output point by output point,
//! walking its zones of valid taps: about 6.5 GMAC/s on GRITv2-S's 56x56 planes and 1-2.5 on its
//! 7x7 and 14x14 ones (AVX2 tier), so the 0.8 % of its MACs took 6.5 % of the INT8 file's run
//! (docs/perf.md). [`DepthwiseRowsF32`] copies each channel into a zero-padded plane once, then
//! computes blocks of up to 32 output points of a row together: each starts at the bias, and each
//! tap adds its weight times the input under it, in tract's order (kernel row, then column). Kernel
//! rows over the padding are skipped, as tract skips them; kernel columns over it add a zero,
//! which leaves every sum as skipping would whenever the channel's weights are finite and its bias
//! is not -0.0 (proof at [`adds_nothing_on_the_padding`]); a channel where that does not hold is
//! computed point by point, skipping. So the values are tract's, bit for bit.
//! [`speed_up_depthwise`] swaps it in for the convolutions tract would lower to `DepthWiseConv`.

use multiversion::multiversion;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// Where a depthwise convolution reads: the input plane, the kernel, strides and the padding
/// before each spatial axis, and the output plane it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Geometry {
    input: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    pad_before: [usize; 2],
    output: [usize; 2],
}

impl Geometry {
    /// The output points `o` (along one axis) at which kernel offset `k` reads inside the input:
    /// `0 <= o * stride + k - pad < input`.
    fn valid(&self, axis: usize, k: usize) -> std::ops::Range<usize> {
        let (stride, pad, input) = (self.strides[axis], self.pad_before[axis], self.input[axis]);
        let first = pad.saturating_sub(k).div_ceil(stride);
        // o * stride + k - pad <= input - 1
        let end = if input + pad > k {
            (input + pad - k - 1) / stride + 1
        } else {
            0
        };
        first.min(self.output[axis])..end.min(self.output[axis])
    }
}

/// What kernel column `kx` adds to an output row: the output points at which it reads inside the
/// input, and where output point 0 reads in a row of the padded plane (see [`PaddedPlane`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ColumnTap {
    outputs: std::ops::Range<usize>,
    base: usize,
}

/// Depthwise convolution of an f32 `[N, C, H, W]` or `[C, H, W]` tensor with a `[C, 1, KH, KW]`
/// kernel and a bias of `C` values (or one); see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DepthwiseRowsF32 {
    geometry: Geometry,
    /// For each kernel row, the output rows at which it reads inside the input.
    rows: Vec<std::ops::Range<usize>>,
    /// For each kernel column, see [`ColumnTap`].
    columns: Vec<ColumnTap>,
    plane: PaddedPlane,
}

/// How a channel's input is copied before the taps read it: each row with the padding before it
/// and zeros after it, as wide as the output reads, then split by phase (columns 0, stride,
/// 2 * stride, ..., then 1, 1 + stride, ...), so that the columns output points 0, 1, 2, ... read
/// through one tap are consecutive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PaddedPlane {
    /// Length of a padded row before the split.
    width: usize,
    /// Where each phase starts in a split row.
    phase_starts: Vec<usize>,
}

impl PaddedPlane {
    fn new(g: &Geometry) -> Self {
        let stride = g.strides[1];
        // output point o reads padded columns o * stride .. o * stride + kernel; a row narrower
        // than LANES is computed as LANES points
        let width = (g.output[1].max(LANES) - 1) * stride + g.kernel[1];
        let width = width.max(g.pad_before[1] + g.input[1]);
        let phase_starts = (0..stride)
            .scan(0, |start, p| {
                let this = *start;
                *start += width.saturating_sub(p).div_ceil(stride);
                Some(this)
            })
            .collect();
        PaddedPlane {
            width,
            phase_starts,
        }
    }

    /// The position of padded column `column` in a split row.
    fn position(&self, column: usize, stride: usize) -> usize {
        self.phase_starts[column % stride] + column / stride
    }

    /// Copies `input` (H x W) into `out` (H split rows of `self.width`).
    fn fill(&self, g: &Geometry, input: &[f32], out: &mut [f32]) {
        let (width, stride, pad) = (g.input[1], g.strides[1], g.pad_before[1]);
        for (row, split) in input
            .chunks_exact(width)
            .zip(out.chunks_exact_mut(self.width))
        {
            if stride == 1 {
                split[..pad].fill(0.0);
                split[pad..pad + width].copy_from_slice(row);
                split[pad + width..].fill(0.0);
            } else {
                split.fill(0.0);
                for (phase, &phase_start) in self.phase_starts.iter().enumerate() {
                    // the padded columns phase + j * stride that hold input column c >= 0
                    let first = pad.saturating_sub(phase).div_ceil(stride);
                    let column = phase + first * stride - pad;
                    let values = row.iter().skip(column).step_by(stride);
                    for (out, &value) in split[phase_start + first..].iter_mut().zip(values) {
                        *out = value;
                    }
                }
            }
        }
    }
}

impl DepthwiseRowsF32 {
    fn new(geometry: Geometry) -> Self {
        let plane = PaddedPlane::new(&geometry);
        let columns = (0..geometry.kernel[1])
            .map(|kx| ColumnTap {
                outputs: geometry.valid(1, kx),
                base: plane.position(kx, geometry.strides[1]),
            })
            .collect();
        let rows = (0..geometry.kernel[0])
            .map(|ky| geometry.valid(0, ky))
            .collect();
        DepthwiseRowsF32 {
            geometry,
            rows,
            columns,
            plane,
        }
    }
}

/// Output points computed together: one 256-bit vector of f32.
const LANES: usize = 8;

/// One channel: `output` (OH x OW) from `padded` (the channel's [`PaddedPlane`]), `taps`
/// (KH x KW) and `bias`.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn convolve_plane(
    op: &DepthwiseRowsF32,
    padded: &[f32],
    taps: &[f32],
    bias: f32,
    output: &mut [f32],
) {
    let g = &op.geometry;
    if !adds_nothing_on_the_padding(taps, bias) {
        return convolve_plane_skipping(op, padded, taps, bias, output);
    }
    let row_len = op.plane.width;
    for (oy, row) in output.chunks_exact_mut(g.output[1]).enumerate() {
        // the padded input rows that the kernel rows valid at `oy` read
        let mut lines: TVec<(usize, &[f32])> = tvec![];
        for (ky, rows) in op.rows.iter().enumerate() {
            if rows.contains(&oy) {
                let iy = oy * g.strides[0] + ky - g.pad_before[0];
                lines.push((ky, &padded[iy * row_len..(iy + 1) * row_len]));
            }
        }
        // blocks of points whose sums are independent of each other; a last block that
        // overlaps the one before gives the points they share the same values again
        match row.len() {
            n if n >= 4 * LANES => row_blocks::<{ 4 * LANES }>(op, &lines, taps, bias, row),
            n if n >= 2 * LANES => row_blocks::<{ 2 * LANES }>(op, &lines, taps, bias, row),
            n if n >= LANES => row_blocks::<LANES>(op, &lines, taps, bias, row),
            n => {
                let mut wide = [0f32; LANES];
                points::<LANES>(op, &lines, taps, bias, 0, &mut wide);
                row.copy_from_slice(&wide[..n]);
            }
        }
    }
}

/// `row` in blocks of `N` points (the last one moved back to end at the row's end), `N` at most
/// the row's length.
#[inline(always)]
fn row_blocks<const N: usize>(
    op: &DepthwiseRowsF32,
    lines: &[(usize, &[f32])],
    taps: &[f32],
    bias: f32,
    row: &mut [f32],
) {
    let mut ox = 0;
    while ox + N <= row.len() {
        points::<N>(op, lines, taps, bias, ox, row);
        ox += N;
    }
    if ox < row.len() {
        points::<N>(op, lines, taps, bias, row.len() - N, row);
    }
}

/// `row[ox..ox + N]`: the bias, then each tap's product added in kernel order, the taps over the
/// padding reading zeros (see [`adds_nothing_on_the_padding`]).
#[inline(always)]
fn points<const N: usize>(
    op: &DepthwiseRowsF32,
    lines: &[(usize, &[f32])],
    taps: &[f32],
    bias: f32,
    ox: usize,
    row: &mut [f32],
) {
    let kernel_w = op.geometry.kernel[1];
    let mut sums = [bias; N];
    for &(ky, line) in lines {
        for (kx, tap) in op.columns.iter().enumerate() {
            let weight = taps[ky * kernel_w + kx];
            for (sum, &x) in sums.iter_mut().zip(&line[tap.base + ox..tap.base + ox + N]) {
                *sum += weight * x;
            }
        }
    }
    row[ox..ox + N].copy_from_slice(&sums);
}

/// Whether adding `weight * 0.0` for the taps over the padding leaves every sum of a channel as
/// skipping them does (tract skips them). It does when every weight is finite (the product is
/// then a zero) and the bias is not -0.0: adding a zero changes a sum only if the sum is -0.0, and
/// a sum that starts anywhere but -0.0 never becomes -0.0 (with rounding to nearest, `x + y` is
/// -0.0 only when both are).
fn adds_nothing_on_the_padding(taps: &[f32], bias: f32) -> bool {
    bias.to_bits() != (-0.0f32).to_bits() && taps.iter().all(|w| w.is_finite())
}

/// One channel point by point, each valid tap added in kernel order and the others skipped, as
/// tract does: for a channel [`adds_nothing_on_the_padding`] does not cover.
fn convolve_plane_skipping(
    op: &DepthwiseRowsF32,
    padded: &[f32],
    taps: &[f32],
    bias: f32,
    output: &mut [f32],
) {
    let g = &op.geometry;
    let (row_len, kernel_w) = (op.plane.width, g.kernel[1]);
    for (oy, row) in output.chunks_exact_mut(g.output[1]).enumerate() {
        for (ox, out) in row.iter_mut().enumerate() {
            let mut sum = bias;
            for (ky, rows) in op.rows.iter().enumerate() {
                if !rows.contains(&oy) {
                    continue;
                }
                let iy = oy * g.strides[0] + ky - g.pad_before[0];
                let line = &padded[iy * row_len..(iy + 1) * row_len];
                for (kx, tap) in op.columns.iter().enumerate() {
                    if tap.outputs.contains(&ox) {
                        sum += taps[ky * kernel_w + kx] * line[tap.base + ox];
                    }
                }
            }
            *out = sum;
        }
    }
}

impl Op for DepthwiseRowsF32 {
    fn name(&self) -> StaticName {
        "DepthwiseRowsF32".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geometry;
        Ok(vec![format!(
            "input {:?} kernel {:?} strides {:?} padding before {:?}",
            g.input, g.kernel, g.strides, g.pad_before
        )])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for DepthwiseRowsF32 {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (input, kernel, bias) = args_3!(inputs);
        let g = &self.geometry;
        let (batch, channels, h, w) = match *input.shape() {
            [n, c, h, w] => (n, c, h, w),
            [c, h, w] => (1, c, h, w),
            _ => bail!("DepthwiseRowsF32: input of shape {:?}", input.shape()),
        };
        ensure!(
            [h, w] == g.input && input.len() == batch * channels * h * w,
            "DepthwiseRowsF32: input {:?}",
            input.shape()
        );
        let mut shape: TVec<usize> = input.shape().into();
        let rank = shape.len();
        shape[rank - 2..].copy_from_slice(&g.output);
        let taps_per_channel = g.kernel[0] * g.kernel[1];
        let plane_in = h * w;
        let plane_out = g.output[0] * g.output[1];
        let kernel = kernel.try_as_plain_ram()?;
        let kernel = kernel.as_slice::<f32>()?;
        let bias = bias.try_as_plain_ram()?;
        let bias = bias.as_slice::<f32>()?;
        ensure!(
            kernel.len() == channels * taps_per_channel
                && (bias.len() == channels || bias.len() == 1),
            "DepthwiseRowsF32: {} weights and {} biases for {channels} channels",
            kernel.len(),
            bias.len()
        );
        let channel = |plane: usize| {
            let c = plane % channels;
            let taps = &kernel[c * taps_per_channel..(c + 1) * taps_per_channel];
            (taps, bias[if bias.len() == 1 { 0 } else { c }])
        };
        // each channel is read once into its padded plane before its output is written, so a
        // same-size output takes the input's own buffer when nothing else holds it
        if *shape == *input.shape() {
            let mut output = input.into_tensor();
            {
                let mut plain = output.try_as_plain_ram_mut()?;
                let data = plain.as_slice_mut::<f32>()?;
                let total = data.len();
                tract_linalg::multithread::par_chunks_mut(
                    data,
                    plane_out,
                    total,
                    |first, chunk| {
                        let mut padded = vec![0f32; h * self.plane.width];
                        for (ix, plane) in chunk.chunks_exact_mut(plane_out).enumerate() {
                            let (taps, bias) = channel(first + ix);
                            self.plane.fill(g, plane, &mut padded);
                            convolve_plane(self, &padded, taps, bias, plane);
                        }
                        Ok(())
                    },
                )?;
            }
            return Ok(tvec!(output.into_tvalue()));
        }
        let input = input.try_as_plain_ram()?;
        let input = input.as_slice::<f32>()?;
        let mut output = Tensor::zero::<f32>(&shape)?;
        {
            let mut plain = output.try_as_plain_ram_mut()?;
            let out = plain.as_slice_mut::<f32>()?;
            let total = out.len();
            // planes split over tract's executor when it has threads, as tract's own op does
            tract_linalg::multithread::par_chunks_mut(out, plane_out, total, |first, chunk| {
                let mut padded = vec![0f32; h * self.plane.width];
                for (ix, plane) in chunk.chunks_exact_mut(plane_out).enumerate() {
                    let (taps, bias) = channel(first + ix);
                    let start = (first + ix) * plane_in;
                    self.plane
                        .fill(g, &input[start..start + plane_in], &mut padded);
                    convolve_plane(self, &padded, taps, bias, plane);
                }
                Ok(())
            })?;
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for DepthwiseRowsF32 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type());
        let mut shape = inputs[0].shape.to_tvec();
        ensure!(shape.len() == 3 || shape.len() == 4);
        let rank = shape.len();
        shape[rank - 2] = self.geometry.output[0].to_dim();
        shape[rank - 1] = self.geometry.output[1].to_dim();
        Ok(tvec!(f32::fact(shape)))
    }

    tract_onnx::tract_core::as_op!();
}

/// The [`DepthwiseRowsF32`] that computes what `node` computes, if `node` is a depthwise f32
/// NCHW or CHW 2-D convolution with an OIHW kernel and no dilation, of a fixed input shape.
fn replacement(model: &TypedModel, node: &TypedNode) -> TractResult<Option<DepthwiseRowsF32>> {
    let Some(conv) = node.op_as::<Conv>() else {
        return Ok(None);
    };
    let spec = &conv.pool_spec;
    let depthwise = conv.group > 1
        && conv.group == spec.input_channels
        && conv.group == spec.output_channels
        && conv.q_params.is_none()
        && conv.kernel_fmt == KernelFormat::OIHW
        && matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
        && spec.rank() == 2
        && spec.dilations().iter().all(|&d| d == 1)
        && node.inputs.len() == 3;
    if !depthwise {
        return Ok(None);
    }
    let input = model.outlet_fact(node.inputs[0])?;
    let bias = model.outlet_fact(node.inputs[2])?;
    let Some(shape) = input.shape.as_concrete() else {
        return Ok(None);
    };
    if input.datum_type != f32::datum_type() || bias.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let (channels, h, w) = match *shape {
        [_, c, h, w] if spec.data_format == DataFormat::NCHW => (c, h, w),
        [c, h, w] if spec.data_format == DataFormat::CHW => (c, h, w),
        _ => return Ok(None),
    };
    if channels != conv.group || node.outputs[0].fact.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let padding = spec.computed_padding(&[h, w]);
    let strides = spec.strides();
    let geometry = Geometry {
        input: [h, w],
        kernel: [spec.kernel_shape[0], spec.kernel_shape[1]],
        strides: [strides[0], strides[1]],
        pad_before: [padding[0].pad_before, padding[1].pad_before],
        output: [padding[0].convoluted, padding[1].convoluted],
    };
    let mut expected: TVec<usize> = shape.into();
    expected[shape.len() - 2..].copy_from_slice(&geometry.output);
    if node.outputs[0].fact.shape.as_concrete() != Some(&expected[..]) {
        return Ok(None);
    }
    Ok(Some(DepthwiseRowsF32::new(geometry)))
}

/// Replaces every depthwise f32 convolution of a decluttered graph that [`replacement`] covers
/// with [`DepthwiseRowsF32`]; returns how many. Run it between tract's declutter and optimise
/// passes: after them the convolution is a `DepthWiseConv`, which keeps its geometry private. The
/// values computed are the same.
pub fn speed_up_depthwise(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::swap_ops(model, |model, node| {
        Ok(replacement(model, node)?.map(|op| Box::new(op) as Box<dyn TypedOp>))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::output_bits;
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};

    /// `x -> depthwise conv (bias) -> out`, declutterred, on a `[1, channels, h, w]` input.
    fn depthwise_graph(
        channels: usize,
        [h, w]: [usize; 2],
        kernel: [usize; 2],
        strides: [usize; 2],
        padding: PaddingSpec,
        dilation: usize,
    ) -> TypedModel {
        let taps = channels * kernel[0] * kernel[1];
        let weights: Vec<f32> = (0..taps)
            .map(|i| ((i * 7919 % 211) as f32 - 105.0) * 0.013)
            .collect();
        let bias: Vec<f32> = (0..channels).map(|c| c as f32 * 0.37 - 1.1).collect();
        let geometry = ([h, w], kernel, strides, padding, dilation);
        graph_with(channels, geometry, &weights, &bias)
    }

    /// [`depthwise_graph`] with the given weights and biases.
    fn graph_with(
        channels: usize,
        ([h, w], kernel, strides, padding, dilation): (
            [usize; 2],
            [usize; 2],
            [usize; 2],
            PaddingSpec,
            usize,
        ),
        weights: &[f32],
        bias: &[f32],
    ) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model
            .add_source("x", f32::fact([1, channels, h, w]))
            .unwrap();
        let weights = tensor1(weights)
            .into_shape(&[channels, 1, kernel[0], kernel[1]])
            .unwrap();
        let k = model.add_const("k", weights).unwrap();
        let b = model.add_const("b", tensor1(bias)).unwrap();
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![kernel[0], kernel[1]],
                padding,
                dilations: Some(tvec![dilation, dilation]),
                strides: Some(tvec![strides[0], strides[1]]),
                input_channels: channels,
                output_channels: channels,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: channels,
            q_params: None,
        };
        let y = model.wire_node("conv", conv, &[x, k, b]).unwrap();
        model.select_output_outlets(&y).unwrap();
        model.into_decluttered().unwrap()
    }

    fn input(channels: usize, [h, w]: [usize; 2]) -> Tensor {
        let values: Vec<f32> = (0..channels * h * w)
            .map(|i| ((i * 104_729 % 1009) as f32 - 504.0) * 0.0071)
            .collect();
        Tensor::from_shape(&[1, channels, h, w], &values).unwrap()
    }

    #[test]
    fn rows_match_tract_bit_for_bit() {
        let explicit = |b: usize, a: usize| PaddingSpec::Explicit(tvec![b, b], tvec![a, a]);
        for (channels, hw, kernel, strides, padding) in [
            (3, [7, 7], [3, 3], [1, 1], explicit(1, 1)),
            (4, [14, 14], [3, 3], [1, 1], explicit(1, 1)),
            (2, [56, 56], [3, 3], [2, 2], explicit(1, 1)),
            (2, [15, 13], [3, 3], [2, 2], explicit(1, 1)),
            (3, [9, 11], [5, 5], [1, 1], explicit(2, 2)),
            (2, [8, 8], [3, 3], [1, 1], PaddingSpec::Valid),
            (2, [10, 9], [3, 3], [2, 2], PaddingSpec::SameUpper),
            (2, [6, 6], [3, 3], [3, 3], explicit(0, 2)),
            (2, [2, 2], [3, 3], [1, 1], explicit(1, 1)),
        ] {
            let stock = depthwise_graph(channels, hw, kernel, strides, padding.clone(), 1);
            let mut fast = stock.clone();
            assert_eq!(speed_up_depthwise(&mut fast).unwrap(), 1, "{padding:?}");
            let (stock, fast) = (
                stock.into_optimized().unwrap(),
                fast.into_optimized().unwrap(),
            );
            let ops: Vec<_> = stock.nodes().iter().map(|n| n.op.name()).collect();
            assert!(ops.iter().any(|o| o == "DepthWiseConv"), "{ops:?}");
            let x = input(channels, hw);
            assert_eq!(
                output_bits(stock, std::slice::from_ref(&x)),
                output_bits(fast, &[x]),
                "{channels} channels, {hw:?}, kernel {kernel:?}, strides {strides:?}, {padding:?}"
            );
        }
    }

    #[test]
    fn a_negative_zero_bias_or_an_infinite_weight_skips_the_padding_as_tract_does() {
        // channel 0: bias -0.0, positive weights, input -0.0: every sum stays -0.0 when the taps
        // over the padding are skipped, and would turn +0.0 if they added weight * +0.0;
        // channel 1: an infinite weight, which times a padding zero would be NaN
        let mut weights = vec![0.5f32; 18];
        weights[9] = f32::INFINITY;
        let bias = [-0.0f32, 1.0];
        let padding = PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]);
        let stock = graph_with(2, ([9, 9], [3, 3], [1, 1], padding, 1), &weights, &bias);
        let mut fast = stock.clone();
        assert_eq!(speed_up_depthwise(&mut fast).unwrap(), 1);
        let mut values = vec![-0.0f32; 81];
        values.extend((0..81).map(|i| i as f32 * 0.01));
        let x = Tensor::from_shape(&[1, 2, 9, 9], &values).unwrap();
        let (stock, fast) = (
            stock.into_optimized().unwrap(),
            fast.into_optimized().unwrap(),
        );
        let want = output_bits(stock, std::slice::from_ref(&x));
        assert!(want[0][..81].iter().all(|&b| b == (-0.0f32).to_bits()));
        assert_eq!(output_bits(fast, &[x]), want);
    }

    #[test]
    fn dilated_convolutions_stay_tract() {
        let mut model = depthwise_graph(2, [9, 9], [3, 3], [1, 1], PaddingSpec::Valid, 2);
        assert_eq!(speed_up_depthwise(&mut model).unwrap(), 0);
    }

    /// Fixed values in [0, 1) for every input of `model`.
    fn fixed_inputs(model: &TypedModel) -> Vec<Tensor> {
        model
            .input_outlets()
            .unwrap()
            .iter()
            .map(|&outlet| {
                let shape = model
                    .outlet_fact(outlet)
                    .unwrap()
                    .shape
                    .as_concrete()
                    .unwrap()
                    .to_vec();
                let len: usize = shape.iter().product();
                let values: Vec<f32> = (0..len)
                    .map(|i| (i * 7919 % 1000) as f32 / 1000.0)
                    .collect();
                Tensor::from_shape(&shape, &values).unwrap()
            })
            .collect()
    }

    #[test]
    fn shipped_relation_models_give_the_same_bits() {
        for file in ["gritv2-s.fp32.onnx", "gritv2-s.int8.onnx"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../models")
                .join(file);
            let stock = tract_onnx::onnx()
                .model_for_path(&path)
                .unwrap()
                .into_typed()
                .unwrap()
                .into_decluttered()
                .unwrap();
            let mut fast = stock.clone();
            assert_eq!(speed_up_depthwise(&mut fast).unwrap(), 15, "{file}");
            let inputs = fixed_inputs(&stock);
            let (stock, fast) = (
                stock.into_optimized().unwrap(),
                fast.into_optimized().unwrap(),
            );
            assert_eq!(
                output_bits(stock, &inputs),
                output_bits(fast, &inputs),
                "{file}"
            );
        }
    }
}
