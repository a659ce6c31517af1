//! Fixed capacities of the pipeline, in one place. Containers on the frame path are sized by these.

/// Most persons kept per frame: GRITv2-S's N (PISC annotates at most 8 persons per image).
pub const MAX_PERSONS: usize = 8;

/// Unordered pairs of [`MAX_PERSONS`] persons.
pub const MAX_PAIRS: usize = MAX_PERSONS * (MAX_PERSONS - 1) / 2;

/// Most tracks kept ([`crate::track`]): the persons of this frame plus as many recently missed.
pub const MAX_TRACKS: usize = 2 * MAX_PERSONS;

/// Most pairs whose smoothed scores are remembered ([`crate::smooth`]): every pair of [`MAX_TRACKS`].
pub const MAX_SMOOTHED_PAIRS: usize = MAX_TRACKS * (MAX_TRACKS - 1) / 2;

/// Longest frame source name kept in a [`crate::Scene`] (bytes); longer names are cut at a char boundary.
pub const SOURCE_NAME_CAPACITY: usize = 128;

/// Longest label drawn on the overlay, e.g. "no relation 0.61" (bytes).
pub const LABEL_TEXT_CAPACITY: usize = 32;

/// Largest frame side accepted anywhere: a camera config, a decoded JPEG or an image file, so a
/// corrupt header cannot ask for gigabytes.
pub const MAX_FRAME_SIDE: usize = 8192;

/// Most pixels of a decoded frame (16.8 MP: a 4096x4096 image, or the 12 MP sensors of the Pi
/// cameras), so a JPEG or PNG header that is within [`MAX_FRAME_SIDE`] on both sides still cannot
/// ask for more than 50 MB of RGB (docs/memory.md, the memory budget).
pub const MAX_FRAME_PIXELS: usize = 4096 * 4096;

/// The frame size RGB buffers are preallocated for (1080p), so the first frames of a common
/// camera do not allocate.
pub const PREALLOCATED_FRAME: (usize, usize) = (1920, 1080);

/// Bytes reserved for one JSON line of results (a frame of [`MAX_PERSONS`] persons and
/// [`MAX_PAIRS`] pairs fits), so writing a line does not allocate.
pub const JSON_LINE_CAPACITY: usize = 16 * 1024;
