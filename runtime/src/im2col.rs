//! A faster int8 im2col for tract's convolutions on the K=4-inner int8 kernels.
//!
//! tract 0.23.9 lowers a `QLinearConv` with a kernel larger than 1x1 to an `Im2col` node that
//! writes the patches straight into the packed layout of the int8 kernel. On the `PackedI8K4`
//! layout (4 K values per lane: x86_64's AVX-512 VNNI and AVX2 kernels) its writer is fed one K row
//! at a time across every panel, one byte every 4, so each K row touches every panel of a buffer of
//! megabytes: in the INT8 person detector this `Im2col` took more time than the int8 matrix
//! products themselves (docs/perf.md, "The detector in INT8"). tract's f32 convolutions pack
//! lazily and do not have this cost.
//!
//! [`Im2colI8K4`] computes the same bytes in two cache-friendly passes over chunks of whole
//! panels (about 256 KiB of patches each): the plain `[K, chunk]` patch matrix row by row (one
//! copy for a run of whole output lines where the stride is 1), then the packing panel by
//! panel, as tract's own `PackedI8K4::pack_view` lays it out. [`speed_up_im2col`] swaps it in
//! for every `Im2col` node it covers (one group, i8 input in NCHW/CHW, 2-D kernel, padding value
//! 0, the `PackedI8K4` output format); other `Im2col` nodes (f32, the ARM `PackedFormat` layout,
//! grouped convolutions) stay tract's.

use multiversion::multiversion;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::conv::Im2Col;
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::tract_linalg::mmm::{
    EagerPackedInput, MMMInputValue, PackedExoticFact, PackedMatrixStorage,
};
use tract_onnx::tract_core::tract_linalg::pack::PackedI8K4;

/// Size of the patch matrix of one chunk of columns (see [`Im2colI8K4::packed`]): half the L2 of
/// a Zen 3 or a Cortex-A76 core. Larger chunks hold more whole output lines to merge into runs
/// (docs/perf.md, "The im2col in runs of whole lines").
const CHUNK_BYTES: usize = 256 * 1024;

std::thread_local! {
    /// The patch matrix of pass 1 for one chunk of columns and the chunk's [`PatchRuns`], kept
    /// per thread between calls.
    static SCRATCH: std::cell::RefCell<(Vec<u8>, PatchRuns)> =
        std::cell::RefCell::new((Vec::new(), PatchRuns::default()));
    /// The last packed output. Once the matrix product that read it has dropped it, the next
    /// call writes into it instead of allocating and zeroing a new buffer of megabytes; the
    /// thread keeps one, as large as its largest output.
    static OUTPUT: std::cell::RefCell<Option<Arc<Blob>>> = const { std::cell::RefCell::new(None) };
}

/// What one kernel tap writes for `lines` consecutive output lines of `len` bytes inside a chunk
/// of columns, the same in every input channel: from `at` in the tap's row of the patch matrix,
/// in each line zero outside `lo..hi` (the padding) and there the input plane's bytes, every
/// `sx`-th. The bytes `lo..(lines - 1) * len + hi` of the run are one copy from `src` on: a run
/// of several lines only exists where the lines follow each other in the input plane as in the
/// row (stride 1, output as wide as the input), and the bytes between two lines' copies are
/// zeroed after it. [`patch_runs`] works them out once per chunk, so [`fill_patches`] only
/// copies and zeroes.
#[derive(Debug, Clone, Copy)]
struct PatchRun {
    at: usize,
    len: usize,
    lines: usize,
    lo: usize,
    hi: usize,
    src: usize,
}

/// The [`PatchRun`]s of one chunk of columns, tap after tap.
#[derive(Debug, Default)]
struct PatchRuns {
    runs: Vec<PatchRun>,
    /// Where each tap's runs end in `runs`.
    tap_ends: Vec<usize>,
}

impl PatchRuns {
    /// The runs of each tap in turn.
    fn per_tap(&self) -> impl Iterator<Item = &[PatchRun]> {
        let starts = std::iter::once(0).chain(self.tap_ends.iter().copied());
        starts
            .zip(&self.tap_ends)
            .map(|(start, &end)| &self.runs[start..end])
    }
}

