//! Frame sources: everything the pipeline can read frames from.

pub mod decode;
pub mod format;
pub mod pipe;
pub mod replay;
pub mod spec;
#[cfg(feature = "v4l2")]
pub mod v4l2;
#[cfg(feature = "v4l2")]
pub mod v4l2_abi;
mod wait;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kith_runtime::Frame;

pub use crate::backoff::Retry;
pub use format::CameraFormat;

/// A frame handed out by a source, borrowed until the next call.
#[derive(Debug, Clone, Copy)]
pub struct CapturedFrame<'a> {
    pub frame: Frame<'a>,
    /// What the frame is called in the output (file name or device).
    pub name: &'a str,
}

/// Why a source gave no frame.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// One frame is unreadable; the source can go on with the next.
    #[error("skipping {name}: {detail}")]
    Corrupt { name: String, detail: String },
    /// The camera went away (unplugged, silent, writer gone); the source reconnects by itself on
    /// the following calls.
    #[error(transparent)]
    Lost(#[from] Lost),
    /// The source cannot go on.
    #[error("{name}: {detail}")]
    Fatal { name: String, detail: String },
    /// The source cannot work as the board config sets it up, however often kith restarts (a
    /// config error).
    #[error("{name}: {detail}")]
    Unusable { name: String, detail: String },
}

/// A camera that stopped delivering frames, and when the source tries to reopen it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{name}: camera lost: {detail}; retrying in {} ms", retry_in.as_millis())]
pub struct Lost {
    /// The device or pipe.
    pub name: String,
    pub detail: String,
    /// Delay before the next attempt to reopen it.
    pub retry_in: Duration,
}

/// The frame size and format a camera delivers, as agreed with its driver (or the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub width: u32,
    pub height: u32,
    pub format: CameraFormat,
    /// Bytes per row of the first plane (0 for MJPEG).
    pub stride: u32,
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{} {}", self.width, self.height, self.format)?;
        if self.stride > 0 {
            write!(f, " (stride {})", self.stride)?;
        }
        Ok(())
    }
}

/// Something that produces frames, one at a time, into buffers it owns.
pub trait FrameSource {
    /// The next frame, or `Ok(None)` when the stream has ended or a stop was requested.
    fn next_frame(&mut self) -> Result<Option<CapturedFrame<'_>>, SourceError>;

    /// The size and format the camera delivers, for sources that negotiate one.
    fn negotiated(&self) -> Option<Negotiated> {
        None
    }
}

/// A V4L2 camera as the board config describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4l2Settings {
    pub device: PathBuf,
    pub format: CameraFormat,
    pub width: u32,
    pub height: u32,
    /// Number of mmap buffers.
    pub buffers: u32,
    /// How long a dequeue may wait before the camera counts as lost.
    pub timeout: Duration,
    pub retry: Retry,
}

/// A pipe of raw or MJPEG frames as the board config describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeSettings {
    /// `-` for standard input, else a named pipe or a file.
    pub path: PathBuf,
    pub format: CameraFormat,
    pub width: u32,
    pub height: u32,
    pub retry: Retry,
}
