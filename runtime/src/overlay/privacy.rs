//! Privacy mode: every person box of a frame blurred or pixelated in place, before the overlay is
//! drawn, so no image that leaves the frame loop shows a face.
//!
//! kith's own blur, not a crate's: in `cargo bench --bench preprocess` (group "privacy") image's
//! `fast_blur` on the same boxes is slower and allocates a new image per call, while this one works
//! in place with its grid on the stack and allocates nothing.

use crate::image::RgbImage;
use crate::scene::Person;

/// What privacy mode does to the person boxes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Privacy {
    /// Boxes are shown as they are.
    #[default]
    Off,
    /// A smooth blur at the scale of an eighth of the box's shorter side ([`blur`]).
    Blur,
    /// Blocks of an eighth of the box's shorter side, each filled with its mean colour.
    Pixelate,
}

impl Privacy {
    /// The names a board config may give, in [`Privacy`] order.
    pub const NAMES: [&'static str; 3] = ["off", "blur", "pixelate"];

    /// The mode called `name` in a board config.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "off" => Some(Privacy::Off),
            "blur" => Some(Privacy::Blur),
            "pixelate" => Some(Privacy::Pixelate),
            _ => None,
        }
    }

    /// Hides every person's box of `image` (in the image's pixels, as the scene gives them).
    pub fn apply(self, image: &mut RgbImage, persons: &[Person]) {
        if self == Privacy::Off {
            return;
        }
        for p in persons {
            let Some(region) = Region::of(p, image) else {
                continue;
            };
            match self {
                Privacy::Off => {}
                Privacy::Blur => blur(image, region),
                Privacy::Pixelate => pixelate(image, region),
            }
        }
    }
}

/// Most grid cells along a side of a blurred box (the grid lives on the stack).
const MAX_CELLS: usize = 64;

/// A box in whole pixels, clipped to the image: columns x0..x1, rows y0..y1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl Region {
    /// The pixels of `p`'s box inside `image` (a partly covered pixel counts), or `None` if empty.
    pub fn of(p: &Person, image: &RgbImage) -> Option<Self> {
        let clip = |v: f32, max: usize| (v.max(0.0) as usize).min(max);
        let r = Region {
            x0: clip(p.bbox[0].floor(), image.width),
            y0: clip(p.bbox[1].floor(), image.height),
            x1: clip(p.bbox[2].ceil(), image.width),
            y1: clip(p.bbox[3].ceil(), image.height),
        };
        (r.x0 < r.x1 && r.y0 < r.y1 && image.data.len() >= image.width * image.height * 3)
            .then_some(r)
    }

    fn width(&self) -> usize {
        self.x1 - self.x0
    }

    fn height(&self) -> usize {
        self.y1 - self.y0
    }

    /// An eighth of the shorter side, at least `min`.
    fn eighth(&self, min: usize) -> usize {
        (self.width().min(self.height()) / 8).max(min)
    }
}

/// Blurs `region` of `image` in place: the mean colour of each cell of a grid of an eighth of
/// the box's shorter side (a box filter), interpolated bilinearly between the cells' centres (a
/// tent), so the result is smooth with no block edges. Integer arithmetic, one pass to read and one
/// to write.
pub fn blur(image: &mut RgbImage, region: Region) {
    let (w, h) = (region.width(), region.height());
    let cell = region
        .eighth(4)
        .max(w.div_ceil(MAX_CELLS))
        .max(h.div_ceil(MAX_CELLS));
    let columns = w.div_ceil(cell);
    let mut means = [[0u8; 3]; MAX_CELLS * MAX_CELLS];
    cell_means(image, region, cell, |gx, gy, mean| {
        means[gy * columns + gx] = mean;
    });
    // Weights are 0..=256, so a row of the grid is 256 times its colour and a pixel 65536 times.
    let mut row_of_grid = [[0u32; 3]; MAX_CELLS];
    let row_bytes = image.width * 3;
    for (y, (g0, g1, wy)) in (region.y0..region.y1).zip(Axis::new(cell, h.div_ceil(cell))) {
        for (gx, out) in row_of_grid.iter_mut().take(columns).enumerate() {
            let (top, bottom) = (means[g0 * columns + gx], means[g1 * columns + gx]);
            for c in 0..3 {
                out[c] = top[c] as u32 * (256 - wy) + bottom[c] as u32 * wy;
            }
        }
        let start = y * row_bytes + region.x0 * 3;
        let row = &mut image.data[start..start + w * 3];
        for (px, (g0, g1, wx)) in row.chunks_exact_mut(3).zip(Axis::new(cell, columns)) {
            let (left, right) = (row_of_grid[g0], row_of_grid[g1]);
            for c in 0..3 {
                px[c] = ((left[c] * (256 - wx) + right[c] * wx + (1 << 15)) >> 16) as u8;
            }
        }
    }
}

/// Along one side of a grid of `cells` cells of `cell` pixels, for each pixel in turn: the cell
/// whose centre is at or before it, the next one, and the next one's weight (0..=256). Fixed
/// point 16.16, stepped without a division per pixel.
struct Axis {
    at: i64,
    step: i64,
    last: usize,
}