/// The [`PatchRuns`] of the output columns `m0..m0 + cn`: one line per output line the chunk
/// touches, and consecutive whole lines merged into one run where they are both padding or
/// (stride 1, output as wide as the input) both copy the same columns of consecutive input rows.
fn patch_runs(op: &Im2colI8K4, m0: usize, cn: usize, out: &mut PatchRuns) {
    out.runs.clear();
    out.tap_ends.clear();
    let rows_follow = op.sx == 1 && op.sy == 1 && op.w == op.ow;
    for (&(dy, dx), &(x_lo, x_hi)) in op.taps.iter().zip(&op.columns) {
        let tap_start = out.runs.len();
        let mut m = m0;
        while m < m0 + cn {
            let (yo, xa) = (m / op.ow, m % op.ow);
            let xb = op.ow.min(xa + (m0 + cn - m));
            let y = (yo * op.sy) as isize + dy;
            let (lo, hi) = (x_lo.clamp(xa, xb), x_hi.clamp(xa, xb));
            let mut line = PatchRun {
                at: m - m0,
                len: xb - xa,
                lines: 1,
                lo: 0,
                hi: 0,
                src: 0,
            };
            if y >= 0 && y < op.h as isize && lo < hi {
                line.lo = lo - xa;
                line.hi = hi - xa;
                line.src = y as usize * op.w + (lo as isize * op.sx as isize + dx) as usize;
            }
            m += xb - xa;
            if out.runs.len() > tap_start {
                let run = out.runs.last_mut().filter(|run| {
                    let whole = run.len == op.ow && line.len == op.ow;
                    let padding = run.lo == run.hi && line.lo == line.hi;
                    let copies = rows_follow
                        && (run.lo, run.hi) == (line.lo, line.hi)
                        && line.src == run.src + run.lines * op.w;
                    whole && (padding || copies)
                });
                if let Some(run) = run {
                    run.lines += 1;
                    continue;
                }
            }
            out.runs.push(line);
        }
        out.tap_ends.push(out.runs.len());
    }
}

/// Pass 1 of [`Im2colI8K4`] for one chunk of columns: the `[K, cn]` patch matrix, zero where a
/// tap falls in the padding, from the chunk's [`patch_runs`]. One call per chunk, compiled per
/// SIMD level like [`pack_k4`]; the lines are short (13-208 bytes in the person detector), so
/// the copies are inlined here rather than left to a call each.
#[multiversion(targets = "simd")]
fn fill_patches(op: &Im2colI8K4, input: &[u8], runs: &PatchRuns, mat: &mut [u8]) {
    let cn = mat.len() / op.k().max(1);
    let mut rows = mat.chunks_exact_mut(cn.max(1));
    for plane in input.chunks_exact(op.h * op.w) {
        for tap_runs in runs.per_tap() {
            let Some(row) = rows.next() else {
                return;
            };
            for r in tap_runs {
                let span = &mut row[r.at..r.at + r.len * r.lines];
                if r.lines == 1 {
                    if r.lo > 0 {
                        span[..r.lo].fill(0);
                    }
                    if r.hi < r.len {
                        span[r.hi..].fill(0);
                    }
                    if r.lo < r.hi {
                        copy_strided(&mut span[r.lo..r.hi], &plane[r.src..], op.sx);
                    }
                    continue;
                }
                if r.lo == r.hi {
                    span.fill(0);
                    continue;
                }
                let end = (r.lines - 1) * r.len + r.hi;
                copy_strided(&mut span[r.lo..end], &plane[r.src..], op.sx);
                if r.lo > 0 || r.hi < r.len {
                    for line in span.chunks_exact_mut(r.len) {
                        zero_short(&mut line[..r.lo]);
                        zero_short(&mut line[r.hi..]);
                    }
                }
            }
        }
    }
}

/// Zeroes `bytes`, a line's padding: mostly one byte (3x3 kernels), so without a `memset` call.
#[inline(always)]
fn zero_short(bytes: &mut [u8]) {
    match bytes {
        [] => {}
        [b] => *b = 0,
        _ => bytes.fill(0),
    }
}

