//! What kith's graph passes ([`crate::int8`], [`crate::maxpool`], [`crate::im2col`],
//! [`crate::resize`], [`crate::softmax`], [`crate::layernorm`]) share: each runs on tract's
//! optimised graph and swaps nodes for ops that compute the same values faster (the softmax and
//! the layer norm to a few units in the last place, the others bit for bit).

use tract_onnx::prelude::*;

/// Gives every node for which `replacement` has an op that op instead of its own (same inputs,
/// same outputs); returns how many changed.
pub(crate) fn swap_ops(
    model: &mut TypedModel,
    replacement: impl Fn(&TypedModel, &TypedNode) -> TractResult<Option<Box<dyn TypedOp>>>,
) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        if let Some(op) = replacement(model, model.node(id))? {
            model.node_mut(id).op = op;
            replaced += 1;
        }
    }
    Ok(replaced)
}

/// Applies the patch `patch_at` makes at each node, in node order, to the graph as the patches
/// before it left it; then, if any applied, drops the nodes nothing reads any more. Returns how
/// many applied.
pub(crate) fn apply_patches(
    model: &mut TypedModel,
    patch_at: impl Fn(&TypedModel, usize) -> TractResult<Option<TypedModelPatch>>,
) -> TractResult<usize> {
    let mut applied = 0;
    for id in 0..model.nodes().len() {
        if let Some(patch) = patch_at(model, id)? {
            patch.apply(model)?;
            applied += 1;
        }
    }
    if applied > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(applied)
}

/// The bits of every output of `model` on `inputs`: an f32 as its bit pattern, an i8 as its byte.
/// The passes' tests compare a graph with and without a pass on them.
#[cfg(test)]
pub(crate) fn output_bits(model: TypedModel, inputs: &[Tensor]) -> Vec<Vec<u32>> {
    let inputs = inputs.iter().map(|t| t.clone().into_tvalue()).collect();
    let outputs = model.into_runnable().unwrap().run(inputs).unwrap();
    outputs
        .iter()
        .map(|t| {
            let plain = t.try_as_plain_ram().unwrap();
            match plain.as_slice::<f32>() {
                Ok(xs) => xs.iter().map(|v| v.to_bits()).collect(),
                Err(_) => plain
                    .as_slice::<i8>()
                    .unwrap()
                    .iter()
                    .map(|&v| v as u8 as u32)
                    .collect(),
            }
        })
        .collect()
}

/// `file` of the repository's models/, as tract optimises it, before kith's passes.
#[cfg(test)]
pub(crate) fn shipped_model(file: &str) -> TypedModel {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(file);
    tract_onnx::onnx()
        .model_for_path(&path)
        .unwrap()
        .into_optimized()
        .unwrap()
}
