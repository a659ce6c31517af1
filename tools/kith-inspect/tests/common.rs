//! Helpers shared by the integration tests: repository paths.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository's root folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tools/kith-inspect is two folders down")
        .to_owned()
}

/// A file under models/.
pub fn model(name: &str) -> PathBuf {
    repo().join("models").join(name)
}
