//! The kernel's framebuffer interface (linux/fb.h): the screen-info structs, the two ioctls that
//! read them, and a shared memory mapping of the device (or of a file standing in for it).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `FBIOGET_VSCREENINFO` from linux/fb.h.
const FBIOGET_VSCREENINFO: u32 = 0x4600;
/// `FBIOGET_FSCREENINFO` from linux/fb.h.
const FBIOGET_FSCREENINFO: u32 = 0x4602;

/// `struct fb_bitfield`: where one colour channel sits in a pixel.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FbBitfield {
    /// Lowest bit of the channel.
    pub offset: u32,
    /// Bits in the channel.
    pub length: u32,
    /// Non-zero when the most significant bit is on the right.
    pub msb_right: u32,
}

/// `struct fb_var_screeninfo`: the variable screen information (resolution, depth, channels).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FbVarScreeninfo {
    pub xres: u32,
    pub yres: u32,
    pub xres_virtual: u32,
    pub yres_virtual: u32,
    pub xoffset: u32,
    pub yoffset: u32,
    pub bits_per_pixel: u32,
    pub grayscale: u32,
    pub red: FbBitfield,
    pub green: FbBitfield,
    pub blue: FbBitfield,
    pub transp: FbBitfield,
    pub nonstd: u32,
    pub activate: u32,
    pub height: u32,
    pub width: u32,
    pub accel_flags: u32,
    pub pixclock: u32,
    pub left_margin: u32,
    pub right_margin: u32,
    pub upper_margin: u32,
    pub lower_margin: u32,
    pub hsync_len: u32,
    pub vsync_len: u32,
    pub sync: u32,
    pub vmode: u32,
    pub rotate: u32,
    pub colorspace: u32,
    pub reserved: [u32; 4],
}

/// `struct fb_fix_screeninfo`: the fixed screen information (memory size, line length).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FbFixScreeninfo {
    pub id: [u8; 16],
    pub smem_start: libc::c_ulong,
    pub smem_len: u32,
    pub type_: u32,
    pub type_aux: u32,
    pub visual: u32,
    pub xpanstep: u16,
    pub ypanstep: u16,
    pub ywrapstep: u16,
    pub line_length: u32,
    pub mmio_start: libc::c_ulong,
    pub mmio_len: u32,
    pub accel: u32,
    pub capabilities: u16,
    pub reserved: [u16; 2],
}

impl FbFixScreeninfo {
    /// The driver's name (e.g. "Virtual FB").
    pub fn id(&self) -> String {
        let end = self
            .id
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.id.len());
        String::from_utf8_lossy(&self.id[..end]).into_owned()
    }
}

/// A `#[repr(C)]` copy of a kernel screen-information struct, with the ioctl that fills it.
trait ScreenInfo: Default {
    /// The `FBIOGET_*` request that writes one `Self`.
    const REQUEST: u32;
}

impl ScreenInfo for FbVarScreeninfo {
    const REQUEST: u32 = FBIOGET_VSCREENINFO;
}

impl ScreenInfo for FbFixScreeninfo {
    const REQUEST: u32 = FBIOGET_FSCREENINFO;
}

/// Reads the variable screen information of the framebuffer `file`.
pub fn var_screeninfo(file: &File) -> io::Result<FbVarScreeninfo> {
    read_screeninfo(file)
}

/// Reads the fixed screen information of the framebuffer `file`.
pub fn fix_screeninfo(file: &File) -> io::Result<FbFixScreeninfo> {
    read_screeninfo(file)
}

fn read_screeninfo<T: ScreenInfo>(file: &File) -> io::Result<T> {
    let mut info = T::default();
    // SAFETY: `T::REQUEST` writes one struct of the kernel's whose `#[repr(C)]` copy `T` is (the
    // trait is private and implemented only for those pairs; sizes checked by tests), into memory
    // we own for the call's duration.
    let r = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            T::REQUEST as libc::Ioctl,
            &mut info as *mut T,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// A shared, writable mapping of the first `len` bytes of a file or device; unmapped on drop.
pub struct SharedMapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; nothing else in the process aliases it.
unsafe impl Send for SharedMapping {}

impl SharedMapping {
    /// Maps `len` bytes of `file` (opened for reading and writing) from offset 0.
    pub fn new(file: &File, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nothing to map (0 bytes)",
            ));
        }
        // SAFETY: a fresh shared mapping chosen by the kernel (null hint), of a file descriptor
        // that stays valid for the call; the result is checked for MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMapping {
            ptr: ptr.cast(),
            len,
        })
    }

    /// Copies `bytes` to `offset` in the mapping. Panics if they do not fit (a caller's bug: the
    /// framebuffer checks its geometry against the mapping when it opens).
    pub fn write(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset
            .checked_add(bytes.len())
            .filter(|&end| end <= self.len);
        assert!(end.is_some(), "write past the end of the mapping");
        // SAFETY: offset..offset + bytes.len() lies inside the live mapping (checked above), and
        // `bytes` is ordinary process memory, so the ranges do not overlap. The kernel (or a
        // console) may write the same pages, which only changes what the screen shows.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(offset), bytes.len()) }
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing uses the mapping after drop.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn structs_match_linux_fb_h() {
        assert_eq!(size_of::<FbBitfield>(), 12);
        assert_eq!(size_of::<FbVarScreeninfo>(), 160);
        assert_eq!(offset_of!(FbVarScreeninfo, bits_per_pixel), 24);
        assert_eq!(offset_of!(FbVarScreeninfo, red), 32);
        assert_eq!(offset_of!(FbVarScreeninfo, transp), 68);
        assert_eq!(offset_of!(FbVarScreeninfo, reserved), 144);
        let long = size_of::<libc::c_ulong>();
        assert_eq!(offset_of!(FbFixScreeninfo, smem_len), 16 + long);
        if long == 8 {
            assert_eq!(offset_of!(FbFixScreeninfo, line_length), 48);
            assert_eq!(size_of::<FbFixScreeninfo>(), 80);
        } else {
            assert_eq!(offset_of!(FbFixScreeninfo, line_length), 44);
            assert_eq!(size_of::<FbFixScreeninfo>(), 68);
        }
    }

    #[test]
    fn the_ioctls_fail_cleanly_on_a_plain_file() {
        let path = std::env::temp_dir().join(format!("kith-fb-abi-{}", std::process::id()));
        std::fs::write(&path, [0u8; 64]).unwrap();
        let file = File::open(&path).unwrap();
        assert!(var_screeninfo(&file).is_err());
        assert!(fix_screeninfo(&file).is_err());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_mapping_writes_through_to_the_file() {
        let path = std::env::temp_dir().join(format!("kith-fb-map-{}", std::process::id()));
        std::fs::write(&path, [7u8; 32]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut map = SharedMapping::new(&file, 32).unwrap();
        map.write(30, &[1, 2]);
        drop(map);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[28..], &[7, 7, 1, 2]);
        std::fs::remove_file(&path).unwrap();
    }
}
