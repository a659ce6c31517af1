//! The board config: a TOML file that says which camera, display, models, threads and thresholds a
//! board uses. It is parsed and validated completely before any device or model is opened, and
//! every error names the file and the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kith_runtime::detect::Decoder;
use kith_runtime::image::Resize;
use kith_runtime::{DetectorSettings, PipelineSettings};
use serde::Deserialize;

use crate::camera::{CameraFormat, PipeSettings, Retry, V4l2Settings};

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
    /// A V4L2 capture device, read by mmap streaming.
    V4l2 {
        device: PathBuf,
        /// yuyv | uyvy | nv12 | grey | rgb24 | mjpeg
        format: String,
        width: u32,
        height: u32,
        /// mmap buffers, 2..=8.
        #[serde(default = "default_buffers")]
        buffers: u32,
        /// How long a dequeue waits before the camera counts as lost.
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        /// First reconnection delay.
        #[serde(default = "default_retry_min_ms")]
        retry_min_ms: u64,
        /// Cap of the exponential reconnection back-off.
        #[serde(default = "default_retry_max_ms")]
        retry_max_ms: u64,
    },
    /// Raw or MJPEG frames on standard input ("-"), a named pipe or a file.
    Pipe {
        path: PathBuf,
        /// yuv420 (I420) | yuyv | mjpeg
        format: String,
        width: u32,
        height: u32,
        #[serde(default = "default_retry_min_ms")]
        retry_min_ms: u64,
        #[serde(default = "default_retry_max_ms")]
        retry_max_ms: u64,
    },
}

fn default_buffers() -> u32 {
    4
}

fn default_timeout_ms() -> u64 {
    2000
}

fn default_retry_min_ms() -> u64 {
    250
}

fn default_retry_max_ms() -> u64 {
    4000
}

/// The error for a V4L2 camera in a kith built without the `v4l2` feature.
pub const NO_V4L2: &str =
    "field `camera.kind` = \"v4l2\": this kith was built without v4l2 support (cargo feature `v4l2`)";

/// Largest camera frame side accepted in a config.
const MAX_CAMERA_SIDE: u32 = 8192;