/// `dst[i] = src[i * stride]`. Lines at stride 1 are copied with fixed-size moves, the last
/// two overlapping, not a `memcpy` call; stride 2 (the detector's downsampling
/// convolutions) is written so that it vectorises.
#[inline(always)]
fn copy_strided(dst: &mut [u8], src: &[u8], stride: usize) {
    let n = dst.len();
    match stride {
        1 if n > 256 => dst.copy_from_slice(&src[..n]),
        1 if n > 32 => {
            // 32-byte moves, the last one overlapping the one before
            let mut i = 0;
            while i + 32 <= n {
                dst[i..i + 32].copy_from_slice(&src[i..i + 32]);
                i += 32;
            }
            if i < n {
                dst[n - 32..].copy_from_slice(&src[n - 32..n]);
            }
        }
        1 if n >= 16 => {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..].copy_from_slice(&src[n - 16..n]);
        }
        1 if n >= 8 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..n]);
        }
        2 => {
            // whole pairs as far as `src` has them; the last pixel may have no partner
            for (d, pair) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = pair[0];
            }
            if n > 0 && src.len() < 2 * n {
                dst[n - 1] = src[2 * (n - 1)];
            }
        }
        _ => {
            for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
                *d = *s;
            }
        }
    }
}

/// Pass 2 of [`Im2colI8K4`], see [`Im2colI8K4::packed`]. Compiled per SIMD level like kith's
/// quantisation loops (crate::int8): the wider clones, and on x86_64 no false dependency on the
/// upper register halves that tract-linalg's kernels leave dirty.
#[multiversion(targets = "simd")]
fn pack_k4(mat: &[u8], out: &mut [u8], k: usize, n: usize, r: usize, panel_len: usize) {
    match r {
        8 => pack_k4_pairs::<8, 16, 64>(mat, out, k, n, panel_len),
        16 => pack_k4_pairs::<16, 32, 128>(mat, out, k, n, panel_len),
        _ => {
            for (p, panel) in out.chunks_exact_mut(panel_len).enumerate() {
                pack_panel(mat, panel, k, n, r, p * r);
            }
        }
    }
}

/// [`pack_k4`] for panels of R lanes, two panels at a time where both are whole: each block of 4
/// K rows is interleaved over their 2R (`R2`) lanes into one tile of `TILE` = 8R bytes, whose
/// halves are the two panels' blocks. The compiler makes the wider interleave into far fewer
/// shuffles: with R = 8, about 20 GB/s against 5 one panel at a time (docs/perf.md).
#[inline(always)]
fn pack_k4_pairs<const R: usize, const R2: usize, const TILE: usize>(
    mat: &[u8],
    out: &mut [u8],
    k: usize,
    n: usize,
    panel_len: usize,
) {
    for (pair, panels) in out.chunks_mut(2 * panel_len).enumerate() {
        let m0 = pair * R2;
        if panels.len() < 2 * panel_len || m0 + R2 > n {
            for (p, panel) in panels.chunks_exact_mut(panel_len).enumerate() {
                pack_panel(mat, panel, k, n, R, m0 + p * R);
            }
            continue;
        }
        let (first, second) = panels.split_at_mut(panel_len);
        let blocks = first
            .chunks_exact_mut(4 * R)
            .zip(second.chunks_exact_mut(4 * R));
        for (kb, (b0, b1)) in blocks.enumerate() {
            let k0 = kb * 4;
            let row = |kk: usize| &mat[kk * n + m0..kk * n + m0 + R2];
            if k0 + 4 <= k {
                let mut tile = [0u8; TILE];
                interleave4::<R2>([row(k0), row(k0 + 1), row(k0 + 2), row(k0 + 3)], &mut tile);
                b0.copy_from_slice(&tile[..4 * R]);
                b1.copy_from_slice(&tile[4 * R..]);
            } else {
                // the last block, K rows past the end are 0
                for (half, block) in [b0, b1].into_iter().enumerate() {
                    block.fill(0);
                    for kk in k0..k {
                        let lanes = &row(kk)[half * R..(half + 1) * R];
                        for (lane, &v) in block.chunks_exact_mut(4).zip(lanes) {
                            lane[kk - k0] = v;
                        }
                    }
                }
            }
        }
    }
}

