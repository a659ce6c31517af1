//! What tract makes of a model, for the INT8 work: which tract-linalg kernel runs each matrix
//! product, how many MACs run on integer kernels, quantised lookup-table hazards, the kernels this
//! CPU offers, and the fixed inputs `kith-model bench` feeds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tract_linalg::isa::IsaSet;
use tract_linalg::MmmDispatch;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
use tract_onnx::tract_core::ops::quant::{
    DequantizeLinearF32, LookupTable, QuantizeLinearI8, QuantizeLinearU8,
};
use tract_onnx::tract_core::ops::Cost;

use kith_runtime::limits::MAX_PERSONS;
use kith_runtime::model::{load_optimized, tract_isa, ModelFile};

use crate::{Error, Result};

/// One node of the optimised graph.
#[derive(Debug, Clone, Serialize)]
pub struct NodeAudit {
    pub name: String,
    /// tract's op name.
    pub op: String,
    /// tract's description of the op (for matrix products: shapes and the fused micro-ops).
    pub info: String,
    /// Datum type of each input.
    pub inputs: Vec<String>,
    /// Datum type of each output.
    pub outputs: Vec<String>,
    /// The tract-linalg matmul kernel(s) the op runs, one per mode; `None` for ops without one.
    pub kernel: Option<String>,
    /// Multiply-accumulates of one run, for matrix products and convolutions (0 for other ops).
    pub macs: u64,
    /// Whether those MACs run in an integer accumulator.
    pub integer: bool,
}

/// Something that makes a quantised graph compute the wrong thing in tract.
#[derive(Debug, Clone, Serialize)]
pub struct Hazard {
    /// `lut-chain`: a DequantizeLinear -> ... -> QuantizeLinear chain holding an op that is not
    /// element-wise, which tract folds into a per-element lookup table. `unproven-lut`: a lookup
    /// table in the optimised graph that no element-wise chain of the file explains.
    pub kind: &'static str,
    /// The node at fault.
    pub node: String,
    pub detail: String,
}

/// The audit of one model file.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub file: PathBuf,
    pub nodes: Vec<NodeAudit>,
    pub macs_total: u64,
    pub macs_integer: u64,
    pub hazards: Vec<Hazard>,
}

impl Audit {
    /// MACs on integer kernels / all MACs (0 for a model without MACs).
    pub fn integer_fraction(&self) -> f64 {
        if self.macs_total == 0 {
            0.0
        } else {
            self.macs_integer as f64 / self.macs_total as f64
        }
    }
}

/// Audits `path`: its optimised graph as [`load_optimized`] makes it, and the typed graph before
/// declutter for lookup-table chains.
pub fn audit(path: &Path) -> Result<Audit> {
    let err = |e: TractError| Error::load(path, e);
    let optimized = load_optimized(path)?.model;
    let typed = tract_onnx::onnx()
        .model_for_path(path)
        .and_then(|m| m.into_typed())
        .map_err(err)?;
    let mut chains = lut_chains(&typed).map_err(err)?;
    chains.extend(lut_chains(&held_declutter(typed).map_err(err)?).map_err(err)?);
    let mut hazards: Vec<Hazard> = vec![];
    for h in chains.iter().filter_map(Chain::hazard) {
        if !hazards.iter().any(|k| k.node == h.node) {
            hazards.push(h);
        }
    }
    let proven: BTreeSet<&str> = chains
        .iter()
        .filter(|c| c.hazard().is_none())
        .map(Chain::lut_name)
        .collect();
    let mut nodes = Vec::with_capacity(optimized.nodes().len());
    for node in optimized.eval_order().map_err(err)? {
        let node = optimized.node(node);
        let report = node_audit(&optimized, node).map_err(err)?;
        if is_lut(node) && !is_proven(&proven, &node.name) {
            hazards.push(Hazard {
                kind: "unproven-lut",
                node: node.name.clone(),
                detail: format!(
                    "lookup table `{}` in the optimised graph comes from no DequantizeLinear -> \
                     element-wise -> QuantizeLinear chain of the file",
                    node.name
                ),
            });
        }
        nodes.push(report);
    }
    let macs_total = nodes.iter().map(|n| n.macs).sum();
    let macs_integer = nodes.iter().filter(|n| n.integer).map(|n| n.macs).sum();
    Ok(Audit {
        file: path.to_owned(),
        nodes,
        macs_total,
        macs_integer,
        hazards,
    })
}

