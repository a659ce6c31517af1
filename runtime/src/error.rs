//! The error type of kith-runtime. Every message is one line and names the file or field at fault;
//! what caused it (an I/O or tract error) is kept as its source, for the binary to render.

use std::path::{Path, PathBuf};

use tract_onnx::prelude::TractError;

/// Errors of the pipeline library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file could not be read, parsed or optimised by tract.
    #[error("{}: cannot load model", path.display())]
    ModelLoad {
        path: PathBuf,
        #[source]
        source: LoadError,
    },
    /// A model file loaded but does not have the inputs, outputs or metadata kith needs.
    #[error("{}: {detail}", path.display())]
    ModelContract { path: PathBuf, detail: String },
    /// A model failed to run.
    #[error("{model}: inference failed")]
    ModelRun {
        model: String,
        #[source]
        source: RunError,
    },
    /// A frame's size, format or buffer length is inconsistent.
    #[error("bad frame: {0}")]
    Frame(String),
    /// yuvutils-rs refused a frame's layout while converting it to RGB.
    #[error("bad frame: cannot convert {format:?} to RGB")]
    Convert {
        format: crate::image::PixelFormat,
        #[source]
        source: yuvutils_rs::YuvError,
    },
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

/// Why a model file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not a file")]
    NotAFile,
    #[error(transparent)]
    Tract(#[from] TractError),
    /// tract panicked on the file instead of returning an error (fuzz/model_load found two changed
    /// bytes of an ONNX file that make it do so); the panic's message.
    #[error("tract failed on it: {0}")]
    Panicked(String),
}

/// Why a model run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Tract(#[from] TractError),
    #[error("input #{0} is not contiguous")]
    NotContiguous(usize),
    #[error("the relation thread panicked")]
    WorkerPanicked,
    #[error("the relation thread stopped")]
    WorkerStopped,
}

impl Error {
    /// A model file at `path` could not be loaded.
    pub(crate) fn load(path: &Path, cause: impl Into<LoadError>) -> Self {
        Error::ModelLoad {
            path: path.to_owned(),
            source: cause.into(),
        }
    }

    /// The model called `model` (its path, or its role) failed to run.
    pub(crate) fn run(model: impl std::fmt::Display, cause: impl Into<RunError>) -> Self {
        Error::ModelRun {
            model: model.to_string(),
            source: cause.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message and its causes as the binaries print them, `: ` between each.
    fn rendered(err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut cause = err.source();
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        text
    }

    #[test]
    fn causes_render_after_the_message_as_the_flattened_text_did() {
        let tract = TractError::msg("inner").context("outer");
        let err = Error::run("gritv2-s.onnx", tract);
        assert_eq!(err.to_string(), "gritv2-s.onnx: inference failed");
        assert_eq!(
            rendered(&err),
            "gritv2-s.onnx: inference failed: outer: inner"
        );
        let err = Error::load(Path::new("m.onnx"), LoadError::NotAFile);
        assert_eq!(rendered(&err), "m.onnx: cannot load model: not a file");
        let err = Error::run("relation model", RunError::WorkerStopped);
        assert_eq!(
            rendered(&err),
            "relation model: inference failed: the relation thread stopped"
        );
    }
}
