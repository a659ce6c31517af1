//! Replay decode: any file content played as an image (JPEG, PNG, PNM told by their bytes). An
//! error or an RGB image within the pixel limit, never a panic or an allocation past the caps.
#![no_main]

use kith::camera::replay::ImageFileDecoder;
use kith_runtime::limits::MAX_FRAME_PIXELS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut decoder = ImageFileDecoder::default();
    if let Ok(rgb) = decoder.decode(input) {
        assert!(rgb.width * rgb.height <= MAX_FRAME_PIXELS);
        assert_eq!(rgb.data.len(), rgb.width * rgb.height * 3);
    }
});
