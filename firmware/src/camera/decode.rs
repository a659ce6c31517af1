//! From the bytes a camera delivered to a [`Frame`] the pipeline reads. Every camera source (V4L2,
//! pipe) and the camera tests go through [`FrameDecoder::decode`], so the tests check the code that
//! runs on the board.
//!
//! Uncompressed frames are not copied: the frame borrows the camera's buffer and the pipeline
//! converts it into its own preallocated RGB image. MJPEG frames are decoded into an RGB image that
//! is reused from frame to frame.

use kith_runtime::image::RgbImage;
use kith_runtime::limits::MAX_FRAME_SIDE;
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

    /// The frame in `bytes`, sent as `format` with rows `stride` bytes apart (ignored for MJPEG,
    /// whose size is read from the JPEG itself). Errors are one line.
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
                self.decode_jpeg(bytes)?;
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

    fn decode_jpeg(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
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
}
