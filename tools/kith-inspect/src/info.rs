//! What a model file holds: its I/O, metadata, parameter count and multiply-accumulates per run,
//! as `kith-model info` prints them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::Cost;

use kith_runtime::model::TensorSpec;

use crate::{Error, Result};

/// Facts about one ONNX model file.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub bytes: u64,
    pub metadata: BTreeMap<String, String>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Elements of all initializers and Constant nodes: the parameters.
    pub params: u64,
    /// Parameters by ONNX element type ("float", "int8", ...).
    pub params_by_type: BTreeMap<String, u64>,
    /// Multiply-accumulates of one run in matrix products and convolutions (tract's cost model on
    /// the decluttered graph).
    pub macs: u64,
    /// MACs by the datum type they run in.
    pub macs_by_type: BTreeMap<String, u64>,
    /// Node count per ONNX operator type.
    pub onnx_ops: BTreeMap<String, usize>,
}

fn onnx_type_name(code: i32) -> String {
    tract_onnx::pb::tensor_proto::DataType::try_from(code)
        .map(|t| t.as_str_name().to_lowercase())
        .unwrap_or_else(|_| format!("type{code}"))
}

fn shape_of(model: &TypedModel, outlet: OutletId) -> TractResult<TensorSpec> {
    let name = model
        .outlet_label(outlet)
        .unwrap_or(&model.node(outlet.node).name)
        .to_owned();
    let fact = model.outlet_fact(outlet)?;
    let shape = fact
        .shape
        .iter()
        .map(|d| d.to_i64().map_or(0, |v| v.max(0) as usize))
        .collect();
    Ok(TensorSpec { name, shape })
}

/// The sha256 of a file, as lowercase hex (how MODELS.md and reports name a model's exact bytes).
pub fn file_sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let err = |e: std::io::Error| Error::load(path, e);
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Whether a decluttered tract op is a matrix product or a convolution: the ops whose
/// multiply-accumulates "MACs per frame" counts (element-wise arithmetic is left out).
fn is_matmul_or_conv(op: &str) -> bool {
    op == "EinSum" || op.contains("MatMul") || op.contains("Conv")
}

/// Reads `path` and counts its parameters and MACs.
pub fn inspect(path: &Path) -> Result<ModelInfo> {
    let err = |e: TractError| Error::load(path, e);
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::load(path, e))?
        .len();
    let onnx = tract_onnx::onnx();
    let proto = onnx.proto_model_for_path(path).map_err(err)?;
    let graph = proto.graph.as_ref().ok_or_else(|| Error::Contract {
        path: path.to_owned(),
        detail: "the file holds no graph".into(),
    })?;
    let mut params_by_type = BTreeMap::new();
    let mut onnx_ops = BTreeMap::new();
    for t in &graph.initializer {
        *params_by_type
            .entry(onnx_type_name(t.data_type))
            .or_insert(0) += t.dims.iter().product::<i64>().max(0) as u64;
    }
    for node in &graph.node {
        *onnx_ops.entry(node.op_type.clone()).or_insert(0) += 1;
        if node.op_type == "Constant" {
            for t in node.attribute.iter().filter_map(|a| a.t.as_ref()) {
                *params_by_type
                    .entry(onnx_type_name(t.data_type))
                    .or_insert(0) += t.dims.iter().product::<i64>().max(0) as u64;
            }
        }
    }
    let metadata = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    let model = onnx.model_for_proto_model(&proto).map_err(err)?;
    let typed = model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(err)?;
    let mut macs_by_type = BTreeMap::new();
    for node in typed
        .nodes()
        .iter()
        .filter(|n| is_matmul_or_conv(n.op().name().as_ref()))
    {
        let facts: TVec<&TypedFact> = node
            .inputs
            .iter()
            .map(|i| typed.outlet_fact(*i))
            .collect::<TractResult<_>>()
            .map_err(err)?;
        for (cost, count) in node.op.cost(&facts).map_err(err)? {
            if let Cost::FMA(dt) = cost {
                let n = count.to_i64().unwrap_or(0).max(0) as u64;
                *macs_by_type.entry(format!("{dt:?}")).or_insert(0) += n;
            }
        }
    }
    let inputs = typed
        .input_outlets()
        .map_err(err)?
        .iter()
        .map(|&o| shape_of(&typed, o))
        .collect::<TractResult<_>>()
        .map_err(err)?;
    let outputs = typed
        .output_outlets()
        .map_err(err)?
        .iter()
        .map(|&o| shape_of(&typed, o))
        .collect::<TractResult<_>>()
        .map_err(err)?;
    Ok(ModelInfo {
        path: path.to_owned(),
        bytes,
        metadata,
        inputs,
        outputs,
        params: params_by_type.values().sum(),
        params_by_type,
        macs: macs_by_type.values().sum(),
        macs_by_type,
        onnx_ops,
    })
}
