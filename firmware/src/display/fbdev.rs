//! The Linux framebuffer display (/dev/fbN).
//!
//! The geometry comes from the FBIOGET_VSCREENINFO / FBIOGET_FSCREENINFO ioctls: resolution,
//! bits per pixel and where red, green and blue sit in a pixel (so RGB565, BGR565, XRGB8888 and
//! XBGR8888 all work), the line length in bytes and the size of the framebuffer memory, which is
//! mapped shared. Frames are drawn into a back buffer in the framebuffer's own pixel format and
//! copied into the mapping once per frame by [`Framebuffer::present`], line by line, so the
//! padding at the end of each line is never touched.
//!
//! A plain file can stand in for the device (tests) when the config says `emulated = true`: the
//! geometry then comes from the config (`width`, `height`, `pixel_format`, `line_length`) and the
//! file is mapped the same way. Without it anything but a character device is refused.
//!
//! The kernel's framebuffer console draws into the same memory (a blinking cursor, messages). On
//! a board, keep it off the screen kith uses: unbind it (`echo 0 >
//! /sys/class/vtconsole/vtconN/bind` for the entry named "frame buffer device"), or at least boot
//! with `vt.global_cursor_default=0` so its cursor does not blink over the picture.

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileTypeExt;

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use kith_runtime::canvas::pixel_index;

use super::fb_abi::{self, FbBitfield, FbVarScreeninfo, SharedMapping};
use super::spec::{FbGeometry, FbPixelFormat, FbdevSpec};
use super::DisplayError;

/// Where one colour channel sits in a pixel value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// Lowest bit.
    pub offset: u32,
    /// Bits, 1..=8.
    pub length: u32,
}

impl Channel {
    /// `value` (0..=255) scaled to the channel's bits, rounded, in place.
    fn pack(self, value: u8) -> u32 {
        let max = (1u32 << self.length) - 1;
        ((u32::from(value) * max + 127) / 255) << self.offset
    }
}

/// A packed pixel format: bytes per pixel and where each channel sits (native byte order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLayout {
    /// 2 or 4.
    pub bytes: usize,
    pub red: Channel,
    pub green: Channel,
    pub blue: Channel,
}

impl PixelLayout {
    /// The layout a config names.
    pub fn of(format: FbPixelFormat) -> Self {
        let ch = |offset, length| Channel { offset, length };
        match format {
            FbPixelFormat::Rgb565 => PixelLayout {
                bytes: 2,
                red: ch(11, 5),
                green: ch(5, 6),
                blue: ch(0, 5),
            },
            FbPixelFormat::Xrgb8888 => PixelLayout {
                bytes: 4,
                red: ch(16, 8),
                green: ch(8, 8),
                blue: ch(0, 8),
            },
        }
    }

    /// The layout FBIOGET_VSCREENINFO describes: 16 or 32 bits per pixel, true colour channels
    /// of 1 to 8 bits in any order.
    pub fn from_var(var: &FbVarScreeninfo) -> Result<Self, LayoutError> {
        let bytes = match var.bits_per_pixel {
            16 => 2,
            32 => 4,
            other => return Err(LayoutError::Depth(other)),
        };
        let channel = |name: &'static str, f: &FbBitfield| {
            if !(1..=8).contains(&f.length)
                || f.offset + f.length > var.bits_per_pixel
                || f.msb_right != 0
            {
                return Err(LayoutError::Channel {
                    name,
                    offset: f.offset,
                    length: f.length,
                    msb_right: f.msb_right,
                });
            }
            Ok(Channel {
                offset: f.offset,
                length: f.length,
            })
        };
        if var.grayscale != 0 || var.nonstd != 0 {
            return Err(LayoutError::NotTrueColour);
        }
        Ok(PixelLayout {
            bytes,
            red: channel("red", &var.red)?,
            green: channel("green", &var.green)?,
            blue: channel("blue", &var.blue)?,
        })
    }

    /// `colour` as this layout's pixel bytes (the low `bytes` of the array are used).
    fn encode(&self, colour: Rgb888) -> [u8; 4] {
        let v =
            self.red.pack(colour.r()) | self.green.pack(colour.g()) | self.blue.pack(colour.b());
        match self.bytes {
            2 => {
                let [a, b] = (v as u16).to_ne_bytes();
                [a, b, 0, 0]
            }
            _ => v.to_ne_bytes(),
        }
    }
}

