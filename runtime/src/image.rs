//! Frames and pixel formats: conversion of camera formats to RGB, and the resize of an RGB frame
//! into a model's preallocated CHW input.

use yuvutils_rs::{
    uyvy422_to_rgb, yuv400_to_rgb, yuyv422_to_rgb, YuvGrayImage, YuvPackedImage, YuvRange,
    YuvStandardMatrix,
};

use crate::limits::{MAX_FRAME_PIXELS, MAX_FRAME_SIDE};
use crate::{Error, Result};

/// Longest row stride accepted (bytes): 8 bytes a pixel at [`MAX_FRAME_SIDE`], so that a frame's
/// length cannot overflow even a 32-bit `usize`.
const MAX_STRIDE: usize = MAX_FRAME_SIDE * 8;

/// Pixel layouts a frame can arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// 3 bytes per pixel: R, G, B.
    Rgb,
    /// 3 bytes per pixel: B, G, R.
    Bgr,
    /// 1 byte per pixel of luma.
    Grey,
    /// Packed 4:2:2, bytes Y0 U Y1 V.
    Yuyv,
    /// Packed 4:2:2, bytes U Y0 V Y1.
    Uyvy,
    /// Planar Y, then interleaved U V at half resolution in both directions.
    Nv12,
    /// Planar Y, then U, then V at half resolution (I420 / YU12).
    Yuv420,
}

impl PixelFormat {
    /// Every format, for tests and fuzzing.
    pub const ALL: [PixelFormat; 7] = [
        PixelFormat::Rgb,
        PixelFormat::Bgr,
        PixelFormat::Grey,
        PixelFormat::Yuyv,
        PixelFormat::Uyvy,
        PixelFormat::Nv12,
        PixelFormat::Yuv420,
    ];

    /// Bytes of one row of the first plane for a frame `width` pixels wide, without padding. An
    /// odd width rounds up to whole chroma pairs: a 4:2:2 row ends with a full Y0 U Y1 V group, and
    /// an NV12 chroma row (as long as a luma row) holds `width.div_ceil(2)` U V pairs.
    pub fn packed_stride(self, width: usize) -> usize {
        match self {
            PixelFormat::Rgb | PixelFormat::Bgr => width * 3,
            PixelFormat::Yuyv | PixelFormat::Uyvy => width.div_ceil(2) * 4,
            PixelFormat::Nv12 => width.div_ceil(2) * 2,
            PixelFormat::Grey | PixelFormat::Yuv420 => width,
        }
    }

    /// Bytes a frame needs with rows `stride` bytes apart (chroma planes follow the luma plane).
    pub fn frame_len(self, height: usize, stride: usize) -> usize {
        match self {
            PixelFormat::Nv12 => stride * height + stride * height.div_ceil(2),
            PixelFormat::Yuv420 => stride * height + 2 * stride.div_ceil(2) * height.div_ceil(2),
            _ => stride * height,
        }
    }
}

/// A borrowed camera frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub width: usize,
    pub height: usize,
    pub format: PixelFormat,
    /// Bytes between the starts of two rows of the first plane (>= the packed stride).
    pub stride: usize,
    pub data: &'a [u8],
}

impl<'a> Frame<'a> {
    /// A frame whose rows are packed without padding.
    pub fn packed(width: usize, height: usize, format: PixelFormat, data: &'a [u8]) -> Self {
        Frame {
            width,
            height,
            format,
            stride: format.packed_stride(width),
            data,
        }
    }

    /// Checks that size, stride and buffer length agree, and that the size is within
    /// [`MAX_FRAME_SIDE`] a side and [`MAX_FRAME_PIXELS`] (what converting it allocates).
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::Frame(format!(
                "empty frame {}x{}",
                self.width, self.height
            )));
        }
        if self.width > MAX_FRAME_SIDE
            || self.height > MAX_FRAME_SIDE
            || self.width * self.height > MAX_FRAME_PIXELS
            || self.stride > MAX_STRIDE
        {
            return Err(Error::Frame(format!(
                "{}x{} (stride {}) is beyond {MAX_FRAME_SIDE} pixels a side, {MAX_FRAME_PIXELS} \
                 pixels or a {MAX_STRIDE}-byte stride",
                self.width, self.height, self.stride
            )));
        }
        if self.stride < self.format.packed_stride(self.width) {
            return Err(Error::Frame(format!(
                "stride {} is shorter than a {}-pixel {:?} row",
                self.stride, self.width, self.format
            )));
        }
        let needed = self.format.frame_len(self.height, self.stride);
        if self.data.len() < needed {
            return Err(Error::Frame(format!(
                "{}x{} {:?} needs {} bytes, got {}",
                self.width,
                self.height,
                self.format,
                needed,
                self.data.len()
            )));
        }
        Ok(())
    }
}

