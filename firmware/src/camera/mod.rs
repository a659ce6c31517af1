//! Frame sources: everything the pipeline can read frames from.

pub mod replay;

use kith_runtime::Frame;

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
    /// The source cannot go on.
    #[error("{name}: {detail}")]
    Fatal { name: String, detail: String },
}

/// Something that produces frames, one at a time, into buffers it owns.
pub trait FrameSource {
    /// The next frame, or `Ok(None)` when the stream has ended.
    fn next_frame(&mut self) -> Result<Option<CapturedFrame<'_>>, SourceError>;
}
