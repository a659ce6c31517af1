//! The kernel's V4L2 capture interface (linux/videodev2.h): `#[repr(C)]` copies of exactly the
//! structs kith's V4L2 camera and the VM probe use, the VIDIOC_* request numbers, and one safe
//! function per ioctl.
//!
//! Written by hand, not generated, so that building kith needs no libclang; a test compiles a C
//! program against the system's `<linux/videodev2.h>` and compares every size, offset and number
//! here with the header's (it says it skipped where the headers or a C compiler are missing), and
//! unit tests pin the layouts of the 64-bit and the 32-bit (armv7) ABIs.
//!
//! Each function fills in the buffer type (single-planar video capture) and the memory kind
//! (mmap) itself, so the kernel never follows a pointer in a struct a caller made up: the pointer
//! members of the header's unions (overlay clips, multi-planar planes, user pointers) stay unused.

use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::os::raw::{c_int, c_ulong, c_void};

use nix::sys::ioctl::ioctl_num_type;
use nix::{request_code_read, request_code_readwrite, request_code_write};

/// `V4L2_BUF_TYPE_VIDEO_CAPTURE`: single-planar video capture.
pub const V4L2_BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
/// `V4L2_MEMORY_MMAP`: buffers allocated by the driver and mapped with mmap.
pub const V4L2_MEMORY_MMAP: u32 = 1;
/// `V4L2_FIELD_NONE`: progressive frames.
pub const V4L2_FIELD_NONE: u32 = 1;
/// `V4L2_CAP_VIDEO_CAPTURE`: a single-planar video capture device.
pub const V4L2_CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
/// `V4L2_CAP_VIDEO_CAPTURE_MPLANE`: a multi-planar video capture device.
pub const V4L2_CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x0000_1000;
/// `V4L2_CAP_STREAMING`: streaming I/O (mmap buffers).
pub const V4L2_CAP_STREAMING: u32 = 0x0400_0000;
/// `V4L2_CAP_DEVICE_CAPS`: `device_caps` holds the opened node's own capabilities.
pub const V4L2_CAP_DEVICE_CAPS: u32 = 0x8000_0000;
/// `V4L2_BUF_FLAG_ERROR`: the dequeued frame is corrupt.
pub const V4L2_BUF_FLAG_ERROR: u32 = 0x0000_0040;
/// `V4L2_FRMSIZE_TYPE_DISCRETE`: one fixed frame size (the others are ranges).
pub const V4L2_FRMSIZE_TYPE_DISCRETE: u32 = 1;

/// `VIDIOC_QUERYCAP`: `_IOR('V', 0, struct v4l2_capability)`.
pub const VIDIOC_QUERYCAP: ioctl_num_type =
    request_code_read!(b'V', 0, size_of::<V4l2Capability>());
/// `VIDIOC_ENUM_FMT`: `_IOWR('V', 2, struct v4l2_fmtdesc)`.
pub const VIDIOC_ENUM_FMT: ioctl_num_type =
    request_code_readwrite!(b'V', 2, size_of::<V4l2Fmtdesc>());
/// `VIDIOC_S_FMT`: `_IOWR('V', 5, struct v4l2_format)`.
pub const VIDIOC_S_FMT: ioctl_num_type = request_code_readwrite!(b'V', 5, size_of::<V4l2Format>());
/// `VIDIOC_REQBUFS`: `_IOWR('V', 8, struct v4l2_requestbuffers)`.
pub const VIDIOC_REQBUFS: ioctl_num_type =
    request_code_readwrite!(b'V', 8, size_of::<V4l2Requestbuffers>());
/// `VIDIOC_QUERYBUF`: `_IOWR('V', 9, struct v4l2_buffer)`.
pub const VIDIOC_QUERYBUF: ioctl_num_type =
    request_code_readwrite!(b'V', 9, size_of::<V4l2Buffer>());
