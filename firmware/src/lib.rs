//! The board side of kith: board configs, frame sources, displays, outputs, and the [`session`]
//! that drives frames from a source through the pipeline into them. The `kith` binary and the
//! `kith-bench` profiler both run frames through a [`session::Session`], so a benchmark measures
//! exactly what runs on the board.

pub mod backoff;
pub mod camera;
pub mod config;
pub mod display;
pub mod files;
pub mod logging;
pub mod mqtt;
pub mod output;
pub mod service;
pub mod session;
pub mod status;
pub mod tracking;

/// An output file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {detail}", path.display())]
pub struct OutputError {
    pub path: std::path::PathBuf,
    pub detail: String,
}

impl OutputError {
    /// An error about `path`.
    pub fn new(path: &std::path::Path, detail: impl std::fmt::Display) -> Self {
        OutputError {
            path: path.to_owned(),
            detail: detail.to_string(),
        }
    }
}
