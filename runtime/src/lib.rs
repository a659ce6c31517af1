//! kith-runtime: one camera frame in, one [`Scene`] out.
//!
//! The pipeline finds the people in a frame with a [`PersonDetector`], recognises the social relation
//! of every pair of them with the GRITv2-S [`RelationModel`], and draws the result with the
//! [`overlay`] on any `embedded_graphics` draw target. It knows nothing of devices: cameras and
//! displays live in the `kith` binary. Every buffer is allocated when the pipeline is built; a frame
//! allocates nothing outside tract's own model calls (see [`alloc_count`]).

pub mod alloc_count;
pub mod audit;
pub mod canvas;
pub mod detect;
pub mod error;
pub mod image;
pub mod int8;
pub mod labels;
pub mod limits;
pub mod model;
pub mod model_info;
pub mod overlay;
pub mod pipeline;
pub mod profile;
pub mod relate;
pub mod relation_choice;
pub mod scene;

pub use detect::{DetectorSettings, PersonDetector};
pub use error::Error;
pub use image::{Frame, PixelFormat};
pub use pipeline::{Pipeline, PipelineSettings};
pub use relate::RelationModel;
pub use scene::{Person, Relation, Scene};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