/// `VIDIOC_QBUF`: `_IOWR('V', 15, struct v4l2_buffer)`.
pub const VIDIOC_QBUF: ioctl_num_type = request_code_readwrite!(b'V', 15, size_of::<V4l2Buffer>());
/// `VIDIOC_DQBUF`: `_IOWR('V', 17, struct v4l2_buffer)`.
pub const VIDIOC_DQBUF: ioctl_num_type = request_code_readwrite!(b'V', 17, size_of::<V4l2Buffer>());
/// `VIDIOC_STREAMON`: `_IOW('V', 18, int)`.
pub const VIDIOC_STREAMON: ioctl_num_type = request_code_write!(b'V', 18, size_of::<c_int>());
/// `VIDIOC_STREAMOFF`: `_IOW('V', 19, int)`.
pub const VIDIOC_STREAMOFF: ioctl_num_type = request_code_write!(b'V', 19, size_of::<c_int>());
/// `VIDIOC_ENUM_FRAMESIZES`: `_IOWR('V', 74, struct v4l2_frmsizeenum)`.
pub const VIDIOC_ENUM_FRAMESIZES: ioctl_num_type =
    request_code_readwrite!(b'V', 74, size_of::<V4l2Frmsizeenum>());

/// `struct v4l2_capability`: what a device is and can do.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct V4l2Capability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

impl V4l2Capability {
    /// The capabilities of the opened node: `device_caps` where the driver fills it, else the
    /// whole device's.
    pub fn node_caps(&self) -> u32 {
        if self.capabilities & V4L2_CAP_DEVICE_CAPS != 0 {
            self.device_caps
        } else {
            self.capabilities
        }
    }

    /// The device's name (e.g. "vivid").
    pub fn card(&self) -> String {
        c_string(&self.card)
    }
}

/// `struct v4l2_pix_format`: a single-planar image format.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct V4l2PixFormat {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
    pub colorspace: u32,
    pub priv_: u32,
    pub flags: u32,
    /// `ycbcr_enc` or `hsv_enc` (a union of two `__u32`).
    pub ycbcr_enc: u32,
    pub quantization: u32,
    pub xfer_func: u32,
}

/// `struct v4l2_format`: a buffer type and its format.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct V4l2Format {
    pub type_: u32,
    pub fmt: FormatUnion,
}

/// The `fmt` union of `struct v4l2_format`, with the one member kith uses and the 200 raw bytes
/// that size it. The overlay member (`struct v4l2_window`) holds pointers, which give the union
/// pointer alignment: on 64-bit it starts 8 bytes into the struct, on 32-bit 4 bytes in.
#[repr(C)]
#[derive(Clone, Copy)]
pub union FormatUnion {
    pub pix: V4l2PixFormat,
    pub raw_data: [u8; 200],
    pub align: [*mut c_void; 0],
}

/// `struct v4l2_requestbuffers`: how many buffers of which kind to allocate.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct V4l2Requestbuffers {
    pub count: u32,
    pub type_: u32,
    pub memory: u32,
    pub capabilities: u32,
    pub flags: u8,
    pub reserved: [u8; 3],
}

/// `struct v4l2_timecode`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct V4l2Timecode {
    pub type_: u32,
    pub flags: u32,
    pub frames: u8,
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub userbits: [u8; 4],
}

/// `struct v4l2_buffer`: one driver buffer, as queued and dequeued.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct V4l2Buffer {
    pub index: u32,
    pub type_: u32,
    pub bytesused: u32,
    pub flags: u32,
    pub field: u32,
    /// The C library's `struct timeval` (32-bit `time_t` on armv7).
    pub timestamp: libc::timeval,
    pub timecode: V4l2Timecode,
    pub sequence: u32,
    pub memory: u32,
    pub m: BufferLocation,
    pub length: u32,
    pub reserved2: u32,
    /// `request_fd` or `reserved` (a union of two 32-bit integers).
    pub request_fd: i32,
}

