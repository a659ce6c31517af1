//! What kith's graph passes ([`crate::int8`], [`crate::maxpool`], [`crate::im2col`],
//! [`crate::resize`], [`crate::softmax`], [`crate::layernorm`], [`crate::pointwise`]) share: each
//! runs on tract's optimised graph and swaps nodes for ops that compute the same values faster
//! (the softmax and the layer norm to a few units in the last place, the others bit for bit);
//! the pointwise one runs before tract's codegen and reshapes instead, bit for bit.

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

/// The node that alone reads `node`'s output, unless that output is also one of the graph's: a
/// node whose value a pass may fold into that reader.
pub(crate) fn only_reader<'m>(
    model: &'m TypedModel,
    node: &TypedNode,
) -> TractResult<Option<&'m TypedNode>> {
    if model.outputs.contains(&OutletId::new(node.id, 0)) {
        return Ok(None);
    }
    model.single_succ(node.id)
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

/// `file` of the repository's models/, as tract declutters it (before its codegen).
#[cfg(test)]
pub(crate) fn shipped_decluttered(file: &str) -> TypedModel {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(file);
    let model = tract_onnx::onnx().model_for_path(&path).unwrap();
    model.into_typed().unwrap().into_decluttered().unwrap()
}

/// `file` of the repository's models/, as tract optimises it, before kith's passes.
#[cfg(test)]
pub(crate) fn shipped_model(file: &str) -> TypedModel {
    let mut model = shipped_decluttered(file);
    model.optimize().unwrap();
    model
}

/// An f32 tensor of `shape` whose values in [0, 1) repeat every 1000 / gcd(step, 1000).
#[cfg(test)]
pub(crate) fn pattern(shape: &[usize], step: usize) -> Tensor {
    let len = shape.iter().product::<usize>();
    let values: Vec<f32> = (0..len)
        .map(|i| ((i * step) % 1000) as f32 / 1000.0)
        .collect();
    Tensor::from_shape(shape, &values).unwrap()
}

/// GRITv2-S's inputs for the passes' tests: a patterned 224x224 image, eight boxes (three
/// distinct) and a mask of the first three.
#[cfg(test)]
pub(crate) fn gritv2_inputs() -> [Tensor; 3] {
    let boxes: Vec<f32> = [
        [0.1f32, 0.1, 0.4, 0.9],
        [0.5, 0.2, 0.9, 0.8],
        [0.3, 0.3, 0.6, 0.7],
    ]
    .iter()
    .cycle()
    .take(8)
    .flatten()
    .copied()
    .collect();
    [
        pattern(&[1, 3, 224, 224], 6131),
        Tensor::from_shape(&[1, 8, 4], &boxes).unwrap(),
        Tensor::from_shape(&[1, 8], &[1f32, 1., 1., 0., 0., 0., 0., 0.]).unwrap(),
    ]
}
