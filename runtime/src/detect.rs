//! PersonDetector: runs a detector model on a frame and turns its raw outputs into at most
//! [`MAX_PERSONS`] person boxes in source pixels (score threshold, class filter, NMS).

use std::path::Path;

use heapless::Vec as HVec;

use crate::image::{resize_into_chw, Frame, Placement, Resize};
use crate::limits::MAX_PERSONS;
use crate::model::{output_f32, ModelFile};
use crate::scene::Person;
use crate::{Error, Result};

/// How the detector's outputs are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// kith's detector contract: `boxes` [1, A, 4] (x1, y1, x2, y2 in input pixels) and `scores`
    /// [1, A] (person probability), anchors already decoded in the graph.
    BoxesScores,
    /// A YOLOv8 / YOLO11 export: one output [1, 4 + C, A] of cx, cy, w, h in input pixels followed
    /// by C class scores; `person_class` selects the person row.
    Yolov8 { person_class: usize },
}

/// Tunables of the detector, from the board config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorSettings {
    pub decoder: Decoder,
    /// Boxes scoring below this are dropped (0..1).
    pub score_threshold: f32,
    /// Non-maximum suppression drops a box overlapping a better one by more than this IoU.
    pub nms_iou: f32,
    /// How frames are fitted into the input; `None` takes the model's `kith.resize` metadata.
    pub resize: Option<Resize>,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        DetectorSettings {
            decoder: Decoder::BoxesScores,
            score_threshold: 0.35,
            nms_iou: 0.45,
            resize: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    bbox: [f32; 4],
    score: f32,
}

/// Finds persons in frames with a detector model.
#[derive(Debug)]
pub struct PersonDetector {
    model: ModelFile,
    settings: DetectorSettings,
    resize: Resize,
    image_input: usize,
    width: usize,
    height: usize,
    outputs: OutputLayout,
    candidates: Vec<Candidate>,
    placement: Placement,
}

#[derive(Debug, Clone, Copy)]
enum OutputLayout {
    BoxesScores {
        boxes: usize,
        scores: usize,
        anchors: usize,
    },
    Yolov8 {
        output: usize,
        classes: usize,
        anchors: usize,
        person_class: usize,
    },
}

impl PersonDetector {
    /// Loads a detector and checks that its inputs and outputs fit `settings.decoder`.
    pub fn load(path: &Path, threads: usize, settings: DetectorSettings) -> Result<Self> {
        Self::from_model(ModelFile::load(path, threads)?, settings)
    }

    /// Wraps an already loaded model.
    pub fn from_model(model: ModelFile, settings: DetectorSettings) -> Result<Self> {
        check_unit_range("detector.score_threshold", settings.score_threshold)?;
        check_unit_range("detector.nms_iou", settings.nms_iou)?;
        if model.inputs().len() != 1 {
            return Err(model.contract_error(format!(
                "a detector has one image input, this one has {}",
                model.inputs().len()
            )));
        }
        let image_input = 0;
        let shape = model.inputs()[0].shape.clone();
        let [1, 3, height, width] = shape[..] else {
            return Err(model.contract_error(format!(
                "input `{}` has shape {shape:?}, kith needs [1, 3, H, W]",
                model.inputs()[0].name
            )));
        };
        let outputs = match settings.decoder {
            Decoder::BoxesScores => {
                let boxes = model.output_index("boxes", None)?;
                let anchors = match model.outputs()[boxes].shape[..] {
                    [1, a, 4] => a,
                    ref s => {
                        return Err(model.contract_error(format!(
                            "output `boxes` has shape {s:?}, kith needs [1, A, 4]"
                        )))
                    }
                };
                let scores = model.output_index("scores", Some(&[1, anchors]))?;
                OutputLayout::BoxesScores {
                    boxes,
                    scores,
                    anchors,
                }
            }
            Decoder::Yolov8 { person_class } => {
                if model.outputs().len() != 1 {
                    return Err(
                        model.contract_error("a YOLOv8-style detector has exactly one output")
                    );
                }
                let (classes, anchors) = match model.outputs()[0].shape[..] {
                    [1, rows, a] if rows > 4 => (rows - 4, a),
                    ref s => return Err(model.contract_error(format!("output has shape {s:?}, a YOLOv8-style detector gives [1, 4 + classes, anchors]"))),
                };
                if person_class >= classes {
                    return Err(Error::Setting {
                        field: "detector.person_class",
                        detail: format!(
                            "{person_class} is not below the model's {classes} classes"
                        ),
                    });
                }
                OutputLayout::Yolov8 {
                    output: 0,
                    classes,
                    anchors,
                    person_class,
                }
            }
        };
        let anchors = match outputs {
            OutputLayout::BoxesScores { anchors, .. } | OutputLayout::Yolov8 { anchors, .. } => {
                anchors
            }
        };
        let resize = match settings.resize {
            Some(r) => r,
            None => resize_from_metadata(&model)?,
        };
        Ok(PersonDetector {
            model,
            settings,
            resize,
            image_input,
            width,
            height,
            outputs,
            candidates: Vec::with_capacity(anchors),
            placement: Placement {
                scale_x: 1.0,
                scale_y: 1.0,
                offset_x: 0.0,
                offset_y: 0.0,
            },
        })
    }

