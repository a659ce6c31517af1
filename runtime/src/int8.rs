//! Graph passes that make tract's INT8 graphs pay, applied to the optimised graph when kith loads a
//! model (see docs/int8.md for the measurements behind them).
//!
//! tract 0.23.9 quantises and dequantises activations with scalar loops around a branchy
//! round-ties-to-even (`QuantizeLinearI8`, `DequantizeLinearF32`): in GRITv2-S's INT8 graph those
//! took about a quarter of the run. [`speed_up_quantisation`] swaps them for [`QuantizeI8`] and
//! [`DequantizeI8`], which compute the same values with loops the compiler vectorises. Then
//! [`tabulate_dequantised_chains`] folds a dequantisation and the f32 element-wise ops right after
//! it (GELU after an int8 convolution) into one 256-entry i8 -> f32 table, [`DequantizeTable`]:
//! tract only tabulates chains that end in a quantisation. [`requantise_tables`] keeps activations
//! in i8 where such a table is quantised again, and [`fuse_dequantised_adds`] adds a dequantisation
//! straight into the residual it feeds ([`DequantizeAdd`]).
//!
//! The loops of these ops are compiled once per SIMD level ([`multiversion`], the best one picked
//! at run time). That is not only for the wider vectors: on x86_64, tract-linalg's AVX-512 kernels
//! return without `vzeroupper`, and baseline (SSE) code run after them pays a false dependency on
//! the dirty upper register halves on every vector instruction; the AVX clones do not, and clear
//! the upper halves on return.

use multiversion::multiversion;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::TypedConcat;
use tract_onnx::tract_core::ops::binary::OptBinUnicast;
use tract_onnx::tract_core::ops::cnn::OptMaxPool;
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

/// `ys[i] = clamp(round_ties_even(xs[i] * scale) + zero_point, -128, 127)`, see [`QuantizeI8`].
#[multiversion(targets = "simd")]
fn quantize_into(xs: &[f32], ys: &mut [i8], scale: f32, zero_point: i8) {
    let zp = zero_point as i32;
    let (lo, hi) = ((-128 - zp) as f32, (127 - zp) as f32);
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = (round_ties_even_small((x * scale).max(lo).min(hi)) + zp) as i8;
    }
}

/// `ys[i] = (xs[i] - zero_point) * scale`, see [`DequantizeI8`].
#[multiversion(targets = "simd")]
fn dequantize_into(xs: &[i8], ys: &mut [f32], scale: f32, zero_point: i32) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = (x as i32 - zero_point) as f32 * scale;
    }
}

/// `ys[i] = table[xs[i] as u8]`, see [`DequantizeTable`].
#[multiversion(targets = "simd")]
fn lookup_into(xs: &[i8], ys: &mut [f32], table: &[f32; 256]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = table[x as u8 as usize];
    }
}

/// The `info` line of the (de)quantising ops, for `kith-model audit` and profiles.
fn scale_info(scale: f32, zero_point: impl std::fmt::Display) -> Vec<String> {
    vec![format!("scale: {scale} zero_point: {zero_point}")]
}

/// Runs `fill(input, output)` on the plain data of `input` and a new tensor of `input`'s shape.
fn map_tensor<I: Datum, O: Datum + tract_num_traits::Zero>(
    input: &Tensor,
    fill: impl FnOnce(&[I], &mut [O]),
) -> TractResult<Tensor> {
    let mut out = Tensor::zero::<O>(input.shape())?;
    fill(
        input.try_as_plain_ram()?.as_slice::<I>()?,
        out.try_as_plain_ram_mut()?.as_slice_mut::<O>()?,
    );
    Ok(out)
}

impl QuantizeI8 {
    #[cfg(test)]
    fn quantize(&self, xs: &[f32]) -> Vec<i8> {
        let mut ys = vec![0; xs.len()];
        quantize_into(xs, &mut ys, self.scale, self.zero_point);
        ys
    }
}

