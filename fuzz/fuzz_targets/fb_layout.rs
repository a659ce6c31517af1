//! Framebuffer geometry from the raw structs FBIOGET_VSCREENINFO fills in: any bit depth and
//! channel bitfields. A layout whose channels fit in the pixel, or an error.
#![no_main]

use kith::display::fb_abi::{FbBitfield, FbVarScreeninfo};
use kith::display::fbdev::PixelLayout;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some(words) = input.first_chunk::<52>() else {
        return;
    };
    let word = |i: usize| {
        u32::from_le_bytes([
            words[4 * i],
            words[4 * i + 1],
            words[4 * i + 2],
            words[4 * i + 3],
        ])
    };
    let field = |i: usize| FbBitfield {
        offset: word(i),
        length: word(i + 1),
        msb_right: word(i + 2),
    };
    let var = FbVarScreeninfo {
        bits_per_pixel: word(0),
        red: field(1),
        green: field(4),
        blue: field(7),
        transp: field(10),
        ..Default::default()
    };
    if let Ok(layout) = PixelLayout::from_var(&var) {
        let _ = layout.to_string();
    }
});
