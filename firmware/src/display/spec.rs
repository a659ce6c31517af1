//! The `[display]` section of a board config: its TOML form and the checked [`DisplaySpec`] the
//! displays open.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{resolve, Devices, FieldError};

/// `[display]` as written in the TOML file.
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

fn one() -> usize {
    1
}

/// The display a validated config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplaySpec {
    Png {
        every: usize,
    },
    /// Every frame onto an in-memory canvas at its size, written nowhere (benchmarks and tests;
    /// no board config names it).
    Memory,
    None,
    Fbdev(FbdevSpec),
    #[cfg(feature = "spi")]
    Spi(SpiSpec),
}

impl DisplaySpec {
    /// The device nodes the display opens, with the fields that name them.
    pub fn nodes(&self) -> Vec<(&'static str, &Path)> {
        match self {
            DisplaySpec::Fbdev(fb) => vec![("display.device", fb.device.as_path())],
            #[cfg(feature = "spi")]
            DisplaySpec::Spi(spi) => vec![
                ("display.spi", spi.spi.as_path()),
                ("display.gpio_chip", spi.gpio_chip.as_path()),
            ],
            DisplaySpec::Png { .. } | DisplaySpec::Memory | DisplaySpec::None => vec![],
        }
    }

    /// The first of its device nodes that is not there.
    pub fn missing_node(&self) -> Option<&Path> {
        self.nodes()
            .into_iter()
            .map(|(_, path)| path)
            .find(|path| !path.exists())
    }
}

impl DisplayConfig {
    /// Checks every field (device nodes must exist unless `devices` skips them; nothing is
    /// opened), with relative paths taken from `base`.
    pub fn into_spec(self, base: &Path, devices: Devices) -> Result<DisplaySpec, FieldError> {
        match self {
            DisplayConfig::Png { every: 0 } => {
                Err(FieldError::rule("display.every", "must be at least 1"))
            }
            DisplayConfig::Png { every } => Ok(DisplaySpec::Png { every }),
            DisplayConfig::None => Ok(DisplaySpec::None),
            DisplayConfig::Fbdev(fb) => Ok(DisplaySpec::Fbdev(fb.into_spec(base, devices)?)),
            #[cfg(feature = "spi")]
            DisplayConfig::Spi(spi) => Ok(DisplaySpec::Spi(spi.into_spec(base, devices)?)),
            #[cfg(not(feature = "spi"))]
            DisplayConfig::Spi(_) => Err(FieldError::NotBuilt {
                field: "display.kind",
                feature: "spi",
            }),
        }
    }
}

/// `[display] kind = "fbdev"` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FbdevConfig {
    /// The framebuffer device (a character device), or with `emulated = true` a regular file
    /// standing in for one (tests).
    pub device: PathBuf,
    /// `device` is a regular file standing in for a framebuffer; without it a regular file is
    /// refused (kith would overwrite it).
    #[serde(default)]
    pub emulated: bool,
    /// For a plain file: the geometry the FBIOGET_*SCREENINFO ioctls would report. For a device
    /// they are optional and checked against what the ioctls report.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// "rgb565" or "xrgb8888".
    pub pixel_format: Option<String>,
    /// Bytes from one line to the next; default width * bytes per pixel.
    pub line_length: Option<u32>,
}

/// A checked framebuffer display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FbdevSpec {
    pub device: PathBuf,
    /// `device` may be a regular file standing in for a framebuffer.
    pub emulated: bool,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub pixel_format: Option<FbPixelFormat>,
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

/// The largest framebuffer side a config may give.
const MAX_FB_SIDE: u32 = 16384;

impl FbdevSpec {
    /// The geometry given in the config: width, height, format and line length, or `None` when
    /// any of width, height and pixel format is missing.
    pub fn geometry(&self) -> Option<FbGeometry> {
        let format = self.pixel_format?;
        let (width, height) = (self.width?, self.height?);
        Some(FbGeometry {
            width,
            height,
            format,
            line_length: self.line_length.unwrap_or(width * format.bytes_per_pixel()),
        })
    }
}