impl Op for QuantizeI8 {
    fn name(&self) -> StaticName {
        "QuantizeI8".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(scale_info(self.scale, self.zero_point))
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for QuantizeI8 {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let out = map_tensor(&inputs[0], |xs, ys| {
            quantize_into(xs, ys, self.scale, self.zero_point)
        })?;
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

impl Op for DequantizeI8 {
    fn name(&self) -> StaticName {
        "DequantizeI8".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(scale_info(self.scale, self.zero_point))
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for DequantizeI8 {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let out = map_tensor(&inputs[0], |xs, ys| {
            dequantize_into(xs, ys, self.scale, self.zero_point)
        })?;
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

/// `residual + (x - zero_point) * scale`: a [`DequantizeI8`] and the addition it feeds (the
/// residual connection after a transformer block's int8 projection), in one pass that adds into
/// the residual's own buffer when nothing else holds it, as tract's addition does. Inputs: the f32
/// residual, then the i8 `x`, of the same shape. The values are those of the two ops: IEEE
/// addition is commutative, so which side the dequantised value was on does not matter.
#[derive(Debug, Clone, PartialEq)]
pub struct DequantizeAdd {
    pub scale: f32,
    pub zero_point: i32,
}

impl Eq for DequantizeAdd {}

/// `acc[i] += (xs[i] - zero_point) * scale`, see [`DequantizeAdd`].
#[multiversion(targets = "simd")]
fn dequantize_add_into(xs: &[i8], acc: &mut [f32], scale: f32, zero_point: i32) {
    for (a, &x) in acc.iter_mut().zip(xs) {
        *a += (x as i32 - zero_point) as f32 * scale;
    }
}

impl Op for DequantizeAdd {
    fn name(&self) -> StaticName {
        "DequantizeAdd".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(scale_info(self.scale, self.zero_point))
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for DequantizeAdd {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (residual, x) = args_2!(inputs);
        ensure!(
            residual.shape() == x.shape(),
            "DequantizeAdd: residual {:?} and i8 input {:?} differ in shape",
            residual.shape(),
            x.shape()
        );
        let mut out = residual.into_tensor();
        {
            let mut plain = out.try_as_plain_ram_mut()?;
            dequantize_add_into(
                x.try_as_plain_ram()?.as_slice::<i8>()?,
                plain.as_slice_mut::<f32>()?,
                self.scale,
                self.zero_point,
            );
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for DequantizeAdd {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type());
        ensure!(inputs[1].datum_type.unquantized() == i8::datum_type());
        ensure!(inputs[0].shape == inputs[1].shape);
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    tract_onnx::tract_core::as_op!();
}

/// i8 -> f32 through a 256-entry table: a dequantisation and the element-wise f32 ops after it,
/// evaluated once for every i8 value. Entry `i` holds the result for the i8 value `i as u8 as i8`.
#[derive(Debug, Clone, PartialEq)]
pub struct DequantizeTable {
    pub table: Vec<f32>,
    /// The ops the table stands for, for reports.
    pub ops: String,
}

impl Eq for DequantizeTable {}

impl Op for DequantizeTable {
    fn name(&self) -> StaticName {
        "DequantizeTable".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![self.ops.clone()])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for DequantizeTable {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let table: &[f32; 256] = self
            .table
            .as_slice()
            .try_into()
            .map_err(|_| format_err!("DequantizeTable needs 256 entries"))?;
        let out = map_tensor(&inputs[0], |xs, ys| lookup_into(xs, ys, table))?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for DequantizeTable {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type.unquantized() == i8::datum_type());
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    tract_onnx::tract_core::as_op!();
}

/// i8 -> i8 through a 256-entry table: a [`DequantizeTable`] and the quantisation after it (with
/// data movement in between that commutes with them, see [`requantise_tables`]). Entry `i` holds
/// the result for the i8 value `i as u8 as i8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequantiseTable {
    pub table: Vec<i8>,
    /// The ops the table stands for, for reports.
    pub ops: String,
}

/// `ys[i] = table[xs[i] as u8]`, see [`RequantiseTable`].
#[multiversion(targets = "simd")]
fn requantise_into(xs: &[i8], ys: &mut [i8], table: &[i8; 256]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = table[x as u8 as usize];
    }
}

impl Op for RequantiseTable {
    fn name(&self) -> StaticName {
        "RequantiseTable".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![self.ops.clone()])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for RequantiseTable {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let table: &[i8; 256] = self
            .table
            .as_slice()
            .try_into()
            .map_err(|_| format_err!("RequantiseTable needs 256 entries"))?;
        let out = map_tensor(&inputs[0], |xs, ys| requantise_into(xs, ys, table))?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for RequantiseTable {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type.unquantized() == i8::datum_type());
        Ok(tvec!(i8::fact(inputs[0].shape.clone())))
    }

    tract_onnx::tract_core::as_op!();
}

/// The element-wise f32 -> f32 ops that follow `dq` one after the other, each the only consumer
/// of the one before.
fn element_wise_chain<'m>(
    model: &'m TypedModel,
    dq: &TypedNode,
) -> TractResult<Vec<&'m TypedNode>> {
    let mut chain: Vec<&TypedNode> = vec![];
    let mut current = dq.id;
    while let Some(next) = model.single_succ(current)? {
        let f32_to_f32 = next.inputs.len() == 1
            && next.outputs.len() == 1
            && next.outputs[0].fact.datum_type == f32::datum_type();
        if !(f32_to_f32 && next.op_is::<ElementWiseOp>()) {
            break;
        }
        chain.push(next);
        current = next.id;
    }
    Ok(chain)
}

/// Evaluates `dq` and `chain` on the 256 i8 values.
fn tabulate(dq: &TypedNode, chain: &[&TypedNode]) -> TractResult<Vec<f32>> {
    let mut adhoc = TypedModel::default();
    let mut wire = adhoc.add_source("i8", i8::fact([256]))?;
    for node in std::iter::once(dq).chain(chain.iter().copied()) {
        wire = adhoc.wire_node(&*node.name, node.op.clone(), &[wire])?[0];
    }
    adhoc.select_output_outlets(&[wire])?;
    let values: Vec<i8> = (0..=255u8).map(|i| i as i8).collect();
    let out = SimplePlan::new(adhoc)?
        .run(tvec!(tensor1(&values).into_tvalue()))?
        .remove(0);
    Ok(out.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
}

/// The patch that folds node `id` and the element-wise chain after it into a
/// [`DequantizeTable`], if `id` is a [`DequantizeI8`] followed by such a chain.
fn table_patch(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let dq = model.node(id);
    if !dq.op_is::<DequantizeI8>() {
        return Ok(None);
    }
    let chain = element_wise_chain(model, dq)?;
    let Some(last) = chain.last() else {
        return Ok(None);
    };
    let ops: Vec<String> = std::iter::once(dq)
        .chain(chain.iter().copied())
        .map(|n| n.op.name().into_owned())
        .collect();
    let op = DequantizeTable {
        table: tabulate(dq, &chain)?,
        ops: ops.join(" -> "),
    };
    let mut patch = TypedModelPatch::default();
    let input = patch.tap_model(model, dq.inputs[0])?;
    let wire = patch.wire_node(&*last.name, op, &[input])?[0];
    patch.shunt_outside(model, OutletId::new(last.id, 0), wire)?;
    Ok(Some(patch))
}

/// Folds every [`DequantizeI8`] whose only consumer starts a chain of element-wise f32 ops into
/// one [`DequantizeTable`]; returns how many chains were folded. Run it after
/// [`speed_up_quantisation`]. The values computed are the same.
pub fn tabulate_dequantised_chains(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::apply_patches(model, table_patch)
}

/// The [`RequantiseTable`] of `table` followed by `quantize`, through `between` (for reports).
fn requantised(table: &DequantizeTable, between: &str, quantize: &QuantizeI8) -> RequantiseTable {
    let mut values = vec![0i8; 256];
    quantize_into(
        &table.table,
        &mut values,
        quantize.scale,
        quantize.zero_point,
    );
    RequantiseTable {
        table: values,
        ops: format!("{} ->{between} QuantizeI8", table.ops),
    }
}

/// Whether `table` never decreases from i8 -128 to 127 (entry order 128..=255, then 0..=127), so
/// that a max-pool gives the same result before the table as after it.
fn non_decreasing(table: &DequantizeTable) -> bool {
    let in_value_order: Vec<f32> = (-128i8..=127)
        .map(|v| table.table[v as u8 as usize])
        .collect();
    in_value_order.windows(2).all(|w| w[0] <= w[1])
}

/// The [`QuantizeI8`] that is the only consumer of `node`, if there is one.
fn quantised_by<'m>(
    model: &'m TypedModel,
    node: &TypedNode,
) -> TractResult<Option<&'m QuantizeI8>> {
    Ok(model
        .single_succ(node.id)?
        .and_then(|next| next.op_as::<QuantizeI8>()))
}

/// The patch that keeps node `id`'s values in i8 until the next quantisation, if `id` starts one
/// of these patterns (`T` a [`DequantizeTable`], `Q` a [`QuantizeI8`], each the only consumer of
/// the node before):
/// - `T -> Q`: one i8 -> i8 table (`Q` of `T`);
/// - `T -> max-pool -> Q`, with `T` non-decreasing: the max-pool on the i8 input, then the table;
/// - `concat(T1, T2, ...) -> Q`: each input through its own i8 -> i8 table, then the concat in
///   i8 (the `Ti` may have other consumers, which keep them).
fn requantise_patch(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    let mut patch = TypedModelPatch::default();
    if let Some(table) = node.op_as::<DequantizeTable>() {
        let Some(next) = model.single_succ(id)? else {
            return Ok(None);
        };
        let (quantize, last, pool) = if let Some(q) = next.op_as::<QuantizeI8>() {
            (q, next, None)
        } else if let Some(pool) = next.op_as::<OptMaxPool>() {
            let Some(q) = quantised_by(model, next)? else {
                return Ok(None);
            };
            if pool.with_index_outputs.is_some() || !non_decreasing(table) {
                return Ok(None);
            }
            let Some(last) = model.single_succ(next.id)? else {
                return Ok(None);
            };
            (q, last, Some(next))
        } else {
            return Ok(None);
        };
        let mut wire = patch.tap_model(model, node.inputs[0])?;
        if let Some(pool) = pool {
            wire = patch.wire_node(&*pool.name, pool.op.clone(), &[wire])?[0];
        }
        let between = if pool.is_some() { " MaxPool ->" } else { "" };
        wire = patch.wire_node(&*last.name, requantised(table, between, quantize), &[wire])?[0];
        patch.shunt_outside(model, OutletId::new(last.id, 0), wire)?;
        return Ok(Some(patch));
    }
    if node.op_is::<TypedConcat>() {
        let (Some(quantize), Some(last)) = (quantised_by(model, node)?, model.single_succ(id)?)
        else {
            return Ok(None);
        };
        let mut wires = tvec![];
        for (i, input) in node.inputs.iter().enumerate() {
            let source = model.node(input.node);
            let Some(table) = source.op_as::<DequantizeTable>() else {
                return Ok(None);
            };
            let wire = patch.tap_model(model, source.inputs[0])?;
            // one name per input: the same table may feed the concat twice
            let name = format!("{}.requantised.{i}", node.name);
            let op = requantised(table, " Concat ->", quantize);
            wires.push(patch.wire_node(name, op, &[wire])?[0]);
        }
        let wire = patch.wire_node(&*node.name, node.op.clone(), &wires)?[0];
        patch.shunt_outside(model, OutletId::new(last.id, 0), wire)?;
        return Ok(Some(patch));
    }
    Ok(None)
}

/// Keeps activations in i8 from a [`DequantizeTable`] to the next quantisation where nothing in
/// between needs f32 (see [`requantise_patch`]); returns how many patterns changed. Run it after
/// [`tabulate_dequantised_chains`]. The values computed are the same: the tables are those ops'
/// values on the 256 inputs, quantised as [`QuantizeI8`] quantises.
///
/// It sweeps the graph until a sweep changes nothing: requantising a concat can leave a table
/// whose only consumer is now its own quantisation (a CSP block's branch read by the concat and
/// by the next convolution), a pattern for the next sweep.
pub fn requantise_tables(model: &mut TypedModel) -> TractResult<usize> {
    let mut changed = 0;
    loop {
        match crate::passes::apply_patches(model, requantise_patch)? {
            0 => return Ok(changed),
            swept => changed += swept,
        }
    }
}

/// The patch that fuses node `id` into the addition after it, if `id` is a [`DequantizeI8`] whose
/// only consumer is an f32 addition of two inputs of one shape (tract's `OptAddUnicast`).
fn add_patch(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let dq_node = model.node(id);
    let Some(dq) = dq_node.op_as::<DequantizeI8>() else {
        return Ok(None);
    };
    let Some(add) = crate::passes::only_reader(model, dq_node)? else {
        return Ok(None);
    };
    let is_add = add
        .op_as::<OptBinUnicast>()
        .is_some_and(|op| op.binop.name() == "Add");
    if !is_add || add.inputs.len() != 2 {
        return Ok(None);
    }
    let Some(dq_slot) = add.inputs.iter().position(|i| i.node == id) else {
        return Ok(None);
    };
    let residual = add.inputs[1 - dq_slot];
    let residual_fact = model.outlet_fact(residual)?;
    let same_shape = residual_fact.shape == dq_node.outputs[0].fact.shape;
    if residual_fact.datum_type != f32::datum_type() || !same_shape {
        return Ok(None);
    }
    let op = DequantizeAdd {
        scale: dq.scale,
        zero_point: dq.zero_point,
    };
    let mut patch = TypedModelPatch::default();
    let residual = patch.tap_model(model, residual)?;
    let x = patch.tap_model(model, dq_node.inputs[0])?;
    let wire = patch.wire_node(&*add.name, op, &[residual, x])?[0];
    patch.shunt_outside(model, OutletId::new(add.id, 0), wire)?;
    Ok(Some(patch))
}

/// Fuses every [`DequantizeI8`] that only feeds a same-shape f32 addition into it, as one
/// [`DequantizeAdd`]; returns how many. Run it after [`speed_up_quantisation`]. The values
/// computed are the same.
pub fn fuse_dequantised_adds(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::apply_patches(model, add_patch)
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
    crate::passes::swap_ops(model, replacement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::output_bits;
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
        for (scale, zp) in [
            (3.7f32, 0i8),
            (0.25, 0),
            (127.0 / 6.0, 0),
            (10.0, -5),
            (1.0, 17),
        ] {
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
    fn dequantise_gelu_chain_becomes_one_exact_table() {
        use tract_onnx::tract_core::ops::nn::gelu_exact::gelu_exact;
        // x -> Q -> DQ -> GELU -> Abs: the chain DQ -> GELU -> Abs becomes one table.
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 300])).unwrap();
        let q = model
            .wire_node("q", quantize_linear_i8(9.0, 0), &[x])
            .unwrap();
        let dq = model
            .wire_node("dq", DequantizeLinearF32::new(1.0 / 9.0, 0), &q)
            .unwrap();
        let gelu = model.wire_node("gelu", gelu_exact(), &dq).unwrap();
        let abs = model
            .wire_node("abs", tract_onnx::tract_core::ops::math::abs(), &gelu)
            .unwrap();
        model.select_output_outlets(&abs).unwrap();
        let stock = model.into_optimized().unwrap();
        let mut fast = stock.clone();
        speed_up_quantisation(&mut fast).unwrap();
        assert_eq!(tabulate_dequantised_chains(&mut fast).unwrap(), 1);
        let ops: Vec<_> = fast.nodes().iter().map(|n| n.op.name()).collect();
        assert!(ops.iter().any(|o| o == "DequantizeTable"), "{ops:?}");
        assert!(!ops.iter().any(|o| o == "GeluExact"), "{ops:?}");
        let xs: Vec<f32> = (0..600).map(|i| (i as f32 - 300.0) * 0.05).collect();
        let input = tract_onnx::tract_core::ndarray::Array2::from_shape_vec((2, 300), xs)
            .unwrap()
            .into_tensor();
        let want = run(stock, input.clone()).as_slice_f32();
        let got = run(fast, input).as_slice_f32();
        assert_eq!(got.len(), 600);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.to_bits(), w.to_bits());
        }
    }

    #[test]
    fn dequantise_without_element_wise_successor_is_kept() {
        let mut fast = qdq_model(4.0, 0, 8);
        speed_up_quantisation(&mut fast).unwrap();
        assert_eq!(tabulate_dequantised_chains(&mut fast).unwrap(), 0);
    }

    /// Every i8 value, over and over, as a `[1, channels, h, w]` tensor.
    fn all_i8(channels: usize, h: usize, w: usize) -> Tensor {
        let values: Vec<i8> = (0..channels * h * w)
            .map(|i| (i * 37 % 256) as u8 as i8)
            .collect();
        Tensor::from_shape(&[1, channels, h, w], &values).unwrap()
    }

    /// `x -> DequantizeI8 -> op`, the dequantisation of a quantised convolution's output and an
    /// element-wise op after it.
    fn dequantised(model: &mut TypedModel, x: OutletId, scale: f32, op: ElementWiseOp) -> OutletId {
        let name = format!("dq{}", model.nodes().len());
        let dq = DequantizeI8 {
            scale,
            zero_point: 0,
        };
        let wire = model.wire_node(&name, dq, &[x]).unwrap();
        model.wire_node(format!("{name}.op"), op, &wire).unwrap()[0]
    }

    fn quantised(model: &mut TypedModel, x: OutletId, scale: f32) -> OutletId {
        let q = QuantizeI8 {
            scale,
            zero_point: 3,
        };
        model
            .wire_node(format!("q{}", model.nodes().len()), q, &[x])
            .unwrap()[0]
    }

    /// `model`, optimised and with kith's quantisation passes, gives the same bits with and
    /// without [`requantise_tables`], which changes `expected` patterns; returns the graph after it.
    fn check_requantised(model: TypedModel, input: Tensor, expected: usize) -> TypedModel {
        let mut model = model.into_optimized().unwrap();
        speed_up_quantisation(&mut model).unwrap();
        tabulate_dequantised_chains(&mut model).unwrap();
        let mut fast = model.clone();
        assert_eq!(requantise_tables(&mut fast).unwrap(), expected);
        assert_eq!(
            output_bits(model, std::slice::from_ref(&input)),
            output_bits(fast.clone(), &[input])
        );
        fast
    }

    fn f32_nodes(model: &TypedModel) -> usize {
        model
            .nodes()
            .iter()
            .filter(|n| {
                n.outputs
                    .iter()
                    .any(|o| o.fact.datum_type == f32::datum_type())
            })
            .count()
    }

    #[test]
    fn table_then_quantisation_becomes_one_i8_table() {
        use tract_onnx::tract_core::ops::nn::leaky_relu;
        let mut model = TypedModel::default();
        let x = model.add_source("x", i8::fact([1, 2, 16, 16])).unwrap();
        let t = dequantised(&mut model, x, 0.05, leaky_relu(0.1));
        let q = quantised(&mut model, t, 17.0);
        model.select_output_outlets(&[q]).unwrap();
        let fast = check_requantised(model, all_i8(2, 16, 16), 1);
        assert_eq!(f32_nodes(&fast), 0, "{fast}");
    }

    #[test]
    fn max_pool_moves_before_a_non_decreasing_table() {
        use tract_onnx::tract_core::ops::cnn::{MaxPool, PaddingSpec, PoolSpec};
        use tract_onnx::tract_core::ops::nn::leaky_relu;
        use tract_onnx::tract_core::ops::nn::DataFormat;
        let pool = |model: &mut TypedModel, x: OutletId| {
            let spec = PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![3, 3],
                padding: PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
                dilations: None,
                strides: Some(tvec![2, 2]),
                input_channels: 2,
                output_channels: 2,
            };
            let op = MaxPool {
                pool_spec: spec,
                with_index_outputs: None,
            };
            model
                .wire_node(format!("pool{}", model.nodes().len()), op, &[x])
                .unwrap()[0]
        };
        // LeakyRelu never decreases: the pool moves to i8
        let mut model = TypedModel::default();
        let x = model.add_source("x", i8::fact([1, 2, 15, 15])).unwrap();
        let t = dequantised(&mut model, x, 0.05, leaky_relu(0.1));
        let p = pool(&mut model, t);
        let q = quantised(&mut model, p, 17.0);
        model.select_output_outlets(&[q]).unwrap();
        let fast = check_requantised(model, all_i8(2, 15, 15), 1);
        assert_eq!(f32_nodes(&fast), 0, "{fast}");
        // Abs decreases below 0: the max of the table is not the table of the max
        let mut model = TypedModel::default();
        let x = model.add_source("x", i8::fact([1, 2, 15, 15])).unwrap();
        let t = dequantised(
            &mut model,
            x,
            0.05,
            tract_onnx::tract_core::ops::math::abs(),
        );
        let p = pool(&mut model, t);
        let q = quantised(&mut model, p, 17.0);
        model.select_output_outlets(&[q]).unwrap();
        check_requantised(model, all_i8(2, 15, 15), 0);
    }

    #[test]
    fn concat_of_tables_is_quantised_input_by_input() {
        use tract_onnx::tract_core::ops::nn::leaky_relu;
        let mut model = TypedModel::default();
        let x = model.add_source("x", i8::fact([1, 2, 8, 8])).unwrap();
        let a = dequantised(&mut model, x, 0.05, leaky_relu(0.1));
        let b = dequantised(
            &mut model,
            x,
            0.02,
            tract_onnx::tract_core::ops::math::abs(),
        );
        let c = model
            .wire_node("concat", TypedConcat { axis: 1 }, &[a, b, a])
            .unwrap()[0];
        let q = quantised(&mut model, c, 9.0);
        // `b` is read in f32 as well: it keeps its f32 table
        model.select_output_outlets(&[q, b]).unwrap();
        let fast = check_requantised(model, all_i8(2, 8, 8), 1);
        assert!(fast.nodes().iter().any(|n| n.op_is::<DequantizeTable>()));
        assert_eq!(
            fast.nodes()
                .iter()
                .filter(|n| n.op_is::<RequantiseTable>())
                .count(),
            3
        );
    }

    #[test]
    fn a_table_left_to_its_own_quantisation_by_a_concat_is_requantised_too() {
        use tract_onnx::tract_core::ops::nn::leaky_relu;
        // `a` feeds the quantised concat and its own quantisation, as a CSP block's branch does:
        // once the concat reads i8, `a -> q` is one i8 table as well.
        let mut model = TypedModel::default();
        let x = model.add_source("x", i8::fact([1, 2, 8, 8])).unwrap();
        let a = dequantised(&mut model, x, 0.05, leaky_relu(0.1));
        let b = dequantised(&mut model, x, 0.02, leaky_relu(0.2));
        let c = model
            .wire_node("concat", TypedConcat { axis: 1 }, &[a, b])
            .unwrap()[0];
        let concat_q = quantised(&mut model, c, 9.0);
        let a_q = quantised(&mut model, a, 11.0);
        model.select_output_outlets(&[concat_q, a_q]).unwrap();
        let fast = check_requantised(model, all_i8(2, 8, 8), 2);
        assert_eq!(f32_nodes(&fast), 0, "{fast}");
    }

    /// `r + dq(x)` (or `dq(x) + r` with `dq_first`), optimised; with `keep_r` the residual `r`
    /// is an output too, so the addition cannot take its buffer.
    fn residual_model(dq_first: bool, keep_r: bool) -> TypedModel {
        let mut model = TypedModel::default();
        let r = model.add_source("r", f32::fact([2, 3, 64])).unwrap();
        let x = model.add_source("x", i8::fact([2, 3, 64])).unwrap();
        let dq = DequantizeI8 {
            scale: 0.037,
            zero_point: 0,
        };
        let dq = model.wire_node("dq", dq, &[x]).unwrap()[0];
        let inputs = if dq_first { [dq, r] } else { [r, dq] };
        let add = tract_onnx::tract_core::ops::math::add();
        let sum = model.wire_node("add", add, &inputs).unwrap()[0];
        let outputs = if keep_r { vec![sum, r] } else { vec![sum] };
        model.select_output_outlets(&outputs).unwrap();
        model.into_optimized().unwrap()
    }

    #[test]
    fn dequantisation_fuses_into_the_residual_addition_exactly() {
        let residual: Vec<f32> = (0..384).map(|i| (i as f32 * 0.731).sin() * 3.0).collect();
        let inputs = [
            Tensor::from_shape(&[2, 3, 64], &residual).unwrap(),
            all_i8(2, 3, 64).into_shape(&[2, 3, 64]).unwrap(),
        ];
        for (dq_first, keep_r) in [(false, false), (true, false), (false, true)] {
            let stock = residual_model(dq_first, keep_r);
            assert!(stock.nodes().iter().any(|n| n.op.name() == "OptAddUnicast"));
            let mut fast = stock.clone();
            assert_eq!(fuse_dequantised_adds(&mut fast).unwrap(), 1);
            let ops: Vec<_> = fast.nodes().iter().map(|n| n.op.name()).collect();
            assert!(
                !ops.iter()
                    .any(|o| o == "DequantizeI8" || o == "OptAddUnicast"),
                "{ops:?}"
            );
            let got = output_bits(fast, &inputs);
            assert_eq!(got, output_bits(stock, &inputs));
            if keep_r {
                // the residual output still holds the input, not the sum
                let r_bits: Vec<u32> = residual.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got[1], r_bits);
            }
        }
    }