/// One panel of [`pack_k4`], output columns `m0..` (fewer than `r` in the last panel).
#[inline(always)]
fn pack_panel(mat: &[u8], panel: &mut [u8], k: usize, n: usize, r: usize, m0: usize) {
    let pw = r.min(n - m0);
    for (kb, block) in panel.chunks_exact_mut(r * 4).enumerate() {
        let k0 = kb * 4;
        let row = |kk: usize| &mat[kk * n + m0..kk * n + m0 + pw];
        if k0 + 4 <= k && pw == 8 {
            interleave4::<8>([row(k0), row(k0 + 1), row(k0 + 2), row(k0 + 3)], block);
        } else if k0 + 4 <= k && pw == 16 {
            interleave4::<16>([row(k0), row(k0 + 1), row(k0 + 2), row(k0 + 3)], block);
        } else {
            // a reused buffer holds an earlier output: every byte is written
            block.fill(0);
            for kk in k0..k.min(k0 + 4) {
                for (lane, &v) in block.chunks_exact_mut(4).zip(row(kk)) {
                    lane[kk - k0] = v;
                }
            }
        }
    }
}

/// `block[m * 4 + j] = rows[j][m]` for m < R: four K rows of one panel of R lanes (R known at
/// compile time, so the loop becomes byte shuffles).
#[inline(always)]
fn interleave4<const R: usize>(rows: [&[u8]; 4], block: &mut [u8]) {
    let (Some(a), Some(b), Some(c), Some(d)) = (
        rows[0].first_chunk::<R>(),
        rows[1].first_chunk::<R>(),
        rows[2].first_chunk::<R>(),
        rows[3].first_chunk::<R>(),
    ) else {
        return;
    };
    let mut tile = [[0u8; 4]; R];
    for (m, lane) in tile.iter_mut().enumerate() {
        *lane = [a[m], b[m], c[m], d[m]];
    }
    for (dst, src) in block.chunks_exact_mut(4).zip(&tile) {
        dst.copy_from_slice(src);
    }
}

/// tract's `Im2col` for one group of an i8 NCHW input into the `PackedI8K4` layout, see the
/// module documentation. Produces the same bytes as tract's op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Im2colI8K4 {
    format: PackedI8K4,
    /// Input channels, height, width.
    c: usize,
    h: usize,
    w: usize,
    /// Output height and width; N = oh * ow.
    oh: usize,
    ow: usize,
    /// Vertical and horizontal stride.
    sy: usize,
    sx: usize,
    /// (dy, dx) of each kernel tap relative to (yo * sy, xo * sx), padding included, in tract's
    /// order; K = c * taps.len(), row k = channel * taps + tap.
    taps: Vec<(isize, isize)>,
    /// Per tap, the output columns `lo..hi` whose x = xo * sx + dx lies inside the input.
    columns: Vec<(usize, usize)>,
    /// The input has a leading N axis (of 1).
    has_n: bool,
}

impl Im2colI8K4 {
    fn k(&self) -> usize {
        self.c * self.taps.len()
    }

    fn n(&self) -> usize {
        self.oh * self.ow
    }

    fn packed(&self, input: &[u8]) -> TractResult<EagerPackedInput> {
        let (k, n, r) = (self.k(), self.n(), self.format.r);
        let panel_len = self.format.single_panel_len(k);
        let len = n.div_ceil(r) * panel_len;
        let reusable = OUTPUT.with(|o| o.borrow_mut().take()).filter(|blob| {
            Arc::strong_count(blob) == 1
                && blob.len() >= len
                && blob.layout().align() >= self.format.align
        });
        let mut blob = match reusable {
            Some(blob) => blob,
            None => Arc::new(Tensor::zero_aligned::<u8>(&[len], self.format.align)?.into_blob()?),
        };
        let out = match Arc::get_mut(&mut blob) {
            Some(bytes) => &mut bytes[..len],
            None => bail!("Im2colI8K4: the output buffer is shared"),
        };
        // Columns in chunks of whole panels whose [K, chunk] patch matrix stays within
        // CHUNK_BYTES, so that pass 2 reads it from cache.
        let chunk = ((CHUNK_BYTES / k.max(1)) / r).max(1) * r;
        let (mut mat, mut runs) = SCRATCH.with(|s| s.take());
        for (c, panels) in out.chunks_mut(chunk / r * panel_len).enumerate() {
            let m0 = c * chunk;
            let cn = chunk.min(n - m0);
            mat.resize(k * cn, 0);
            patch_runs(self, m0, cn, &mut runs);
            fill_patches(self, input, &runs, &mut mat[..k * cn]);
            pack_k4(&mat[..k * cn], panels, k, cn, r, panel_len);
        }
        SCRATCH.with(|s| s.replace((mat, runs)));
        OUTPUT.with(|o| o.replace(Some(blob.clone())));
        Ok(EagerPackedInput {
            fact: PackedExoticFact {
                format: Box::new(self.format.clone()),
                mn: n.to_dim(),
                k,
            },
            packed: blob,
            panel_bytes: panel_len,
            mn: n,
        })
    }
}

