//! Model loading from mutated copies of the shipped ONNX files: the input picks a model and a
//! list of byte edits (offset, value) and a length to cut at; loading the result as kith's
//! detector or relation model is an error, never a panic. tract panics on some damaged files;
//! kith's loader turns that into an error and keeps libfuzzer-sys's aborting panic hook out of it
//! (`model::load_optimized`), so only a panic that leaves kith's API stops the run.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use kith_runtime::model::ModelFile;
use libfuzzer_sys::fuzz_target;

/// The shipped models, read once.
fn models() -> &'static [Vec<u8>; 2] {
    static MODELS: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
        ["person-detector.onnx", "gritv2-s.int8.onnx"]
            .map(|f| std::fs::read(dir.join(f)).expect("the shipped models (git lfs pull)"))
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&[pick, a, b, c, d], edits)) = input.split_first_chunk::<5>() else {
        return;
    };
    let original = &models()[usize::from(pick & 1)];
    let mut bytes = original.clone();
    // Cut at a point spread over the whole file (u32::MAX: keep it whole).
    let cut = u32::from_le_bytes([a, b, c, d]);
    if cut != u32::MAX {
        bytes.truncate(((u64::from(cut) * bytes.len() as u64) >> 32) as usize);
    }
    for edit in edits.chunks_exact(5) {
        if bytes.is_empty() {
            break;
        }
        let at = u32::from_le_bytes([edit[0], edit[1], edit[2], edit[3]]) as usize;
        let len = bytes.len();
        bytes[at % len] = edit[4];
    }
    let path = std::env::temp_dir().join(format!("kith-fuzz-model-{}.onnx", std::process::id()));
    std::fs::write(&path, &bytes).expect("temp file");
    if let Err(e) = ModelFile::load(&path, 1) {
        let _ = e.to_string();
    }
    let _ = std::fs::remove_file(&path);
});
