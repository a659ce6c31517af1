//! Replay: frames from image files (JPEG, PNG, PNM), one file or a folder played in name order.
//! Each file is read and decoded into buffers reused from frame to frame.

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use image::{ColorType, ImageDecoder, ImageReader};
use kith_runtime::image::RgbImage;
use kith_runtime::limits::{MAX_FRAME_SIDE, PREALLOCATED_FRAME};

use super::{CapturedFrame, FrameSource, SourceError};

/// Image file endings a folder replay picks up.
const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "ppm", "pgm", "pnm"];

/// Why one image file is not a frame (one line).
#[derive(Debug, thiserror::Error)]
enum ImageError {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] image::ImageError),
    #[error("{0}x{1} is outside 1..={MAX_FRAME_SIDE} pixels a side")]
    Size(u32, u32),
    #[error("{0} bytes do not fit in memory")]
    TooLarge(u64),
    #[error("unsupported pixel layout {0:?}")]
    Layout(ColorType),
    #[error("decoder returned fewer pixels than its header announced")]
    Short,
}

/// Plays image files as frames.
pub struct ReplaySource {
    files: Vec<PathBuf>,
    next: usize,
    repeat: bool,
    bytes: Vec<u8>,
    decoded: Vec<u8>,
    rgb: RgbImage,
    name: String,
}

impl ReplaySource {
    /// Opens `path`: an image file, or a folder whose image files are played sorted by name.
    pub fn open(path: &Path, repeat: bool) -> Result<Self, SourceError> {
        let fatal = |detail: String| SourceError::Fatal {
            name: path.display().to_string(),
            detail,
        };
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| fatal(e.to_string()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_image_extension(p))
                .collect();
            files.sort();
            files
        } else if path.is_file() {
            vec![path.to_owned()]
        } else {
            return Err(fatal("no such file or folder".into()));
        };
        if files.is_empty() {
            return Err(fatal(format!(
                "no image files ({}) in the folder",
                IMAGE_EXTENSIONS.join(", ")
            )));
        }
        Ok(ReplaySource {
            files,
            next: 0,
            repeat,
            bytes: Vec::new(),
            decoded: Vec::new(),
            rgb: RgbImage::with_capacity(PREALLOCATED_FRAME.0, PREALLOCATED_FRAME.1),
            name: String::new(),
        })
    }

    fn decode(&mut self, path: &Path) -> Result<(), ImageError> {
        self.bytes.clear();
        File::open(path).and_then(|mut f| f.read_to_end(&mut self.bytes))?;
        let reader = ImageReader::new(Cursor::new(&self.bytes)).with_guessed_format()?;
        let decoder = reader.into_decoder()?;
        let (w, h) = decoder.dimensions();
        let side = 1..=MAX_FRAME_SIDE as u32;
        if !side.contains(&w) || !side.contains(&h) {
            return Err(ImageError::Size(w, h));
        }
        let colour = decoder.color_type();
        let total = decoder.total_bytes();
        let len = usize::try_from(total).map_err(|_| ImageError::TooLarge(total))?;
        self.decoded.resize(len, 0);
        decoder.read_image(&mut self.decoded)?;
        self.rgb.set_size(w as usize, h as usize);
        to_rgb(colour, &self.decoded, &mut self.rgb.data)
    }
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Converts decoded pixels of any 8- or 16-bit grey/RGB(A) layout into packed RGB.
fn to_rgb(colour: ColorType, src: &[u8], dst: &mut [u8]) -> Result<(), ImageError> {
    let channels = colour.channel_count() as usize;
    let bytes_per_channel = colour.bytes_per_pixel() as usize / channels;
    let grey = matches!(
        colour,
        ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16
    );
    let supported = matches!(
        colour,
        ColorType::L8
            | ColorType::La8
            | ColorType::Rgb8
            | ColorType::Rgba8
            | ColorType::L16
            | ColorType::La16
            | ColorType::Rgb16
            | ColorType::Rgba16
    );
    if !supported {
        return Err(ImageError::Layout(colour));
    }
    let stride = channels * bytes_per_channel;
    if src.len() < dst.len() / 3 * stride {
        return Err(ImageError::Short);
    }
    // 16-bit samples are native-endian from the decoder: take the most significant byte.
    let msb = if bytes_per_channel == 2 && cfg!(target_endian = "little") {
        1
    } else {
        0
    };
    for (out, px) in dst.chunks_exact_mut(3).zip(src.chunks_exact(stride)) {
        let sample = |c: usize| px[c * bytes_per_channel + msb];
        if grey {
            out.fill(sample(0));
        } else {
            out.copy_from_slice(&[sample(0), sample(1), sample(2)]);
        }
    }
    Ok(())
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self) -> Result<Option<CapturedFrame<'_>>, SourceError> {
        if self.next == self.files.len() {
            if !self.repeat {
                return Ok(None);
            }
            self.next = 0;
        }
        let path = self.files[self.next].clone();
        self.next += 1;
        self.name.clear();
        self.name.push_str(
            &path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
        );
        if let Err(e) = self.decode(&path) {
            return Err(SourceError::Corrupt {
                name: path.display().to_string(),
                detail: e.to_string(),
            });
        }
        Ok(Some(CapturedFrame {
            frame: self.rgb.as_frame(),
            name: &self.name,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, colour: [u8; 3]) {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb(colour));
        img.save(path).unwrap();
    }

    #[test]
    fn plays_a_folder_in_name_order_and_skips_corrupt_files() {
        let dir = std::env::temp_dir().join(format!("kith-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_png(&dir.join("b.png"), 4, 3, [10, 20, 30]);
        write_png(&dir.join("a.png"), 2, 2, [200, 100, 0]);
        std::fs::write(dir.join("c.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
        std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();
        let mut src = ReplaySource::open(&dir, false).unwrap();
        let f = src.next_frame().unwrap().unwrap();
        assert_eq!((f.name, f.frame.width, f.frame.height), ("a.png", 2, 2));
        assert_eq!(&f.frame.data[..3], &[200, 100, 0]);
        let f = src.next_frame().unwrap().unwrap();
        assert_eq!((f.name, f.frame.width), ("b.png", 4));
        match src.next_frame() {
            Err(SourceError::Corrupt { name, .. }) => assert!(name.ends_with("c.jpg")),
            other => panic!("expected a corrupt frame, got {other:?}"),
        }
        assert!(src.next_frame().unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn grey_and_sixteen_bit_images_become_rgb() {
        let mut out = [0u8; 6];
        to_rgb(ColorType::L8, &[7, 9], &mut out).unwrap();
        assert_eq!(out, [7, 7, 7, 9, 9, 9]);
        let rgba16: Vec<u8> = [0x1234u16, 0xabcd, 0xff00, 0xffff]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let mut out = [0u8; 3];
        to_rgb(ColorType::Rgba16, &rgba16, &mut out).unwrap();
        assert_eq!(out, [0x12, 0xab, 0xff]);
    }

    #[test]
    fn an_empty_folder_is_an_error() {
        let dir = std::env::temp_dir().join(format!("kith-replay-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = ReplaySource::open(&dir, false).err().unwrap().to_string();
        assert!(err.contains("no image files"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