impl Op for Im2colI8K4 {
    fn name(&self) -> StaticName {
        "Im2colI8K4".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "k: {} n: {} r: {}",
            self.k(),
            self.n(),
            self.format.r
        )])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for Im2colI8K4 {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0]; // inputs[1], if any, is the zero padding value
        let dt = input.datum_type();
        let bytes = input.try_as_plain_ram()?.as_bytes();
        ensure!(
            bytes.len() == self.c * self.h * self.w,
            "Im2colI8K4: input of {} bytes, expected {}",
            bytes.len(),
            self.c * self.h * self.w
        );
        let value: Box<dyn MMMInputValue> = Box::new(self.packed(bytes)?);
        let output = PackedMatrixStorage::new_batched(&[1, 1], tvec!(value)).into_tensor(dt);
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Im2colI8K4 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type.unquantized() == i8::datum_type());
        let fact = PackedExoticFact {
            format: Box::new(self.format.clone()),
            mn: self.n().to_dim(),
            k: self.k(),
        };
        Ok(tvec!(inputs[0]
            .datum_type
            .fact([1usize, 1])
            .with_exotic_fact(fact)))
    }

    tract_onnx::tract_core::as_op!();
}

/// The packed output of `node` and its layout, when that layout is `PackedI8K4`.
fn packed_k4_output(node: &TypedNode) -> Option<(&PackedExoticFact, &PackedI8K4)> {
    let packed = node.outputs[0]
        .fact
        .exotic_fact()?
        .downcast_ref::<PackedExoticFact>()?;
    Some((packed, packed.format.downcast_ref::<PackedI8K4>()?))
}

/// The [`Im2colI8K4`] that computes what `node` computes, if it covers it.
fn replacement(model: &TypedModel, node: &TypedNode) -> TractResult<Option<Im2colI8K4>> {
    let Some(op) = node.op_as::<Im2Col>() else {
        return Ok(None);
    };
    if op.group != 1 {
        return Ok(None);
    }
    // The optional second input is the padding value (the input's zero point): only zero is covered.
    match node.inputs[..] {
        [_] => {}
        [_, pad] => {
            let zero = model.outlet_fact(pad)?.konst.as_ref().and_then(|t| {
                t.try_as_plain_ram()
                    .ok()
                    .map(|p| p.as_bytes().iter().all(|&b| b == 0))
            });
            if zero != Some(true) {
                return Ok(None);
            }
        }
        _ => return Ok(None),
    }
    let input = model.outlet_fact(node.inputs[0])?;
    if input.datum_type.unquantized() != i8::datum_type() || input.is_exotic() {
        return Ok(None);
    }
    let Some(shape) = input.shape.as_concrete() else {
        return Ok(None);
    };
    let Some((packed, format)) = packed_k4_output(node) else {
        return Ok(None);
    };
    let spec = &op.pool_spec;
    let has_n = match spec.data_format {
        DataFormat::NCHW => true,
        DataFormat::CHW => false,
        _ => return Ok(None),
    };
    if spec.kernel_shape.len() != 2 || (has_n && shape[0] != 1) {
        return Ok(None);
    }
    let dims: TVec<TDim> = shape.iter().map(|d| d.to_dim()).collect();
    let geo = spec.compute_geo(&dims)?;
    let geo = geo.to_concrete(shape)?;
    let ishape = &geo.input_shape;
    let (c, hw) = (*ishape.c(), ishape.hw_dims());
    let (h, w) = (hw[0], hw[1]);
    if *ishape.w_stride() != 1 || *ishape.h_stride() != w || *ishape.c_stride() != h * w {
        return Ok(None);
    }
    let patch = &geo.patch;
    let taps: Vec<(isize, isize)> = patch
        .data_field
        .outer_iter()
        .map(|row| (row[0], row[1]))
        .collect();
    let (ow, sx) = (patch.output_shape[1], patch.spec.strides[1]);
    let columns = taps
        .iter()
        .map(|&(_, dx)| {
            let (w, sx) = (w as isize, sx as isize);
            let lo = (((-dx).max(0) + sx - 1) / sx) as usize;
            let hi = (((w - dx).max(0) + sx - 1) / sx) as usize;
            (lo.min(ow), hi.min(ow).max(lo.min(ow)))
        })
        .collect();
    let candidate = Im2colI8K4 {
        format: format.clone(),
        c,
        h,
        w,
        oh: patch.output_shape[0],
        ow,
        sy: patch.spec.strides[0],
        sx,
        taps,
        columns,
        has_n,
    };
    if candidate.k() != packed.k || packed.mn.to_usize().ok() != Some(candidate.n()) {
        return Ok(None);
    }
    Ok(Some(candidate))
}

