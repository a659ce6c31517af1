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
    /// Whether device nodes (camera, display) were required to exist.
    #[serde(skip)]
    pub devices: Devices,
}

/// Whether validation requires the board's device nodes to exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Devices {
    /// The camera and display nodes must exist (on the board, and for `kith run`).
    #[default]
    Required,
    /// Check every field but not the device nodes (`kith check --skip-devices` on a host).
    Skipped,
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
    /// A Linux framebuffer, /dev/fbN.
    Fbdev(FbdevConfig),
    /// An SPI TFT panel driven through spidev and gpio-cdev.
    Spi(SpiConfig),
}

/// `[display] kind = "fbdev"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FbdevConfig {
    /// The framebuffer device, or a plain file standing in for it (tests).
    pub device: PathBuf,
    /// For a plain file: the geometry the FBIOGET_*SCREENINFO ioctls would report. For a device
    /// they are optional and checked against what the ioctls report.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// "rgb565" or "xrgb8888".
    pub pixel_format: Option<String>,
    /// Bytes from one line to the next; default width * bytes per pixel.
    pub line_length: Option<u32>,
}

/// A framebuffer pixel format a config can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FbPixelFormat {
    /// 16 bits: red 11..16, green 5..11, blue 0..5.
    Rgb565,
    /// 32 bits: blue, green, red, unused byte (little-endian order in memory).
    Xrgb8888,
}

impl FbPixelFormat {
    /// The config names, in the order error messages list them.
    pub const NAMES: &'static str = "rgb565, xrgb8888";

    /// The format called `name` in a config.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "rgb565" => Some(FbPixelFormat::Rgb565),
            "xrgb8888" => Some(FbPixelFormat::Xrgb8888),
            _ => None,
        }
    }

    /// The name a config uses.
    pub fn name(self) -> &'static str {
        match self {
            FbPixelFormat::Rgb565 => "rgb565",
            FbPixelFormat::Xrgb8888 => "xrgb8888",
        }
    }

    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> u32 {
        match self {
            FbPixelFormat::Rgb565 => 2,
            FbPixelFormat::Xrgb8888 => 4,
        }
    }
}

impl FbdevConfig {
    /// The geometry given in the config: width, height, format and line length, or `None` when
    /// any of width, height and pixel format is missing (validated: the names are known).
    pub fn geometry(&self) -> Option<FbGeometry> {
        let format = FbPixelFormat::parse(self.pixel_format.as_deref()?)?;
        let (width, height) = (self.width?, self.height?);
        Some(FbGeometry {
            width,
            height,
            format,
            line_length: self.line_length.unwrap_or(width * format.bytes_per_pixel()),
        })
    }
}

/// A framebuffer's geometry as a config gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FbGeometry {
    pub width: u32,
    pub height: u32,
    pub format: FbPixelFormat,
    pub line_length: u32,
}

impl FbGeometry {
    /// Bytes the visible area spans, from the first line's start to the last pixel's end.
    pub fn bytes(&self) -> u64 {
        u64::from(self.height.saturating_sub(1)) * u64::from(self.line_length)
            + u64::from(self.width) * u64::from(self.format.bytes_per_pixel())
    }
}

/// `[display] kind = "spi"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpiConfig {
    /// "st7789", "ili9341" or "ili9486".
    pub panel: String,
    /// The spidev node, /dev/spidevB.C.
    pub spi: PathBuf,
    /// SPI clock; the spidev default when absent.
    pub speed_hz: Option<u32>,
    /// The GPIO chip of the dc, reset and backlight lines.
    pub gpio_chip: PathBuf,
    /// Line offsets on `gpio_chip`.
    pub dc: u32,
    pub reset: Option<u32>,
    pub backlight: Option<u32>,
    /// The panel's size in its native orientation (as its datasheet gives it, e.g. 240x320);
    /// rotation 90 and 270 swap them on screen.
    pub width: u32,
    pub height: u32,
    /// 0, 90, 180 or 270 degrees.
    #[serde(default)]
    pub rotation: u32,
    /// Where the visible area starts in the controller's memory, in the native orientation.
    #[serde(default)]
    pub offset_x: u32,
    #[serde(default)]
    pub offset_y: u32,
    #[serde(default)]
    pub invert_colors: bool,
    /// The panel's subpixels are blue-green-red.
    #[serde(default)]
    pub bgr: bool,
}