/// The `m` union of `struct v4l2_buffer`: where the buffer's memory is, per memory kind.
#[repr(C)]
#[derive(Clone, Copy)]
pub union BufferLocation {
    pub offset: u32,
    pub userptr: c_ulong,
    pub planes: *mut c_void,
    pub fd: i32,
}

impl V4l2Buffer {
    /// An mmap video-capture buffer descriptor for `index`, all else zero.
    fn mmap_capture(index: u32) -> Self {
        V4l2Buffer {
            index,
            type_: V4L2_BUF_TYPE_VIDEO_CAPTURE,
            bytesused: 0,
            flags: 0,
            field: 0,
            timestamp: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            timecode: V4l2Timecode::default(),
            sequence: 0,
            memory: V4L2_MEMORY_MMAP,
            // The widest member, so that every byte of the union starts zero.
            m: BufferLocation { userptr: 0 },
            length: 0,
            reserved2: 0,
            request_fd: 0,
        }
    }

    /// Where the buffer starts in the device file, for mmap (`m.offset`).
    pub fn offset(&self) -> u32 {
        // SAFETY: every member of the union is a plain integer or pointer and all its bytes are
        // initialised (zero at construction, then written by the kernel), so any bit pattern read
        // as a u32 is valid; the functions here only ever ask for MMAP buffers, whose member is
        // `offset`.
        unsafe { self.m.offset }
    }
}

/// `struct v4l2_fmtdesc`: one pixel format a device offers.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct V4l2Fmtdesc {
    pub index: u32,
    pub type_: u32,
    pub flags: u32,
    pub description: [u8; 32],
    pub pixelformat: u32,
    pub mbus_code: u32,
    pub reserved: [u32; 3],
}

impl V4l2Fmtdesc {
    /// The format's name (e.g. "YUYV 4:2:2").
    pub fn description(&self) -> String {
        c_string(&self.description)
    }
}

/// `struct v4l2_frmsize_discrete`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct V4l2FrmsizeDiscrete {
    pub width: u32,
    pub height: u32,
}

/// `struct v4l2_frmsize_stepwise`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct V4l2FrmsizeStepwise {
    pub min_width: u32,
    pub max_width: u32,
    pub step_width: u32,
    pub min_height: u32,
    pub max_height: u32,
    pub step_height: u32,
}

/// `struct v4l2_frmsizeenum`: one frame size a device offers for a pixel format.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct V4l2Frmsizeenum {
    pub index: u32,
    pub pixel_format: u32,
    pub type_: u32,
    pub size: FrameSizeUnion,
    pub reserved: [u32; 2],
}

/// The size union of `struct v4l2_frmsizeenum`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union FrameSizeUnion {
    pub discrete: V4l2FrmsizeDiscrete,
    pub stepwise: V4l2FrmsizeStepwise,
}

/// A frame size as a device reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSize {
    /// One fixed size.
    Discrete(V4l2FrmsizeDiscrete),
    /// A range of sizes (continuous or in steps).
    Stepwise(V4l2FrmsizeStepwise),
}

impl V4l2Frmsizeenum {
    /// The size, read from the union member its type names.
    pub fn size(&self) -> FrameSize {
        // SAFETY: both members are plain u32s and the union is fully initialised (zero at
        // construction, then written by the kernel), so either reading is valid.
        unsafe {
            if self.type_ == V4L2_FRMSIZE_TYPE_DISCRETE {
                FrameSize::Discrete(self.size.discrete)
            } else {
                FrameSize::Stepwise(self.size.stepwise)
            }
        }
    }
}

/// The raw ioctls, through nix's macros. The `_bad` forms take the request number itself, so the
/// numbers above (the ones the header test checks) are exactly the ones called.
mod raw {
    use super::*;

