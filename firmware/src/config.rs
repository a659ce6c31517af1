//! The board config: a TOML file that says which camera, display, models, threads and thresholds a
//! board uses. It is parsed and validated completely, in one step, before any device or model is
//! opened: each section becomes the typed spec of the module that uses it ([`CameraSpec`] in
//! camera/, [`DisplaySpec`] in display/, the detector's [`DetectorSettings`] here), and every
//! error names the file and the field.

use std::path::{Path, PathBuf};

use kith_runtime::detect::Decoder;
use kith_runtime::image::Resize;
use kith_runtime::overlay::{OverlaySettings, Privacy, DEFAULT_MIN_LINE_SCORE};
use kith_runtime::{DetectorSettings, PipelineSettings};
use serde::Deserialize;

use crate::camera::spec::{CameraConfig, CameraSpec};
use crate::display::spec::{DisplayConfig, DisplaySpec};
use crate::files::{FileSettings, OutputConfig};
use crate::mqtt::spec::{MqttConfig, MqttSpec};
use crate::tracking::{TrackingConfig, TrackingSpec};

/// A board config error: one line naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub problem: ConfigProblem,
}

/// What is wrong with a board config file (shown after its name, on the same line).
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// Not TOML, or not the fields kith knows: the parser's message and the line it points at.
    #[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Syntax {
        line: Option<usize>,
        message: String,
    },
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// A field with a value kith cannot use.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("field `{field}`: {} does not exist", path.display())]
    Missing { field: &'static str, path: PathBuf },
    #[error("field `{field}`: {}: {error}", path.display())]
    Unreadable {
        field: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("field `{field}`: {} {what}", path.display())]
    WrongKind {
        field: &'static str,
        path: PathBuf,
        what: String,
    },
    #[error("field `{field}` = {value} is not within {range}")]
    OutOfRange {
        field: &'static str,
        value: String,
        range: String,
    },
    #[error("field `{field}` = \"{value}\" is not one of {names}")]
    Unknown {
        field: &'static str,
        value: String,
        names: String,
    },
    #[error(
        "field `{field}` = \"{feature}\": this kith was built without {feature} support (cargo feature `{feature}`)"
    )]
    NotBuilt {
        field: &'static str,
        feature: &'static str,
    },
    /// Any other rule, e.g. "must be at least 1".
    #[error("field `{field}` {rule}")]
    Rule { field: &'static str, rule: String },
}

impl FieldError {
    /// `field` = `value` outside `range`.
    pub fn out_of_range(
        field: &'static str,
        value: impl std::fmt::Display,
        range: impl Into<String>,
    ) -> Self {
        FieldError::OutOfRange {
            field,
            value: value.to_string(),
            range: range.into(),
        }
    }

    /// `field` breaks `rule`.
    pub fn rule(field: &'static str, rule: impl Into<String>) -> Self {
        FieldError::Rule {
            field,
            rule: rule.into(),
        }
    }
}

/// Whether validation requires the board's device nodes to exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Devices {
    /// The camera and display nodes must exist (`kith check --strict`).
    #[default]
    Required,
    /// Check every field, and the kind of the device nodes that are there, but not that they
    /// are there: they may come later (`kith run` waits for them; `kith check` warns).
    Skipped,
}

/// The board config file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoardFile {
    name: String,
    #[serde(default = "one")]
    threads: usize,
    #[serde(default)]
    pipelined: bool,
    /// "off" (default), "blur" or "pixelate": what is done to every person box before the overlay.
    #[serde(default)]
    privacy: Option<String>,
    camera: CameraConfig,
    display: DisplayConfig,
    detector: DetectorConfig,
    relation: RelationConfig,
    #[serde(default)]
    tracking: TrackingConfig,
    #[serde(default)]
    overlay: OverlayConfig,
    #[serde(default)]
    output: OutputConfig,
    mqtt: Option<MqttConfig>,
}

/// `[overlay]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct OverlayConfig {
    /// Pairs whose shown score is below this get no line on the picture (the panel lists them).
    min_line_score: f32,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            min_line_score: DEFAULT_MIN_LINE_SCORE,
        }
    }
}

impl OverlayConfig {
    fn into_settings(self, privacy: Option<&str>) -> Result<OverlaySettings, FieldError> {
        if !(0.0..=1.0).contains(&self.min_line_score) {
            return Err(FieldError::out_of_range(
                "overlay.min_line_score",
                self.min_line_score,
                "0..1",
            ));
        }
        let privacy = match privacy {
            None => Privacy::Off,
            Some(name) => Privacy::from_name(name).ok_or_else(|| FieldError::Unknown {
                field: "privacy",
                value: name.to_owned(),
                names: Privacy::NAMES.join(", "),
            })?,
        };
        Ok(OverlaySettings {
            privacy,
            min_line_score: self.min_line_score,
        })
    }
}