    #[test]
    fn a_dequantisation_read_elsewhere_stays_apart_from_the_addition() {
        let mut model = TypedModel::default();
        let r = model.add_source("r", f32::fact([64])).unwrap();
        let x = model.add_source("x", i8::fact([64])).unwrap();
        let dq = DequantizeI8 {
            scale: 0.5,
            zero_point: 0,
        };
        let dq = model.wire_node("dq", dq, &[x]).unwrap()[0];
        let add = tract_onnx::tract_core::ops::math::add();
        let sum = model.wire_node("add", add, &[r, dq]).unwrap()[0];
        let abs = tract_onnx::tract_core::ops::math::abs();
        let abs = model.wire_node("abs", abs, &[dq]).unwrap()[0];
        model.select_output_outlets(&[sum, abs]).unwrap();
        let mut model = model.into_optimized().unwrap();
        assert_eq!(fuse_dequantised_adds(&mut model).unwrap(), 0);
        // nor when the dequantised values are an output of the graph
        let mut model = residual_model(false, false);
        let dq = model.node_id_by_name("dq").unwrap();
        let sum = model.outputs[0];
        model
            .select_output_outlets(&[sum, OutletId::new(dq, 0)])
            .unwrap();
        assert_eq!(fuse_dequantised_adds(&mut model).unwrap(), 0);
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