    nix::ioctl_read_bad!(querycap, VIDIOC_QUERYCAP, V4l2Capability);
    nix::ioctl_readwrite_bad!(enum_fmt, VIDIOC_ENUM_FMT, V4l2Fmtdesc);
    nix::ioctl_readwrite_bad!(s_fmt, VIDIOC_S_FMT, V4l2Format);
    nix::ioctl_readwrite_bad!(reqbufs, VIDIOC_REQBUFS, V4l2Requestbuffers);
    nix::ioctl_readwrite_bad!(querybuf, VIDIOC_QUERYBUF, V4l2Buffer);
    nix::ioctl_readwrite_bad!(qbuf, VIDIOC_QBUF, V4l2Buffer);
    nix::ioctl_readwrite_bad!(dqbuf, VIDIOC_DQBUF, V4l2Buffer);
    nix::ioctl_write_ptr_bad!(streamon, VIDIOC_STREAMON, c_int);
    nix::ioctl_write_ptr_bad!(streamoff, VIDIOC_STREAMOFF, c_int);
    nix::ioctl_readwrite_bad!(enum_framesizes, VIDIOC_ENUM_FRAMESIZES, V4l2Frmsizeenum);
}

/// VIDIOC_QUERYCAP: what the device is and can do.
pub fn query_capabilities(file: &File) -> io::Result<V4l2Capability> {
    let mut cap = V4l2Capability {
        driver: [0; 16],
        card: [0; 32],
        bus_info: [0; 32],
        version: 0,
        capabilities: 0,
        device_caps: 0,
        reserved: [0; 3],
    };
    // SAFETY: VIDIOC_QUERYCAP writes one v4l2_capability into `cap`, which we own exclusively.
    unsafe { raw::querycap(file.as_raw_fd(), &mut cap) }?;
    Ok(cap)
}

/// VIDIOC_S_FMT for single-planar video capture: asks for `pix` and returns what the driver set.
pub fn set_capture_format(file: &File, pix: V4l2PixFormat) -> io::Result<V4l2PixFormat> {
    let mut fmt = V4l2Format {
        type_: V4L2_BUF_TYPE_VIDEO_CAPTURE,
        fmt: FormatUnion { raw_data: [0; 200] },
    };
    fmt.fmt.pix = pix;
    // SAFETY: VIDIOC_S_FMT reads and writes one v4l2_format in `fmt`, which we own exclusively;
    // for the capture type the driver uses the `pix` member, which holds no pointers.
    unsafe { raw::s_fmt(file.as_raw_fd(), &mut fmt) }?;
    // SAFETY: the union's bytes are all initialised (raw_data, then the kernel) and `pix` is
    // plain u32s; for the capture type the driver filled exactly this member.
    Ok(unsafe { fmt.fmt.pix })
}

/// VIDIOC_REQBUFS: asks for `count` mmap video-capture buffers (0 frees them) and returns how
/// many the driver granted.
pub fn request_mmap_buffers(file: &File, count: u32) -> io::Result<u32> {
    let mut req = V4l2Requestbuffers {
        count,
        type_: V4L2_BUF_TYPE_VIDEO_CAPTURE,
        memory: V4L2_MEMORY_MMAP,
        ..V4l2Requestbuffers::default()
    };
    // SAFETY: VIDIOC_REQBUFS reads and writes one v4l2_requestbuffers in `req` (plain data, ours).
    unsafe { raw::reqbufs(file.as_raw_fd(), &mut req) }?;
    Ok(req.count)
}

/// VIDIOC_QUERYBUF: the length and mmap offset of mmap buffer `index`.
pub fn query_buffer(file: &File, index: u32) -> io::Result<V4l2Buffer> {
    buffer_ioctl(file, V4l2Buffer::mmap_capture(index), raw::querybuf)
}

/// VIDIOC_QBUF: gives mmap buffer `index` to the driver to fill.
pub fn queue_buffer(file: &File, index: u32) -> io::Result<()> {
    buffer_ioctl(file, V4l2Buffer::mmap_capture(index), raw::qbuf).map(drop)
}

