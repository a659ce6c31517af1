//! The JSON lines output: one object per frame in OUT/results.jsonl, flushed after each frame so a
//! reader (or a crash) never sees half a line.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use kith_runtime::limits::JSON_LINE_CAPACITY;
use kith_runtime::Scene;

use crate::OutputError;

/// Appends scenes to a JSON lines file.
pub struct JsonLines {
    path: PathBuf,
    file: BufWriter<File>,
    line: Vec<u8>,
}

impl JsonLines {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, OutputError> {
        let file = File::create(path)
            .map_err(|e| OutputError::new(path, format!("cannot create: {e}")))?;
        Ok(JsonLines {
            path: path.to_owned(),
            file: BufWriter::new(file),
            line: Vec::with_capacity(JSON_LINE_CAPACITY),
        })
    }

    /// Writes one scene, with the relation weights and the relation model's file name, and flushes.
    pub fn write(
        &mut self,
        scene: &Scene,
        weights: &str,
        relation_model: &str,
    ) -> Result<(), OutputError> {
        self.line.clear();
        scene
            .write_json_line(weights, relation_model, &mut self.line)
            .map_err(|e| OutputError::new(&self.path, e))?;
        self.file
            .write_all(&self.line)
            .and_then(|_| self.file.flush())
            .map_err(|e| OutputError::new(&self.path, format!("cannot write: {e}")))
    }
}
