//! From the bytes a camera delivered to a [`Frame`] the pipeline reads. Every camera source (V4L2,
//! pipe) and the camera tests go through [`FrameDecoder::decode`], so the tests check the code that
//! runs on the board.
//!
//! Uncompressed frames are not copied: the frame borrows the camera's buffer and the pipeline
//! converts it into its own preallocated RGB image. MJPEG frames are decoded into an RGB image that
//! is reused from frame to frame, after the JPEG header was checked against the camera's
//! negotiated size and [`MAX_FRAME_PIXELS`]: a header claiming more is refused before the decoder
//! allocates anything.

use kith_runtime::image::RgbImage;
use kith_runtime::limits::{MAX_FRAME_PIXELS, MAX_FRAME_SIDE};
use kith_runtime::Frame;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::format::CameraFormat;
use super::{CapturedFrame, Negotiated, SourceError};

/// Why camera bytes are not a frame (one line).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Raw bytes that do not hold the frame their layout announces.
    #[error(transparent)]
    Frame(#[from] kith_runtime::Error),
    /// zune-jpeg's message, on one line.
    #[error("bad JPEG: {0}")]
    Jpeg(String),
    #[error("bad JPEG: no frame header")]
    NoFrameHeader,
    #[error("bad JPEG: empty {0}x{1} image")]
    Empty(usize, usize),
    /// A header larger than the camera's frames or the absolute pixel limit.
    #[error("bad JPEG: {0}x{1} is larger than the camera's {2}x{3}")]
    LargerThanCamera(usize, usize, usize, usize),
    #[error("bad JPEG: {0}x{1} is more than {MAX_FRAME_PIXELS} pixels")]
    TooManyPixels(usize, usize),
}

/// Turns camera bytes into frames, holding the reused MJPEG output buffer.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    rgb: RgbImage,
}

impl FrameDecoder {
    /// A decoder whose MJPEG buffer already holds frames of `width` x `height`.
    pub fn with_capacity(width: usize, height: usize) -> Self {
        FrameDecoder {
            rgb: RgbImage::with_capacity(width, height),
        }
    }

    /// The frame in `bytes`, sent as `format` with rows `stride` bytes apart. An MJPEG frame's
    /// size is read from the JPEG itself and may be at most `width` x `height` (either 0: only the
    /// absolute limit applies). Errors are one line.
    pub fn decode<'a>(
        &'a mut self,
        format: CameraFormat,
        width: usize,
        height: usize,
        stride: usize,
        bytes: &'a [u8],
    ) -> Result<Frame<'a>, DecodeError> {
        match format.pixel_format() {
            Some(pixel) => {
                let frame = Frame {
                    width,
                    height,
                    format: pixel,
                    stride,
                    data: bytes,
                };
                frame.validate()?;
                Ok(frame)
            }
            None => {
                self.decode_jpeg(bytes, width, height)?;
                Ok(self.rgb.as_frame())
            }
        }
    }

    /// The frame in `bytes`, laid out as `layout` says, named `name` in the output; a frame that
    /// does not decode is `SourceError::Corrupt`, which the source skips.
    pub fn capture<'a>(
        &'a mut self,
        layout: Negotiated,
        name: &'a str,
        bytes: &'a [u8],
    ) -> Result<CapturedFrame<'a>, SourceError> {
        let (w, h, stride) = (layout.width, layout.height, layout.stride);
        match self.decode(
            layout.format,
            w as usize,
            h as usize,
            stride as usize,
            bytes,
        ) {
            Ok(frame) => Ok(CapturedFrame { frame, name }),
            Err(e) => Err(SourceError::Corrupt {
                name: name.to_owned(),
                detail: e.to_string(),
            }),
        }
    }

    fn decode_jpeg(
        &mut self,
        bytes: &[u8],
        max_width: usize,
        max_height: usize,
    ) -> Result<(), DecodeError> {
        let options = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::RGB)
            .set_max_width(MAX_FRAME_SIDE)
            .set_max_height(MAX_FRAME_SIDE);
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
        decoder.decode_headers().map_err(jpeg_error)?;
        let (w, h) = decoder.dimensions().ok_or(DecodeError::NoFrameHeader)?;
        if w == 0 || h == 0 {
            return Err(DecodeError::Empty(w, h));
        }
        if max_width > 0 && max_height > 0 && (w > max_width || h > max_height) {
            return Err(DecodeError::LargerThanCamera(w, h, max_width, max_height));
        }
        if w * h > MAX_FRAME_PIXELS {
            return Err(DecodeError::TooManyPixels(w, h));
        }
        self.rgb.set_size(w, h);
        decoder.decode_into(&mut self.rgb.data).map_err(jpeg_error)
    }
}

/// A decoder error on one line (zune-jpeg's messages may hold line breaks).
fn jpeg_error(e: zune_jpeg::errors::DecodeErrors) -> DecodeError {
    DecodeError::Jpeg(
        e.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_runtime::PixelFormat;

    #[test]
    fn raw_frames_are_borrowed_not_copied() {
        let bytes = vec![7u8; 4 * 2 * 2];
        let mut decoder = FrameDecoder::default();
        let frame = decoder.decode(CameraFormat::Yuyv, 4, 2, 8, &bytes).unwrap();
        assert_eq!(frame.format, PixelFormat::Yuyv);
        assert_eq!(frame.data.as_ptr(), bytes.as_ptr());
    }

    #[test]
    fn short_and_corrupt_frames_are_one_line_errors() {
        let mut decoder = FrameDecoder::default();
        let e = decoder
            .decode(CameraFormat::Nv12, 4, 4, 4, &[0; 10])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs 24 bytes, got 10"), "{e}");
        let e = decoder
            .decode(CameraFormat::Mjpeg, 0, 0, 0, b"\xff\xd8\xff\xe0 nope")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad JPEG"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    /// Issue 15: a 56 KB MJPEG frame whose header claims 8192x8192 on a 640x480 camera was
    /// decoded into 848 MB. It is refused from its header, and so is one past the pixel limit.
    #[test]
    fn a_jpeg_header_larger_than_the_camera_is_refused() {
        let jpeg = jpeg_claiming(8192, 8192);
        let mut decoder = FrameDecoder::default();
        let e = decoder
            .decode(CameraFormat::Mjpeg, 640, 480, 0, &jpeg)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "bad JPEG: 8192x8192 is larger than the camera's 640x480");
        let e = decoder
            .decode(CameraFormat::Mjpeg, 0, 0, 0, &jpeg)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "bad JPEG: 8192x8192 is more than 16777216 pixels");
        assert!(decoder.rgb.data.capacity() < 1 << 20);
        let small = jpeg_claiming(16, 16);
        let frame = decoder
            .decode(CameraFormat::Mjpeg, 640, 480, 0, &small)
            .unwrap();
        assert_eq!((frame.width, frame.height), (16, 16));
    }

    /// A real 16x16 JPEG whose frame header (SOF0) is patched to claim `width` x `height`.
    fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(16, 16, image::Rgb([90, 120, 200]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&img)
            .unwrap();
        let sof = jpeg.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
        jpeg
    }
}