fn one() -> usize {
    1
}

/// Most threads per model a config may ask for.
const MAX_THREADS: usize = 64;

/// A validated board config, with paths resolved against the config file's folder.
#[derive(Debug, Clone)]
pub struct BoardConfig {
    /// Human name of the board.
    pub name: String,
    /// Threads tract uses per model (1 = single-threaded).
    pub threads: usize,
    /// Relate frame t on a second thread while frame t+1 is detected.
    pub pipelined: bool,
    pub camera: CameraSpec,
    pub display: DisplaySpec,
    pub detector: DetectorSpec,
    pub relation: RelationConfig,
    pub tracking: TrackingSpec,
    /// Privacy mode and line threshold of the overlay (`privacy`, `[overlay]`).
    pub overlay: OverlaySettings,
    /// How results.jsonl and the PNG snapshots are written (`[output]`).
    pub output: FileSettings,
    /// The MQTT broker frames are published to, when the config has an `[mqtt]` section.
    pub mqtt: Option<MqttSpec>,
    /// The file this was read from.
    pub file: PathBuf,
}

/// `[detector]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectorConfig {
    model: PathBuf,
    /// "boxes-scores" (kith's detector contract) or "yolov8" (a [1, 4 + classes, anchors] export).
    #[serde(default = "boxes_scores")]
    decoder: String,
    /// Class row of persons, for "yolov8".
    #[serde(default)]
    person_class: usize,
    #[serde(default = "default_score")]
    score_threshold: f32,
    #[serde(default = "default_nms")]
    nms_iou: f32,
    /// "letterbox" or "stretch"; the model's `kith.resize` metadata when absent.
    resize: Option<String>,
    /// Letterbox fill, 0..1 (with `resize = "letterbox"`).
    pad_value: Option<f32>,
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

/// Letterbox fill when the config gives none: YOLO's grey.
const DEFAULT_PAD: f32 = 114.0 / 255.0;

/// The person detector a validated config asks for.
#[derive(Debug, Clone)]
pub struct DetectorSpec {
    pub model: PathBuf,
    pub settings: DetectorSettings,
}

/// The GRITv2-S relation model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationConfig {
    pub model: PathBuf,
    /// A second relation model file (e.g. the FP32 one next to an INT8 `model`): kith times both
    /// at start-up and runs the faster (kith_runtime::relation_choice).
    #[serde(default)]
    pub fallback_model: Option<PathBuf>,
}

