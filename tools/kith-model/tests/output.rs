//! kith-model's standard output when nobody reads it, or nothing can be written: no panic.

use std::process::{Command, Stdio};

fn kith_model() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kith-model"))
}

#[test]
fn a_closed_pipe_ends_it_quietly() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    // the reader is gone before kith-model writes its first line, as after `| head -1`
    drop(reader);
    let out = kith_model()
        .arg("kernels")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("kith-model runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_full_disk_is_one_line_of_error() {
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let out = kith_model()
        .arg("kernels")
        .stdout(full)
        .output()
        .expect("kith-model runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "Error: cannot write to standard output: No space left on device (os error 28)"
    );
}
