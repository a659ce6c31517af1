//! Replay: frames from image files (JPEG, PNG, PNM), one file or a folder played in name order.
//! Each file is read and decoded into buffers reused from frame to frame.
//!
//! Memory is capped before anything is allocated: a file is read up to [`MAX_FILE_BYTES`], and its
//! header must announce at most [`MAX_FRAME_PIXELS`] pixels and [`MAX_DECODED_BYTES`] of samples
//! (the `image` crate's own limits hold its decoders to the same). A JPEG must end in its EOI
//! marker, as on the MJPEG pipe: a cut file is skipped rather than decoded into grey.
//!
//! A file that does not decode is skipped with one warning; played in a loop, it is warned about
//! again only after it decoded in between. When every file of a looped folder fails in a row, the
//! source stops with an error rather than spin (systemd's restart delay then paces the retries).

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use image::{ColorType, ImageDecoder, ImageFormat, ImageReader, Limits};
use kith_runtime::image::RgbImage;
use kith_runtime::limits::{MAX_FRAME_PIXELS, MAX_FRAME_SIDE, PREALLOCATED_FRAME};

use super::pipe::{find_jpeg, Scan};
use super::{CapturedFrame, FrameSource, SourceError};

/// Image file endings a folder replay picks up.
const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "ppm", "pgm", "pnm"];

/// Largest image file read (32 MiB; a 16 MP JPEG is a few MB).
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// Most bytes of decoded samples one image may need: [`MAX_FRAME_PIXELS`] of 8-bit RGBA.
pub const MAX_DECODED_BYTES: u64 = MAX_FRAME_PIXELS as u64 * 4;

/// Why one image file is not a frame (one line).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] image::ImageError),
    #[error("the file is larger than {} MiB", MAX_FILE_BYTES >> 20)]
    FileTooLarge,
    #[error("{0}x{1} is outside 1..={MAX_FRAME_SIDE} pixels a side")]
    Size(u32, u32),
    #[error("{0}x{1} is more than {MAX_FRAME_PIXELS} pixels")]
    Pixels(u32, u32),
    #[error("decoding needs {} MiB, more than {} MiB", .0 >> 20, MAX_DECODED_BYTES >> 20)]
    TooLarge(u64),
    #[error("unsupported pixel layout {0:?}")]
    Layout(ColorType),
    #[error("decoder returned fewer pixels than its header announced")]
    Short,
    #[error("bad JPEG: the file ends before its EOI marker")]
    Truncated,
    /// The JPEG marker walk's one-line reason (the MJPEG pipe's rule).
    #[error("{0}")]
    Jpeg(String),
}

/// Reads and decodes image files into a reused RGB image, within the caps above.
#[derive(Debug)]
pub struct ImageFileDecoder {
    bytes: Vec<u8>,
    decoded: Vec<u8>,
    rgb: RgbImage,
}

impl Default for ImageFileDecoder {
    fn default() -> Self {
        ImageFileDecoder {
            bytes: Vec::new(),
            decoded: Vec::new(),
            rgb: RgbImage::with_capacity(PREALLOCATED_FRAME.0, PREALLOCATED_FRAME.1),
        }
    }
}

impl ImageFileDecoder {
    /// Reads the file at `path` (at most [`MAX_FILE_BYTES`]) and decodes it.
    pub fn read(&mut self, path: &Path) -> Result<&RgbImage, ImageError> {
        self.bytes.clear();
        File::open(path)?
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut self.bytes)?;
        if self.bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(ImageError::FileTooLarge);
        }
        self.decode_bytes()
    }

    /// Decodes image file bytes (JPEG, PNG or PNM, told by their content) into RGB.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<&RgbImage, ImageError> {
        self.bytes.clear();
        self.bytes.extend_from_slice(bytes);
        self.decode_bytes()
    }

    fn decode_bytes(&mut self) -> Result<&RgbImage, ImageError> {
        let mut reader = ImageReader::new(Cursor::new(&self.bytes)).with_guessed_format()?;
        if reader.format() == Some(ImageFormat::Jpeg) {
            match find_jpeg(&self.bytes) {
                Scan::Complete(_) => {}
                Scan::Incomplete { .. } => return Err(ImageError::Truncated),
                Scan::Broken { detail, .. } => return Err(ImageError::Jpeg(detail)),
            }
        }
        let mut limits = Limits::default();
        limits.max_image_width = Some(MAX_FRAME_SIDE as u32);
        limits.max_image_height = Some(MAX_FRAME_SIDE as u32);
        limits.max_alloc = Some(MAX_DECODED_BYTES);
        reader.limits(limits);
        let decoder = reader.into_decoder()?;
        let (w, h) = decoder.dimensions();
        let side = 1..=MAX_FRAME_SIDE as u32;
        if !side.contains(&w) || !side.contains(&h) {
            return Err(ImageError::Size(w, h));
        }
        if u64::from(w) * u64::from(h) > MAX_FRAME_PIXELS as u64 {
            return Err(ImageError::Pixels(w, h));
        }
        let colour = decoder.color_type();
        let total = decoder.total_bytes();
        if total > MAX_DECODED_BYTES {
            return Err(ImageError::TooLarge(total));
        }
        let len = usize::try_from(total).map_err(|_| ImageError::TooLarge(total))?;
        self.decoded.resize(len, 0);
        decoder.read_image(&mut self.decoded)?;
        self.rgb.set_size(w as usize, h as usize);
        to_rgb(colour, &self.decoded, &mut self.rgb.data)?;
        Ok(&self.rgb)
    }
}