/// An owned RGB image whose buffer is reused from frame to frame.
#[derive(Debug, Default, Clone)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    /// Packed RGB, `width * height * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// An image with room for frames of up to `width` x `height` pixels.
    pub fn with_capacity(width: usize, height: usize) -> Self {
        RgbImage {
            width: 0,
            height: 0,
            data: Vec::with_capacity(width * height * 3),
        }
    }

    /// Sets the size, keeping the buffer (it grows only when a larger frame arrives).
    pub fn set_size(&mut self, width: usize, height: usize) {
        self.width = width;
        self.height = height;
        self.data.resize(width * height * 3, 0);
    }

    /// A view of this image as a packed RGB frame.
    pub fn as_frame(&self) -> Frame<'_> {
        Frame::packed(self.width, self.height, PixelFormat::Rgb, &self.data)
    }

    /// Converts `frame` of any supported format into this image.
    pub fn convert_from(&mut self, frame: &Frame) -> Result<()> {
        frame.validate()?;
        self.set_size(frame.width, frame.height);
        let (w, h, s) = (frame.width, frame.height, frame.stride);
        let src = frame.data;
        let dst = &mut self.data;
        match frame.format {
            PixelFormat::Rgb | PixelFormat::Bgr => {
                let bgr = frame.format == PixelFormat::Bgr;
                for y in 0..h {
                    let row = &src[y * s..y * s + w * 3];
                    let out = &mut dst[y * w * 3..(y + 1) * w * 3];
                    if bgr {
                        for (o, i) in out.chunks_exact_mut(3).zip(row.chunks_exact(3)) {
                            o.copy_from_slice(&[i[2], i[1], i[0]]);
                        }
                    } else {
                        out.copy_from_slice(row);
                    }
                }
            }
            PixelFormat::Grey | PixelFormat::Yuyv | PixelFormat::Uyvy => {
                ycbcr_into_rgb(frame, dst)?
            }
            // kith's own loop: yuvutils-rs 0.8's 4:2:0 paths are 30 to 48 times faster but
            // truncate, one level below BT.601 in G and B where kith's tests expect the rounded
            // value (`cargo bench --bench preprocess` measures both and prints the difference).
            PixelFormat::Nv12 | PixelFormat::Yuv420 => {
                let luma_len = s * h;
                let chroma_stride = if frame.format == PixelFormat::Nv12 {
                    s
                } else {
                    s.div_ceil(2)
                };
                let v_plane = luma_len + chroma_stride * h.div_ceil(2);
                for y in 0..h {
                    for x in 0..w {
                        let luma = src[y * s + x];
                        let c = luma_len + (y / 2) * chroma_stride;
                        let (u, v) = if frame.format == PixelFormat::Nv12 {
                            (src[c + (x / 2) * 2], src[c + (x / 2) * 2 + 1])
                        } else {
                            (
                                src[c + x / 2],
                                src[v_plane + (y / 2) * chroma_stride + x / 2],
                            )
                        };
                        let px = yuv_to_rgb(luma, u, v);
                        dst[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&px);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Converts a GREY or packed 4:2:2 (YUYV, UYVY) frame into `dst` (packed RGB of the frame's size)
/// with yuvutils-rs, whose AVX2/SSE4.1 (x86_64) and NEON (aarch64) paths, picked at run time, are
/// 7 to 15 times faster than kith's own per-pixel loop was and allocate nothing
/// (`cargo bench --bench preprocess`). YCbCr is BT.601 limited range; GREY is copied to R, G and B.
fn ycbcr_into_rgb(frame: &Frame, dst: &mut [u8]) -> Result<()> {
    let format = frame.format;
    let fail = |source| Error::Convert { format, source };
    let dim = |v: usize| {
        u32::try_from(v).map_err(|_| Error::Frame(format!("{v} is too large for a frame side")))
    };
    let (w, h, s) = (dim(frame.width)?, dim(frame.height)?, dim(frame.stride)?);
    let (range, matrix) = (YuvRange::Limited, YuvStandardMatrix::Bt601);
    let rgb_stride = dim(frame.width * 3)?;
    match format {
        PixelFormat::Yuyv | PixelFormat::Uyvy => {
            // yuvutils-rs takes a packed 4:2:2 image only without row padding (an odd width ends
            // each row with a whole Y0 U Y1 V group): padded frames go row by row.
            let row = format.packed_stride(frame.width);
            let rows = if frame.stride == row { frame.height } else { 1 };
            let out_rows = dst.chunks_exact_mut(rows * frame.width * 3);
            for (y, out) in (0..frame.height).step_by(rows).zip(out_rows) {
                let image = YuvPackedImage {
                    yuy: &frame.data[y * frame.stride..][..(rows - 1) * frame.stride + row],
                    yuy_stride: dim(row)?,
                    width: w,
                    height: dim(rows)?,
                };
                if format == PixelFormat::Yuyv {
                    yuyv422_to_rgb(&image, out, rgb_stride, range, matrix)
                } else {
                    uyvy422_to_rgb(&image, out, rgb_stride, range, matrix)
                }
                .map_err(fail)?;
            }
            Ok(())
        }
        PixelFormat::Grey => {
            let image = YuvGrayImage {
                y_plane: frame.data,
                y_stride: s,
                width: w,
                height: h,
            };
            // Full range: the grey level itself in R, G and B.
            yuv400_to_rgb(&image, dst, rgb_stride, YuvRange::Full, matrix).map_err(fail)
        }
        _ => Err(Error::Frame(format!(
            "{format:?} is not a packed 4:2:2 or GREY format"
        ))),
    }
}

/// BT.601 limited-range YCbCr to RGB, the encoding UVC webcams and V4L2 use by default.
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (y as i32 - 16).max(0) * 298;
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [
        clamp(c + 409 * e),
        clamp(c - 100 * d - 208 * e),
        clamp(c + 516 * d),
    ]
}

/// BT.601 limited-range RGB to YCbCr, the inverse of [`yuv_to_rgb`] (used to make test frames).
pub fn rgb_to_yuv(rgb: [u8; 3]) -> [u8; 3] {
    let [r, g, b] = rgb.map(|c| c as i32);
    let y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16;
    let u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128;
    let v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128;
    [y, u, v].map(|c| c.clamp(0, 255) as u8)
}

/// How a frame is fitted into a model's fixed input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resize {
    /// Keep the aspect ratio, centre the image, fill the rest with `pad` (0..1).
    Letterbox { pad: f32 },
    /// Scale each axis independently to fill the input.
    Stretch,
}

/// Where a frame landed inside a model input: model pixel = source pixel * scale + offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub scale_x: f32,
    pub scale_y: f32,
    pub offset_x: f32,
    pub offset_y: f32,
}

impl Placement {
    /// Maps a box in model-input pixels back to source pixels, clipped to the source frame.
    pub fn to_source(&self, b: [f32; 4], width: usize, height: usize) -> [f32; 4] {
        let (w, h) = (width as f32, height as f32);
        [
            ((b[0] - self.offset_x) / self.scale_x).clamp(0.0, w),
            ((b[1] - self.offset_y) / self.scale_y).clamp(0.0, h),
            ((b[2] - self.offset_x) / self.scale_x).clamp(0.0, w),
            ((b[3] - self.offset_y) / self.scale_y).clamp(0.0, h),
        ]
    }
}

/// Resizes an RGB frame (bilinear) into `dst`, a CHW f32 tensor of `3 x dst_h x dst_w` with values
/// in 0..1, as the models' `image` inputs expect. Returns where the frame landed.
///
/// kith's own loop, not fast_image_resize: in `cargo bench --bench preprocess` the library (its
/// bilinear resize to u8, then the spread into CHW f32) is 3 to 4 times faster but builds its kernel
/// tables on every call (450 to 730 allocations per frame) and rounds to u8 before normalising.
pub fn resize_into_chw(
    src: &Frame,
    dst: &mut [f32],
    dst_w: usize,
    dst_h: usize,
    mode: Resize,
) -> Result<Placement> {
    src.validate()?;
    if src.format != PixelFormat::Rgb {
        return Err(Error::Frame(format!(
            "model input needs RGB, got {:?}",
            src.format
        )));
    }
    if dst.len() != 3 * dst_w * dst_h {
        return Err(Error::Frame(format!(
            "model input holds {} values, {}x{}x3 expected",
            dst.len(),
            dst_w,
            dst_h
        )));
    }
    let (sw, sh) = (src.width as f32, src.height as f32);
    let (placement, inner_w, inner_h) = match mode {
        Resize::Stretch => {
            let p = Placement {
                scale_x: dst_w as f32 / sw,
                scale_y: dst_h as f32 / sh,
                offset_x: 0.0,
                offset_y: 0.0,
            };
            (p, dst_w, dst_h)
        }
        Resize::Letterbox { pad } => {
            let scale = (dst_w as f32 / sw).min(dst_h as f32 / sh);
            let iw = ((sw * scale).round() as usize).clamp(1, dst_w);
            let ih = ((sh * scale).round() as usize).clamp(1, dst_h);
            let ox = (dst_w - iw) / 2;
            let oy = (dst_h - ih) / 2;
            dst.fill(pad);
            let p = Placement {
                scale_x: iw as f32 / sw,
                scale_y: ih as f32 / sh,
                offset_x: ox as f32,
                offset_y: oy as f32,
            };
            (p, iw, ih)
        }
    };
    let plane = dst_w * dst_h;
    let (ox, oy) = (placement.offset_x as usize, placement.offset_y as usize);
    let inv_x = sw / inner_w as f32;
    let inv_y = sh / inner_h as f32;
    const INV255: f32 = 1.0 / 255.0;
    for dy in 0..inner_h {
        let fy = ((dy as f32 + 0.5) * inv_y - 0.5).clamp(0.0, sh - 1.0);
        let y0 = fy as usize;
        let y1 = (y0 + 1).min(src.height - 1);
        let wy = fy - y0 as f32;
        let row0 = &src.data[y0 * src.stride..];
        let row1 = &src.data[y1 * src.stride..];
        let out_row = (dy + oy) * dst_w + ox;
        for dx in 0..inner_w {
            let fx = ((dx as f32 + 0.5) * inv_x - 0.5).clamp(0.0, sw - 1.0);
            let x0 = fx as usize;
            let x1 = (x0 + 1).min(src.width - 1);
            let wx = fx - x0 as f32;
            for c in 0..3 {
                let a = row0[x0 * 3 + c] as f32;
                let b = row0[x1 * 3 + c] as f32;
                let d = row1[x0 * 3 + c] as f32;
                let e = row1[x1 * 3 + c] as f32;
                let top = a + (b - a) * wx;
                let bottom = d + (e - d) * wx;
                dst[c * plane + out_row + dx] = (top + (bottom - top) * wy) * INV255;
            }
        }
    }
    Ok(placement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&[
                    (x * 255 / w) as u8,
                    (y * 255 / h) as u8,
                    ((x + y) % 256) as u8,
                ]);
            }
        }
        v
    }

    #[test]
    fn letterbox_centres_and_pads() {
        let src = gradient(200, 100);
        let frame = Frame::packed(200, 100, PixelFormat::Rgb, &src);
        let mut dst = vec![0.0; 3 * 50 * 50];
        let p = resize_into_chw(&frame, &mut dst, 50, 50, Resize::Letterbox { pad: 0.5 }).unwrap();
        assert_eq!((p.scale_x, p.offset_x, p.offset_y), (0.25, 0.0, 12.0));
        assert_eq!(dst[0], 0.5, "top rows are padding");
        assert_eq!(dst[49 * 50], 0.5, "bottom rows are padding");
        assert!(dst[25 * 50] < 0.05, "left edge of the image is dark red");
        assert!(
            dst[25 * 50 + 49] > 0.9,
            "right edge of the image is bright red"
        );
        let back = p.to_source([0.0, 12.0, 50.0, 37.0], 200, 100);
        assert_eq!(back, [0.0, 0.0, 200.0, 100.0]);
    }

    #[test]
    fn stretch_fills_the_input() {
        let src = vec![200u8; 10 * 4 * 3];
        let frame = Frame::packed(10, 4, PixelFormat::Rgb, &src);
        let mut dst = vec![0.0; 3 * 8 * 8];
        resize_into_chw(&frame, &mut dst, 8, 8, Resize::Stretch).unwrap();
        assert!(dst.iter().all(|&v| (v - 200.0 / 255.0).abs() < 1e-6));
    }

    #[test]
    fn yuv_round_trip_is_close() {
        for rgb in [[0, 0, 0], [255, 255, 255], [200, 30, 90], [12, 180, 250]] {
            let [y, u, v] = rgb_to_yuv(rgb);
            let back = yuv_to_rgb(y, u, v);
            for c in 0..3 {
                assert!(
                    (back[c] as i32 - rgb[c] as i32).abs() <= 3,
                    "{rgb:?} -> {back:?}"
                );
            }
        }
    }

    #[test]
    fn each_format_converts_to_the_same_rgb() {
        let (w, h) = (6, 4);
        let colour = [180u8, 60, 30];
        let [y, u, v] = rgb_to_yuv(colour);
        let expect = yuv_to_rgb(y, u, v);
        let yuyv: Vec<u8> = (0..w * h / 2).flat_map(|_| [y, u, y, v]).collect();
        let uyvy: Vec<u8> = (0..w * h / 2).flat_map(|_| [u, y, v, y]).collect();
        let mut nv12 = vec![y; w * h];
        nv12.extend((0..w * h / 4).flat_map(|_| [u, v]));
        let mut i420 = vec![y; w * h];
        i420.extend(vec![u; w * h / 4]);
        i420.extend(vec![v; w * h / 4]);
        let mut img = RgbImage::default();
        for (fmt, data) in [
            (PixelFormat::Yuyv, &yuyv),
            (PixelFormat::Uyvy, &uyvy),
            (PixelFormat::Nv12, &nv12),
            (PixelFormat::Yuv420, &i420),
        ] {
            img.convert_from(&Frame::packed(w, h, fmt, data)).unwrap();
            assert!(img.data.chunks(3).all(|p| p == expect), "{fmt:?}");
        }
        let bgr: Vec<u8> = (0..w * h).flat_map(|_| [30u8, 60, 180]).collect();
        img.convert_from(&Frame::packed(w, h, PixelFormat::Bgr, &bgr))
            .unwrap();
        assert!(img.data.chunks(3).all(|p| p == colour));
    }

    /// Issue 15: an odd width (v4l2loopback can negotiate one) indexed past the NV12 chroma row
    /// and panicked. Every format at every small size converts, or is refused, without a panic.
    #[test]
    fn odd_sizes_convert_in_every_format() {
        let formats = PixelFormat::ALL;
        let mut img = RgbImage::default();
        let grey = yuv_to_rgb(128, 128, 128);
        for format in formats {
            for w in 1..8 {
                for h in 1..6 {
                    let stride = format.packed_stride(w);
                    let data = vec![128u8; format.frame_len(h, stride)];
                    let frame = Frame::packed(w, h, format, &data);
                    img.convert_from(&frame).unwrap();
                    assert_eq!((img.width, img.height), (w, h));
                    if !matches!(
                        format,
                        PixelFormat::Rgb | PixelFormat::Bgr | PixelFormat::Grey
                    ) {
                        // yuvutils-rs rounds mid grey one level above kith's own loop.
                        let first = &img.data[..3];
                        assert!(
                            first.iter().zip(grey).all(|(a, b)| a.abs_diff(b) <= 1),
                            "{format:?} {w}x{h}: {first:?}"
                        );
                        assert!(img.data.chunks(3).all(|p| p == first), "{format:?} {w}x{h}");
                    }
                    // The same frame with rows exactly `width` bytes of luma: refused, not a panic.
                    let tight = Frame { stride: w, ..frame };
                    let _ = img.convert_from(&tight);
                }
            }
        }
        let nv12 = [0u8; 5 * 3 + 5 * 2];
        let err = img
            .convert_from(&Frame {
                width: 5,
                height: 3,
                format: PixelFormat::Nv12,
                stride: 5,
                data: &nv12,
            })
            .unwrap_err();
        assert!(err.to_string().contains("stride 5 is shorter"), "{err}");
        for (w, h, stride) in [(8193, 1, 8193), (4097, 4096, 4097), (4, 4, MAX_STRIDE + 1)] {
            let frame = Frame {
                width: w,
                height: h,
                format: PixelFormat::Grey,
                stride,
                data: &nv12,
            };
            let err = frame.validate().unwrap_err().to_string();
            assert!(err.contains("is beyond 8192 pixels a side"), "{err}");
        }
    }

    #[test]
    fn short_buffers_are_refused() {
        let data = vec![0u8; 10];
        let err = RgbImage::default()
            .convert_from(&Frame::packed(4, 4, PixelFormat::Yuyv, &data))
            .unwrap_err();
        assert!(err.to_string().contains("needs 32 bytes, got 10"), "{err}");
    }
}