/// A layout's pixel value of every channel value, looked up per pixel instead of scaled: a whole
/// camera frame goes through [`PixelTable::value`] (`cargo bench -p kith --bench display`).
struct PixelTable {
    red: [u32; 256],
    green: [u32; 256],
    blue: [u32; 256],
}

impl PixelTable {
    fn new(layout: &PixelLayout) -> Box<Self> {
        let table = |channel: Channel| std::array::from_fn(|v| channel.pack(v as u8));
        Box::new(PixelTable {
            red: table(layout.red),
            green: table(layout.green),
            blue: table(layout.blue),
        })
    }

    /// The pixel value of `colour` (the same as [`PixelLayout::encode`]).
    fn value(&self, colour: Rgb888) -> u32 {
        self.red[usize::from(colour.r())]
            | self.green[usize::from(colour.g())]
            | self.blue[usize::from(colour.b())]
    }
}

impl std::fmt::Display for PixelLayout {
    /// E.g. "32 bits: red 16..24, green 8..16, blue 0..8".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let range = |c: Channel| format!("{}..{}", c.offset, c.offset + c.length);
        write!(
            f,
            "{} bits: red {}, green {}, blue {}",
            self.bytes * 8,
            range(self.red),
            range(self.green),
            range(self.blue)
        )
    }
}

/// A framebuffer pixel format kith cannot draw.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{0} bits per pixel is not supported (16 or 32 are)")]
    Depth(u32),
    #[error("the {name} channel (offset {offset}, length {length}, msb_right {msb_right}) is not supported")]
    Channel {
        name: &'static str,
        offset: u32,
        length: u32,
        msb_right: u32,
    },
    #[error("grayscale and non-standard pixel formats are not supported")]
    NotTrueColour,
}

/// A visible screen that does not fit the memory behind it.
#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    #[error("the file is {len} bytes, less than the {needed} bytes the config's geometry needs")]
    FileTooSmall { len: u64, needed: u64 },
    #[error("{width}x{height} is an empty screen")]
    Empty { width: usize, height: usize },
    #[error("lines of {line_length} bytes are shorter than {width} pixels")]
    ShortLines { line_length: usize, width: usize },
    #[error("the visible {width}x{height} screen ends at byte {end}, past the {map_len} bytes of framebuffer memory")]
    PastMemory {
        width: usize,
        height: usize,
        end: usize,
        map_len: usize,
    },
}

/// A framebuffer (or a file standing in for one), drawn through a back buffer.
pub struct Framebuffer {
    device: String,
    map: SharedMapping,
    /// Byte offset of the visible area's first pixel in the mapping.
    origin: usize,
    line_length: usize,
    layout: PixelLayout,
    table: Box<PixelTable>,
    width: usize,
    height: usize,
    /// The next frame, packed lines in the framebuffer's pixel format.
    back: Vec<u8>,
}

