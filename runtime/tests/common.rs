//! Helpers shared by the integration tests: repository paths and demo frames.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kith_runtime::image::RgbImage;

/// The repository's root folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ has a parent")
        .to_owned()
}

/// A file under models/.
pub fn model(name: &str) -> PathBuf {
    repo().join("models").join(name)
}

/// The demo frames folder.
pub fn demo_frames_dir() -> PathBuf {
    repo().join("board-configs/demo/frames")
}

/// Decodes an image file into RGB.
pub fn load_rgb(path: &Path) -> RgbImage {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    RgbImage {
        width: img.width() as usize,
        height: img.height() as usize,
        data: img.into_raw(),
    }
}

/// The demo frames, in name order, with their file names.
pub fn demo_frames() -> Vec<(String, RgbImage)> {
    let mut files: Vec<_> = std::fs::read_dir(demo_frames_dir())
        .expect("demo frames folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                load_rgb(p),
            )
        })
        .collect()
}
