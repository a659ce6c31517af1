//! kith-runtime: one camera frame in, one [`Scene`] out.
//!
//! The pipeline finds the people in a frame with a [`PersonDetector`], recognises the social relation
//! of every pair of them with the GRITv2-S [`RelationModel`], and draws the result with the
//! [`overlay`] on any `embedded_graphics` draw target. Persons keep a [`track`] id across frames,
//! and the labels of tracked pairs are [`smooth`]ed over time. It knows nothing of devices: cameras and
//! displays live in the `kith` binary. Every buffer is allocated when the pipeline is built; a frame
//! allocates nothing outside tract's own model calls (see [`alloc_count`]).

pub mod alloc_count;
pub mod canvas;
pub mod detect;
mod error;
mod im2col;
pub mod image;
mod int8;
pub mod labels;
mod lanes;
mod layernorm;
pub mod limits;
mod maxpool;
pub mod model;
pub mod model_arena;
pub mod narrow_weights;
pub mod overlay;
mod passes;
mod pipeline;
mod pointwise;
pub mod profile;
pub mod relate;
pub mod relation_choice;
mod resize;
mod scene;
pub mod smooth;
mod softmax;
pub mod track;

pub use detect::{DetectorSettings, PersonDetector};
pub use error::{Error, LoadError, RunError};
pub use image::{Frame, PixelFormat};
pub use pipeline::{Pipeline, PipelineSettings, RelationInfo};
pub use relate::RelationModel;
pub use scene::{Person, Relation, Scene};
pub use smooth::SmoothingSettings;
pub use track::TrackerSettings;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
