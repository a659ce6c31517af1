//! The config's own tests, and the helpers the camera and display sections' tests share.

use std::path::{Path, PathBuf};

use super::*;
use crate::display::spec::DisplaySpec;

pub(crate) const GOOD: &str = r#"
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

pub(crate) fn parse(text: &str) -> Result<BoardConfig, ConfigError> {
    BoardConfig::parse(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("board.toml"),
        text,
    )
}

#[test]
fn a_good_config_parses_with_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.threads, 2);
    assert_eq!(c.detector.settings.score_threshold, 0.35);
    assert!(matches!(c.display, DisplaySpec::Png { every: 2 }));
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
pub(crate) fn with_display(display: &str) -> String {
    GOOD.replace("kind = \"png\"\nevery = 2", display)
}

pub(crate) fn fb_file(name: &str, len: usize) -> PathBuf {
    let path = std::env::temp_dir().join(format!("kith-config-{name}-{}", std::process::id()));
    std::fs::write(&path, vec![0u8; len]).unwrap();
    path
}

pub(crate) fn extra(camera: &str, line: &str) -> String {
    with_camera(&format!("{camera}\n{line}"))
}

pub(crate) fn assert_field_errors(cases: &[(String, &str)]) {
    for (text, needle) in cases {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle} not in {e}");
        assert!(e.contains("board.toml"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

pub(crate) fn with_camera(camera: &str) -> String {
    GOOD.replace("kind = \"replay\"\npath = \".\"", camera)
}

pub(crate) const V4L2: &str =
    "kind = \"v4l2\"\ndevice = \"/dev/null\"\nformat = \"yuyv\"\nwidth = 640\nheight = 480";
pub(crate) const PIPE: &str =
    "kind = \"pipe\"\npath = \"-\"\nformat = \"yuv420\"\nwidth = 640\nheight = 480";

#[test]
fn privacy_and_the_overlay_threshold() {
    use kith_runtime::overlay::{Privacy, DEFAULT_MIN_LINE_SCORE};
    let c = parse(GOOD).unwrap();
    assert_eq!(c.overlay.privacy, Privacy::Off);
    assert_eq!(c.overlay.min_line_score, DEFAULT_MIN_LINE_SCORE);
    for (name, want) in [
        ("off", Privacy::Off),
        ("blur", Privacy::Blur),
        ("pixelate", Privacy::Pixelate),
    ] {
        let text = GOOD.replace("threads = 2", &format!("threads = 2\nprivacy = \"{name}\""));
        assert_eq!(
            parse(&text).unwrap().pipeline_settings().overlay.privacy,
            want
        );
    }
    let text = format!("{GOOD}[overlay]\nmin_line_score = 0.7\n");
    assert_eq!(parse(&text).unwrap().overlay.min_line_score, 0.7);
    assert_field_errors(&[
        (
            GOOD.replace("threads = 2", "threads = 2\nprivacy = \"fuzzy\""),
            "field `privacy` = \"fuzzy\" is not one of off, blur, pixelate",
        ),
        (
            format!("{GOOD}[overlay]\nmin_line_score = 1.5\n"),
            "`overlay.min_line_score`",
        ),
        (format!("{GOOD}[overlay]\nmin_score = 0.5\n"), "min_score"),
    ]);
}

#[test]
fn a_name_is_one_line() {
    // It goes into systemd's STATUS= line, where a newline would start another field.
    for name in ["a\\nWATCHDOG=1", "tab\\there"] {
        let text = GOOD.replace("name = \"test\"", &format!("name = \"{name}\""));
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("field `name` has a control character"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn the_output_section_is_optional_and_checked() {
    use crate::files::{FileSettings, Fsync};
    assert_eq!(parse(GOOD).unwrap().output, FileSettings::default());
    let c = parse(&format!(
        "{GOOD}[output]\nrotate_mb = 8\nkeep = 2\nfsync = \"always\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.output,
        FileSettings {
            rotate_bytes: 8 << 20,
            keep: 2,
            fsync: Fsync::Always
        }
    );
    let e = parse(&format!("{GOOD}[output]\nkeep = 1001\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("field `output.keep` = 1001"), "{e}");
    let e = parse(&format!("{GOOD}[output]\nfsync = \"sometimes\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("field `output.fsync` = \"sometimes\""), "{e}");
}

#[test]
fn missing_device_nodes_may_come_later_but_are_listed() {
    let pipe = with_camera(&PIPE.replace("\"-\"", "\"/tmp/kith-pipe-not-yet\""));
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("board.toml");
    let strict = BoardConfig::parse_with(&file, &pipe, Devices::Required)
        .unwrap_err()
        .to_string();
    assert!(
        strict.contains("field `camera.path`: /tmp/kith-pipe-not-yet does not exist"),
        "{strict}"
    );
    let later = BoardConfig::parse_with(&file, &pipe, Devices::Skipped).unwrap();
    assert_eq!(
        later.missing_devices(),
        [("camera.path", Path::new("/tmp/kith-pipe-not-yet"))]
    );
    let fb = with_display("kind = \"fbdev\"\ndevice = \"/dev/fb-kith-missing\"");
    let later = BoardConfig::parse_with(&file, &fb, Devices::Skipped).unwrap();
    assert_eq!(
        later.missing_devices(),
        [("display.device", Path::new("/dev/fb-kith-missing"))]
    );
    assert!(parse(GOOD).unwrap().missing_devices().is_empty());
}
