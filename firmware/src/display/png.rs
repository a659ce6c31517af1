//! PNG snapshots: the host's display, and the record of what a board's display showed. Every Nth
//! frame is drawn on an in-memory RGB canvas (at a fixed size, or at the frame's own) and written
//! to OUT/frames/NNNNNN.png, NNNNNN being the frame's number.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use kith_runtime::canvas::RgbCanvas;
use kith_runtime::Pipeline;

use crate::OutputError;

/// Writes PNG snapshots of finished frames.
pub struct PngSnapshots {
    dir: PathBuf,
    every: u64,
    canvas: RgbCanvas,
    /// Width and height of the snapshots; `None` draws at each frame's size.
    size: Option<(usize, usize)>,
}

impl PngSnapshots {
    /// Snapshots into `dir` (created if needed), one every `every` frames, of `size` (or of each
    /// frame's size).
    pub fn create(
        dir: &Path,
        every: usize,
        size: Option<(usize, usize)>,
    ) -> Result<Self, OutputError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| OutputError::new(dir, format!("cannot create: {e}")))?;
        Ok(PngSnapshots {
            dir: dir.to_owned(),
            every: every.max(1) as u64,
            canvas: RgbCanvas::default(),
            size,
        })
    }

    /// Where the snapshots go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Draws the pipeline's finished frame and writes it, if its number is one to write.
    pub fn show_frame(&mut self, pipeline: &mut Pipeline) -> Result<(), OutputError> {
        let scene = pipeline.scene();
        let n = scene.frame;
        if !n.is_multiple_of(self.every) {
            return Ok(());
        }
        let (w, h) = self.size.unwrap_or((scene.width, scene.height));
        self.canvas.resize(w, h);
        let Ok(()) = pipeline.render(&mut self.canvas);
        self.write(n)?;
        Ok(())
    }

    /// Writes the canvas as frame `n`'s snapshot.
    fn write(&self, n: u64) -> Result<(), OutputError> {
        let path = self.dir.join(format!("{n:06}.png"));
        let file = File::create(&path)
            .map_err(|e| OutputError::new(&path, format!("cannot create: {e}")))?;
        let encoder = PngEncoder::new_with_quality(
            BufWriter::new(file),
            CompressionType::Fast,
            FilterType::Sub,
        );
        let canvas = &self.canvas;
        encoder
            .write_image(
                canvas.data(),
                canvas.width() as u32,
                canvas.height() as u32,
                ExtendedColorType::Rgb8,
            )
            .map_err(|e| OutputError::new(&path, format!("cannot write: {e}")))
    }
}