    /// Replaces the score threshold and the NMS IoU from the next frame on (a reloaded board
    /// config); the decoder and the resize mode stay those the model was loaded with.
    pub fn set_thresholds(&mut self, score_threshold: f32, nms_iou: f32) -> Result<()> {
        check_unit_range("detector.score_threshold", score_threshold)?;
        check_unit_range("detector.nms_iou", nms_iou)?;
        self.settings.score_threshold = score_threshold;
        self.settings.nms_iou = nms_iou;
        Ok(())
    }

    /// The settings the detector runs with.
    pub fn settings(&self) -> &DetectorSettings {
        &self.settings
    }

    /// The model this detector runs.
    pub fn model(&self) -> &ModelFile {
        &self.model
    }

    /// The model, mutable (to profile it on its last input).
    pub fn model_mut(&mut self) -> &mut ModelFile {
        &mut self.model
    }

    /// The model's input size, width x height.
    pub fn input_size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// How frames are fitted into the model's input.
    pub fn resize_mode(&self) -> Resize {
        self.resize
    }

    /// Fills the model's input from an RGB frame (the "preprocess" stage).
    pub fn prepare(&mut self, frame: &Frame) -> Result<()> {
        let (w, h, mode) = (self.width, self.height, self.resize);
        let input = self.model.input_mut(self.image_input)?;
        self.placement = resize_into_chw(frame, input, w, h, mode)?;
        Ok(())
    }

    /// Runs the model on the prepared input and writes the persons found, best first, with boxes
    /// in the pixels of a `frame_w` x `frame_h` source frame.
    pub fn detect(
        &mut self,
        frame_w: usize,
        frame_h: usize,
        persons: &mut HVec<Person, MAX_PERSONS>,
    ) -> Result<()> {
        let outputs = self.model.run()?;
        self.candidates.clear();
        let threshold = self.settings.score_threshold;
        match self.outputs {
            OutputLayout::BoxesScores {
                boxes,
                scores,
                anchors,
            } => {
                let boxes = output_f32(&self.model, &outputs, boxes)?;
                let scores = output_f32(&self.model, &outputs, scores)?;
                for a in 0..anchors {
                    let score = scores[a];
                    if score >= threshold && score.is_finite() {
                        let b = &boxes[a * 4..a * 4 + 4];
                        self.candidates.push(Candidate {
                            bbox: [b[0], b[1], b[2], b[3]],
                            score,
                        });
                    }
                }
            }
            OutputLayout::Yolov8 {
                output,
                classes,
                anchors,
                person_class,
            } => {
                let out = output_f32(&self.model, &outputs, output)?;
                debug_assert_eq!(out.len(), (4 + classes) * anchors);
                for a in 0..anchors {
                    let score = out[(4 + person_class) * anchors + a];
                    if score >= threshold && score.is_finite() {
                        let (cx, cy) = (out[a], out[anchors + a]);
                        let (w, h) = (out[2 * anchors + a], out[3 * anchors + a]);
                        let bbox = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
                        self.candidates.push(Candidate { bbox, score });
                    }
                }
            }
        }
        drop(outputs);
        self.candidates
            .sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
        persons.clear();
        for c in &self.candidates {
            if persons.is_full() {
                break;
            }
            let bbox = self.placement.to_source(c.bbox, frame_w, frame_h);
            // A NaN coordinate survives the clamp and every comparison: such a box is no person.
            if bbox.iter().any(|v| v.is_nan()) || bbox[2] - bbox[0] < 1.0 || bbox[3] - bbox[1] < 1.0
            {
                continue;
            }
            if persons
                .iter()
                .any(|p| iou(&p.bbox, &bbox) > self.settings.nms_iou)
            {
                continue;
            }
            let id = persons.len() as u8;
            // Cannot fail: the loop stops when `persons` is full.
            let _ = persons.push(Person::new(id, bbox, c.score));
        }
        Ok(())
    }
}

fn check_unit_range(field: &'static str, v: f32) -> Result<()> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(Error::Setting {
            field,
            detail: format!("{v} is not within 0..1"),
        })
    }
}

/// Reads `kith.resize` / `kith.pad_value` from a detector's metadata (letterbox with grey 114 when
/// absent, the usual detector training preprocessing).
fn resize_from_metadata(model: &ModelFile) -> Result<Resize> {
    let pad = match model.metadata("kith.pad_value") {
        Some(v) => v
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|p| (0.0..=1.0).contains(p))
            .ok_or_else(|| {
                model.contract_error(format!(
                    "metadata kith.pad_value `{v}` is not a number in 0..1"
                ))
            })?,
        None => 114.0 / 255.0,
    };
    match model.metadata("kith.resize") {
        None | Some("letterbox") => Ok(Resize::Letterbox { pad }),
        Some("stretch") => Ok(Resize::Stretch),
        Some(other) => Err(model.contract_error(format!(
            "metadata kith.resize `{other}` is neither letterbox nor stretch"
        ))),
    }
}

/// Intersection over union of two x1, y1, x2, y2 boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::iou;

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 2.0, 2.0], &[0.0, 0.0, 2.0, 2.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 2.0, 2.0], &[2.0, 2.0, 4.0, 4.0]), 0.0);
        assert!((iou(&[0.0, 0.0, 2.0, 2.0], &[1.0, 0.0, 3.0, 2.0]) - 1.0 / 3.0).abs() < 1e-6);
    }
}
