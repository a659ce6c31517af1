//! The `[camera]` section of a board config: its TOML form and the checked [`CameraSpec`] the
//! sources open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kith_runtime::limits::MAX_FRAME_SIDE;
use serde::Deserialize;

#[cfg(feature = "v4l2")]
use super::V4l2Settings;
use super::{CameraFormat, PipeSettings, Retry};
use crate::config::{must_exist, resolve, Devices, FieldError};

/// `[camera]` as written in the TOML file.
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

/// Longest reconnection delay and dequeue timeout a config may give (ms).
const MAX_WAIT_MS: u64 = 600_000;

/// The camera a validated config asks for, in the form the sources take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSpec {
    Replay {
        path: PathBuf,
        repeat: bool,
    },
    #[cfg(feature = "v4l2")]
    V4l2(V4l2Settings),
    Pipe(PipeSettings),
}

impl CameraSpec {
    /// The device node (or named pipe) the camera opens, with the field that names it; `None`
    /// for image files and standard input.
    pub fn node(&self) -> Option<(&'static str, &Path)> {
        match self {
            CameraSpec::Replay { .. } => None,
            #[cfg(feature = "v4l2")]
            CameraSpec::V4l2(v) => Some(("camera.device", v.device.as_path())),
            CameraSpec::Pipe(p) if p.path.as_os_str() == "-" => None,
            CameraSpec::Pipe(p) => Some(("camera.path", p.path.as_path())),
        }
    }
}

impl CameraConfig {
    /// Checks every field (device nodes and paths must exist unless `devices` skips them; nothing
    /// is opened), with relative paths taken from `base`.
    pub fn into_spec(self, base: &Path, devices: Devices) -> Result<CameraSpec, FieldError> {
        match self {
            CameraConfig::Replay { path, repeat } => {
                let path = resolve(base, path);
                must_exist("camera.path", &path)?;
                Ok(CameraSpec::Replay { path, repeat })
            }
            #[cfg(not(feature = "v4l2"))]
            CameraConfig::V4l2 { .. } => Err(FieldError::NotBuilt {
                field: "camera.kind",
                feature: "v4l2",
            }),
            #[cfg(feature = "v4l2")]
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
                let format = camera_format(&format, &CameraFormat::V4L2)?;
                frame_size(width, height)?;
                if !(2..=8).contains(&buffers) {
                    return Err(FieldError::out_of_range("camera.buffers", buffers, "2..=8"));
                }
                if !(100..=MAX_WAIT_MS).contains(&timeout_ms) {
                    return Err(FieldError::out_of_range(
                        "camera.timeout_ms",
                        timeout_ms,
                        format!("100..={MAX_WAIT_MS}"),
                    ));
                }
                let retry = retry(retry_min_ms, retry_max_ms)?;
                let device = resolve(base, device);
                if devices == Devices::Required {
                    must_exist("camera.device", &device)?;
                }
                Ok(CameraSpec::V4l2(V4l2Settings {
                    device,
                    format,
                    width,
                    height,
                    buffers,
                    timeout: Duration::from_millis(timeout_ms),
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
                let format = camera_format(&format, &CameraFormat::PIPE)?;
                frame_size(width, height)?;
                if width % 2 == 1 && matches!(format, CameraFormat::Yuyv | CameraFormat::Yuv420) {
                    return Err(FieldError::rule(
                        "camera.width",
                        format!("= {width} must be even for format \"{format}\""),
                    ));
                }
                if height % 2 == 1 && format == CameraFormat::Yuv420 {
                    return Err(FieldError::rule(
                        "camera.height",
                        format!("= {height} must be even for format \"{format}\""),
                    ));
                }
                let retry = retry(retry_min_ms, retry_max_ms)?;
                let stdin = path.as_os_str() == "-";
                let path = if stdin { path } else { resolve(base, path) };
                if !stdin && devices == Devices::Required {
                    must_exist("camera.path", &path)?;
                    if path.is_dir() {
                        return Err(FieldError::WrongKind {
                            field: "camera.path",
                            path,
                            what: "is a folder, not a pipe or file".into(),
                        });
                    }
                }
                Ok(CameraSpec::Pipe(PipeSettings {
                    path,
                    format,
                    width,
                    height,
                    retry,
                }))
            }
        }
    }
}

fn camera_format(name: &str, allowed: &[CameraFormat]) -> Result<CameraFormat, FieldError> {
    CameraFormat::parse(name, allowed).ok_or_else(|| FieldError::Unknown {
        field: "camera.format",
        value: name.to_owned(),
        names: CameraFormat::list(allowed),
    })
}

fn frame_size(width: u32, height: u32) -> Result<(), FieldError> {
    for (field, v) in [("camera.width", width), ("camera.height", height)] {
        if !(1..=MAX_FRAME_SIDE as u32).contains(&v) {
            return Err(FieldError::out_of_range(
                field,
                v,
                format!("1..={MAX_FRAME_SIDE}"),
            ));
        }
    }
    Ok(())
}

fn retry(min_ms: u64, max_ms: u64) -> Result<Retry, FieldError> {
    if !(1..=MAX_WAIT_MS).contains(&min_ms) {
        return Err(FieldError::out_of_range(
            "camera.retry_min_ms",
            min_ms,
            format!("1..={MAX_WAIT_MS}"),
        ));
    }
    if !(min_ms..=MAX_WAIT_MS).contains(&max_ms) {
        return Err(FieldError::out_of_range(
            "camera.retry_max_ms",
            max_ms,
            format!("`camera.retry_min_ms` ({min_ms})..={MAX_WAIT_MS}"),
        ));
    }
    Ok(Retry {
        min: Duration::from_millis(min_ms),
        max: Duration::from_millis(max_ms),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::tests::{assert_field_errors, extra, parse, with_camera, PIPE, V4L2};

    #[test]
    fn a_pipe_camera_parses_with_defaults() {
        let c = parse(&with_camera(PIPE)).unwrap();
        let CameraSpec::Pipe(p) = c.camera.clone() else {
            panic!("{:?}", c.camera);
        };
        assert_eq!(p.path, PathBuf::from("-"), "stdin is not a relative path");
        assert_eq!(p.format, CameraFormat::Yuv420);
        assert_eq!((p.width, p.height), (640, 480));
        assert_eq!(p.retry.min, Duration::from_millis(250));
        assert_eq!(p.retry.max, Duration::from_millis(4000));
        let c = parse(&with_camera(&PIPE.replace("\"-\"", "\"Cargo.toml\""))).unwrap();
        let CameraSpec::Pipe(p) = c.camera.clone() else {
            panic!("{:?}", c.camera);
        };
        assert!(p.path.is_absolute(), "resolved against the config's folder");
    }

    #[cfg(feature = "v4l2")]
    #[test]
    fn a_v4l2_camera_parses_with_defaults() {
        let c = parse(&with_camera(V4L2)).unwrap();
        let CameraSpec::V4l2(v) = c.camera.clone() else {
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
