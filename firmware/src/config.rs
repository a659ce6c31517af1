//! The board config: a TOML file that says which camera, display, models, threads and thresholds a
//! board uses. It is parsed and validated completely before any device or model is opened, and
//! every error names the file and the field.

use std::path::{Path, PathBuf};

use kith_runtime::detect::Decoder;
use kith_runtime::image::Resize;
use kith_runtime::{DetectorSettings, PipelineSettings};
use serde::Deserialize;

/// A board config error: one line naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{}: {detail}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub detail: String,
}

/// A validated board config, with paths resolved against the config file's folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardConfig {
    /// Human name of the board.
    pub name: String,
    /// Threads tract uses per model (1 = single-threaded).
    #[serde(default = "one")]
    pub threads: usize,
    /// Relate frame t on a second thread while frame t+1 is detected.
    #[serde(default)]
    pub pipelined: bool,
    pub camera: CameraConfig,
    pub display: DisplayConfig,
    pub detector: DetectorConfig,
    pub relation: RelationConfig,
    /// The file this was read from.
    #[serde(skip)]
    pub file: PathBuf,
}

fn one() -> usize {
    1
}

/// Where frames come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CameraConfig {
    /// Image files: one file, or a folder of JPEG/PNG/PNM images played in name order.
    Replay {
        path: PathBuf,
        /// Start again at the first image after the last.
        #[serde(default, rename = "loop")]
        repeat: bool,
    },
}

/// Where the annotated frames go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DisplayConfig {
    /// PNG snapshots in OUT/frames/, one every `every` frames.
    Png {
        #[serde(default = "one")]
        every: usize,
    },
    /// Headless: no drawing at all.
    None,
}

/// The person detector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    pub model: PathBuf,
    /// "boxes-scores" (kith's detector contract) or "yolov8" (a [1, 4 + classes, anchors] export).
    #[serde(default = "boxes_scores")]
    pub decoder: String,
    /// Class row of persons, for "yolov8".
    #[serde(default)]
    pub person_class: usize,
    #[serde(default = "default_score")]
    pub score_threshold: f32,
    #[serde(default = "default_nms")]
    pub nms_iou: f32,
    /// "letterbox" or "stretch"; the model's `kith.resize` metadata when absent.
    pub resize: Option<String>,
    /// Letterbox fill, 0..1 (with `resize = "letterbox"`).
    pub pad_value: Option<f32>,
}

fn boxes_scores() -> String {
    "boxes-scores".into()
}

fn default_score() -> f32 {
    0.35
}

fn default_nms() -> f32 {
    0.45
}

/// The GRITv2-S relation model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationConfig {
    pub model: PathBuf,
}

