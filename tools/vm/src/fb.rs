//! A framebuffer dump (`dd if=/dev/fb0`) and the geometry the kernel reported for it, read back
//! as RGB.

use image::RgbImage;

/// Why a dump or its geometry cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FbError {
    #[error("geometry: {0}")]
    Geometry(String),
    #[error("dump has {got} bytes, the geometry needs {need}")]
    Short { got: usize, need: usize },
}

/// One colour channel's bits in a pixel (the kernel's `fb_bitfield`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub offset: u32,
    pub length: u32,
}

impl Channel {
    /// The channel of `pixel`, widened to 8 bits by repeating its high bits (as displays do).
    pub fn read(self, pixel: u32) -> u8 {
        let mask = (1u32 << self.length) - 1;
        widen((pixel >> self.offset) & mask, self.length)
    }

    /// `value` as this channel stores it when truncated, read back.
    pub fn quantize(self, value: u8) -> u8 {
        widen(u32::from(value) >> (8 - self.length), self.length)
    }

    /// How far a stored value, read back, may be from the 8-bit value it came from: one step
    /// between two of the channel's levels (converters round or truncate), 0 for 8 bits.
    pub fn tolerance(self) -> u8 {
        if self.length >= 8 {
            0
        } else {
            255u32.div_ceil((1 << self.length) - 1) as u8
        }
    }
}

fn widen(v: u32, length: u32) -> u8 {
    if length >= 8 {
        return (v >> (length - 8)) as u8;
    }
    let mut out = 0u32;
    let mut filled = 0;
    while filled < 8 {
        let shift = 8 - filled as i32 - length as i32;
        out |= if shift >= 0 { v << shift } else { v >> -shift };
        filled += length;
    }
    (out & 0xff) as u8
}

/// The visible area's layout, as `kith-vm-probe fbinfo` prints it (`key=value` lines from
/// FBIOGET_VSCREENINFO / FBIOGET_FSCREENINFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub width: u32,
    pub height: u32,
    pub line_length: u32,
    pub bits_per_pixel: u32,
    pub red: Channel,
    pub green: Channel,
    pub blue: Channel,
}

