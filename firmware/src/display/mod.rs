//! Displays: where annotated frames are drawn.

pub mod png;