/// VIDIOC_DQBUF: takes the next filled mmap buffer from the driver (`WouldBlock` when none is
/// ready on a non-blocking file).
pub fn dequeue_buffer(file: &File) -> io::Result<V4l2Buffer> {
    buffer_ioctl(file, V4l2Buffer::mmap_capture(0), raw::dqbuf)
}

/// One of the three v4l2_buffer ioctls on an mmap capture descriptor.
fn buffer_ioctl(
    file: &File,
    mut buf: V4l2Buffer,
    call: unsafe fn(c_int, *mut V4l2Buffer) -> nix::Result<c_int>,
) -> io::Result<V4l2Buffer> {
    // SAFETY: `call` is QUERYBUF, QBUF or DQBUF, each of which reads and writes one v4l2_buffer
    // in `buf` (ours, exclusively); its type and memory are single-planar capture and MMAP (from
    // `mmap_capture`), so the kernel follows no pointer in it.
    unsafe { call(file.as_raw_fd(), &mut buf) }?;
    Ok(buf)
}

/// VIDIOC_STREAMON for video capture.
pub fn stream_on(file: &File) -> io::Result<()> {
    let kind = V4L2_BUF_TYPE_VIDEO_CAPTURE as c_int;
    // SAFETY: VIDIOC_STREAMON reads one int, the buffer type, from `kind`.
    unsafe { raw::streamon(file.as_raw_fd(), &kind) }?;
    Ok(())
}

/// VIDIOC_STREAMOFF for video capture.
pub fn stream_off(file: &File) -> io::Result<()> {
    let kind = V4L2_BUF_TYPE_VIDEO_CAPTURE as c_int;
    // SAFETY: VIDIOC_STREAMOFF reads one int, the buffer type, from `kind`.
    unsafe { raw::streamoff(file.as_raw_fd(), &kind) }?;
    Ok(())
}

/// VIDIOC_ENUM_FMT: the `index`th video-capture pixel format (`EINVAL` past the last).
pub fn enum_capture_format(file: &File, index: u32) -> io::Result<V4l2Fmtdesc> {
    let mut desc = V4l2Fmtdesc {
        index,
        type_: V4L2_BUF_TYPE_VIDEO_CAPTURE,
        flags: 0,
        description: [0; 32],
        pixelformat: 0,
        mbus_code: 0,
        reserved: [0; 3],
    };
    // SAFETY: VIDIOC_ENUM_FMT reads and writes one v4l2_fmtdesc in `desc` (plain data, ours).
    unsafe { raw::enum_fmt(file.as_raw_fd(), &mut desc) }?;
    Ok(desc)
}

/// VIDIOC_ENUM_FRAMESIZES: the `index`th frame size of `pixel_format` (`EINVAL` past the last).
pub fn enum_frame_size(file: &File, pixel_format: u32, index: u32) -> io::Result<V4l2Frmsizeenum> {
    let mut sizes = V4l2Frmsizeenum {
        index,
        pixel_format,
        type_: 0,
        size: FrameSizeUnion {
            stepwise: V4l2FrmsizeStepwise::default(),
        },
        reserved: [0; 2],
    };
    // SAFETY: VIDIOC_ENUM_FRAMESIZES reads and writes one v4l2_frmsizeenum in `sizes` (plain
    // data, ours).
    unsafe { raw::enum_framesizes(file.as_raw_fd(), &mut sizes) }?;
    Ok(sizes)
}