impl Geometry {
    /// Parses `key=value` lines; unknown keys are ignored.
    pub fn parse(text: &str) -> Result<Self, FbError> {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
                .ok_or_else(|| FbError::Geometry(format!("no `{key}`")))
        };
        let number = |key: &str| {
            get(key)?
                .parse::<u32>()
                .map_err(|e| FbError::Geometry(format!("`{key}`: {e}")))
        };
        let channel = |key: &str| {
            let v = get(key)?;
            let (o, l) = v
                .split_once('/')
                .ok_or_else(|| FbError::Geometry(format!("`{key}` = {v} is not OFFSET/LENGTH")))?;
            let parse = |s: &str| {
                s.parse::<u32>()
                    .map_err(|e| FbError::Geometry(format!("`{key}`: {e}")))
            };
            Ok::<_, FbError>(Channel {
                offset: parse(o)?,
                length: parse(l)?,
            })
        };
        let g = Geometry {
            width: number("width")?,
            height: number("height")?,
            line_length: number("line_length")?,
            bits_per_pixel: number("bits_per_pixel")?,
            red: channel("red")?,
            green: channel("green")?,
            blue: channel("blue")?,
        };
        if !matches!(g.bits_per_pixel, 16 | 24 | 32) {
            return Err(FbError::Geometry(format!(
                "{} bits per pixel is not 16, 24 or 32",
                g.bits_per_pixel
            )));
        }
        for (name, c) in [("red", g.red), ("green", g.green), ("blue", g.blue)] {
            if c.length == 0 || c.length > 8 || c.offset + c.length > g.bits_per_pixel {
                return Err(FbError::Geometry(format!(
                    "`{name}` = {}/{} does not fit a {}-bit pixel",
                    c.offset, c.length, g.bits_per_pixel
                )));
            }
        }
        if g.line_length < g.width * g.bits_per_pixel / 8 {
            return Err(FbError::Geometry(format!(
                "line_length {} is shorter than {} pixels",
                g.line_length, g.width
            )));
        }
        Ok(g)
    }

    /// Bytes of the visible area in a dump.
    pub fn visible_bytes(&self) -> usize {
        self.line_length as usize * self.height as usize
    }

    /// The visible area of `dump` as RGB.
    pub fn decode(&self, dump: &[u8]) -> Result<RgbImage, FbError> {
        let need = self.visible_bytes();
        if dump.len() < need {
            return Err(FbError::Short {
                got: dump.len(),
                need,
            });
        }
        let bytes = (self.bits_per_pixel / 8) as usize;
        Ok(RgbImage::from_fn(self.width, self.height, |x, y| {
            let at = y as usize * self.line_length as usize + x as usize * bytes;
            let mut pixel = 0u32;
            for (i, b) in dump[at..at + bytes].iter().enumerate() {
                pixel |= u32::from(*b) << (8 * i);
            }
            image::Rgb([
                self.red.read(pixel),
                self.green.read(pixel),
                self.blue.read(pixel),
            ])
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XRGB: &str = "id=Virtual FB\nwidth=2\nheight=1\nline_length=12\nbits_per_pixel=32\n\
                        red=16/8\ngreen=8/8\nblue=0/8\n";
    const RGB565: &str = "width=2\nheight=2\nline_length=4\nbits_per_pixel=16\n\
                          red=11/5\ngreen=5/6\nblue=0/5\n";

    #[test]
    fn rounding_and_truncating_converters_both_stay_within_the_tolerance() {
        let c = Channel {
            offset: 0,
            length: 5,
        };
        for v in 0..=255u8 {
            let rounded = ((u32::from(v) * 31 + 127) / 255) as u8;
            assert!(
                widen(u32::from(rounded), 5).abs_diff(v) <= c.tolerance(),
                "{v}"
            );
            assert!(c.quantize(v).abs_diff(v) <= c.tolerance(), "{v}");
        }
        let eight = Channel {
            offset: 0,
            length: 8,
        };
        assert_eq!(eight.tolerance(), 0);
    }

    #[test]
    fn widening_repeats_the_high_bits() {
        assert_eq!(widen(0b11111, 5), 255);
        assert_eq!(widen(0, 5), 0);
        assert_eq!(widen(0b10000, 5), 0b1000_0100);
        assert_eq!(widen(0b111111, 6), 255);
        assert_eq!(widen(0xab, 8), 0xab);
    }

    #[test]
    fn xrgb8888_decodes_with_padding_ignored() {
        let g = Geometry::parse(XRGB).unwrap();
        let mut dump = vec![0u8; 12];
        dump[..4].copy_from_slice(&0x00_12_34_56u32.to_le_bytes());
        dump[4..8].copy_from_slice(&0xff_ff_00_80u32.to_le_bytes());
        let img = g.decode(&dump).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0x12, 0x34, 0x56]);
        assert_eq!(img.get_pixel(1, 0).0, [0xff, 0x00, 0x80]);
    }

    #[test]
    fn rgb565_decodes_and_quantizes_consistently() {
        let g = Geometry::parse(RGB565).unwrap();
        let white = 0xffffu16.to_le_bytes();
        let red = 0xf800u16.to_le_bytes();
        let dump = [white, red, [0, 0], 0x07e0u16.to_le_bytes()].concat();
        let img = g.decode(&dump).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(1, 1).0, [0, 255, 0]);
        assert_eq!(g.red.quantize(0x84), 0x84);
        assert_eq!(g.red.quantize(0x87), 0x84);
        assert_eq!(g.red.tolerance(), 9);
        assert_eq!(g.green.tolerance(), 5);
    }

    #[test]
    fn bad_geometry_and_short_dumps_are_errors() {
        assert!(Geometry::parse("width=2").is_err());
        assert!(Geometry::parse(&XRGB.replace("red=16/8", "red=30/8")).is_err());
        assert!(Geometry::parse(&XRGB.replace("line_length=12", "line_length=4")).is_err());
        let g = Geometry::parse(XRGB).unwrap();
        assert!(matches!(
            g.decode(&[0; 11]),
            Err(FbError::Short { got: 11, need: 12 })
        ));
    }
}