/// The SPI panel controllers kith drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    St7789,
    Ili9341,
    Ili9486,
}

impl Panel {
    /// The config names, in the order error messages list them.
    pub const NAMES: &'static str = "st7789, ili9341, ili9486";

    /// The controller called `name` in a config.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "st7789" => Some(Panel::St7789),
            "ili9341" => Some(Panel::Ili9341),
            "ili9486" => Some(Panel::Ili9486),
            _ => None,
        }
    }

    /// The controller's memory in pixels, columns x rows, in its native orientation.
    pub fn memory_size(self) -> (u32, u32) {
        match self {
            Panel::St7789 | Panel::Ili9341 => (240, 320),
            Panel::Ili9486 => (320, 480),
        }
    }

    /// The name datasheets use.
    pub fn name(self) -> &'static str {
        match self {
            Panel::St7789 => "ST7789",
            Panel::Ili9341 => "ILI9341",
            Panel::Ili9486 => "ILI9486",
        }
    }
}

impl SpiConfig {
    /// The controller (validated).
    pub fn panel_kind(&self) -> Panel {
        Panel::parse(&self.panel).unwrap_or(Panel::St7789)
    }
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
        let err = |detail: String| ConfigError {
            file: file.to_owned(),
            detail,
        };
        let text = std::fs::read_to_string(file).map_err(|e| err(format!("cannot read: {e}")))?;
        Self::parse_with(file, &text, devices)
    }

    /// Parses and validates `text`, the contents of `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::parse_with(file, text, Devices::Required)
    }

    /// Parses and validates `text`, the contents of `file`, with or without its device nodes.
    pub fn parse_with(file: &Path, text: &str, devices: Devices) -> Result<Self, ConfigError> {
        let err = |detail: String| ConfigError {
            file: file.to_owned(),
            detail,
        };
        let mut config: BoardConfig =
            toml::from_str(text).map_err(|e| err(toml_error(text, &e)))?;
        config.file = file.to_owned();
        config.devices = devices;
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
        match &mut self.display {
            DisplayConfig::Fbdev(fb) => resolve(&mut fb.device),
            DisplayConfig::Spi(spi) => {
                resolve(&mut spi.spi);
                resolve(&mut spi.gpio_chip);
            }
            DisplayConfig::Png { .. } | DisplayConfig::None => {}
        }
        resolve(&mut self.detector.model);
        resolve(&mut self.relation.model);
        if let Some(fallback) = &mut self.relation.fallback_model {
            resolve(fallback);
        }
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
        match &self.display {
            DisplayConfig::Png { every } => {
                if *every == 0 {
                    return Err("field `display.every` must be at least 1".into());
                }
            }
            DisplayConfig::None => {}
            DisplayConfig::Fbdev(fb) => validate_fbdev(fb, self.devices)?,
            DisplayConfig::Spi(spi) => validate_spi(spi, self.devices)?,
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
        let fallback = self.relation.fallback_model.as_ref();
        for (field, p) in [
            ("detector.model", &d.model),
            ("relation.model", &self.relation.model),
        ]
        .into_iter()
        .chain(fallback.map(|p| ("relation.fallback_model", p)))
        {
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
                if self.devices == Devices::Required {
                    must_exist("camera.device", device)?;
                }
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
                if path.as_os_str() != "-" && self.devices == Devices::Required {
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

/// The largest framebuffer side a config may give.
const MAX_FB_SIDE: u32 = 16384;

fn validate_fbdev(fb: &FbdevConfig, devices: Devices) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    for (field, value) in [("display.width", fb.width), ("display.height", fb.height)] {
        if let Some(v) = value {
            if !(1..=MAX_FB_SIDE).contains(&v) {
                return Err(format!(
                    "field `{field}` = {v} is not within 1..={MAX_FB_SIDE}"
                ));
            }
        }
    }
    if let Some(name) = &fb.pixel_format {
        if FbPixelFormat::parse(name).is_none() {
            return Err(format!(
                "field `display.pixel_format` = \"{name}\" is not one of {}",
                FbPixelFormat::NAMES
            ));
        }
    }
    if let (Some(line), Some(g)) = (fb.line_length, fb.geometry()) {
        let packed = g.width * g.format.bytes_per_pixel();
        if line < packed {
            return Err(format!(
                "field `display.line_length` = {line} is less than width * bytes per pixel = {packed}"
            ));
        }
    }
    // stat, not open: `kith check` opens no device.
    let device = &fb.device;
    if devices == Devices::Skipped && !device.exists() {
        return Ok(());
    }
    let meta = std::fs::metadata(device).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!(
                "field `display.device`: {} does not exist",
                device.display()
            )
        }
        _ => format!("field `display.device`: {}: {e}", device.display()),
    })?;
    if meta.file_type().is_char_device() {
        // The FBIOGET_*SCREENINFO ioctls give the geometry; the fields, if any, are checked
        // against them when the device is opened.
        return Ok(());
    }
    if !meta.is_file() {
        return Err(format!(
            "field `display.device`: {} is neither a framebuffer device nor a regular file",
            device.display()
        ));
    }
    for (field, missing) in [
        ("display.width", fb.width.is_none()),
        ("display.height", fb.height.is_none()),
        ("display.pixel_format", fb.pixel_format.is_none()),
    ] {
        if missing {
            return Err(format!(
                "field `{field}` is required when `display.device` ({}) is a regular file",
                device.display()
            ));
        }
    }
    if let Some(g) = fb.geometry() {
        if meta.len() < g.bytes() {
            return Err(format!(
                "field `display.device`: {} is {} bytes, less than the {} bytes of {}x{} {} with lines of {} bytes",
                device.display(),
                meta.len(),
                g.bytes(),
                g.width,
                g.height,
                g.format.name(),
                g.line_length
            ));
        }
    }
    Ok(())
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

fn validate_spi(spi: &SpiConfig, devices: Devices) -> Result<(), String> {
    if !cfg!(feature = "spi") {
        return Err(
            "field `display.kind` = \"spi\": this kith was built without spi support (cargo feature `spi`)"
                .into(),
        );
    }
    let Some(panel) = Panel::parse(&spi.panel) else {
        return Err(format!(
            "field `display.panel` = \"{}\" is not one of {}",
            spi.panel,
            Panel::NAMES
        ));
    };
    if ![0, 90, 180, 270].contains(&spi.rotation) {
        return Err(format!(
            "field `display.rotation` = {} is not one of 0, 90, 180, 270",
            spi.rotation
        ));
    }
    let (columns, rows) = panel.memory_size();
    for (side, value, offset_field, offset, max) in [
        ("width", spi.width, "offset_x", spi.offset_x, columns),
        ("height", spi.height, "offset_y", spi.offset_y, rows),
    ] {
        if !(1..=max).contains(&value) {
            return Err(format!(
                "field `display.{side}` = {value} is not within 1..={max} (the {}'s {side} in its native orientation)",
                panel.name()
            ));
        }
        if offset > max - value {
            return Err(format!(
                "field `display.{offset_field}` = {offset}: with {side} {value} it passes the {}'s {max} pixels",
                panel.name()
            ));
        }
    }
    if spi.speed_hz == Some(0) {
        return Err("field `display.speed_hz` must be at least 1".into());
    }
    for (field, line) in [
        ("display.reset", spi.reset),
        ("display.backlight", spi.backlight),
    ] {
        if line == Some(spi.dc) {
            return Err(format!(
                "field `{field}` = {} is the same GPIO line as `display.dc`",
                spi.dc
            ));
        }
    }
    if spi.reset.is_some() && spi.reset == spi.backlight {
        return Err(format!(
            "field `display.backlight` = {} is the same GPIO line as `display.reset`",
            spi.reset.unwrap_or_default()
        ));
    }
    // stat, not open: `kith check` opens no device.
    for (field, path) in [
        ("display.spi", &spi.spi),
        ("display.gpio_chip", &spi.gpio_chip),
    ] {
        if !path.exists() && devices == Devices::Required {
            return Err(format!(
                "field `{field}`: {} does not exist",
                path.display()
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
                GOOD.replace(
                    "[relation]\nmodel = \"Cargo.toml\"",
                    "[relation]\nmodel = \"Cargo.toml\"\nfallback_model = \"missing.onnx\"",
                ),
                "`relation.fallback_model`",
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

    /// GOOD with its display replaced by `display` (the lines after `[display]`).
    fn with_display(display: &str) -> String {
        GOOD.replace("kind = \"png\"\nevery = 2", display)
    }

    fn fb_file(name: &str, len: usize) -> PathBuf {
        let path = std::env::temp_dir().join(format!("kith-config-{name}-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; len]).unwrap();
        path
    }

    #[test]
    fn an_fbdev_file_takes_its_geometry_from_the_config() {
        let file = fb_file("fb-good", 100 * 48);
        let c = parse(&with_display(&format!(
            "kind = \"fbdev\"\ndevice = \"{}\"\nwidth = 40\nheight = 48\npixel_format = \"rgb565\"\nline_length = 100",
            file.display()
        )))
        .unwrap();
        let DisplayConfig::Fbdev(fb) = &c.display else {
            panic!("{:?}", c.display)
        };
        let g = fb.geometry().unwrap();
        assert_eq!(
            (g.width, g.height, g.format, g.line_length),
            (40, 48, FbPixelFormat::Rgb565, 100)
        );
        let c = parse(&with_display(&format!(
            "kind = \"fbdev\"\ndevice = \"{}\"\nwidth = 30\nheight = 40\npixel_format = \"xrgb8888\"",
            file.display()
        )))
        .unwrap();
        let DisplayConfig::Fbdev(fb) = &c.display else {
            panic!("{:?}", c.display)
        };
        assert_eq!(
            fb.geometry().unwrap().line_length,
            120,
            "width * 4 by default"
        );
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn fbdev_errors_name_the_field() {
        let file = fb_file("fb-bad", 64 * 48);
        let dev = file.display().to_string();
        let fb = |rest: &str| with_display(&format!("kind = \"fbdev\"\n{rest}"));
        let cases = [
            (fb("device = \"/dev/fb-kith-missing\""), "field `display.device`: /dev/fb-kith-missing does not exist"),
            (fb(&format!("device = \"{dev}\"\nheight = 48\npixel_format = \"rgb565\"")), "field `display.width` is required"),
            (fb(&format!("device = \"{dev}\"\nwidth = 32\nheight = 48")), "field `display.pixel_format` is required"),
            (fb(&format!("device = \"{dev}\"\nwidth = 32\nheight = 48\npixel_format = \"rgb888\"")), "field `display.pixel_format` = \"rgb888\" is not one of rgb565, xrgb8888"),
            (fb(&format!("device = \"{dev}\"\nwidth = 32\nheight = 48\npixel_format = \"rgb565\"\nline_length = 60")), "field `display.line_length` = 60 is less than"),
            (fb(&format!("device = \"{dev}\"\nwidth = 0\nheight = 48\npixel_format = \"rgb565\"")), "field `display.width` = 0"),
            (fb(&format!("device = \"{dev}\"\nwidth = 32\nheight = 48\npixel_format = \"xrgb8888\"")), "field `display.device`"),
            (fb("device = \".\"\nwidth = 32\nheight = 48\npixel_format = \"rgb565\""), "neither a framebuffer device nor a regular file"),
            (fb(&format!("device = \"{dev}\"\nrotation = 90")), "rotation"),
        ];
        for (text, needle) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle} not in {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        std::fs::remove_file(file).unwrap();
    }

    /// An SPI display whose device nodes are stand-ins that exist (validation only stats them).
    fn spi(rest: &str) -> String {
        with_display(&format!(
            "kind = \"spi\"\nspi = \"Cargo.toml\"\ngpio_chip = \"src\"\ndc = 25\n{rest}"
        ))
    }

    #[cfg(feature = "spi")]
    #[test]
    fn a_good_spi_display_parses() {
        let c = parse(&spi("panel = \"st7789\"\nwidth = 240\nheight = 240\nrotation = 180\noffset_y = 80\nreset = 27\nbacklight = 18\ninvert_colors = true")).unwrap();
        let DisplayConfig::Spi(s) = &c.display else {
            panic!("{:?}", c.display)
        };
        assert_eq!(s.panel_kind(), Panel::St7789);
        assert_eq!(
            (s.width, s.height, s.rotation, s.offset_x, s.offset_y),
            (240, 240, 180, 0, 80)
        );
        assert!(s.invert_colors && !s.bgr);
        assert!(s.spi.is_absolute(), "resolved against the config's folder");
    }

    #[cfg(feature = "spi")]
    #[test]
    fn spi_errors_name_the_field() {
        let cases = [
            (
                spi("panel = \"st7789\"\nwidth = 240\nheight = 320\nrotation = 45"),
                "field `display.rotation` = 45 is not one of 0, 90, 180, 270",
            ),
            (
                spi("panel = \"st7735\"\nwidth = 128\nheight = 160"),
                "field `display.panel` = \"st7735\" is not one of st7789, ili9341, ili9486",
            ),
            (
                spi("panel = \"st7789\"\nwidth = 320\nheight = 240"),
                "field `display.width` = 320 is not within 1..=240",
            ),
            (
                spi("panel = \"ili9341\"\nwidth = 240\nheight = 0"),
                "field `display.height` = 0",
            ),
            (
                spi("panel = \"st7789\"\nwidth = 240\nheight = 240\noffset_y = 81"),
                "field `display.offset_y` = 81",
            ),
            (
                spi("panel = \"ili9486\"\nwidth = 320\nheight = 480\noffset_x = 1"),
                "field `display.offset_x` = 1",
            ),
            (
                spi("panel = \"st7789\"\nwidth = 240\nheight = 240\nreset = 25"),
                "field `display.reset` = 25 is the same GPIO line as `display.dc`",
            ),
            (
                spi("panel = \"st7789\"\nwidth = 240\nheight = 240\nreset = 5\nbacklight = 5"),
                "field `display.backlight` = 5",
            ),
            (
                spi("panel = \"st7789\"\nwidth = 240\nheight = 240\nspeed_hz = 0"),
                "field `display.speed_hz`",
            ),
            (
                spi("panel = \"st7789\"\nwidth = 240\nheight = 240\nmirror = true"),
                "mirror",
            ),
            (
                spi("panel = \"st7789\"\nwidth = 240\nheight = 240")
                    .replace("\"Cargo.toml\"", "\"/dev/spidev-kith-missing\""),
                "field `display.spi`: /dev/spidev-kith-missing does not exist",
            ),
            (
                spi("panel = \"st7789\"\nwidth = 240\nheight = 240")
                    .replace("\"src\"", "\"/dev/gpiochip-kith-missing\""),
                "field `display.gpio_chip`",
            ),
        ];
        for (text, needle) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle} not in {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[cfg(not(feature = "spi"))]
    #[test]
    fn spi_without_the_feature_is_a_config_error() {
        let e = parse(&spi("panel = \"st7789\"\nwidth = 240\nheight = 240"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`display.kind`") && e.contains("built without spi support"),
            "{e}"
        );
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
