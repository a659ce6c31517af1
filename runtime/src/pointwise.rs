//! One matrix product per quantised 1x1 convolution, not one per image row.
//!
//! tract 0.23.9 turns a 1x1 convolution into an `EinSum` over the `[N, C, H, W]` input and, at
//! codegen, folds H and W into one axis of the matrix product (its `merge-same-role-axes` rule),
//! but only in two-input einsums. A quantised convolution's einsum also takes its bias, scales
//! and zero points, so there H stays a batch axis: H products of `[O, C] x [C, W]`, each packed
//! and dispatched on its own (56 products of 56 columns for each 1x1 convolution of GRITv2-S's
//! first stage, 13 of 13 columns for one in the detector; docs/int8.md, "One product per 1x1
//! convolution"). [`merge_pointwise_rows`] makes the same fold in those einsums on the
//! decluttered graph, before codegen: the input reshaped to `[N, C, H * W]`, the einsum over it,
//! its output reshaped back. The integer sums are the same, so are the bytes.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

/// Merges, in every quantised einsum of the decluttered `model`, two neighbouring axes that only
/// one operand and the output carry (a 1x1 convolution's H and W); returns how many merged.
/// Run it between tract's declutter and its codegen.
pub(crate) fn merge_pointwise_rows(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::apply_patches(model, |model, id| merged(model, model.node(id)))
}

/// The patch that merges `node`'s row axis into its column axis, if it is such an einsum.
fn merged(model: &TypedModel, node: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
    let Some(op) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    if op.q_params.is_none() {
        return Ok(None);
    }
    let Some((slot, rows, columns)) = row_and_column_axes(&op.axes) else {
        return Ok(None);
    };
    let rows = op.axes.axis(rows)?;
    let (at, out_at) = (rows.inputs[slot][0], rows.outputs[0][0]);
    let shape = &model.outlet_fact(node.inputs[slot])?.shape;
    let dims: TVec<TDim> = tvec![shape[at].clone(), shape[at + 1].clone()];
    if dims.iter().any(|d| d.as_i64().is_none_or(|d| d < 2)) {
        return Ok(None);
    }
    let merged: TDim = dims.iter().product();
    let mut patch = TypedModelPatch::new("merge_pointwise_rows");
    let mut taps = patch.taps(model, &node.inputs)?;
    taps[slot] = patch.wire_node(
        format!("{}.merge_rows", node.name),
        AxisOp::Reshape(at, dims.clone(), tvec![merged.clone()]),
        &[taps[slot]],
    )?[0];
    let einsum = EinSum {
        axes: op.axes.remove_axis(columns)?,
        ..op.clone()
    };
    let wire = patch.wire_node(&node.name, einsum, &taps)?[0];
    let wire = patch.wire_node(
        format!("{}.split_rows", node.name),
        AxisOp::Reshape(out_at, tvec![merged], dims),
        &[wire],
    )?[0];
    patch.shunt_outside(model, node.id.into(), wire)?;
    Ok(Some(patch))
}

/// The operand slot and two axes (rows, then columns) that are next to each other in that operand
/// and in the same order next to each other in the output, and in no other input: H and W of a 1x1
/// convolution, which can be one axis of the matrix product.
fn row_and_column_axes(axes: &AxesMapping) -> Option<(usize, char, char)> {
    let only_in = |axis: &Axis, slot: usize| {
        axis.outputs[0].len() == 1
            && axis.inputs[slot].len() == 1
            && (0..axis.inputs.len()).all(|other| other == slot || axis.inputs[other].is_empty())
    };
    (0..2).find_map(|slot| {
        let candidates: Vec<&Axis> = axes
            .iter_all_axes()
            .filter(|axis| only_in(axis, slot))
            .collect();
        candidates.iter().find_map(|rows| {
            candidates.iter().find_map(|columns| {
                let next = |positions: &TVec<usize>, of: &TVec<usize>| positions[0] == of[0] + 1;
                (next(&columns.inputs[slot], &rows.inputs[slot])
                    && next(&columns.outputs[0], &rows.outputs[0]))
                .then_some((slot, rows.repr, columns.repr))
            })
        })
    })
}

/// The tests load whole models, seconds each under qemu, so they run on x86_64 only; on the ARM
/// targets the INT8 agreement tests (`tests/int8.rs`) run the models through this pass.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{output_bits, shipped_decluttered};

    /// `file` through tract's codegen without and with the merge, and how many einsums merged.
    fn both_ways(file: &str) -> (TypedModel, TypedModel, usize) {
        let mut plain = shipped_decluttered(file);
        let mut merged = plain.clone();
        let count = merge_pointwise_rows(&mut merged).unwrap();
        plain.optimize().unwrap();
        merged.optimize().unwrap();
        (plain, merged, count)
    }

    /// How many int8 operands tract packs in one run: its products' batch extents, summed.
    fn int8_packs(model: &TypedModel) -> usize {
        model
            .nodes()
            .iter()
            .filter(|node| node.op.name() == "OptMatMulPack")
            .filter(|node| node.outputs[0].fact.datum_type.unquantized() == i8::datum_type())
            .map(|node| node.outputs[0].fact.shape.iter().product::<TDim>())
            .map(|slices| slices.as_i64().unwrap() as usize)
            .sum()
    }

    #[test]
    #[cfg_attr(not(target_arch = "x86_64"), ignore = "x86_64 only: model loads")]
    fn gritv2_s_int8_same_bytes_fewer_products() {
        let (plain, merged, count) = both_ways("gritv2-s.int8.onnx");
        // Stage 0's four 1x1 convolutions, the downsamplings' six, four products of stage 1's
        // attention and three of the relation decoder's.
        assert_eq!(count, 17);
        assert!(
            int8_packs(&merged) < int8_packs(&plain),
            "{} packed int8 operands, {} before",
            int8_packs(&merged),
            int8_packs(&plain)
        );
        let inputs = crate::passes::gritv2_inputs();
        assert_eq!(output_bits(merged, &inputs), output_bits(plain, &inputs));
    }

    #[test]
    #[cfg_attr(not(target_arch = "x86_64"), ignore = "x86_64 only: model loads")]
    fn detector_int8_same_bytes() {
        let (plain, merged, count) = both_ways("person-detector.int8.onnx");
        // Its three 1x1 convolutions of 128 outputs, on 52, 26 and 13 rows.
        assert_eq!(count, 3);
        let image = [crate::passes::pattern(&[1, 3, 416, 416], 7919)];
        assert_eq!(output_bits(merged, &image), output_bits(plain, &image));
    }

    #[test]
    #[cfg_attr(not(target_arch = "x86_64"), ignore = "x86_64 only: model loads")]
    fn fp32_einsums_are_left_to_tract() {
        let mut model = shipped_decluttered("gritv2-s.fp32.onnx");
        assert_eq!(merge_pointwise_rows(&mut model).unwrap(), 0);
    }
}