/// The ops of an optimised graph that compute matrix products or convolutions: only their
/// multiply-accumulates are counted (tract's cost model also counts element-wise FMAs).
const PRODUCT_OPS: [&str; 7] = [
    "OptMatMul",
    "EinSum",
    "Conv",
    "DepthWiseConv",
    "DirectSpatialConv",
    "BlockedConv",
    "Deconv",
];

fn node_audit(model: &TypedModel, node: &TypedNode) -> TractResult<NodeAudit> {
    let input_facts = model.node_input_facts(node.id)?;
    let inputs = input_facts
        .iter()
        .map(|f| format!("{:?}", f.datum_type))
        .collect();
    let outputs = node
        .outputs
        .iter()
        .map(|o| format!("{:?}", o.fact.datum_type))
        .collect();
    let (mut macs, mut integer) = (0u64, false);
    if PRODUCT_OPS.contains(&&*node.op.name()) {
        for (cost, count) in node.op.cost(&input_facts)? {
            if let Cost::FMA(dt) = cost {
                macs += count.to_i64().unwrap_or(0).max(0) as u64;
                integer |= dt.is_integer();
            }
        }
    }
    let kernel = node.op_as::<OptMatMul>().map(|op| {
        op.mmm
            .iter()
            .map(|k| k.name().to_owned())
            .collect::<Vec<_>>()
            .join("|")
    });
    let mut info = node.op.info()?.join("; ");
    if info.len() > 2000 {
        let cut = (0..=2000)
            .rev()
            .find(|&i| info.is_char_boundary(i))
            .unwrap_or(0);
        info.truncate(cut);
        info.push_str("...");
    }
    Ok(NodeAudit {
        name: node.name.clone(),
        op: node.op.name().into_owned(),
        info,
        inputs,
        outputs,
        kernel,
        macs,
        integer: integer && macs > 0,
    })
}

/// A chain tract's DequantizeLinear declutter folds into one 256-entry lookup table.
struct Chain {
    dequant: String,
    /// Name, op name and whether the op is element-wise, for each node between DQ and Q.
    ops: Vec<(String, String, bool)>,
    quant: String,
}

impl Chain {
    /// The name tract gives the lookup table: its first op's, or the DequantizeLinear's.
    fn lut_name(&self) -> &str {
        self.ops.first().map_or(&self.dequant, |o| &o.0)
    }

    fn hazard(&self) -> Option<Hazard> {
        let (name, op, _) = self.ops.iter().find(|o| !o.2)?;
        let path: Vec<_> = self.ops.iter().map(|o| o.1.as_str()).collect();
        Some(Hazard {
            kind: "lut-chain",
            node: name.clone(),
            detail: format!(
                "`{}` -> {} -> `{}`: tract folds DequantizeLinear -> ops -> QuantizeLinear into a \
                 per-element lookup table, and {op} `{name}` is not element-wise, so its result is wrong",
                self.dequant,
                path.join(" -> "),
                self.quant
            ),
        })
    }
}

fn is_quantize(node: &TypedNode) -> bool {
    node.op_as::<ElementWiseOp>().is_some_and(|op| {
        op.0.downcast_ref::<QuantizeLinearI8>().is_some()
            || op.0.downcast_ref::<QuantizeLinearU8>().is_some()
    })
}

fn is_lut(node: &TypedNode) -> bool {
    node.op_as::<ElementWiseOp>()
        .is_some_and(|op| op.0.downcast_ref::<LookupTable>().is_some())
}

/// Whether a lookup table of the optimised graph carries the name of a proven chain (tract may
/// suffix a node name when it rewires).
fn is_proven(proven: &BTreeSet<&str>, name: &str) -> bool {
    proven
        .iter()
        .any(|p| name == *p || name.strip_prefix(p).is_some_and(|s| s.starts_with('.')))
}

/// A DequantizeLinear that declutter leaves alone: the graph is decluttered (patterns such as
/// Erf -> GeluExact fused) with these in place, so the chains it would fold into lookup tables
/// can be read before they are folded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeldDequantize(DequantizeLinearF32);

