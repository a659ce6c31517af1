//! The error type of kith-runtime. Every message is one line and names the file or field at fault.

use std::path::PathBuf;

/// Errors of the pipeline library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file could not be read, parsed or optimised by tract.
    #[error("{}: cannot load model: {detail}", path.display())]
    ModelLoad { path: PathBuf, detail: String },
    /// A model file loaded but does not have the inputs, outputs or metadata kith needs.
    #[error("{}: {detail}", path.display())]
    ModelContract { path: PathBuf, detail: String },
    /// tract failed while running a model.
    #[error("{model}: inference failed: {detail}")]
    ModelRun { model: String, detail: String },
    /// A frame's size, format or buffer length is inconsistent.
    #[error("bad frame: {0}")]
    Frame(String),
    /// A setting is out of its range.
    #[error("setting `{field}`: {detail}")]
    Setting { field: &'static str, detail: String },
    /// The relation model and its fallback could not be compared.
    #[error(transparent)]
    RelationChoice(Box<crate::relation_choice::ChoiceError>),
}

impl From<crate::relation_choice::ChoiceError> for Error {
    fn from(err: crate::relation_choice::ChoiceError) -> Self {
        Error::RelationChoice(Box::new(err))
    }
}

impl Error {
    /// Formats a tract error (an `anyhow` chain) on one line.
    pub(crate) fn one_line(err: &tract_onnx::prelude::TractError) -> String {
        format!("{err:#}").replace('\n', " ")
    }
}