impl FbdevConfig {
    fn into_spec(self, base: &Path, devices: Devices) -> Result<FbdevSpec, FieldError> {
        use std::os::unix::fs::FileTypeExt;
        for (field, value) in [
            ("display.width", self.width),
            ("display.height", self.height),
        ] {
            if let Some(v) = value {
                if !(1..=MAX_FB_SIDE).contains(&v) {
                    return Err(FieldError::out_of_range(
                        field,
                        v,
                        format!("1..={MAX_FB_SIDE}"),
                    ));
                }
            }
        }
        let pixel_format = match self.pixel_format {
            None => None,
            Some(name) => Some(FbPixelFormat::parse(&name).ok_or(FieldError::Unknown {
                field: "display.pixel_format",
                value: name,
                names: FbPixelFormat::NAMES.into(),
            })?),
        };
        let spec = FbdevSpec {
            device: resolve(base, self.device),
            emulated: self.emulated,
            width: self.width,
            height: self.height,
            pixel_format,
            line_length: self.line_length,
        };
        if let (Some(line), Some(g)) = (spec.line_length, spec.geometry()) {
            let packed = g.width * g.format.bytes_per_pixel();
            if line < packed {
                return Err(FieldError::rule(
                    "display.line_length",
                    format!("= {line} is less than width * bytes per pixel = {packed}"),
                ));
            }
        }
        // stat, not open: `kith check` opens no device.
        let device = &spec.device;
        if devices == Devices::Skipped && !device.exists() {
            return Ok(spec);
        }
        let meta = std::fs::metadata(device).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => FieldError::Missing {
                field: "display.device",
                path: device.clone(),
            },
            _ => FieldError::Unreadable {
                field: "display.device",
                path: device.clone(),
                error,
            },
        })?;
        if meta.file_type().is_char_device() {
            // The FBIOGET_*SCREENINFO ioctls give the geometry; the fields, if any, are checked
            // against them when the device is opened.
            return Ok(spec);
        }
        let wrong = |what: String| FieldError::WrongKind {
            field: "display.device",
            path: device.clone(),
            what,
        };
        if !self.emulated {
            return Err(wrong(not_a_framebuffer(meta.is_file())));
        }
        if !meta.is_file() {
            return Err(wrong(
                "is neither a framebuffer device nor a regular file".into(),
            ));
        }
        for (field, missing) in [
            ("display.width", spec.width.is_none()),
            ("display.height", spec.height.is_none()),
            ("display.pixel_format", spec.pixel_format.is_none()),
        ] {
            if missing {
                return Err(FieldError::rule(
                    field,
                    format!(
                        "is required when `display.device` ({}) is a regular file",
                        device.display()
                    ),
                ));
            }
        }
        if let Some(g) = spec.geometry() {
            if meta.len() < g.bytes() {
                return Err(wrong(format!(
                    "is {} bytes, less than the {} bytes of {}x{} {} with lines of {} bytes",
                    meta.len(),
                    g.bytes(),
                    g.width,
                    g.height,
                    g.format.name(),
                    g.line_length
                )));
            }
        }
        Ok(spec)
    }
}

/// Why a `display.device` that is not a character device is refused.
pub fn not_a_framebuffer(regular_file: bool) -> String {
    if regular_file {
        "is a regular file, not a framebuffer device (kith would overwrite it; \
         `display.emulated = true` draws into a file standing in for one)"
            .into()
    } else {
        "is not a framebuffer device (not a character device)".into()
    }
}

/// `[display] kind = "spi"` as written.
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

