//! INT8 weights narrowed to [-64, 64] where the int8 kernel is the AVX2 one (kith issue 13).
//!
//! Without AVX-512 VNNI or AVX-VNNI, tract multiplies i8 by i8 with `avx2_mmm_i32_8x8`. Exact on
//! any i8, its loop does sign work around every `vpmaddubsw`; with B's values in [-64, 64] it
//! can multiply A + 128 as unsigned bytes by B directly (tract-linalg's `PackedI8K4Narrow`,
//! third_party/tract-linalg-0.23.9/PATCH.md), a third fewer vector operations per product.
//! tract-core takes that path for a constant B whose values fit, and puts such a constant on the
//! B side. What this pass does is make the weights fit: on the decluttered graph, in every
//! quantised einsum with one constant i8 operand of zero point 0, each weight w becomes
//! round(w / 2) (ties to even) and its scale doubles, and the i32 bias, which is in units of
//! the two scales' product, is halved the same way. It is ONNX Runtime's `reduce_range` for
//! AVX2, applied at load to a file whose metadata allows it ([`crate::model::NARROW_WEIGHTS_KEY`]:
//! the shipped GRITv2-S INT8 does, the INT8 detector does not): one bit of weight precision
//! less, so the outputs change, within what `tests/int8.rs` checks against FP32. On every other
//! tier nothing changes.

use std::ops::RangeInclusive;

use tract_linalg::mmm::Query;
use tract_linalg::MmmDispatch;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

/// The inputs of a quantised einsum: A, B, the bias, then A's, B's and C's zero point and scale.
const BIAS: usize = 2;
const ZERO_POINT: [usize; 2] = [3, 5];
const SCALE: [usize; 2] = [4, 6];

/// The values the int8 kernel tract runs on this CPU takes in a narrow B operand, when it has
/// such a packing (`avx2_mmm_i32_8x8`: [-64, 64]); `None` on every other kernel.
pub fn narrow_weight_range() -> Option<RangeInclusive<i32>> {
    let query = Query::plain(DatumType::I32, None, None, None);
    let (kernel, _, _) = MmmDispatch::native().pick(&query)?;
    kernel.packings().iter().find_map(|(_, b)| b.value_range())
}

/// Narrows the constant i8 weights of `model`'s quantised einsums into `range` (see the module
/// doc); returns how many einsums changed. Run it between tract's declutter and its codegen.
pub(crate) fn narrow_weights(
    model: &mut TypedModel,
    range: &RangeInclusive<i32>,
) -> TractResult<usize> {
    crate::passes::apply_patches(model, |model, id| narrowed(model, model.node(id), range))
}

/// `t` with `f` applied to each value, same shape.
fn mapped<T: Datum + Copy, U: Datum>(t: &Tensor, f: impl Fn(T) -> U) -> TractResult<Tensor> {
    let values: Vec<U> = t
        .try_as_plain_ram()?
        .as_slice::<T>()?
        .iter()
        .map(|&v| f(v))
        .collect();
    tensor1(&values).into_shape(t.shape())
}

/// `v / 2` rounded to the nearest integer, ties to even (unbiased: half of all weights are odd).
fn halve(v: i32) -> i32 {
    let floor = v >> 1;
    if v & 1 == 1 && floor & 1 == 1 {
        floor + 1
    } else {
        floor
    }
}

/// The patch that narrows `node`'s constant operand, if it is such an einsum and needs it.
fn narrowed(
    model: &TypedModel,
    node: &TypedNode,
    range: &RangeInclusive<i32>,
) -> TractResult<Option<TypedModelPatch>> {
    let Some(op) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    if op.q_params.is_none() || node.inputs.len() != 9 {
        return Ok(None);
    }
    let facts = model.node_input_facts(node.id)?;
    let constant = |slot: usize| facts[slot].konst.clone();
    let (slot, weights) = match (constant(0), constant(1)) {
        (Some(a), None) => (0, a),
        (None, Some(b)) => (1, b),
        _ => return Ok(None),
    };
    let (Some(zero_point), Some(scale), Some(bias)) = (
        constant(ZERO_POINT[slot]),
        constant(SCALE[slot]),
        constant(BIAS),
    ) else {
        return Ok(None);
    };
    let zero_point_is_zero = zero_point
        .cast_to::<i32>()?
        .try_as_plain_ram()?
        .as_slice::<i32>()?
        .iter()
        .all(|&z| z == 0);
    if weights.datum_type() != DatumType::I8
        || scale.datum_type() != DatumType::F32
        || bias.datum_type() != DatumType::I32
        || !zero_point_is_zero
    {
        return Ok(None);
    }
    let fits = |w: &i8| range.contains(&(*w as i32));
    if weights
        .try_as_plain_ram()?
        .as_slice::<i8>()?
        .iter()
        .all(fits)
    {
        return Ok(None);
    }
    let narrow = mapped(&weights, |w: i8| halve(w as i32) as i8)?;
    let scale = mapped(&scale, |s: f32| s * 2.0)?;
    let bias = mapped(&bias, halve)?;

    let mut patch = TypedModelPatch::new("narrow_weights");
    let mut taps = patch.taps(model, &node.inputs)?;
    taps[slot] = patch.add_const(format!("{}.narrow_weights", node.name), narrow)?;
    taps[SCALE[slot]] = patch.add_const(format!("{}.narrow_scale", node.name), scale)?;
    taps[BIAS] = patch.add_const(format!("{}.narrow_bias", node.name), bias)?;
    let wire = patch.wire_node(&node.name, op.clone(), &taps)?[0];
    patch.shunt_outside(model, node.id.into(), wire)?;
    Ok(Some(patch))
}