impl Framebuffer {
    /// Opens and maps the framebuffer of a (validated) config.
    pub fn open(config: &FbdevSpec) -> Result<Self, DisplayError> {
        let path = &config.device;
        let device = path.display().to_string();
        let fail = |detail: String| DisplayError::Device {
            device: device.clone(),
            detail,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| fail(format!("cannot open: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| fail(format!("cannot stat: {e}")))?;
        let screen = if meta.file_type().is_char_device() {
            Screen::query(&file, config).map_err(|e| match e {
                QueryError::Device(detail) => fail(detail),
                QueryError::Mismatch(detail) => DisplayError::Geometry {
                    device: device.clone(),
                    detail,
                },
            })?
        } else if !config.emulated {
            return Err(fail(super::spec::not_a_framebuffer(meta.is_file())));
        } else {
            let g = config.geometry().ok_or_else(|| {
                fail("a plain file needs width, height and pixel_format in the config".into())
            })?;
            Screen::of_file(g, meta.len()).map_err(|e| DisplayError::Geometry {
                device: device.clone(),
                detail: e.to_string(),
            })?
        };
        let map = SharedMapping::new(&file, screen.map_len)
            .map_err(|e| fail(format!("cannot map {} bytes: {e}", screen.map_len)))?;
        let fb = Framebuffer {
            device,
            map,
            origin: screen.origin,
            line_length: screen.line_length,
            layout: screen.layout,
            table: PixelTable::new(&screen.layout),
            width: screen.width,
            height: screen.height,
            back: vec![0; screen.width * screen.height * screen.layout.bytes],
        };
        Ok(fb)
    }

    /// E.g. "/dev/fb0, 32 bits: red 16..24, green 8..16, blue 0..8".
    pub fn describe(&self) -> String {
        format!("{}, {}", self.device, self.layout)
    }

    /// Copies the back buffer to the screen.
    pub fn present(&mut self) {
        let row = self.width * self.layout.bytes;
        for (y, line) in self.back.chunks_exact(row).enumerate() {
            self.map.write(self.origin + y * self.line_length, line);
        }
    }

    fn fill_row(&mut self, y: usize, x0: usize, x1: usize, pixel: &[u8]) {
        let bpp = self.layout.bytes;
        let start = (y * self.width + x0) * bpp;
        let end = (y * self.width + x1) * bpp;
        for px in self.back[start..end].chunks_exact_mut(bpp) {
            px.copy_from_slice(pixel);
        }
    }
}

/// The visible screen inside the mapping.
struct Screen {
    width: usize,
    height: usize,
    layout: PixelLayout,
    line_length: usize,
    origin: usize,
    map_len: usize,
}

enum QueryError {
    /// The device misbehaved or has an unsupported format.
    Device(String),
    /// The config's geometry is not the device's.
    Mismatch(String),
}

impl Screen {
    /// The geometry of a framebuffer device, from its ioctls, checked against the config's
    /// fields where it gives them.
    fn query(file: &File, config: &FbdevSpec) -> Result<Self, QueryError> {
        let var = fb_abi::var_screeninfo(file)
            .map_err(|e| QueryError::Device(format!("FBIOGET_VSCREENINFO failed: {e}")))?;
        let fix = fb_abi::fix_screeninfo(file)
            .map_err(|e| QueryError::Device(format!("FBIOGET_FSCREENINFO failed: {e}")))?;
        let layout = PixelLayout::from_var(&var)
            .map_err(|e| QueryError::Device(format!("\"{}\": {e}", fix.id())))?;
        let mismatch = |field: &str, config: String, device: String| {
            QueryError::Mismatch(format!(
                "field `display.{field}` = {config} but the framebuffer reports {device}; fix or remove the field"
            ))
        };
        for (field, given, actual) in [
            ("width", config.width, var.xres),
            ("height", config.height, var.yres),
            ("line_length", config.line_length, fix.line_length),
        ] {
            if let Some(v) = given.filter(|&v| v != actual) {
                return Err(mismatch(field, v.to_string(), actual.to_string()));
            }
        }
        if let Some(format) = config.pixel_format {
            if PixelLayout::of(format) != layout {
                return Err(mismatch(
                    "pixel_format",
                    format!("\"{}\"", format.name()),
                    format!("{layout}"),
                ));
            }
        }
        let screen = Screen {
            width: var.xres as usize,
            height: var.yres as usize,
            layout,
            line_length: fix.line_length as usize,
            origin: var.yoffset as usize * fix.line_length as usize
                + var.xoffset as usize * layout.bytes,
            map_len: fix.smem_len as usize,
        };
        screen
            .check()
            .map_err(|e| QueryError::Device(e.to_string()))?;
        Ok(screen)
    }

    /// The geometry of a plain file standing in for a framebuffer of geometry `g`.
    fn of_file(g: FbGeometry, file_len: u64) -> Result<Self, ScreenError> {
        let needed = g.bytes();
        if file_len < needed {
            return Err(ScreenError::FileTooSmall {
                len: file_len,
                needed,
            });
        }
        let screen = Screen {
            width: g.width as usize,
            height: g.height as usize,
            layout: PixelLayout::of(g.format),
            line_length: g.line_length as usize,
            origin: 0,
            map_len: needed as usize,
        };
        screen.check()?;
        Ok(screen)
    }

    /// Whether every visible line lies inside the mapping.
    fn check(&self) -> Result<(), ScreenError> {
        let row = self.width * self.layout.bytes;
        let (width, height) = (self.width, self.height);
        if width == 0 || height == 0 {
            return Err(ScreenError::Empty { width, height });
        }
        if self.line_length < row {
            return Err(ScreenError::ShortLines {
                line_length: self.line_length,
                width,
            });
        }
        let end = self.origin + (height - 1) * self.line_length + row;
        if end > self.map_len {
            return Err(ScreenError::PastMemory {
                width,
                height,
                end,
                map_len: self.map_len,
            });
        }
        Ok(())
    }
}

impl OriginDimensions for Framebuffer {
    fn size(&self) -> Size {
        Size::new(self.width as u32, self.height as u32)
    }
}

impl DrawTarget for Framebuffer {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        let bpp = self.layout.bytes;
        for Pixel(p, c) in pixels {
            if let Some(i) = pixel_index(p, self.width, self.height) {
                let i = i * bpp;
                self.back[i..i + bpp].copy_from_slice(&self.layout.encode(c)[..bpp]);
            }
        }
        Ok(())
    }

    /// The whole screen (a camera frame) is encoded straight into the back buffer; other areas go
    /// pixel by pixel.
    fn fill_contiguous<I>(&mut self, area: &Rectangle, colors: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Self::Color>,
    {
        if *area != self.bounding_box() {
            let pixels = area.points().zip(colors).map(|(p, c)| Pixel(p, c));
            return self.draw_iter(pixels);
        }
        // One loop per pixel size, so each pixel is a store of a known width; `for_each` lets
        // the colours' own iterator drive the loop (a nested scaling iterator stays a tight loop).
        let (table, pixels) = (&self.table, self.width * self.height);
        let colors = colors.into_iter().take(pixels);
        if self.layout.bytes == 2 {
            let mut back = self.back.chunks_exact_mut(2);
            colors.for_each(|c| {
                if let Some(px) = back.next() {
                    px.copy_from_slice(&(table.value(c) as u16).to_ne_bytes());
                }
            });
        } else {
            let mut back = self.back.chunks_exact_mut(4);
            colors.for_each(|c| {
                if let Some(px) = back.next() {
                    px.copy_from_slice(&table.value(c).to_ne_bytes());
                }
            });
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        let area = area.intersection(&self.bounding_box());
        let Some(bottom_right) = area.bottom_right() else {
            return Ok(());
        };
        let encoded = self.layout.encode(color);
        let pixel = &encoded[..self.layout.bytes];
        let (x0, x1) = (area.top_left.x as usize, bottom_right.x as usize + 1);
        for y in area.top_left.y as usize..=bottom_right.y as usize {
            self.fill_row(y, x0, x1, pixel);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(bits: u32, r: (u32, u32), g: (u32, u32), b: (u32, u32)) -> FbVarScreeninfo {
        let f = |(offset, length)| FbBitfield {
            offset,
            length,
            msb_right: 0,
        };
        FbVarScreeninfo {
            xres: 640,
            yres: 480,
            bits_per_pixel: bits,
            red: f(r),
            green: f(g),
            blue: f(b),
            ..Default::default()
        }
    }

    #[test]
    fn layouts_come_from_the_var_info_bitfields() {
        let rgb565 = PixelLayout::from_var(&var(16, (11, 5), (5, 6), (0, 5))).unwrap();
        assert_eq!(rgb565, PixelLayout::of(FbPixelFormat::Rgb565));
        let xrgb = PixelLayout::from_var(&var(32, (16, 8), (8, 8), (0, 8))).unwrap();
        assert_eq!(xrgb, PixelLayout::of(FbPixelFormat::Xrgb8888));
        let bgr565 = PixelLayout::from_var(&var(16, (0, 5), (5, 6), (11, 5))).unwrap();
        assert_eq!(
            u16::from_ne_bytes(
                bgr565.encode(Rgb888::new(255, 0, 0))[..2]
                    .try_into()
                    .unwrap()
            ),
            0x001f
        );
        assert_eq!(
            bgr565.to_string(),
            "16 bits: red 0..5, green 5..11, blue 11..16"
        );
        let xbgr = PixelLayout::from_var(&var(32, (0, 8), (8, 8), (16, 8))).unwrap();
        assert_eq!(
            u32::from_ne_bytes(xbgr.encode(Rgb888::new(0x12, 0x34, 0x56))),
            0x0056_3412
        );
    }

    #[test]
    fn unsupported_layouts_are_refused() {
        for (v, needle) in [
            (var(24, (16, 8), (8, 8), (0, 8)), "24 bits"),
            (var(8, (0, 3), (3, 3), (6, 2)), "8 bits"),
            (var(32, (20, 10), (10, 10), (0, 10)), "red channel"),
            (var(16, (12, 5), (5, 6), (0, 5)), "red channel"),
        ] {
            let e = PixelLayout::from_var(&v).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn encoding_rounds_to_the_channel_bits() {
        let rgb565 = PixelLayout::of(FbPixelFormat::Rgb565);
        let v = u16::from_ne_bytes(
            rgb565.encode(Rgb888::new(0x12, 0xff, 0x85))[..2]
                .try_into()
                .unwrap(),
        );
        // 0x12 * 31 / 255 = 2.19, 255 -> 63, 0x85 * 31 / 255 = 16.17
        assert_eq!(v, 2 << 11 | 63 << 5 | 16);
        let xrgb = PixelLayout::of(FbPixelFormat::Xrgb8888);
        assert_eq!(
            xrgb.encode(Rgb888::new(1, 2, 3)),
            0x0001_0203u32.to_ne_bytes()
        );
    }

    #[test]
    fn the_table_encodes_as_the_layout_does() {
        let bgr565 = PixelLayout::from_var(&var(16, (0, 5), (5, 6), (11, 5))).unwrap();
        for layout in [
            PixelLayout::of(FbPixelFormat::Rgb565),
            PixelLayout::of(FbPixelFormat::Xrgb8888),
            bgr565,
        ] {
            let table = PixelTable::new(&layout);
            for v in 0..=255u8 {
                for colour in [
                    Rgb888::new(v, 0, 0),
                    Rgb888::new(0, v, 0),
                    Rgb888::new(0, 0, v),
                    Rgb888::new(v, 255 - v, v / 2),
                ] {
                    let value = table.value(colour).to_ne_bytes();
                    let bytes = if layout.bytes == 2 {
                        &(u32::from_ne_bytes(value) as u16).to_ne_bytes()[..]
                    } else {
                        &value[..]
                    };
                    assert_eq!(
                        bytes,
                        &layout.encode(colour)[..layout.bytes],
                        "{layout} {colour:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_screen_must_fit_its_memory() {
        let g = FbGeometry {
            width: 10,
            height: 4,
            format: FbPixelFormat::Rgb565,
            line_length: 32,
        };
        assert_eq!(g.bytes(), 3 * 32 + 20);
        assert!(Screen::of_file(g, g.bytes()).is_ok());
        let e = Screen::of_file(g, g.bytes() - 1).err().unwrap().to_string();
        assert!(e.contains("less than"), "{e}");
    }
}