/// Replaces every `Im2col` node of an optimised graph that [`Im2colI8K4`] covers; returns how
/// many changed. The values computed are the same.
pub fn speed_up_im2col(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::swap_ops(model, |model, node| {
        Ok(replacement(model, node)?.map(|op| Box::new(op) as _))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{gritv2_inputs, output_bits, pattern, shipped_model};

    /// The `Im2col` nodes that write the `PackedI8K4` layout. There are none where this CPU's
    /// int8 kernel packs otherwise (armv7's `armv7neon_mmm_i32_8x4`, arm64 without dotprod), and
    /// there the pass must change nothing.
    fn k4_im2col_nodes(model: &TypedModel) -> usize {
        model
            .nodes()
            .iter()
            .filter(|n| n.op_is::<Im2Col>() && packed_k4_output(n).is_some())
            .count()
    }

    /// `file` with and without the pass gives bit-identical outputs on `inputs`, so the packed
    /// bytes fed to the int8 kernels are the same; at least `min` nodes were replaced where the
    /// int8 kernel takes `PackedI8K4` (every x86_64 kernel), none where it does not.
    fn check(file: &str, inputs: &[Tensor], min: usize) {
        let model = shipped_model(file);
        let mut patched = model.clone();
        let k4 = k4_im2col_nodes(&model);
        assert!(
            k4 > 0 || !cfg!(target_arch = "x86_64"),
            "{file}: no PackedI8K4 Im2col on x86_64"
        );
        let replaced = speed_up_im2col(&mut patched).unwrap();
        if k4 == 0 {
            assert_eq!(replaced, 0, "{file}: {replaced} Im2col nodes replaced");
        } else {
            assert!(
                replaced >= min,
                "{file}: {replaced} of {k4} Im2col nodes replaced"
            );
        }
        assert_eq!(
            output_bits(model, inputs),
            output_bits(patched, inputs),
            "{file}"
        );
    }

    /// The INT8 detector: 3x3 convolutions of strides 1 and 2 with padding 1, the 3-channel stem,
    /// output widths that are and are not multiples of the panel width, chunks that split output
    /// lines.
    #[test]
    fn im2col_pass_gives_bit_identical_detector_outputs() {
        check(
            "person-detector.int8.onnx",
            &[pattern(&[1, 3, 416, 416], 7919)],
            25,
        );
    }

    /// GRITv2-S INT8 (its patch-embedding convolutions): every model kith loads goes through the
    /// pass.
    #[test]
    fn im2col_pass_gives_bit_identical_gritv2_outputs() {
        check("gritv2-s.int8.onnx", &gritv2_inputs(), 1);
    }
}
