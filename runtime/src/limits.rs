//! Fixed capacities of the pipeline, in one place. Containers on the frame path are sized by these.

/// Most persons kept per frame: GRITv2-S's N (PISC annotates at most 8 persons per image).
pub const MAX_PERSONS: usize = 8;

/// Unordered pairs of [`MAX_PERSONS`] persons.
pub const MAX_PAIRS: usize = MAX_PERSONS * (MAX_PERSONS - 1) / 2;

/// Longest frame source name kept in a [`crate::Scene`] (bytes); longer names are cut at a char boundary.
pub const SOURCE_NAME_CAPACITY: usize = 128;

/// Longest label drawn on the overlay, e.g. "no relation 0.61" (bytes).
pub const LABEL_TEXT_CAPACITY: usize = 32;
