//! PNG snapshots: the host's display, and the record of what a board's display showed. Every Nth
//! frame is drawn on an in-memory RGB canvas (at a fixed size, or at the frame's own) and written
//! to OUT/frames/NNNNNN.png, NNNNNN being the frame's number: encoded in memory, written under a
//! temporary name and renamed ([`files::replace`]), so a PNG is whole or absent. A full disk skips
//! snapshots with one warning until there is room again.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use kith_runtime::image::RgbImage;

use crate::files::{self, Fsync, FullDisk};
use crate::OutputError;

/// Writes PNG snapshots of finished frames.
pub struct PngSnapshots {
    dir: PathBuf,
    every: u64,
    canvas: RgbImage,
    /// Width and height of the snapshots; `None` draws at each frame's size.
    size: Option<(usize, usize)>,
    /// The number of the frame being drawn, when it is one to write.
    pending: Option<u64>,
    /// The encoded PNG, reused from one snapshot to the next.
    encoded: Vec<u8>,
    fsync: Fsync,
    full: FullDisk,
}

impl PngSnapshots {
    /// Snapshots into `dir` (created if needed), one every `every` frames, of `size` (or of each
    /// frame's size), each synced to the disk when `fsync` says so.
    pub fn create(
        dir: &Path,
        every: usize,
        size: Option<(usize, usize)>,
        fsync: Fsync,
    ) -> Result<Self, OutputError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| OutputError::new(dir, format!("cannot create: {e}")))?;
        Ok(PngSnapshots {
            dir: dir.to_owned(),
            every: every.max(1) as u64,
            canvas: RgbImage::default(),
            size,
            pending: None,
            encoded: Vec::new(),
            fsync,
            full: FullDisk::default(),
        })
    }

    /// Where the snapshots go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Gets ready to draw frame number `n` of `width` x `height` pixels; `false` when its number
    /// is not one to write.
    pub fn begin_frame(&mut self, n: u64, width: usize, height: usize) -> bool {
        if !n.is_multiple_of(self.every) {
            self.pending = None;
            return false;
        }
        let (w, h) = self.size.unwrap_or((width, height));
        self.canvas.set_size(w, h);
        self.pending = Some(n);
        true
    }

    /// Writes what was drawn since [`PngSnapshots::begin_frame`] as that frame's snapshot.
    pub fn present(&mut self) -> Result<(), OutputError> {
        match self.pending.take() {
            Some(n) => self.write(n),
            None => Ok(()),
        }
    }

    /// Writes the canvas as frame `n`'s snapshot.
    fn write(&mut self, n: u64) -> Result<(), OutputError> {
        let path = self.dir.join(format!("{n:06}.png"));
        self.encoded.clear();
        let encoder =
            PngEncoder::new_with_quality(&mut self.encoded, CompressionType::Fast, FilterType::Sub);
        let canvas = &self.canvas;
        encoder
            .write_image(
                &canvas.data,
                canvas.width as u32,
                canvas.height as u32,
                ExtendedColorType::Rgb8,
            )
            .map_err(|e| OutputError::new(&path, format!("cannot encode: {e}")))?;
        match files::replace(&path, &self.encoded, self.fsync) {
            Ok(()) => {
                self.full.succeeded(&path);
                Ok(())
            }
            Err(e) => self.full.failed(&path, e),
        }
    }
}

impl OriginDimensions for PngSnapshots {
    fn size(&self) -> Size {
        self.canvas.size()
    }
}

/// Drawing goes to the canvas the next snapshot is written from.
impl DrawTarget for PngSnapshots {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        self.canvas.draw_iter(pixels)
    }

    fn fill_contiguous<I>(&mut self, area: &Rectangle, colors: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Self::Color>,
    {
        self.canvas.fill_contiguous(area, colors)
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        self.canvas.fill_solid(area, color)
    }

    fn clear(&mut self, color: Self::Color) -> Result<(), Self::Error> {
        self.canvas.clear(color)
    }
}