impl Op for HeldDequantize {
    fn name(&self) -> StaticName {
        "HeldDequantizeLinear".into()
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for HeldDequantize {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.0.eval(ctx, inputs)
    }
}

impl TypedOp for HeldDequantize {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.0.output_facts(inputs)
    }

    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        AxesMapping::natural(inputs, outputs)
    }

    fn change_axes(
        &self,
        model: &TypedModel,
        node: &TypedNode,
        io: InOut,
        change: &AxisOp,
    ) -> TractResult<Option<AxisChangeConsequence>> {
        self.0.change_axes(model, node, io, change)
    }

    tract_onnx::tract_core::as_op!();
}

/// Declutters `model` with every DequantizeLinear held out of the lookup-table fold.
fn held_declutter(mut model: TypedModel) -> TractResult<TypedModel> {
    for node in model.nodes_mut() {
        if let Some(dq) = node.op_as::<DequantizeLinearF32>() {
            node.op = Box::new(HeldDequantize(dq.clone()));
        }
    }
    model.into_decluttered()
}

fn is_dequantize(node: &TypedNode) -> bool {
    node.op_is::<DequantizeLinearF32>() || node.op_is::<HeldDequantize>()
}

/// The chains tract would fold, found as its `DequantizeLinearF32::declutter` walks them: single
/// successors from an int8/uint8 DequantizeLinear, each with an element-wise-looking axis
/// mapping, up to a QuantizeLinear. Softmax passes that axis test; that is the bug.
fn lut_chains(model: &TypedModel) -> TractResult<Vec<Chain>> {
    let mut chains = vec![];
    for dq in model.nodes() {
        if !is_dequantize(dq) {
            continue;
        }
        let incoming = model.outlet_fact(dq.inputs[0])?.datum_type.unquantized();
        if incoming != i8::datum_type() && incoming != u8::datum_type() {
            continue;
        }
        let mut ops = vec![];
        let mut current = dq;
        while let Some(next) = model.single_succ(current.id)? {
            if is_quantize(next) {
                chains.push(Chain {
                    dequant: dq.name.clone(),
                    ops,
                    quant: next.name.clone(),
                });
                break;
            }
            let (inputs, outputs) = model.node_facts(next.id)?;
            match next.op.axes_mapping(&inputs, &outputs) {
                Ok(m) if m.is_element_wise_unary() => {}
                _ => break,
            }
            let element_wise = next.op_is::<ElementWiseOp>() || next.op_is::<Cast>();
            ops.push((next.name.clone(), next.op.name().into_owned(), element_wise));
            current = next;
        }
    }
    Ok(chains)
}

/// One matmul kernel tract-linalg can run on this CPU.
#[derive(Debug, Clone, Serialize)]
pub struct KernelInfo {
    pub name: String,
    /// Accumulator type ("F32", "I32", ...).
    pub accumulator: String,
    pub mr: usize,
    pub nr: usize,
    /// Instruction-set features the kernel needs.
    pub isa: String,
    /// Rank among kernels of the same kind (higher wins).
    pub preference: isize,
}

/// One element-wise / reduction routine tract-linalg picks on this CPU.
#[derive(Debug, Clone, Serialize)]
pub struct RoutineInfo {
    pub func: String,
    pub dt: String,
    pub kernel: String,
}

/// What tract-linalg detected and offers on this CPU.
#[derive(Debug, Clone, Serialize)]
pub struct KernelReport {
    pub arch: String,
    /// The detected instruction-set features (after `TRACT_CPU_ISA`).
    pub isa: String,
    /// tract's one-word name of that level.
    pub level: String,
    pub matmul_kernels: Vec<KernelInfo>,
    /// Dispatch tiers, highest precedence first.
    pub tiers: Vec<String>,
    pub routines: Vec<RoutineInfo>,
}