/// A checked SPI panel display: [`SpiConfig`] with its controller known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiSpec {
    pub panel: Panel,
    pub spi: PathBuf,
    pub speed_hz: Option<u32>,
    pub gpio_chip: PathBuf,
    pub dc: u32,
    pub reset: Option<u32>,
    pub backlight: Option<u32>,
    pub width: u32,
    pub height: u32,
    pub rotation: u32,
    pub offset_x: u32,
    pub offset_y: u32,
    pub invert_colors: bool,
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
    /// Checks every field (the device nodes must exist unless `devices` skips them), with
    /// relative paths taken from `base`.
    pub fn into_spec(self, base: &Path, devices: Devices) -> Result<SpiSpec, FieldError> {
        let Some(panel) = Panel::parse(&self.panel) else {
            return Err(FieldError::Unknown {
                field: "display.panel",
                value: self.panel,
                names: Panel::NAMES.into(),
            });
        };
        if ![0, 90, 180, 270].contains(&self.rotation) {
            return Err(FieldError::rule(
                "display.rotation",
                format!("= {} is not one of 0, 90, 180, 270", self.rotation),
            ));
        }
        let (columns, rows) = panel.memory_size();
        for (field, side, value, offset_field, offset, max) in [
            (
                "display.width",
                "width",
                self.width,
                "display.offset_x",
                self.offset_x,
                columns,
            ),
            (
                "display.height",
                "height",
                self.height,
                "display.offset_y",
                self.offset_y,
                rows,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return Err(FieldError::out_of_range(
                    field,
                    value,
                    format!(
                        "1..={max} (the {}'s {side} in its native orientation)",
                        panel.name()
                    ),
                ));
            }
            if offset > max - value {
                return Err(FieldError::rule(
                    offset_field,
                    format!(
                        "= {offset}: with {side} {value} it passes the {}'s {max} pixels",
                        panel.name()
                    ),
                ));
            }
        }
        if self.speed_hz == Some(0) {
            return Err(FieldError::rule("display.speed_hz", "must be at least 1"));
        }
        for (field, line) in [
            ("display.reset", self.reset),
            ("display.backlight", self.backlight),
        ] {
            if line == Some(self.dc) {
                return Err(FieldError::rule(
                    field,
                    format!("= {} is the same GPIO line as `display.dc`", self.dc),
                ));
            }
        }
        if let Some(line) = self.reset.filter(|&r| Some(r) == self.backlight) {
            return Err(FieldError::rule(
                "display.backlight",
                format!("= {line} is the same GPIO line as `display.reset`"),
            ));
        }
        let spi = resolve(base, self.spi);
        let gpio_chip = resolve(base, self.gpio_chip);
        // stat, not open: `kith check` opens no device.
        for (field, path) in [("display.spi", &spi), ("display.gpio_chip", &gpio_chip)] {
            if !path.exists() && devices == Devices::Required {
                return Err(FieldError::Missing {
                    field,
                    path: path.clone(),
                });
            }
        }
        Ok(SpiSpec {
            panel,
            spi,
            speed_hz: self.speed_hz,
            gpio_chip,
            dc: self.dc,
            reset: self.reset,
            backlight: self.backlight,
            width: self.width,
            height: self.height,
            rotation: self.rotation,
            offset_x: self.offset_x,
            offset_y: self.offset_y,
            invert_colors: self.invert_colors,
            bgr: self.bgr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{fb_file, parse, with_display};

    #[test]
    fn an_fbdev_file_takes_its_geometry_from_the_config() {
        let file = fb_file("fb-good", 100 * 48);
        let c = parse(&with_display(&format!(
            "kind = \"fbdev\"\nemulated = true\ndevice = \"{}\"\nwidth = 40\nheight = 48\npixel_format = \"rgb565\"\nline_length = 100",
            file.display()
        )))
        .unwrap();
        let DisplaySpec::Fbdev(fb) = &c.display else {
            panic!("{:?}", c.display)
        };
        let g = fb.geometry().unwrap();
        assert_eq!(
            (g.width, g.height, g.format, g.line_length),
            (40, 48, FbPixelFormat::Rgb565, 100)
        );
        let c = parse(&with_display(&format!(
            "kind = \"fbdev\"\nemulated = true\ndevice = \"{}\"\nwidth = 30\nheight = 40\npixel_format = \"xrgb8888\"",
            file.display()
        )))
        .unwrap();
        let DisplaySpec::Fbdev(fb) = &c.display else {
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
        let fb = |rest: &str| with_display(&format!("kind = \"fbdev\"\nemulated = true\n{rest}"));
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

    #[test]
    fn a_display_device_that_is_not_a_character_device_is_refused() {
        let file = fb_file("fb-regular", 64 * 48);
        let before = std::fs::read(&file).unwrap();
        let fb = |device: &str| {
            with_display(&format!(
                "kind = \"fbdev\"\ndevice = \"{device}\"\nwidth = 32\nheight = 48\npixel_format = \"rgb565\""
            ))
        };
        let e = parse(&fb(&file.display().to_string()))
            .unwrap_err()
            .to_string();
        let want = format!(
            "field `display.device`: {} is a regular file, not a framebuffer device",
            file.display()
        );
        assert!(e.contains(&want), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse(&fb("/tmp")).unwrap_err().to_string();
        assert!(
            e.contains("field `display.device`: /tmp is not a framebuffer device"),
            "{e}"
        );
        // The one opt-in: a file standing in for a framebuffer.
        let emulated = fb(&file.display().to_string())
            .replace("kind = \"fbdev\"", "kind = \"fbdev\"\nemulated = true");
        parse(&emulated).unwrap();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            before,
            "validation wrote nothing"
        );
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
        let DisplaySpec::Spi(s) = &c.display else {
            panic!("{:?}", c.display)
        };
        assert_eq!(s.panel, Panel::St7789);
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
}
