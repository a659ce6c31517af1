//! Small ONNX graphs written from Rust (opset 13): the tiny models of tools/vm and the graphs
//! kith's tests build. Each helper makes one protobuf message of tract's ONNX schema (`pb`).

use std::path::Path;

use prost::Message;
pub use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;

/// Why a model cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot write: {source}")]
pub struct WriteError {
    path: String,
    source: std::io::Error,
}

/// Writes `graph` as an ONNX model (IR 8, opset 13) with `metadata` as its metadata_props.
pub fn write_model(
    path: &Path,
    graph: pb::GraphProto,
    metadata: &[(&str, &str)],
) -> Result<(), WriteError> {
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "kith-onnx-build".into(),
        graph: Some(graph),
        metadata_props: metadata
            .iter()
            .map(|(key, value)| pb::StringStringEntryProto {
                key: (*key).into(),
                value: (*value).into(),
            })
            .collect(),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).map_err(|source| WriteError {
        path: path.display().to_string(),
        source,
    })
}

/// A node named after its one output.
pub fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|i| (*i).into()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

/// An attribute holding a list of integers.
pub fn ints(name: &str, values: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// An attribute holding one integer.
pub fn int(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// A float32 initializer.
pub fn floats(name: &str, dims: &[i64], data: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        float_data: data,
        ..Default::default()
    }
}

/// An int64 initializer (shapes, axes).
pub fn int64s(name: &str, dims: &[i64], data: Vec<i64>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Int64 as i32,
        int64_data: data,
        ..Default::default()
    }
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
                elem_type: DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
