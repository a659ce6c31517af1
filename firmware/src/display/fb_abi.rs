//! The kernel's framebuffer interface (linux/fb.h): the screen-info structs, the two ioctls that
//! read them, and a shared memory mapping of the device (or of a file standing in for it).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use memmap2::{MmapMut, MmapOptions};

/// `FBIOGET_VSCREENINFO` from linux/fb.h.
const FBIOGET_VSCREENINFO: u32 = 0x4600;
/// `FBIOGET_FSCREENINFO` from linux/fb.h.
const FBIOGET_FSCREENINFO: u32 = 0x4602;

/// The two ioctls, through nix's macros (`_bad`: the fb numbers encode no size or direction).
mod raw {
    use super::*;

    nix::ioctl_read_bad!(get_vscreeninfo, FBIOGET_VSCREENINFO, FbVarScreeninfo);
    nix::ioctl_read_bad!(get_fscreeninfo, FBIOGET_FSCREENINFO, FbFixScreeninfo);
}

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

/// Reads the variable screen information of the framebuffer `file`.
pub fn var_screeninfo(file: &File) -> io::Result<FbVarScreeninfo> {
    let mut info = FbVarScreeninfo::default();
    // SAFETY: FBIOGET_VSCREENINFO writes one fb_var_screeninfo, whose `#[repr(C)]` copy `info`
    // is (sizes checked by tests), into memory we own for the call's duration.
    unsafe { raw::get_vscreeninfo(file.as_raw_fd(), &mut info) }?;
    Ok(info)
}

/// Reads the fixed screen information of the framebuffer `file`.
pub fn fix_screeninfo(file: &File) -> io::Result<FbFixScreeninfo> {
    let mut info = FbFixScreeninfo::default();
    // SAFETY: FBIOGET_FSCREENINFO writes one fb_fix_screeninfo, whose `#[repr(C)]` copy `info`
    // is (sizes checked by tests), into memory we own for the call's duration.
    unsafe { raw::get_fscreeninfo(file.as_raw_fd(), &mut info) }?;
    Ok(info)
}

/// A shared, writable mapping of the first `len` bytes of a file or device; unmapped on drop.
pub struct SharedMapping {
    map: MmapMut,
}

impl SharedMapping {
    /// Maps `len` bytes of `file` (opened for reading and writing) from offset 0.
    pub fn new(file: &File, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nothing to map (0 bytes)",
            ));
        }
        // SAFETY: a shared mapping of `len` bytes of a file descriptor that stays valid for the
        // call. Other processes (the kernel's console, another writer of the file) may change the
        // pages; kith only ever copies into them (`write`), which only changes what is shown.
        let map = unsafe { MmapOptions::new().len(len).map_mut(file) }?;
        Ok(SharedMapping { map })
    }

    /// Copies `bytes` to `offset` in the mapping. Panics if they do not fit (a caller's bug: the
    /// framebuffer checks its geometry against the mapping when it opens).
    pub fn write(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset
            .checked_add(bytes.len())
            .filter(|&end| end <= self.map.len());
        let Some(end) = end else {
            panic!("write past the end of the mapping");
        };
        self.map[offset..end].copy_from_slice(bytes);
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
