//! The pixel formats cameras send, their names in board configs and their V4L2 four-character codes.

use std::fmt;

use kith_runtime::PixelFormat;

/// A frame format as it comes from a camera, before any conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CameraFormat {
    /// Packed 4:2:2, bytes Y0 U Y1 V (V4L2 `YUYV`).
    Yuyv,
    /// Packed 4:2:2, bytes U Y0 V Y1 (V4L2 `UYVY`).
    Uyvy,
    /// Luma plane, then interleaved U V at half resolution (V4L2 `NV12`).
    Nv12,
    /// Luma only (V4L2 `GREY`).
    Grey,
    /// Packed R, G, B (V4L2 `RGB3`).
    Rgb24,
    /// Planar I420: luma, then U, then V at half resolution (V4L2 `YU12`; rpicam-vid's yuv420).
    Yuv420,
    /// One JPEG image per frame (V4L2 `MJPG`).
    Mjpeg,
}

impl CameraFormat {
    /// Every format, in the order error messages list them.
    pub const ALL: [CameraFormat; 7] = [
        CameraFormat::Yuyv,
        CameraFormat::Uyvy,
        CameraFormat::Nv12,
        CameraFormat::Grey,
        CameraFormat::Rgb24,
        CameraFormat::Yuv420,
        CameraFormat::Mjpeg,
    ];

    /// The formats a V4L2 camera may be asked for.
    pub const V4L2: [CameraFormat; 6] = [
        CameraFormat::Yuyv,
        CameraFormat::Uyvy,
        CameraFormat::Nv12,
        CameraFormat::Grey,
        CameraFormat::Rgb24,
        CameraFormat::Mjpeg,
    ];

    /// The formats a pipe may carry.
    pub const PIPE: [CameraFormat; 3] = [
        CameraFormat::Yuv420,
        CameraFormat::Yuyv,
        CameraFormat::Mjpeg,
    ];

    /// The name board configs use.
    pub fn name(self) -> &'static str {
        match self {
            CameraFormat::Yuyv => "yuyv",
            CameraFormat::Uyvy => "uyvy",
            CameraFormat::Nv12 => "nv12",
            CameraFormat::Grey => "grey",
            CameraFormat::Rgb24 => "rgb24",
            CameraFormat::Yuv420 => "yuv420",
            CameraFormat::Mjpeg => "mjpeg",
        }
    }

    /// Parses a board config name, accepting only the formats in `allowed`.
    pub fn parse(name: &str, allowed: &[CameraFormat]) -> Option<CameraFormat> {
        allowed.iter().copied().find(|f| f.name() == name)
    }

    /// The V4L2 four-character code.
    pub fn fourcc(self) -> [u8; 4] {
        *match self {
            CameraFormat::Yuyv => b"YUYV",
            CameraFormat::Uyvy => b"UYVY",
            CameraFormat::Nv12 => b"NV12",
            CameraFormat::Grey => b"GREY",
            CameraFormat::Rgb24 => b"RGB3",
            CameraFormat::Yuv420 => b"YU12",
            CameraFormat::Mjpeg => b"MJPG",
        }
    }

    /// The format of a V4L2 four-character code, if kith reads it. `JPEG` is taken as MJPEG.
    pub fn from_fourcc(code: [u8; 4]) -> Option<CameraFormat> {
        if &code == b"JPEG" {
            return Some(CameraFormat::Mjpeg);
        }
        Self::ALL.into_iter().find(|f| f.fourcc() == code)
    }

    /// The uncompressed layout the pipeline converts from; `None` for MJPEG.
    pub fn pixel_format(self) -> Option<PixelFormat> {
        match self {
            CameraFormat::Yuyv => Some(PixelFormat::Yuyv),
            CameraFormat::Uyvy => Some(PixelFormat::Uyvy),
            CameraFormat::Nv12 => Some(PixelFormat::Nv12),
            CameraFormat::Grey => Some(PixelFormat::Grey),
            CameraFormat::Rgb24 => Some(PixelFormat::Rgb),
            CameraFormat::Yuv420 => Some(PixelFormat::Yuv420),
            CameraFormat::Mjpeg => None,
        }
    }

    /// Bytes of one uncompressed frame with packed rows; `None` for MJPEG.
    pub fn packed_frame_len(self, width: usize, height: usize) -> Option<usize> {
        self.pixel_format()
            .map(|p| p.frame_len(height, p.packed_stride(width)))
    }

    /// The names of `formats`, quoted and comma-separated, for error messages.
    pub fn list(formats: &[CameraFormat]) -> String {
        formats
            .iter()
            .map(|f| format!("\"{}\"", f.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for CameraFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Shows a four-character code as text, with unprintable bytes escaped.
pub fn fourcc_text(code: [u8; 4]) -> String {
    code.iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_fourccs_round_trip() {
        for f in CameraFormat::ALL {
            assert_eq!(CameraFormat::parse(f.name(), &CameraFormat::ALL), Some(f));
            assert_eq!(CameraFormat::from_fourcc(f.fourcc()), Some(f));
        }
        assert_eq!(
            CameraFormat::from_fourcc(*b"JPEG"),
            Some(CameraFormat::Mjpeg)
        );
        assert_eq!(CameraFormat::from_fourcc(*b"BA81"), None);
        assert_eq!(CameraFormat::parse("yuv420", &CameraFormat::V4L2), None);
        assert_eq!(fourcc_text(*b"RGB3"), "RGB3");
        assert_eq!(fourcc_text([b'A', 0, b'B', 0xff]), "A\\x00B\\xff");
    }

    #[test]
    fn frame_lengths_follow_the_layout() {
        assert_eq!(
            CameraFormat::Yuv420.packed_frame_len(640, 480),
            Some(640 * 480 * 3 / 2)
        );
        assert_eq!(
            CameraFormat::Yuyv.packed_frame_len(640, 480),
            Some(640 * 480 * 2)
        );
        assert_eq!(CameraFormat::Rgb24.packed_frame_len(4, 2), Some(24));
        assert_eq!(CameraFormat::Mjpeg.packed_frame_len(640, 480), None);
    }
}