impl Axis {
    fn new(cell: usize, cells: usize) -> Self {
        let cell = cell as i64;
        Axis {
            // Pixel 0's centre (0.5) in cell coordinates, where cell k's centre is k.
            at: ((1 - cell) << 16) / (2 * cell),
            step: (1 << 16) / cell,
            last: cells.saturating_sub(1),
        }
    }
}

impl Iterator for Axis {
    type Item = (usize, usize, u32);

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.at;
        self.at += self.step;
        if at <= 0 {
            return Some((0, 0, 0));
        }
        let g = (at >> 16) as usize;
        if g >= self.last {
            return Some((self.last, self.last, 0));
        }
        Some((g, g + 1, ((at & 0xffff) >> 8) as u32))
    }
}

/// Calls `cell_done(column, row, mean)` with the mean colour of each `cell` x `cell` block of
/// `region` (the last ones in a row or column may be smaller).
fn cell_means(
    image: &RgbImage,
    region: Region,
    cell: usize,
    mut cell_done: impl FnMut(usize, usize, [u8; 3]),
) {
    let row_bytes = image.width * 3;
    for (gy, by) in (region.y0..region.y1).step_by(cell).enumerate() {
        let by1 = (by + cell).min(region.y1);
        for (gx, bx) in (region.x0..region.x1).step_by(cell).enumerate() {
            let bx1 = (bx + cell).min(region.x1);
            let mut sum = [0u32; 3];
            for y in by..by1 {
                let row = &image.data[y * row_bytes + bx * 3..y * row_bytes + bx1 * 3];
                for px in row.chunks_exact(3) {
                    for c in 0..3 {
                        sum[c] += px[c] as u32;
                    }
                }
            }
            let n = ((by1 - by) * (bx1 - bx)) as u32;
            cell_done(gx, gy, sum.map(|s| ((s + n / 2) / n) as u8));
        }
    }
}

