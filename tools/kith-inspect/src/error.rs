//! The error type of kith-inspect. Every message is one line and names the file at fault; what
//! caused it (an I/O, JSON or tract error) is kept as its source, for the binary to render.

use std::path::PathBuf;

use kith_runtime::LoadError;

/// Errors of the inspection tools.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file could not be read or parsed by tract.
    #[error("{}: cannot load model", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: LoadError,
    },
    /// A file does not hold what the tool needs.
    #[error("{}: {detail}", path.display())]
    Contract { path: PathBuf, detail: String },
    /// A reference input file could not be read.
    #[error("{}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A reference input file is not JSON.
    #[error("{}: not JSON", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Loading or running a model as the runtime does failed.
    #[error(transparent)]
    Runtime(#[from] kith_runtime::Error),
}

impl Error {
    /// `path` could not be loaded.
    pub(crate) fn load(path: &std::path::Path, cause: impl Into<LoadError>) -> Self {
        Error::Load {
            path: path.to_owned(),
            source: cause.into(),
        }
    }
}
