//! Helpers shared by the integration tests: repository paths and demo frames.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kith_runtime::image::RgbImage;
use prost::Message;
use tract_onnx::pb;

/// The repository's root folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ has a parent")
        .to_owned()
}

/// A file under models/.
pub fn model(name: &str) -> PathBuf {
    repo().join("models").join(name)
}

/// The demo frames folder.
pub fn demo_frames_dir() -> PathBuf {
    repo().join("board-configs/demo/frames")
}

/// Decodes an image file into RGB.
pub fn load_rgb(path: &Path) -> RgbImage {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    RgbImage {
        width: img.width() as usize,
        height: img.height() as usize,
        data: img.into_raw(),
    }
}

/// The demo frames, in name order, with their file names.
pub fn demo_frames() -> Vec<(String, RgbImage)> {
    let mut files: Vec<_> = std::fs::read_dir(demo_frames_dir())
        .expect("demo frames folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                load_rgb(p),
            )
        })
        .collect()
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