/// Pixelates `region` of `image` in place: blocks of an eighth of its shorter side (at least 4
/// pixels), each filled with its mean colour.
pub fn pixelate(image: &mut RgbImage, region: Region) {
    let block = region.eighth(4);
    let row_bytes = image.width * 3;
    let mut fills = [[0u8; 3]; MAX_CELLS];
    // One row of blocks at a time: their means, then the fill.
    for by in (region.y0..region.y1).step_by(block) {
        let band = Region {
            y0: by,
            y1: (by + block).min(region.y1),
            ..region
        };
        for bx0 in (region.x0..region.x1).step_by(block * MAX_CELLS) {
            let strip = Region {
                x0: bx0,
                x1: (bx0 + block * MAX_CELLS).min(region.x1),
                ..band
            };
            cell_means(image, strip, block, |gx, _, mean| fills[gx] = mean);
            for y in strip.y0..strip.y1 {
                let row =
                    &mut image.data[y * row_bytes + strip.x0 * 3..y * row_bytes + strip.x1 * 3];
                for (k, px) in row.chunks_exact_mut(3).enumerate() {
                    px.copy_from_slice(&fills[k / block]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 640x480 frame with a face-like pattern in a person box: a light oval on a dark
    /// background, dark eyes with bright highlights, eyebrows, a nose line and a mouth, and a fine
    /// checkered texture (skin, hair) everywhere.
    fn face_frame() -> (RgbImage, Person) {
        let (w, h) = (640usize, 480usize);
        let mut img = RgbImage::new(w, h);
        let person = Person::new(0, [200.0, 60.0, 440.0, 460.0], 0.9);
        let (cx, cy, rx, ry) = (320.0f32, 170.0f32, 70.0f32, 95.0f32);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32, y as f32);
                let inside = ((fx - cx) / rx).powi(2) + ((fy - cy) / ry).powi(2) <= 1.0;
                let mut v: i32 = if inside { 210 } else { 40 };
                let eye = |ex: f32| ((fx - ex) / 16.0).powi(2) + ((fy - 145.0) / 9.0).powi(2);
                for ex in [292.0, 348.0] {
                    if eye(ex) <= 1.0 {
                        v = if eye(ex) < 0.1 { 255 } else { 10 };
                    }
                }
                if (125..130).contains(&y) && ((272..312).contains(&x) || (328..368).contains(&x)) {
                    v = 20;
                }
                if (150..200).contains(&y) && (318..322).contains(&x) {
                    v = 90;
                }
                if (215..225).contains(&y) && (295..345).contains(&x) {
                    v = 15;
                }
                v += if (x + y) % 2 == 0 { 25 } else { -25 };
                let v = v.clamp(0, 255) as u8;
                let i = (y * w + x) * 3;
                img.data[i..i + 3].copy_from_slice(&[v, v.saturating_sub(30), v / 2]);
            }
        }
        (img, person)
    }

    /// Variance of the green channel over `xs` x `ys`.
    fn variance(img: &RgbImage, xs: std::ops::Range<usize>, ys: std::ops::Range<usize>) -> f64 {
        let values: Vec<f64> = ys
            .flat_map(|y| xs.clone().map(move |x| (x, y)))
            .map(|(x, y)| img.pixel(x, y).unwrap()[1] as f64)
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64
    }

    /// Variance over the features (brows, eyes, nose, mouth) and over the whole oval's bounding box.
    fn face_variance(img: &RgbImage) -> (f64, f64) {
        (
            variance(img, 270..370, 120..230),
            variance(img, 250..390, 75..265),
        )
    }

    /// Mean absolute difference of horizontally neighbouring pixels over the face: fine detail.
    fn face_detail(img: &RgbImage) -> f64 {
        let diffs: Vec<f64> = (75..265)
            .flat_map(|y| (250..390).map(move |x| (x, y)))
            .map(|(x, y)| {
                let (a, b) = (img.pixel(x, y).unwrap(), img.pixel(x + 1, y).unwrap());
                (a[1] as f64 - b[1] as f64).abs()
            })
            .collect();
        diffs.iter().sum::<f64>() / diffs.len() as f64
    }

    fn outside_unchanged(before: &RgbImage, after: &RgbImage, p: &Person) {
        let r = Region::of(p, before).unwrap();
        for y in 0..before.height {
            for x in 0..before.width {
                let inside = (r.x0..r.x1).contains(&x) && (r.y0..r.y1).contains(&y);
                if !inside {
                    assert_eq!(before.pixel(x, y), after.pixel(x, y), "({x}, {y})");
                }
            }
        }
    }

    /// The bound a face detector cannot get past: the variance over the eyes, nose and mouth falls
    /// below a tenth of what it was, over the whole face (its outline stays) below a third, and the detail (neighbour
    /// differences) below a twentieth.
    #[test]
    fn blur_removes_the_face_and_nothing_outside_the_box() {
        let (mut img, p) = face_frame();
        let before = img.clone();
        let (var0, detail0) = (face_variance(&img), face_detail(&img));
        Privacy::Blur.apply(&mut img, &[p]);
        let (var1, detail1) = (face_variance(&img), face_detail(&img));
        println!("blur: variance (features, face) {var0:.0?} -> {var1:.0?}, detail {detail0:.1} -> {detail1:.2}");
        assert!(
            var1.0 < var0.0 / 10.0,
            "features' variance {var0:?} -> {var1:?}"
        );
        assert!(
            var1.1 < var0.1 / 3.0,
            "face's variance {var0:?} -> {var1:?}"
        );
        assert!(detail1 < detail0 / 20.0, "detail {detail0} -> {detail1}");
        outside_unchanged(&before, &img, &p);
    }

    #[test]
    fn pixelate_removes_the_face_and_nothing_outside_the_box() {
        let (mut img, p) = face_frame();
        let before = img.clone();
        let (var0, detail0) = (face_variance(&img), face_detail(&img));
        Privacy::Pixelate.apply(&mut img, &[p]);
        let (var1, detail1) = (face_variance(&img), face_detail(&img));
        println!("pixelate: variance (features, face) {var0:.0?} -> {var1:.0?}, detail {detail0:.1} -> {detail1:.2}");
        assert!(
            var1.0 < var0.0 / 5.0,
            "features' variance {var0:?} -> {var1:?}"
        );
        assert!(detail1 < detail0 / 10.0, "detail {detail0} -> {detail1}");
        outside_unchanged(&before, &img, &p);
    }

    #[test]
    fn off_changes_nothing() {
        let (mut img, p) = face_frame();
        let before = img.clone();
        Privacy::Off.apply(&mut img, &[p]);
        assert_eq!(img.data, before.data);
    }

    /// A flat colour stays exactly that colour (the integer division never drifts), and a blur
    /// keeps the mean of a line.
    #[test]
    fn blur_keeps_flat_colours_and_the_mean() {
        let mut img = RgbImage::new(50, 40);
        for (i, px) in img.data.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[77, 200, if i % 50 < 25 { 0 } else { 250 }]);
        }
        let region = Region {
            x0: 0,
            y0: 0,
            x1: 50,
            y1: 40,
        };
        blur(&mut img, region);
        assert!(img
            .data
            .chunks_exact(3)
            .all(|px| px[0] == 77 && px[1] == 200));
        let mean = (0..50)
            .map(|x| img.pixel(x, 20).unwrap()[2] as f64)
            .sum::<f64>()
            / 50.0;
        assert!((mean - 125.0).abs() < 3.0, "mean {mean}");
    }

    #[test]
    fn boxes_partly_off_the_image_are_clipped() {
        let img = RgbImage::new(100, 80);
        let p = |bbox| Person::new(0, bbox, 1.0);
        assert_eq!(
            Region::of(&p([-10.0, 70.5, 30.2, 200.0]), &img),
            Some(Region {
                x0: 0,
                y0: 70,
                x1: 31,
                y1: 80
            })
        );
        assert_eq!(Region::of(&p([120.0, 10.0, 150.0, 20.0]), &img), None);
    }

    #[test]
    fn names_round_trip() {
        for name in Privacy::NAMES {
            assert!(Privacy::from_name(name).is_some(), "{name}");
        }
        assert_eq!(Privacy::from_name("blurred"), None);
    }
}