/// The ISA and kernels tract-linalg uses on this machine.
pub fn kernels() -> KernelReport {
    let isa: IsaSet = tract_linalg::isa::native();
    let named = tract_isa();
    let dispatch = MmmDispatch::native();
    let matmul_kernels = dispatch
        .runnable()
        .iter()
        .map(|k| KernelInfo {
            name: k.name().to_owned(),
            accumulator: format!("{:?}", k.internal_type()),
            mr: k.mr(),
            nr: k.nr(),
            isa: format!("{:?}", k.isa()),
            preference: k.preference(),
        })
        .collect();
    let mut funcs = std::collections::BTreeMap::new();
    for r in tract_linalg::routines::declared() {
        funcs.insert((r.func, format!("{:?}", r.dt())), r.dt());
    }
    let routines = funcs
        .into_iter()
        .filter_map(|((func, name), dt)| {
            let best = tract_linalg::routines::best_for(func, dt, &isa)?;
            Some(RoutineInfo {
                func: func.name().to_owned(),
                dt: name,
                kernel: best.name().to_owned(),
            })
        })
        .collect();
    KernelReport {
        arch: named.arch,
        isa: named.isa,
        level: named.level,
        matmul_kernels,
        tiers: dispatch.tiers().iter().map(|t| t.name.to_owned()).collect(),
        routines,
    }
}

/// The reference image formula: `((c*61 + y*7 + x*13) % 256) / 255`.
fn reference_pixel(c: usize, y: usize, x: usize) -> f32 {
    ((c * 61 + y * 7 + x * 13) % 256) as f32 / 255.0
}

/// Coordinates of one person box in GRITv2-S's `boxes` input (x0, y0, x1, y1).
const BOX_COORDS: usize = 4;

/// The image side of the GRITv2-S files the reference input was recorded for.
const REFERENCE_SIZE: usize = 224;

fn is_gritv2(model: &ModelFile) -> bool {
    let mut specs: Vec<_> = model
        .inputs()
        .iter()
        .map(|s| (s.name.as_str(), s.shape.as_slice()))
        .collect();
    specs.sort();
    specs
        == [
            ("boxes", &[1, MAX_PERSONS, BOX_COORDS][..]),
            ("image", &[1, 3, REFERENCE_SIZE, REFERENCE_SIZE][..]),
            ("mask", &[1, MAX_PERSONS][..]),
        ]
}

fn flatten(v: &serde_json::Value, out: &mut Vec<f32>) -> bool {
    match v {
        serde_json::Value::Array(items) => items.iter().all(|i| flatten(i, out)),
        serde_json::Value::Number(n) => n.as_f64().map(|f| out.push(f as f32)).is_some(),
        _ => false,
    }
}

/// Fills `model`'s inputs with the fixed inputs of `tools/python/baseline/ort_bench.py`: for
/// GRITv2-S (image [1,3,224,224], boxes [1,MAX_PERSONS,4], mask [1,MAX_PERSONS]) the reference image formula with the
/// boxes and mask of `reference` (models/gritv2-s.reference.json); for any other model each 4-D
/// input [N,C,H,W] gets the same formula per channel, any other rank `((i*13) % 256) / 255` over
/// the flat tensor. `reference` is only read for GRITv2-S.
pub fn fill_fixed_inputs(model: &mut ModelFile, reference: &Path) -> Result<()> {
    let stored = if is_gritv2(model) {
        let bad = |detail: String| Error::Contract {
            path: reference.to_owned(),
            detail,
        };
        let text = std::fs::read_to_string(reference).map_err(|source| Error::Read {
            path: reference.to_owned(),
            source,
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: reference.to_owned(),
                source,
            })?;
        let mut fields = vec![];
        for key in ["boxes", "mask"] {
            let mut values = vec![];
            if !flatten(&json[key], &mut values) {
                return Err(bad(format!("`{key}` is missing or not numbers")));
            }
            fields.push((key, values));
        }
        fields
    } else {
        vec![]
    };
    for ix in 0..model.inputs().len() {
        let spec = model.inputs()[ix].clone();
        let data = model.input_mut(ix)?;
        if let Some((_, values)) = stored.iter().find(|(k, _)| *k == spec.name) {
            if values.len() != data.len() {
                return Err(Error::Contract {
                    path: reference.to_owned(),
                    detail: format!(
                        "`{}` has {} values, the model's input has {}",
                        spec.name,
                        values.len(),
                        data.len()
                    ),
                });
            }
            data.copy_from_slice(values);
        } else if let [_, c, h, w] = spec.shape[..] {
            for (i, v) in data.iter_mut().enumerate() {
                *v = reference_pixel((i / (h * w)) % c, (i / w) % h, i % w);
            }
        } else {
            for (i, v) in data.iter_mut().enumerate() {
                *v = ((i * 13) % 256) as f32 / 255.0;
            }
        }
    }
    Ok(())
}
