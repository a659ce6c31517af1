//! `kith-vm-models DIR`: writes the VM checks' tiny test models, DIR/vm-detector.onnx and
//! DIR/vm-relations.onnx (see `kith_vm::models`).

use std::path::PathBuf;

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: kith-vm-models DIR")?
        .into();
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    kith_vm::models::write_detector(&dir.join("vm-detector.onnx"))?;
    kith_vm::models::write_relations(&dir.join("vm-relations.onnx"))?;
    Ok(())
}