/// A NUL-padded C string field as text.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of};
    use std::process::Command;

    /// Every size, offset and constant of this module, as a C expression over
    /// `<linux/videodev2.h>` and the value the Rust definitions give it.
    fn abi() -> Vec<(&'static str, u64)> {
        macro_rules! size {
            ($c:literal, $t:ty) => {
                (concat!("sizeof(struct ", $c, ")"), size_of::<$t>() as u64)
            };
        }
        macro_rules! offset {
            ($c:literal, $t:ty, $cf:literal, $f:ident) => {
                (
                    concat!("offsetof(struct ", $c, ", ", $cf, ")"),
                    offset_of!($t, $f) as u64,
                )
            };
        }
        macro_rules! value {
            ($name:ident) => {
                (stringify!($name), $name as u64)
            };
        }
        vec![
            size!("v4l2_capability", V4l2Capability),
            offset!("v4l2_capability", V4l2Capability, "card", card),
            offset!("v4l2_capability", V4l2Capability, "bus_info", bus_info),
            offset!(
                "v4l2_capability",
                V4l2Capability,
                "capabilities",
                capabilities
            ),
            offset!(
                "v4l2_capability",
                V4l2Capability,
                "device_caps",
                device_caps
            ),
            size!("v4l2_pix_format", V4l2PixFormat),
            offset!("v4l2_pix_format", V4l2PixFormat, "pixelformat", pixelformat),
            offset!("v4l2_pix_format", V4l2PixFormat, "field", field),
            offset!(
                "v4l2_pix_format",
                V4l2PixFormat,
                "bytesperline",
                bytesperline
            ),
            offset!("v4l2_pix_format", V4l2PixFormat, "priv", priv_),
            offset!("v4l2_pix_format", V4l2PixFormat, "ycbcr_enc", ycbcr_enc),
            offset!("v4l2_pix_format", V4l2PixFormat, "xfer_func", xfer_func),
            size!("v4l2_format", V4l2Format),
            offset!("v4l2_format", V4l2Format, "fmt", fmt),
            size!("v4l2_requestbuffers", V4l2Requestbuffers),
            offset!("v4l2_requestbuffers", V4l2Requestbuffers, "memory", memory),
            offset!("v4l2_requestbuffers", V4l2Requestbuffers, "flags", flags),
            size!("v4l2_timecode", V4l2Timecode),
            offset!("v4l2_timecode", V4l2Timecode, "userbits", userbits),
            size!("v4l2_buffer", V4l2Buffer),
            offset!("v4l2_buffer", V4l2Buffer, "bytesused", bytesused),
            offset!("v4l2_buffer", V4l2Buffer, "flags", flags),
            offset!("v4l2_buffer", V4l2Buffer, "timestamp", timestamp),
            offset!("v4l2_buffer", V4l2Buffer, "timecode", timecode),
            offset!("v4l2_buffer", V4l2Buffer, "sequence", sequence),
            offset!("v4l2_buffer", V4l2Buffer, "memory", memory),
            offset!("v4l2_buffer", V4l2Buffer, "m", m),
            offset!("v4l2_buffer", V4l2Buffer, "length", length),
            offset!("v4l2_buffer", V4l2Buffer, "reserved2", reserved2),
            offset!("v4l2_buffer", V4l2Buffer, "request_fd", request_fd),
            size!("v4l2_fmtdesc", V4l2Fmtdesc),
            offset!("v4l2_fmtdesc", V4l2Fmtdesc, "description", description),
            offset!("v4l2_fmtdesc", V4l2Fmtdesc, "pixelformat", pixelformat),
            offset!("v4l2_fmtdesc", V4l2Fmtdesc, "reserved", reserved),
            size!("v4l2_frmsizeenum", V4l2Frmsizeenum),
            offset!("v4l2_frmsizeenum", V4l2Frmsizeenum, "type", type_),
            offset!("v4l2_frmsizeenum", V4l2Frmsizeenum, "discrete", size),
            offset!("v4l2_frmsizeenum", V4l2Frmsizeenum, "reserved", reserved),
            size!("v4l2_frmsize_stepwise", V4l2FrmsizeStepwise),
            value!(V4L2_BUF_TYPE_VIDEO_CAPTURE),
            value!(V4L2_MEMORY_MMAP),
            value!(V4L2_FIELD_NONE),
            value!(V4L2_CAP_VIDEO_CAPTURE),
            value!(V4L2_CAP_VIDEO_CAPTURE_MPLANE),
            value!(V4L2_CAP_STREAMING),
            value!(V4L2_CAP_DEVICE_CAPS),
            value!(V4L2_BUF_FLAG_ERROR),
            value!(V4L2_FRMSIZE_TYPE_DISCRETE),
            value!(VIDIOC_QUERYCAP),
            value!(VIDIOC_ENUM_FMT),
            value!(VIDIOC_S_FMT),
            value!(VIDIOC_REQBUFS),
            value!(VIDIOC_QUERYBUF),
            value!(VIDIOC_QBUF),
            value!(VIDIOC_DQBUF),
            value!(VIDIOC_STREAMON),
            value!(VIDIOC_STREAMOFF),
            value!(VIDIOC_ENUM_FRAMESIZES),
        ]
    }

    #[test]
    fn structs_have_the_64_and_32_bit_layouts() {
        assert_eq!(size_of::<V4l2Capability>(), 104);
        assert_eq!(size_of::<V4l2PixFormat>(), 48);
        assert_eq!(size_of::<V4l2Requestbuffers>(), 20);
        assert_eq!(size_of::<V4l2Timecode>(), 16);
        assert_eq!(size_of::<V4l2Fmtdesc>(), 64);
        assert_eq!(size_of::<V4l2Frmsizeenum>(), 44);
        assert_eq!(offset_of!(V4l2Frmsizeenum, reserved), 36);
        // The unions with pointer members and the C library's timeval depend on the word size.
        let word = size_of::<c_ulong>();
        assert_eq!(align_of::<FormatUnion>(), word);
        if word == 8 {
            assert_eq!(offset_of!(V4l2Format, fmt), 8);
            assert_eq!(size_of::<V4l2Format>(), 208);
            assert_eq!(offset_of!(V4l2Buffer, timestamp), 24);
            assert_eq!(offset_of!(V4l2Buffer, timecode), 40);
            assert_eq!(offset_of!(V4l2Buffer, m), 64);
            assert_eq!(offset_of!(V4l2Buffer, length), 72);
            assert_eq!(size_of::<V4l2Buffer>(), 88);
            assert_eq!(VIDIOC_QBUF, 0xc058_560f);
            assert_eq!(VIDIOC_S_FMT, 0xc0d0_5605);
        } else {
            assert_eq!(offset_of!(V4l2Format, fmt), 4);
            assert_eq!(size_of::<V4l2Format>(), 204);
            assert_eq!(offset_of!(V4l2Buffer, timestamp), 20);
            assert_eq!(offset_of!(V4l2Buffer, timecode), 28);
            assert_eq!(offset_of!(V4l2Buffer, m), 52);
            assert_eq!(offset_of!(V4l2Buffer, length), 56);
            assert_eq!(size_of::<V4l2Buffer>(), 68);
            assert_eq!(VIDIOC_QBUF, 0xc044_560f);
            assert_eq!(VIDIOC_S_FMT, 0xc0cc_5605);
        }
        assert_eq!(VIDIOC_QUERYCAP, 0x8068_5600);
        assert_eq!(VIDIOC_REQBUFS, 0xc014_5608);
        assert_eq!(VIDIOC_STREAMON, 0x4004_5612);
        assert_eq!(VIDIOC_ENUM_FRAMESIZES, 0xc02c_564a);
    }

    /// The C compiler that builds for the target these tests run on: the Debian cross compiler
    /// when there is one (cross tests run under qemu-user, the system `cc` builds for the host).
    fn c_compiler() -> &'static str {
        let cross = if cfg!(target_arch = "aarch64") {
            "aarch64-linux-gnu-gcc"
        } else if cfg!(target_arch = "arm") {
            "arm-linux-gnueabihf-gcc"
        } else {
            "cc"
        };
        let found = Command::new(cross).arg("--version").output();
        if found.is_ok_and(|o| o.status.success()) {
            cross
        } else {
            "cc"
        }
    }

    #[test]
    fn definitions_match_the_systems_videodev2_h() {
        let abi = abi();
        let mut c = String::from(
            "#include <stddef.h>\n#include <stdio.h>\n#include <linux/videodev2.h>\n\
             int main(void) {\n    printf(\"%u\\n\", (unsigned)(sizeof(void *) * 8));\n",
        );
        for (expr, _) in &abi {
            c.push_str(&format!(
                "    printf(\"%llu\\n\", (unsigned long long)({expr}));\n"
            ));
        }
        c.push_str("    return 0;\n}\n");
        let dir = std::env::temp_dir().join(format!("kith-v4l2-abi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("abi.c");
        let program = dir.join("abi");
        std::fs::write(&source, c).unwrap();
        let compiler = c_compiler();
        let skip = |why: String| {
            eprintln!("skipped: the check against <linux/videodev2.h>: {why}");
            std::fs::remove_dir_all(&dir).unwrap();
        };
        let built = match Command::new(compiler)
            .arg(&source)
            .arg("-o")
            .arg(&program)
            .output()
        {
            Ok(built) => built,
            Err(e) => return skip(format!("no C compiler (`{compiler}`: {e})")),
        };
        let errors = String::from_utf8_lossy(&built.stderr);
        if !built.status.success() && errors.contains("videodev2.h") {
            return skip(format!("`{compiler}` has no kernel headers: {errors}"));
        }
        assert!(built.status.success(), "{compiler} failed:\n{errors}");
        let ran = match Command::new(&program).output() {
            Ok(ran) => ran,
            Err(e) => return skip(format!("the program `{compiler}` built does not run: {e}")),
        };
        assert!(ran.status.success(), "{:?}", ran);
        let out = String::from_utf8(ran.stdout).unwrap();
        let mut lines = out.lines().map(|l| l.parse::<u64>().unwrap());
        let bits = lines.next().unwrap();
        let ours = usize::BITS as u64;
        if bits != ours {
            return skip(format!(
                "`{compiler}` builds {bits}-bit programs, these tests are {ours}-bit"
            ));
        }
        let header: Vec<u64> = lines.collect();
        assert_eq!(header.len(), abi.len());
        let wrong: Vec<String> = abi
            .iter()
            .zip(&header)
            .filter(|((_, rust), c)| rust != *c)
            .map(|((expr, rust), c)| format!("{expr}: header {c}, kith {rust}"))
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            wrong.is_empty(),
            "differs from videodev2.h:\n{}",
            wrong.join("\n")
        );
        eprintln!(
            "{} sizes, offsets and numbers match <linux/videodev2.h> ({compiler}, {bits}-bit)",
            abi.len()
        );
    }

    #[test]
    fn the_ioctls_fail_cleanly_on_a_file_that_is_not_a_device() {
        let file = File::open("/dev/null").unwrap();
        assert!(query_capabilities(&file).is_err());
        assert!(enum_capture_format(&file, 0).is_err());
        assert!(dequeue_buffer(&file).is_err());
        assert!(stream_on(&file).is_err());
    }

    #[test]
    fn a_frame_size_reads_the_member_its_type_names() {
        let mut sizes = V4l2Frmsizeenum {
            index: 0,
            pixel_format: 0,
            type_: V4L2_FRMSIZE_TYPE_DISCRETE,
            size: FrameSizeUnion {
                discrete: V4l2FrmsizeDiscrete {
                    width: 640,
                    height: 480,
                },
            },
            reserved: [0; 2],
        };
        assert_eq!(
            sizes.size(),
            FrameSize::Discrete(V4l2FrmsizeDiscrete {
                width: 640,
                height: 480
            })
        );
        sizes.type_ = 3;
        sizes.size = FrameSizeUnion {
            stepwise: V4l2FrmsizeStepwise {
                min_width: 16,
                max_width: 1920,
                step_width: 2,
                min_height: 16,
                max_height: 1080,
                step_height: 2,
            },
        };
        let FrameSize::Stepwise(s) = sizes.size() else {
            panic!("a stepwise size read as discrete");
        };
        assert_eq!((s.min_width, s.max_width, s.max_height), (16, 1920, 1080));
    }
}
