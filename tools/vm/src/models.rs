//! Tiny test models for the VM checks, written as ONNX. They fit kith's model contracts exactly
//! (a detector with `boxes` [1, A, 4] and `scores` [1, A]; a relation model with `image`, `boxes`,
//! `mask` and `logits` [1, P, P, F] plus the `kith.labels` / `kith.weights` metadata) but cost
//! microseconds, so that under qemu's software emulation (where the shipped NanoDet-g takes about
//! a minute per frame) the checks measure the camera and display paths, not inference.
//!
//! The detector splits its 64x64 input into a 4x4 grid and scores each cell by its mean brightness;
//! the relation model adds the mean of its inputs to fixed per-pair logits. Their outputs follow the
//! picture, so the overlay kith draws on the framebuffer shows boxes, pair lines and labels.

use std::path::Path;

pub use kith_onnx_build::WriteError;
use kith_onnx_build::{
    float_value_info as value_info, floats, int, int64s, ints, node, pb, write_model,
};
use kith_runtime::labels::{joined, FINE_LABELS, NUM_FINE};
use kith_runtime::limits::MAX_PERSONS;

/// Side of the test detector's square input.
pub const DETECTOR_SIZE: i64 = 64;
/// Cells per side of the detector's grid: one candidate box per cell.
const GRID: i64 = 4;
/// Side of the test relation model's square image input.
pub const RELATION_SIZE: i64 = 32;
/// The `kith.weights` of the test relation model: kith marks it untrained.
pub const WEIGHTS: &str = "untrained-vm-test";

/// Writes the test detector to `path`.
pub fn write_detector(path: &Path) -> Result<(), WriteError> {
    let cells = GRID * GRID;
    let cell = DETECTOR_SIZE / GRID;
    let mut boxes = Vec::with_capacity(cells as usize * 4);
    for r in 0..GRID {
        for c in 0..GRID {
            let (x, y) = ((c * cell) as f32, (r * cell) as f32);
            boxes.extend([x, y, x + cell as f32, y + cell as f32]);
        }
    }
    let graph = pb::GraphProto {
        name: "kith-vm-detector".into(),
        node: vec![
            node(
                "AveragePool",
                &["image"],
                "pooled",
                vec![
                    ints("kernel_shape", &[cell, cell]),
                    ints("strides", &[cell, cell]),
                ],
            ),
            node(
                "ReduceMean",
                &["pooled"],
                "brightness",
                vec![ints("axes", &[1]), int("keepdims", 0)],
            ),
            node("Reshape", &["brightness", "score_shape"], "scores", vec![]),
            node("Identity", &["cells"], "boxes", vec![]),
        ],
        initializer: vec![
            floats("cells", &[1, cells, 4], boxes),
            int64s("score_shape", &[2], vec![1, cells]),
        ],
        input: vec![value_info("image", &[1, 3, DETECTOR_SIZE, DETECTOR_SIZE])],
        output: vec![
            value_info("boxes", &[1, cells, 4]),
            value_info("scores", &[1, cells]),
        ],
        ..Default::default()
    };
    write_model(path, graph, &[("kith.resize", "letterbox")])
}

/// Writes the test relation model to `path`.
pub fn write_relations(path: &Path) -> Result<(), WriteError> {
    let p = MAX_PERSONS as i64;
    let f = NUM_FINE as i64;
    // A different label wins for different pairs; symmetric in the two persons.
    let mut bias = Vec::with_capacity((p * p * f) as usize);
    for i in 0..p {
        for j in 0..p {
            for k in 0..f {
                bias.push(if (i + j) % f == k { 2.0 } else { 0.0 });
            }
        }
    }
    let graph = pb::GraphProto {
        name: "kith-vm-relations".into(),
        node: vec![
            node(
                "ReduceMean",
                &["image"],
                "image_mean",
                vec![ints("axes", &[1, 2, 3]), int("keepdims", 1)],
            ),
            node(
                "ReduceMean",
                &["boxes"],
                "boxes_mean",
                vec![ints("axes", &[1, 2]), int("keepdims", 1)],
            ),
            node("Mul", &["boxes_mean", "box_weight"], "boxes_term", vec![]),
            node(
                "ReduceMean",
                &["mask"],
                "mask_mean",
                vec![ints("axes", &[1]), int("keepdims", 1)],
            ),
            node("Add", &["image_mean", "boxes_term"], "sum1", vec![]),
            node("Add", &["sum1", "mask_mean"], "sum2", vec![]),
            node("Add", &["bias", "sum2"], "logits", vec![]),
        ],
        initializer: vec![
            floats("bias", &[1, p, p, f], bias),
            floats("box_weight", &[1], vec![0.001]),
        ],
        input: vec![
            value_info("image", &[1, 3, RELATION_SIZE, RELATION_SIZE]),
            value_info("boxes", &[1, p, 4]),
            value_info("mask", &[1, p]),
        ],
        output: vec![value_info("logits", &[1, p, p, f])],
        ..Default::default()
    };
    let labels = joined(&FINE_LABELS);
    write_model(
        path,
        graph,
        &[("kith.labels", &labels), ("kith.weights", WEIGHTS)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_runtime::image::{Frame, PixelFormat};
    use kith_runtime::{DetectorSettings, Pipeline, PipelineSettings};

    /// The models load through kith's own contract checks and find the bright cells of a frame.
    #[test]
    fn the_test_models_fit_kiths_contracts_and_follow_the_picture() {
        let dir = std::env::temp_dir().join(format!("kith-vm-models-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (det, rel) = (dir.join("detector.onnx"), dir.join("relations.onnx"));
        write_detector(&det).unwrap();
        write_relations(&rel).unwrap();
        let settings = PipelineSettings {
            threads: 1,
            pipelined: false,
            detector: DetectorSettings {
                score_threshold: 0.5,
                ..DetectorSettings::default()
            },
            tracker: Default::default(),
            smoothing: Default::default(),
            overlay: Default::default(),
        };
        let mut pipeline = Pipeline::load(&det, &rel, settings).unwrap();
        assert_eq!(pipeline.detector().input_size(), (64, 64));
        assert!(pipeline.relation().is_untrained());
        // A 64x64 grey frame with two white cells (top-left and bottom-right).
        let (w, h) = (64usize, 64usize);
        let mut pixels = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                if (x < 16 && y < 16) || (x >= 48 && y >= 48) {
                    pixels[y * w + x] = 255;
                }
            }
        }
        let frame = Frame::packed(w, h, PixelFormat::Grey, &pixels);
        assert!(pipeline.step(&frame, "test", 0).unwrap());
        let scene = pipeline.finish();
        assert_eq!(scene.persons.len(), 2, "{:?}", scene.persons);
        assert_eq!(scene.relations.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
