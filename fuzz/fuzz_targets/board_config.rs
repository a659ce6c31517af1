//! Config parsing: any text as a board config, devices not checked. An error on one line or a
//! config, never a panic.
#![no_main]

use std::path::Path;

use kith::config::{BoardConfig, Devices};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let file = Path::new("/nonexistent/fuzz/board.toml");
    if let Err(e) = BoardConfig::parse_with(file, text, Devices::Skipped) {
        let _ = e.to_string();
    }
});
