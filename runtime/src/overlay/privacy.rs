//! Privacy mode: every person box of a frame blurred or pixelated in place, before the overlay is
//! drawn, so no image that leaves the frame loop shows a face.
//!
//! kith's own integer box blur, not a crate's: in `cargo bench --bench preprocess` (group
//! "privacy") image's `fast_blur` on the same boxes is slower and allocates a new image per call,
//! while this one works in place with a ring buffer on the stack and allocates nothing.

use crate::image::RgbImage;
use crate::scene::Person;

/// What privacy mode does to the person boxes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Privacy {
    /// Boxes are shown as they are.
    #[default]
    Off,
    /// A box blur (three passes each way) with a radius of an eighth of the box's shorter side.
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

/// Largest blur radius (pixels); the ring buffer on the stack holds a window of this.
pub const MAX_RADIUS: usize = 32;
/// Blur passes each way: three box passes come close to a Gaussian.
const PASSES: usize = 3;

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

/// Blurs `region` of `image` in place: [`PASSES`] box passes along each row, then each column.
pub fn blur(image: &mut RgbImage, region: Region) {
    let radius = region.eighth(2).min(MAX_RADIUS);
    let row_bytes = image.width * 3;
    for y in region.y0..region.y1 {
        let start = y * row_bytes + region.x0 * 3;
        for _ in 0..PASSES {
            blur_line(&mut image.data, start, region.width(), 3, radius);
        }
    }
    for x in region.x0..region.x1 {
        let start = region.y0 * row_bytes + x * 3;
        for _ in 0..PASSES {
            blur_line(&mut image.data, start, region.height(), row_bytes, radius);
        }
    }
}

/// One box-filter pass over `count` RGB pixels of `data`, the first at byte `start`, each `step`
/// bytes after the one before, with a window of `2 * radius + 1` pixels (edges repeated). A
/// running sum; the ring keeps the originals of the pixels already overwritten.
fn blur_line(data: &mut [u8], start: usize, count: usize, step: usize, radius: usize) {
    if count < 2 {
        return;
    }
    let radius = radius.min(MAX_RADIUS);
    let ring_len = radius + 1;
    let mut ring = [[0u32; 3]; MAX_RADIUS + 1];
    let read = |data: &[u8], k: usize| {
        let i = start + k * step;
        [data[i] as u32, data[i + 1] as u32, data[i + 2] as u32]
    };
    let (first, last) = (read(data, 0), read(data, count - 1));
    let mut sum = [0u32; 3];
    for j in 0..=radius {
        let v = if j == 0 {
            first
        } else {
            read(data, j.min(count - 1))
        };
        let weight = if j == 0 { radius as u32 + 1 } else { 1 };
        for c in 0..3 {
            sum[c] += v[c] * weight;
        }
    }
    // sum * inverse >> 16 is sum / window, never above 255 (window <= 65).
    let window = 2 * radius as u32 + 1;
    let inverse = (1u32 << 16).div_ceil(window);
    for i in 0..count {
        let original = read(data, i);
        ring[i % ring_len] = original;
        let at = start + i * step;
        for c in 0..3 {
            data[at + c] = ((sum[c] * inverse) >> 16).min(255) as u8;
        }
        let add = if i + radius + 1 < count {
            read(data, i + radius + 1)
        } else {
            last
        };
        let sub = if i >= radius {
            ring[(i - radius) % ring_len]
        } else {
            first
        };
        for c in 0..3 {
            sum[c] = sum[c] + add[c] - sub[c];
        }
    }
}

/// Pixelates `region` of `image` in place: blocks of an eighth of its shorter side (at least 4
/// pixels), each filled with its mean colour.
pub fn pixelate(image: &mut RgbImage, region: Region) {
    let block = region.eighth(4);
    let row_bytes = image.width * 3;
    for by in (region.y0..region.y1).step_by(block) {
        let by1 = (by + block).min(region.y1);
        for bx in (region.x0..region.x1).step_by(block) {
            let bx1 = (bx + block).min(region.x1);
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
            let mean = sum.map(|s| ((s + n / 2) / n) as u8);
            for y in by..by1 {
                let row = &mut image.data[y * row_bytes + bx * 3..y * row_bytes + bx1 * 3];
                for px in row.chunks_exact_mut(3) {
                    px.copy_from_slice(&mean);
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
        let person = Person {
            id: 0,
            bbox: [200.0, 60.0, 440.0, 460.0],
            score: 0.9,
        };
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

    /// Variance of the green channel over the face (the oval's bounding box).
    fn face_variance(img: &RgbImage) -> f64 {
        let values: Vec<f64> = (75..265)
            .flat_map(|y| (250..390).map(move |x| (x, y)))
            .map(|(x, y)| img.pixel(x, y).unwrap()[1] as f64)
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64
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

    /// The bound a face detector cannot get past: the face's variance falls below a tenth of what
    /// it was, and the detail (neighbour differences) below a twentieth.
    #[test]
    fn blur_removes_the_face_and_nothing_outside_the_box() {
        let (mut img, p) = face_frame();
        let before = img.clone();
        let (var0, detail0) = (face_variance(&img), face_detail(&img));
        Privacy::Blur.apply(&mut img, &[p]);
        let (var1, detail1) = (face_variance(&img), face_detail(&img));
        println!("blur: face variance {var0:.0} -> {var1:.0}, detail {detail0:.1} -> {detail1:.2}");
        assert!(var1 < var0 / 10.0, "variance {var0} -> {var1}");
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
        println!(
            "pixelate: face variance {var0:.0} -> {var1:.0}, detail {detail0:.1} -> {detail1:.2}"
        );
        assert!(var1 < var0 / 2.0, "variance {var0} -> {var1}");
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
        let p = |bbox| Person {
            id: 0,
            bbox,
            score: 1.0,
        };
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