/// Plays image files as frames.
pub struct ReplaySource {
    files: Vec<PathBuf>,
    /// Per file: warned about since it last decoded (a looped folder warns once per bad file).
    warned: Vec<bool>,
    /// Files that failed in a row, to stop a looped folder in which none decodes.
    failures_in_a_row: usize,
    next: usize,
    repeat: bool,
    buffers: ImageFileDecoder,
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
            warned: vec![false; files.len()],
            files,
            failures_in_a_row: 0,
            next: 0,
            repeat,
            buffers: ImageFileDecoder::default(),
            name: String::new(),
        })
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
        loop {
            if self.next == self.files.len() {
                if !self.repeat {
                    return Ok(None);
                }
                self.next = 0;
            }
            let index = self.next;
            self.next += 1;
            let path = &self.files[index];
            match self.buffers.read(path) {
                Ok(_) => {
                    self.warned[index] = false;
                    self.failures_in_a_row = 0;
                    break;
                }
                Err(e) => {
                    self.failures_in_a_row += 1;
                    let (name, detail) = (path.display().to_string(), e.to_string());
                    if self.repeat && self.failures_in_a_row >= self.files.len() {
                        return Err(SourceError::Fatal {
                            name,
                            detail: format!(
                                "none of the {} image files decodes (this one: {detail})",
                                self.files.len()
                            ),
                        });
                    }
                    if !self.warned[index] {
                        self.warned[index] = true;
                        return Err(SourceError::Corrupt { name, detail });
                    }
                }
            }
        }
        let path = &self.files[self.next - 1];
        self.name.clear();
        self.name.push_str(
            &path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
        );
        Ok(Some(CapturedFrame {
            frame: self.buffers.rgb.as_frame(),
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

    /// Issue 15: README promises PNM input, and kith said "The image format Pnm is not supported".
    #[test]
    fn pnm_files_play() {
        let mut ppm = b"P6\n3 2\n255\n".to_vec();
        ppm.extend([10u8, 20, 30].repeat(6));
        let mut pgm = b"P5\n2 1\n255\n".to_vec();
        pgm.extend([7u8, 9]);
        let mut decoder = ImageFileDecoder::default();
        let rgb = decoder.decode(&ppm).unwrap();
        assert_eq!((rgb.width, rgb.height), (3, 2));
        assert!(rgb.data.chunks(3).all(|p| p == [10, 20, 30]));
        let rgb = decoder.decode(&pgm).unwrap();
        assert_eq!(rgb.data, [7, 7, 7, 9, 9, 9]);
    }

    /// Issue 15: a JPEG cut after 3,000 bytes decoded silently into a grey-filled frame in which
    /// the detector reported persons. It is skipped, as the MJPEG pipe skips a frame without EOI.
    #[test]
    fn a_cut_jpeg_is_refused() {
        let img = image::RgbImage::from_fn(320, 240, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&img)
            .unwrap();
        assert!(jpeg.len() > 3000);
        let mut decoder = ImageFileDecoder::default();
        decoder.decode(&jpeg).unwrap();
        let e = decoder.decode(&jpeg[..3000]).unwrap_err().to_string();
        assert_eq!(e, "bad JPEG: the file ends before its EOI marker");
    }

    /// Headers beyond the pixel and decoded-size limits are refused before any allocation.
    #[test]
    fn oversized_headers_are_refused_before_decoding() {
        let header = |w: u32, h: u32, colour: png::ColorType, depth: png::BitDepth| {
            let mut bytes = Vec::new();
            let mut encoder = png::Encoder::new(&mut bytes, w, h);
            encoder.set_color(colour);
            encoder.set_depth(depth);
            let mut writer = encoder.write_header().unwrap();
            // The start of the image data (one zlib-compressed zero byte): the decoder reads up
            // to the first IDAT chunk before it reports the image's size.
            let zlib = [0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01];
            writer.write_chunk(png::chunk::IDAT, &zlib).unwrap();
            drop(writer);
            bytes
        };
        let mut decoder = ImageFileDecoder::default();
        let rgba16 = header(8192, 8192, png::ColorType::Rgba, png::BitDepth::Sixteen);
        let e = decoder.decode(&rgba16).unwrap_err().to_string();
        assert_eq!(e, "8192x8192 is more than 16777216 pixels");
        let rgba16 = header(4096, 4096, png::ColorType::Rgba, png::BitDepth::Sixteen);
        let e = decoder.decode(&rgba16).unwrap_err().to_string();
        assert!(e.contains("limit") || e.contains("128 MiB"), "{e}");
        let e = decoder
            .decode(&header(9000, 10, png::ColorType::Rgb, png::BitDepth::Eight))
            .unwrap_err()
            .to_string();
        assert!(e.contains("limit") || e.contains("9000x10"), "{e}");
        assert!(decoder.decoded.capacity() < 1 << 20);
    }

    #[test]
    fn files_past_the_size_cap_are_not_read() {
        let dir = std::env::temp_dir().join(format!("kith-replay-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.png");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let e = ImageFileDecoder::default().read(&path).unwrap_err();
        assert!(matches!(e, ImageError::FileTooLarge), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
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
