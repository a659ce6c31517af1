//! Comparing what a framebuffer shows with the picture kith meant to show, allowing for the
//! framebuffer's pixel format (an RGB565 screen keeps 5-6 bits of each channel).

use image::RgbImage;

use crate::fb::Geometry;

/// Why two pictures cannot be compared at all.
#[derive(Debug, thiserror::Error)]
#[error("the expected picture is {expected_w}x{expected_h}, larger than the {fb_w}x{fb_h} screen")]
pub struct TooLarge {
    pub expected_w: u32,
    pub expected_h: u32,
    pub fb_w: u32,
    pub fb_h: u32,
}

/// The result of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    /// Where the expected picture's top-left corner is on the screen.
    pub at: (u32, u32),
    /// Pixels compared (the expected picture's).
    pub pixels: u64,
    /// Pixels with a channel further from the expected value than the pixel format's
    /// quantization explains (one level of the channel; exact for 8-bit channels).
    pub differing: u64,
    /// The largest channel difference.
    pub max_diff: u8,
}

impl Comparison {
    /// Whether every pixel matched.
    pub fn matches(&self) -> bool {
        self.differing == 0
    }
}

/// Compares `screen` (a decoded dump of a framebuffer laid out as `geometry`) with `expected`.
/// A picture smaller than the screen is looked for at the top-left corner and centred; the
/// better of the two is returned.
pub fn compare(
    screen: &RgbImage,
    geometry: &Geometry,
    expected: &RgbImage,
) -> Result<Comparison, TooLarge> {
    let (sw, sh) = screen.dimensions();
    let (ew, eh) = expected.dimensions();
    if ew > sw || eh > sh {
        return Err(TooLarge {
            expected_w: ew,
            expected_h: eh,
            fb_w: sw,
            fb_h: sh,
        });
    }
    let mut best: Option<Comparison> = None;
    for at in [(0, 0), ((sw - ew) / 2, (sh - eh) / 2)] {
        let c = compare_at(screen, geometry, expected, at);
        if best.is_none_or(|b| c.differing < b.differing) {
            best = Some(c);
        }
    }
    Ok(best.unwrap_or(Comparison {
        at: (0, 0),
        pixels: 0,
        differing: 0,
        max_diff: 0,
    }))
}

fn compare_at(
    screen: &RgbImage,
    geometry: &Geometry,
    expected: &RgbImage,
    at: (u32, u32),
) -> Comparison {
    let channels = [geometry.red, geometry.green, geometry.blue];
    let (mut differing, mut max_diff) = (0u64, 0u8);
    for (x, y, want) in expected.enumerate_pixels() {
        let got = screen.get_pixel(at.0 + x, at.1 + y);
        let mut bad = false;
        for ((c, w), g) in channels.iter().zip(want.0).zip(got.0) {
            let d = w.abs_diff(g);
            max_diff = max_diff.max(d);
            bad |= d > c.tolerance();
        }
        differing += u64::from(bad);
    }
    Comparison {
        at,
        pixels: u64::from(expected.width()) * u64::from(expected.height()),
        differing,
        max_diff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn geometry(bpp: u32) -> Geometry {
        let text = if bpp == 16 {
            "width=8\nheight=6\nline_length=16\nbits_per_pixel=16\nred=11/5\ngreen=5/6\nblue=0/5"
        } else {
            "width=8\nheight=6\nline_length=32\nbits_per_pixel=32\nred=16/8\ngreen=8/8\nblue=0/8"
        };
        Geometry::parse(text).unwrap()
    }

    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 37) as u8, (y * 51) as u8, (x * y * 13) as u8])
        })
    }

    #[test]
    fn a_centred_picture_is_found_and_matches() {
        let g = geometry(32);
        let small = pattern(4, 2);
        let mut screen = RgbImage::new(8, 6);
        image::imageops::replace(&mut screen, &small, 2, 2);
        let c = compare(&screen, &g, &small).unwrap();
        assert_eq!(c.at, (2, 2));
        assert!(c.matches(), "{c:?}");
        assert_eq!(c.pixels, 8);
    }

    #[test]
    fn rgb565_rounding_is_allowed_but_a_wrong_pixel_is_not() {
        let g = geometry(16);
        let want = pattern(8, 6);
        let mut screen = RgbImage::from_fn(8, 6, |x, y| {
            let p = want.get_pixel(x, y).0;
            Rgb([
                g.red.quantize(p[0]),
                g.green.quantize(p[1]),
                g.blue.quantize(p[2]),
            ])
        });
        assert!(compare(&screen, &g, &want).unwrap().matches());
        screen.put_pixel(3, 3, Rgb([255, 255, 255]));
        screen.put_pixel(0, 0, Rgb([200, 0, 200]));
        let c = compare(&screen, &g, &want).unwrap();
        assert_eq!(c.differing, 2);
        assert!(!c.matches());
    }

    #[test]
    fn a_larger_picture_is_an_error() {
        let g = geometry(32);
        assert!(compare(&RgbImage::new(8, 6), &g, &pattern(9, 6)).is_err());
    }
}
