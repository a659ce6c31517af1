//! Helpers shared by the integration tests: repository paths and ONNX files written on the fly.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb;

/// The repository's root folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tools/kith-inspect is two folders down")
        .to_owned()
}

/// A file under models/.
pub fn model(name: &str) -> PathBuf {
    repo().join("models").join(name)
}

/// Writes `graph` as an ONNX file (opset 13) at `path`.
pub fn write_onnx(path: &Path, graph: pb::GraphProto) {
    let proto = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    };
    std::fs::write(path, proto.encode_to_vec()).unwrap();
}

/// A float32 graph input or output of fixed shape.
pub fn float_value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