impl BoardConfig {
    /// Reads, parses and validates `file`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let err = |detail: String| ConfigError {
            file: file.to_owned(),
            detail,
        };
        let text = std::fs::read_to_string(file).map_err(|e| err(format!("cannot read: {e}")))?;
        Self::parse(file, &text)
    }

    /// Parses and validates `text`, the contents of `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let err = |detail: String| ConfigError {
            file: file.to_owned(),
            detail,
        };
        let mut config: BoardConfig =
            toml::from_str(text).map_err(|e| err(toml_error(text, &e)))?;
        config.file = file.to_owned();
        let base = file.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate().map_err(err)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        match &mut self.camera {
            CameraConfig::Replay { path, .. } => resolve(path),
        }
        resolve(&mut self.detector.model);
        resolve(&mut self.relation.model);
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("field `name` is empty".into());
        }
        if !(1..=64).contains(&self.threads) {
            return Err(format!(
                "field `threads` = {} is not within 1..=64",
                self.threads
            ));
        }
        match &self.camera {
            CameraConfig::Replay { path, .. } => {
                if !path.exists() {
                    return Err(format!(
                        "field `camera.path`: {} does not exist",
                        path.display()
                    ));
                }
            }
        }
        if let DisplayConfig::Png { every } = self.display {
            if every == 0 {
                return Err("field `display.every` must be at least 1".into());
            }
        }
        let d = &self.detector;
        for (field, v) in [
            ("detector.score_threshold", d.score_threshold),
            ("detector.nms_iou", d.nms_iou),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("field `{field}` = {v} is not within 0..1"));
            }
        }
        self.decoder()?;
        self.resize()?;
        for (field, p) in [
            ("detector.model", &d.model),
            ("relation.model", &self.relation.model),
        ] {
            if !p.is_file() {
                return Err(format!("field `{field}`: {} is not a file", p.display()));
            }
        }
        Ok(())
    }

    fn decoder(&self) -> Result<Decoder, String> {
        match self.detector.decoder.as_str() {
            "boxes-scores" => Ok(Decoder::BoxesScores),
            "yolov8" => Ok(Decoder::Yolov8 {
                person_class: self.detector.person_class,
            }),
            other => Err(format!(
                "field `detector.decoder` = \"{other}\" is neither \"boxes-scores\" nor \"yolov8\""
            )),
        }
    }

    fn resize(&self) -> Result<Option<Resize>, String> {
        let pad = self.detector.pad_value;
        if let Some(p) = pad {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!(
                    "field `detector.pad_value` = {p} is not within 0..1"
                ));
            }
        }
        match self.detector.resize.as_deref() {
            None if pad.is_some() => {
                Err("field `detector.pad_value` needs `detector.resize = \"letterbox\"`".into())
            }
            None => Ok(None),
            Some("letterbox") => Ok(Some(Resize::Letterbox {
                pad: pad.unwrap_or(114.0 / 255.0),
            })),
            Some("stretch") => Ok(Some(Resize::Stretch)),
            Some(other) => Err(format!(
                "field `detector.resize` = \"{other}\" is neither \"letterbox\" nor \"stretch\""
            )),
        }
    }

    /// The pipeline settings this config asks for.
    pub fn pipeline_settings(&self) -> PipelineSettings {
        PipelineSettings {
            threads: self.threads,
            pipelined: self.pipelined,
            detector: DetectorSettings {
                // Both were checked by `validate`.
                decoder: self.decoder().unwrap_or(Decoder::BoxesScores),
                score_threshold: self.detector.score_threshold,
                nms_iou: self.detector.nms_iou,
                resize: self.resize().unwrap_or(None),
            },
        }
    }
}

/// One line from a TOML error: the message and the line it points at.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "test"
threads = 2
[camera]
kind = "replay"
path = "."
[display]
kind = "png"
every = 2
[detector]
model = "Cargo.toml"
[relation]
model = "Cargo.toml"
"#;

    fn parse(text: &str) -> Result<BoardConfig, ConfigError> {
        BoardConfig::parse(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("board.toml"),
            text,
        )
    }

    #[test]
    fn a_good_config_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.threads, 2);
        assert_eq!(c.detector.score_threshold, 0.35);
        assert!(matches!(c.display, DisplayConfig::Png { every: 2 }));
        assert!(c.detector.model.is_absolute());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (GOOD.replace("threads = 2", "threads = 0"), "`threads`"),
            (
                GOOD.replace("kind = \"replay\"", "kind = \"webcam\""),
                "webcam",
            ),
            (GOOD.replace("every = 2", "every = 0"), "`display.every`"),
            (
                GOOD.replace(
                    "[relation]\nmodel = \"Cargo.toml\"",
                    "[relation]\nmodel = \"missing.onnx\"",
                ),
                "`relation.model`",
            ),
            (
                GOOD.replace("[detector]\n", "[detector]\nscore_threshold = 1.5\n"),
                "`detector.score_threshold`",
            ),
            (
                GOOD.replace("[detector]\n", "[detector]\ndecoder = \"ssd\"\n"),
                "`detector.decoder`",
            ),
            (
                GOOD.replace("name = \"test\"", "name = \"test\"\ncolour = 1"),
                "colour",
            ),
            (
                GOOD.replace("path = \".\"", "path = \"nowhere\""),
                "`camera.path`",
            ),
        ];
        for (text, needle) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle} not in {e}");
            assert!(e.contains("board.toml"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
