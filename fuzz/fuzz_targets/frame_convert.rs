//! Raw frame conversion: any format, width, height, stride and buffer length a driver or a pipe
//! could hand over. `convert_from` either refuses the frame or fills exactly width x height RGB.
#![no_main]

use kith_runtime::image::{Frame, PixelFormat, RgbImage};
use libfuzzer_sys::fuzz_target;

const FORMATS: [PixelFormat; 7] = PixelFormat::ALL;

fuzz_target!(|input: &[u8]| {
    let Some((head, data)) = input.split_first_chunk::<13>() else {
        return;
    };
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    // Small sizes most of the time (so the buffer can hold them), any u32 now and then.
    let side = |v: u32| if v & 0x8000_0000 != 0 { v } else { v % 64 };
    let format = FORMATS[usize::from(head[0]) % FORMATS.len()];
    let width = side(word(1)) as usize;
    let height = side(word(5)) as usize;
    let stride = match word(9) {
        v if v & 0x8000_0000 != 0 => v as usize,
        v => format.packed_stride(width) + (v % 8) as usize,
    };
    let frame = Frame {
        width,
        height,
        format,
        stride,
        data,
    };
    let mut rgb = RgbImage::default();
    if rgb.convert_from(&frame).is_ok() {
        assert_eq!((rgb.width, rgb.height), (width, height));
        assert_eq!(rgb.data.len(), width * height * 3);
    }
});