/// The tests load GRITv2-S, seconds each under qemu, so they run on x86_64 only; CI runs the
/// narrowed file's INT8-vs-FP32 agreement (`tests/int8.rs`) on the AVX2 tier, where it applies.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::shipped_decluttered;

    #[test]
    fn halves_to_the_nearest_ties_to_even() {
        let cases = [
            (0, 0),
            (1, 0),
            (-1, 0),
            (2, 1),
            (3, 2),
            (-3, -2),
            (5, 2),
            (-5, -2),
            (126, 63),
            (127, 64),
            (-127, -64),
            (-128, -64),
            (1001, 500),
            (-1001, -500),
        ];
        for (value, half) in cases {
            assert_eq!(halve(value), half, "{value} / 2");
        }
    }

    /// A quantised einsum's name, constant i8 operand, that operand's scale and the bias.
    type Constants = (String, Vec<i8>, Vec<f32>, Vec<i32>);

    /// The [`Constants`] of every quantised einsum with a constant operand.
    fn quantised_constants(model: &TypedModel) -> Vec<Constants> {
        let constant = |node: &TypedNode, slot: usize| {
            model.outlet_fact(node.inputs[slot]).unwrap().konst.clone()
        };
        model
            .nodes()
            .iter()
            .filter(|node| {
                node.op_as::<EinSum>()
                    .is_some_and(|op| op.q_params.is_some())
            })
            .filter_map(|node| {
                let slot = (0..2).find(|&slot| constant(node, slot).is_some())?;
                fn values<T: Datum>(t: &Tensor) -> Vec<T> {
                    let t = t.cast_to::<T>().unwrap();
                    t.try_as_plain_ram()
                        .unwrap()
                        .as_slice::<T>()
                        .unwrap()
                        .to_vec()
                }
                let at = |slot: usize| constant(node, slot).unwrap();
                Some((
                    node.name.clone(),
                    values::<i8>(&at(slot)),
                    values::<f32>(&at(SCALE[slot])),
                    values::<i32>(&at(BIAS)),
                ))
            })
            .collect()
    }

    #[test]
    #[cfg_attr(not(target_arch = "x86_64"), ignore = "x86_64 only: model loads")]
    fn gritv2_s_weights_halved_scales_doubled() {
        let plain = shipped_decluttered("gritv2-s.int8.onnx");
        let mut narrowed = plain.clone();
        assert_eq!(narrow_weights(&mut narrowed, &(-64..=64)).unwrap(), 106);
        let (before, after) = (quantised_constants(&plain), quantised_constants(&narrowed));
        assert_eq!((before.len(), after.len()), (108, 108));
        let mut changed = 0;
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b.0, a.0);
            assert!(a.1.iter().all(|&w| (-64..=64).contains(&w)), "{}", a.0);
            if b.1 == a.1 {
                continue;
            }
            changed += 1;
            assert!(
                b.1.iter()
                    .zip(&a.1)
                    .all(|(&w, &n)| halve(w as i32) == n as i32),
                "{}",
                a.0
            );
            assert!(b.2.iter().zip(&a.2).all(|(s, n)| *n == s * 2.0), "{}", a.0);
            assert!(
                b.3.iter().zip(&a.3).all(|(&v, &n)| halve(v) == n),
                "{}",
                a.0
            );
        }
        assert_eq!(changed, 106);
        // Already narrow: nothing left to do.
        assert_eq!(narrow_weights(&mut narrowed, &(-64..=64)).unwrap(), 0);
    }

    /// How many products of the optimised `model` run with a packing of restricted B values.
    fn narrow_packed_products(model: &TypedModel) -> usize {
        use tract_onnx::tract_core::ops::matmul::optimized::{OptMatMul, ProtoFusedSpec};
        model
            .nodes()
            .iter()
            .filter_map(|node| node.op_as::<OptMatMul>())
            .filter(|op| {
                op.micro_ops.iter().any(|micro| match micro {
                    ProtoFusedSpec::AddMatMul { packings, .. } => {
                        packings.iter().zip(&op.mmm).any(|((packing, _), mmm)| {
                            mmm.packings()[*packing].1.value_range().is_some()
                        })
                    }
                    _ => false,
                })
            })
            .count()
    }

    #[test]
    #[cfg_attr(not(target_arch = "x86_64"), ignore = "x86_64 only: model loads")]
    fn only_files_that_allow_it_are_narrowed() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let applies = narrow_weight_range().is_some();
        let load = |file: &str| crate::model::load_optimized(&models.join(file)).unwrap();
        let relation = load("gritv2-s.int8.onnx");
        assert_eq!(
            relation
                .metadata
                .get(crate::model::NARROW_WEIGHTS_KEY)
                .map(String::as_str),
            Some("allowed")
        );
        assert_eq!(relation.narrowed_products, if applies { 106 } else { 0 });
        // Where it applies, tract runs every product with constant weights with the narrow
        // packing: the 106 narrowed and the 2 whose weights already fitted.
        let packed = narrow_packed_products(&relation.model);
        assert_eq!(packed, if applies { 108 } else { 0 });
        // The INT8 detector does not allow it: narrowed, it lost a person on the first demo frame.
        assert_eq!(load("person-detector.int8.onnx").narrowed_products, 0);
    }
}
