//! Drawing on an [`RgbImage`]: embedded-graphics draws on the same RGB image type that frames are
//! converted into, so the in-memory display, PNG snapshots and tests read pixels back from it.

use std::convert::Infallible;

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

use crate::image::RgbImage;

impl RgbImage {
    /// A black image of `width` x `height` pixels.
    pub fn new(width: usize, height: usize) -> Self {
        RgbImage {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }

    /// The colour at (x, y), or `None` outside the image.
    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y * self.width + x) * 3;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    fn put(&mut self, p: Point, c: Rgb888) {
        if let Some(i) = pixel_index(p, self.width, self.height) {
            self.data[i * 3..i * 3 + 3].copy_from_slice(&[c.r(), c.g(), c.b()]);
        }
    }
}

/// The row-major index of pixel `p` in a `width` x `height` image, or `None` outside it: the
/// clipping every `DrawTarget` of kith's does.
pub fn pixel_index(p: Point, width: usize, height: usize) -> Option<usize> {
    let (x, y) = (usize::try_from(p.x).ok()?, usize::try_from(p.y).ok()?);
    (x < width && y < height).then_some(y * width + x)
}

impl OriginDimensions for RgbImage {
    fn size(&self) -> Size {
        Size::new(self.width as u32, self.height as u32)
    }
}

impl DrawTarget for RgbImage {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            self.put(p, c);
        }
        Ok(())
    }

    /// The whole image (a camera frame) is written in one pass driven by the colours' own
    /// `for_each`; other areas go pixel by pixel.
    fn fill_contiguous<I>(&mut self, area: &Rectangle, colors: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Self::Color>,
    {
        if *area != self.bounding_box() {
            return self.draw_iter(area.points().zip(colors).map(|(p, c)| Pixel(p, c)));
        }
        let mut pixels = self.data.chunks_exact_mut(3);
        colors
            .into_iter()
            .take(self.width * self.height)
            .for_each(|c| {
                if let Some(px) = pixels.next() {
                    px.copy_from_slice(&[c.r(), c.g(), c.b()]);
                }
            });
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        let area = area.intersection(&self.bounding_box());
        let Some(bottom_right) = area.bottom_right() else {
            return Ok(());
        };
        let rgb = [color.r(), color.g(), color.b()];
        for y in area.top_left.y..=bottom_right.y {
            let start = (y as usize * self.width + area.top_left.x as usize) * 3;
            let end = (y as usize * self.width + bottom_right.x as usize + 1) * 3;
            for px in self.data[start..end].chunks_exact_mut(3) {
                px.copy_from_slice(&rgb);
            }
        }
        Ok(())
    }
}