/// The camera a validated config asks for, in the form the sources take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSpec {
    Replay { path: PathBuf, repeat: bool },
    V4l2(V4l2Settings),
    Pipe(PipeSettings),
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
            CameraConfig::V4l2 { device, .. } => resolve(device),
            CameraConfig::Pipe { path, .. } if path.as_os_str() != "-" => resolve(path),
            CameraConfig::Pipe { .. } => {}
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
        self.camera()?;
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

    /// The camera this config asks for, checked field by field (device nodes and paths must exist;
    /// nothing is opened).
    pub fn camera(&self) -> Result<CameraSpec, String> {
        match &self.camera {
            CameraConfig::Replay { path, repeat } => {
                must_exist("camera.path", path)?;
                Ok(CameraSpec::Replay {
                    path: path.clone(),
                    repeat: *repeat,
                })
            }
            CameraConfig::V4l2 {
                device,
                format,
                width,
                height,
                buffers,
                timeout_ms,
                retry_min_ms,
                retry_max_ms,
            } => {
                if !cfg!(feature = "v4l2") {
                    return Err(
                        "field `camera.kind` = \"v4l2\": this kith was built without \
                                v4l2 support (cargo feature `v4l2`)"
                            .into(),
                    );
                }
                let format = camera_format(format, &CameraFormat::V4L2)?;
                frame_size(*width, *height)?;
                if !(2..=8).contains(buffers) {
                    return Err(format!(
                        "field `camera.buffers` = {buffers} is not within 2..=8"
                    ));
                }
                if !(100..=600_000).contains(timeout_ms) {
                    return Err(format!(
                        "field `camera.timeout_ms` = {timeout_ms} is not within 100..=600000"
                    ));
                }
                let retry = retry(*retry_min_ms, *retry_max_ms)?;
                must_exist("camera.device", device)?;
                Ok(CameraSpec::V4l2(V4l2Settings {
                    device: device.clone(),
                    format,
                    width: *width,
                    height: *height,
                    buffers: *buffers,
                    timeout: Duration::from_millis(*timeout_ms),
                    retry,
                }))
            }
            CameraConfig::Pipe {
                path,
                format,
                width,
                height,
                retry_min_ms,
                retry_max_ms,
            } => {
                let format = camera_format(format, &CameraFormat::PIPE)?;
                frame_size(*width, *height)?;
                let odd_width = width % 2 == 1;
                if odd_width && matches!(format, CameraFormat::Yuyv | CameraFormat::Yuv420) {
                    return Err(format!(
                        "field `camera.width` = {width} must be even for format \"{format}\""
                    ));
                }
                if height % 2 == 1 && format == CameraFormat::Yuv420 {
                    return Err(format!(
                        "field `camera.height` = {height} must be even for format \"{format}\""
                    ));
                }
                let retry = retry(*retry_min_ms, *retry_max_ms)?;
                if path.as_os_str() != "-" {
                    must_exist("camera.path", path)?;
                    if path.is_dir() {
                        return Err(format!(
                            "field `camera.path`: {} is a folder, not a pipe or file",
                            path.display()
                        ));
                    }
                }
                Ok(CameraSpec::Pipe(PipeSettings {
                    path: path.clone(),
                    format,
                    width: *width,
                    height: *height,
                    retry,
                }))
            }
        }
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

/// Checks that `path` exists (without opening it).
fn must_exist(field: &str, path: &Path) -> Result<(), String> {
    if path.exists() {
        Ok(())
    } else {
        Err(format!(
            "field `{field}`: {} does not exist",
            path.display()
        ))
    }
}

fn camera_format(name: &str, allowed: &[CameraFormat]) -> Result<CameraFormat, String> {
    CameraFormat::parse(name, allowed).ok_or_else(|| {
        format!(
            "field `camera.format` = \"{name}\" is not one of {}",
            CameraFormat::list(allowed)
        )
    })
}

fn frame_size(width: u32, height: u32) -> Result<(), String> {
    for (field, v) in [("camera.width", width), ("camera.height", height)] {
        if !(1..=MAX_CAMERA_SIDE).contains(&v) {
            return Err(format!(
                "field `{field}` = {v} is not within 1..={MAX_CAMERA_SIDE}"
            ));
        }
    }
    Ok(())
}

fn retry(min_ms: u64, max_ms: u64) -> Result<Retry, String> {
    if !(1..=600_000).contains(&min_ms) {
        return Err(format!(
            "field `camera.retry_min_ms` = {min_ms} is not within 1..=600000"
        ));
    }
    if !(min_ms..=600_000).contains(&max_ms) {
        return Err(format!(
            "field `camera.retry_max_ms` = {max_ms} is not within `camera.retry_min_ms` ({min_ms})..=600000"
        ));
    }
    Ok(Retry {
        min: Duration::from_millis(min_ms),
        max: Duration::from_millis(max_ms),
    })
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

    fn extra(camera: &str, line: &str) -> String {
        with_camera(&format!("{camera}\n{line}"))
    }

    fn assert_field_errors(cases: &[(String, &str)]) {
        for (text, needle) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle} not in {e}");
            assert!(e.contains("board.toml"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    fn with_camera(camera: &str) -> String {
        GOOD.replace("kind = \"replay\"\npath = \".\"", camera)
    }

    const V4L2: &str =
        "kind = \"v4l2\"\ndevice = \"/dev/null\"\nformat = \"yuyv\"\nwidth = 640\nheight = 480";
    const PIPE: &str =
        "kind = \"pipe\"\npath = \"-\"\nformat = \"yuv420\"\nwidth = 640\nheight = 480";

    #[test]
    fn a_pipe_camera_parses_with_defaults() {
        let c = parse(&with_camera(PIPE)).unwrap();
        let CameraSpec::Pipe(p) = c.camera().unwrap() else {
            panic!("{:?}", c.camera);
        };
        assert_eq!(p.path, PathBuf::from("-"), "stdin is not a relative path");
        assert_eq!(p.format, CameraFormat::Yuv420);
        assert_eq!((p.width, p.height), (640, 480));
        assert_eq!(p.retry.min, Duration::from_millis(250));
        assert_eq!(p.retry.max, Duration::from_millis(4000));
        let c = parse(&with_camera(&PIPE.replace("\"-\"", "\"Cargo.toml\""))).unwrap();
        let CameraSpec::Pipe(p) = c.camera().unwrap() else {
            panic!("{:?}", c.camera);
        };
        assert!(p.path.is_absolute(), "resolved against the config's folder");
    }

    #[cfg(feature = "v4l2")]
    #[test]
    fn a_v4l2_camera_parses_with_defaults() {
        let c = parse(&with_camera(V4L2)).unwrap();
        let CameraSpec::V4l2(v) = c.camera().unwrap() else {
            panic!("{:?}", c.camera);
        };
        assert_eq!(v.device, PathBuf::from("/dev/null"));
        assert_eq!(v.format, CameraFormat::Yuyv);
        assert_eq!((v.buffers, v.timeout), (4, Duration::from_millis(2000)));
        assert_eq!(v.retry.min, Duration::from_millis(250));
        assert_eq!(v.retry.max, Duration::from_millis(4000));
    }

    #[cfg(feature = "v4l2")]
    #[test]
    fn v4l2_errors_name_the_field() {
        let v4l2 = |from: &str, to: &str| with_camera(&V4L2.replace(from, to));
        let cases = [
            (
                v4l2("\"yuyv\"", "\"xyz\""),
                "field `camera.format` = \"xyz\" is not one of \"yuyv\", \"uyvy\", \"nv12\", \"grey\", \"rgb24\", \"mjpeg\"",
            ),
            (v4l2("\"yuyv\"", "\"yuv420\""), "`camera.format` = \"yuv420\""),
            (
                v4l2("\"/dev/null\"", "\"/dev/video-kith-missing\""),
                "field `camera.device`: /dev/video-kith-missing does not exist",
            ),
            (v4l2("width = 640", "width = 0"), "field `camera.width` = 0"),
            (v4l2("height = 480", "height = 9000"), "field `camera.height` = 9000"),
            (extra(V4L2, "buffers = 1"), "field `camera.buffers` = 1"),
            (extra(V4L2, "buffers = 9"), "field `camera.buffers` = 9"),
            (extra(V4L2, "timeout_ms = 5"), "field `camera.timeout_ms` = 5"),
            (extra(V4L2, "retry_min_ms = 0"), "field `camera.retry_min_ms` = 0"),
            (
                extra(V4L2, "retry_min_ms = 500\nretry_max_ms = 100"),
                "field `camera.retry_max_ms` = 100",
            ),
            (extra(V4L2, "fps = 30"), "fps"),
            (extra(V4L2, "path = \"x\""), "path"),
            (v4l2("format = \"yuyv\"\n", ""), "format"),
        ];
        assert_field_errors(&cases);
    }

    #[test]
    fn pipe_errors_name_the_field() {
        let pipe = |from: &str, to: &str| with_camera(&PIPE.replace(from, to));
        let cases = [
            (
                pipe("\"yuv420\"", "\"rgb24\""),
                "field `camera.format` = \"rgb24\" is not one of \"yuv420\", \"yuyv\", \"mjpeg\"",
            ),
            (
                pipe("width = 640", "width = 641"),
                "field `camera.width` = 641 must be even",
            ),
            (
                pipe("height = 480", "height = 481"),
                "field `camera.height` = 481 must be even",
            ),
            (
                pipe("\"-\"", "\"/tmp/kith-no-such-pipe\""),
                "field `camera.path`: /tmp/kith-no-such-pipe does not exist",
            ),
            (
                pipe("\"-\"", "\"/tmp\""),
                "field `camera.path`: /tmp is a folder",
            ),
            (extra(PIPE, "buffers = 4"), "buffers"),
            (
                extra(PIPE, "retry_max_ms = 1"),
                "field `camera.retry_max_ms` = 1",
            ),
        ];
        assert_field_errors(&cases);
        // An odd height is fine for YUYV, an odd width for MJPEG.
        parse(&with_camera(
            &PIPE.replace("yuv420", "yuyv").replace("480", "481"),
        ))
        .unwrap();
        parse(&with_camera(
            &PIPE.replace("yuv420", "mjpeg").replace("640", "641"),
        ))
        .unwrap();
    }

    #[cfg(not(feature = "v4l2"))]
    #[test]
    fn v4l2_without_the_feature_is_a_config_error() {
        let e = parse(&with_camera(V4L2)).unwrap_err().to_string();
        assert!(e.contains("`camera.kind` = \"v4l2\""), "{e}");
        assert!(e.contains("built without v4l2 support"), "{e}");
    }
}
