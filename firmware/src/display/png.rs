//! PNG snapshots: the host's display. Frames are drawn on an in-memory RGB canvas and every Nth
//! one is written to OUT/frames/NNNNNN.png.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use kith_runtime::canvas::RgbCanvas;

/// Writes PNG snapshots of a canvas.
pub struct PngSnapshots {
    dir: PathBuf,
    every: u64,
    /// The canvas the pipeline draws on; resized to each frame.
    pub canvas: RgbCanvas,
}

impl PngSnapshots {
    /// Snapshots into `dir` (created if needed), one every `every` frames.
    pub fn create(dir: &Path, every: usize) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        Ok(PngSnapshots {
            dir: dir.to_owned(),
            every: every.max(1) as u64,
            canvas: RgbCanvas::default(),
        })
    }

    /// Whether frame `n` is one to draw and write.
    pub fn wants(&self, n: u64) -> bool {
        n.is_multiple_of(self.every)
    }

    /// Writes the canvas as frame `n`'s snapshot; returns its path.
    pub fn write(&self, n: u64) -> Result<PathBuf> {
        let path = self.dir.join(format!("{n:06}.png"));
        let file =
            File::create(&path).with_context(|| format!("{}: cannot create", path.display()))?;
        let encoder = PngEncoder::new_with_quality(
            BufWriter::new(file),
            CompressionType::Fast,
            FilterType::Sub,
        );
        encoder
            .write_image(
                self.canvas.data(),
                self.canvas.width() as u32,
                self.canvas.height() as u32,
                ExtendedColorType::Rgb8,
            )
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(path)
    }
}
