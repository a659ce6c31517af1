//! PNG snapshots: the host's display. Frames drawn on an in-memory RGB canvas are written every Nth
//! frame to OUT/frames/NNNNNN.png.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use kith_runtime::canvas::RgbCanvas;

use crate::OutputError;

/// Writes PNG snapshots of a canvas.
pub struct PngSnapshots {
    dir: PathBuf,
    every: u64,
}

impl PngSnapshots {
    /// Snapshots into `dir` (created if needed), one every `every` frames.
    pub fn create(dir: &Path, every: usize) -> Result<Self, OutputError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| OutputError::new(dir, format!("cannot create: {e}")))?;
        Ok(PngSnapshots {
            dir: dir.to_owned(),
            every: every.max(1) as u64,
        })
    }

    /// Whether frame `n` is one to write.
    pub fn wants(&self, n: u64) -> bool {
        n.is_multiple_of(self.every)
    }

    /// Writes `canvas` as frame `n`'s snapshot; returns its path.
    pub fn write(&self, n: u64, canvas: &RgbCanvas) -> Result<PathBuf, OutputError> {
        let path = self.dir.join(format!("{n:06}.png"));
        let file = File::create(&path)
            .map_err(|e| OutputError::new(&path, format!("cannot create: {e}")))?;
        let encoder = PngEncoder::new_with_quality(
            BufWriter::new(file),
            CompressionType::Fast,
            FilterType::Sub,
        );
        encoder
            .write_image(
                canvas.data(),
                canvas.width() as u32,
                canvas.height() as u32,
                ExtendedColorType::Rgb8,
            )
            .map_err(|e| OutputError::new(&path, format!("cannot write: {e}")))?;
        Ok(path)
    }
}
