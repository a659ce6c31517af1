//! kith-inspect: what tract makes of kith's model files, for the tools (kith-model, kith-bench),
//! kept out of the frame path. [`audit`] reads the optimised graph node by node (kernels, integer
//! MACs, quantisation hazards) and the kernels this CPU offers; [`info`] counts a file's
//! parameters and MACs; [`ops`] times every node of a loaded model and sums the times per op.

pub mod audit;
mod error;
pub mod info;
pub mod ops;

pub use error::Error;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