impl BoardConfig {
    /// Reads, parses and validates `file`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        Self::load_with(file, Devices::Required)
    }

    /// Reads, parses and validates `file`, with or without its device nodes.
    pub fn load_with(file: &Path, devices: Devices) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_owned(),
            problem: ConfigProblem::Read(e),
        })?;
        Self::parse_with(file, &text, devices)
    }

    /// Parses and validates `text`, the contents of `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::parse_with(file, text, Devices::Required)
    }

    /// Parses and validates `text`, the contents of `file`, with or without its device nodes.
    pub fn parse_with(file: &Path, text: &str, devices: Devices) -> Result<Self, ConfigError> {
        let err = |problem: ConfigProblem| ConfigError {
            file: file.to_owned(),
            problem,
        };
        let raw: BoardFile = toml::from_str(text).map_err(|e| err(syntax(text, &e)))?;
        let base = file.parent().unwrap_or(Path::new("."));
        Self::check(raw, base, devices)
            .map(|mut config| {
                config.file = file.to_owned();
                config
            })
            .map_err(|e| err(e.into()))
    }

    /// The one step from the file's fields to the typed specs, in the order of the file.
    fn check(raw: BoardFile, base: &Path, devices: Devices) -> Result<Self, FieldError> {
        if raw.name.trim().is_empty() {
            return Err(FieldError::rule("name", "is empty"));
        }
        // It goes into one-line messages: the banner, the log, systemd's STATUS=.
        if raw.name.chars().any(char::is_control) {
            return Err(FieldError::rule(
                "name",
                "has a control character (e.g. a newline); a name is one line",
            ));
        }
        if !(1..=MAX_THREADS).contains(&raw.threads) {
            return Err(FieldError::out_of_range(
                "threads",
                raw.threads,
                format!("1..={MAX_THREADS}"),
            ));
        }
        let overlay = raw.overlay.into_settings(raw.privacy.as_deref())?;
        let camera = raw.camera.into_spec(base, devices)?;
        let display = raw.display.into_spec(base, devices)?;
        let detector = raw.detector.into_spec(base)?;
        let output = raw.output.into_settings()?;
        let relation = RelationConfig {
            model: resolve(base, raw.relation.model),
            fallback_model: raw.relation.fallback_model.map(|p| resolve(base, p)),
        };
        let mqtt = raw.mqtt.map(|m| m.into_spec(base, &raw.name)).transpose()?;
        let fallback = relation.fallback_model.as_ref();
        for (field, p) in [
            ("detector.model", &detector.model),
            ("relation.model", &relation.model),
        ]
        .into_iter()
        .chain(fallback.map(|p| ("relation.fallback_model", p)))
        {
            if !p.is_file() {
                return Err(FieldError::WrongKind {
                    field,
                    path: p.clone(),
                    what: "is not a file".into(),
                });
            }
        }
        let tracking = raw.tracking.into_spec(&camera)?;
        Ok(BoardConfig {
            name: raw.name,
            threads: raw.threads,
            pipelined: raw.pipelined,
            camera,
            display,
            detector,
            relation,
            tracking,
            overlay,
            output,
            mqtt,
            file: PathBuf::new(),
        })
    }

    /// The camera and display device nodes (or the camera's named pipe) that are not there,
    /// with the fields that name them.
    pub fn missing_devices(&self) -> Vec<(&'static str, &Path)> {
        self.camera
            .node()
            .into_iter()
            .chain(self.display.nodes())
            .filter(|(_, path)| !path.exists())
            .collect()
    }

    /// The pipeline settings this config asks for.
    pub fn pipeline_settings(&self) -> PipelineSettings {
        PipelineSettings {
            threads: self.threads,
            pipelined: self.pipelined,
            detector: self.detector.settings,
            tracker: self.tracking.tracker,
            smoothing: self.tracking.smoothing,
            overlay: self.overlay,
        }
    }
}

impl DetectorConfig {
    fn into_spec(self, base: &Path) -> Result<DetectorSpec, FieldError> {
        for (field, v) in [
            ("detector.score_threshold", self.score_threshold),
            ("detector.nms_iou", self.nms_iou),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(FieldError::out_of_range(field, v, "0..1"));
            }
        }
        let decoder = match self.decoder.as_str() {
            "boxes-scores" => Decoder::BoxesScores,
            "yolov8" => Decoder::Yolov8 {
                person_class: self.person_class,
            },
            other => {
                return Err(FieldError::rule(
                    "detector.decoder",
                    format!("= \"{other}\" is neither \"boxes-scores\" nor \"yolov8\""),
                ))
            }
        };
        let pad = self.pad_value;
        if let Some(p) = pad.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(FieldError::out_of_range("detector.pad_value", p, "0..1"));
        }
        let resize = match self.resize.as_deref() {
            None if pad.is_some() => {
                return Err(FieldError::rule(
                    "detector.pad_value",
                    "needs `detector.resize = \"letterbox\"`",
                ))
            }
            None => None,
            Some("letterbox") => Some(Resize::Letterbox {
                pad: pad.unwrap_or(DEFAULT_PAD),
            }),
            Some("stretch") => Some(Resize::Stretch),
            Some(other) => {
                return Err(FieldError::rule(
                    "detector.resize",
                    format!("= \"{other}\" is neither \"letterbox\" nor \"stretch\""),
                ))
            }
        };
        Ok(DetectorSpec {
            model: resolve(base, self.model),
            settings: DetectorSettings {
                decoder,
                score_threshold: self.score_threshold,
                nms_iou: self.nms_iou,
                resize,
            },
        })
    }
}

/// `path` taken relative to `base` (the config file's folder) unless it is absolute.
pub(crate) fn resolve(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_relative() {
        base.join(path)
    } else {
        path
    }
}

/// Checks that `path` exists (without opening it).
pub(crate) fn must_exist(field: &'static str, path: &Path) -> Result<(), FieldError> {
    if path.exists() {
        Ok(())
    } else {
        Err(FieldError::Missing {
            field,
            path: path.to_owned(),
        })
    }
}

/// A TOML error: the message on one line and the line it points at.
fn syntax(text: &str, e: &toml::de::Error) -> ConfigProblem {
    ConfigProblem::Syntax {
        line: e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1),
        message: e.message().trim().replace('\n', " "),
    }
}

#[cfg(test)]
pub(crate) mod tests;
