//! The files kith records into, made to last months unattended: results are appended to (never
//! truncated) and rotated by size like a log, nothing is written through a symbolic link
//! (`O_NOFOLLOW`), snapshots are written under a temporary name and renamed once complete, an
//! optional fsync policy, and a full disk is reported once: kith keeps running (and showing) without
//! recording until there is room again. The board config's `[output]` section sets it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::FieldError;
use crate::OutputError;

/// Permissions of the files kith creates (the unit's UMask may narrow them further).
const FILE_MODE: u32 = 0o640;

/// Largest `output.rotate_mb`.
const MAX_ROTATE_MB: u64 = 1 << 20;

/// Most rotated files `output.keep` may ask for.
const MAX_KEEP: u32 = 1000;

/// `[output]` as written in the board config; every key is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Rotate results.jsonl when it would grow past this many MiB (0: never).
    #[serde(default = "default_rotate_mb")]
    rotate_mb: u64,
    /// Rotated files kept: results.jsonl.1 (newest) .. results.jsonl.N.
    #[serde(default = "default_keep")]
    keep: u32,
    /// "never" (the default) or "always": fsync each JSON line and each PNG snapshot.
    #[serde(default = "default_fsync")]
    fsync: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            rotate_mb: default_rotate_mb(),
            keep: default_keep(),
            fsync: default_fsync(),
        }
    }
}

fn default_rotate_mb() -> u64 {
    64
}

fn default_keep() -> u32 {
    4
}

fn default_fsync() -> String {
    "never".into()
}

/// When written data is forced to the storage device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fsync {
    /// Only when a file is rotated; the kernel writes the rest back in its own time.
    #[default]
    Never,
    /// After every JSON line and every PNG snapshot (safest on power loss; wears SD cards).
    Always,
}

/// How the recorded files are written: a checked [`OutputConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSettings {
    /// Rotate when the file would grow past this many bytes; 0 never rotates.
    pub rotate_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
    pub fsync: Fsync,
}

/// The settings of a board config without an `[output]` section.
impl Default for FileSettings {
    fn default() -> Self {
        FileSettings {
            rotate_bytes: default_rotate_mb() << 20,
            keep: default_keep(),
            fsync: Fsync::Never,
        }
    }
}

impl OutputConfig {
    /// Checks every field.
    pub fn into_settings(self) -> Result<FileSettings, FieldError> {
        if self.rotate_mb > MAX_ROTATE_MB {
            return Err(FieldError::out_of_range(
                "output.rotate_mb",
                self.rotate_mb,
                format!("0..={MAX_ROTATE_MB}"),
            ));
        }
        if self.keep > MAX_KEEP {
            return Err(FieldError::out_of_range(
                "output.keep",
                self.keep,
                format!("0..={MAX_KEEP}"),
            ));
        }
        let fsync = match self.fsync.as_str() {
            "never" => Fsync::Never,
            "always" => Fsync::Always,
            _ => {
                return Err(FieldError::Unknown {
                    field: "output.fsync",
                    value: self.fsync,
                    names: "\"never\", \"always\"".into(),
                })
            }
        };
        Ok(FileSettings {
            rotate_bytes: self.rotate_mb << 20,
            keep: self.keep,
            fsync,
        })
    }
}

/// Whether `e` means the file system has no room (or the quota is used up).
fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Reports a full disk once per outage, and how much was lost when there is room again.
#[derive(Debug, Default)]
pub struct FullDisk {
    /// Records not written since the disk filled up; `None` while writes succeed.
    lost: Option<u64>,
}

impl FullDisk {
    /// Handles a failed write of `path`: a full disk is warned about once and is not an error
    /// (the record is lost); anything else is returned.
    pub fn failed(&mut self, path: &Path, e: io::Error) -> Result<(), OutputError> {
        if !is_full(&e) {
            return Err(OutputError::new(path, format!("cannot write: {e}")));
        }
        match &mut self.lost {
            Some(lost) => *lost += 1,
            None => {
                log::warn!(
                    "{}: the disk is full ({e}): not recording until there is room; the display keeps running",
                    path.display()
                );
                self.lost = Some(1);
            }
        }
        Ok(())
    }

    /// A write of `path` succeeded: ends an outage, saying how much was lost.
    pub fn succeeded(&mut self, path: &Path) {
        if let Some(lost) = self.lost.take() {
            log::info!(
                "{}: recording again; {lost} record(s) were lost while the disk was full",
                path.display()
            );
        }
    }

    /// Whether the last write found the disk full.
    pub fn is_full(&self) -> bool {
        self.lost.is_some()
    }
}

/// Opens `path` for appending, creating it; a symbolic link or anything but a regular file is
/// refused.
fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .read(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other("is a symbolic link, which kith does not follow"),
            _ => e,
        })?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a named pipe"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(io::Error::other(format!("is {what}, not a regular file")));
    }
    Ok(file)
}

/// A log-like file of records (JSON lines): appended to, rotated by size into `PATH.1` ..
/// `PATH.N` (`PATH.1` the newest), and never left with half a record: a write that fails midway
/// is cut back to the last whole record.
pub struct AppendFile {
    path: PathBuf,
    file: File,
    /// Bytes of whole records in the file.
    len: u64,
    settings: FileSettings,
    full: FullDisk,
}

impl AppendFile {
    /// Opens (or creates) `path` to append to it. A last record cut short (power loss) is ended
    /// with a newline so the records after it stay whole lines.
    pub fn open(path: &Path, settings: FileSettings) -> Result<Self, OutputError> {
        let fail = |e: io::Error| OutputError::new(path, format!("cannot open: {e}"));
        let mut file = open_append(path).map_err(fail)?;
        let mut len = file.metadata().map_err(fail)?.len();
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(fail)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(fail)?;
                len += 1;
            }
        }
        Ok(AppendFile {
            path: path.to_owned(),
            file,
            len,
            settings,
            full: FullDisk::default(),
        })
    }

    /// Appends one whole record, rotating first when it would pass the size limit. A full disk
    /// loses the record (warned about once); other errors are returned.
    pub fn append(&mut self, record: &[u8]) -> Result<(), OutputError> {
        let limit = self.settings.rotate_bytes;
        if limit > 0 && self.len > 0 && self.len + record.len() as u64 > limit {
            self.rotate()?;
        }
        let written = self
            .file
            .write_all(record)
            .and_then(|_| match self.settings.fsync {
                Fsync::Always => self.file.sync_data(),
                Fsync::Never => Ok(()),
            });
        match written {
            Ok(()) => {
                self.len += record.len() as u64;
                self.full.succeeded(&self.path);
                Ok(())
            }
            Err(e) => {
                // Cut a half-written record back off; O_APPEND writes then go on from there.
                let _ = self.file.set_len(self.len);
                self.full.failed(&self.path, e)
            }
        }
    }

    /// Whether the last record was lost to a full disk.
    pub fn disk_full(&self) -> bool {
        self.full.is_full()
    }

    /// `PATH.n`.
    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Syncs and closes the file, shifts `PATH.1..` up by one (the oldest beyond `keep` is
    /// replaced), moves the file to `PATH.1` and starts a new one.
    fn rotate(&mut self) -> Result<(), OutputError> {
        let fail = |path: &Path, what: &str, e: io::Error| {
            OutputError::new(path, format!("cannot {what} while rotating: {e}"))
        };
        self.file
            .sync_all()
            .map_err(|e| fail(&self.path, "sync", e))?;
        let keep = self.settings.keep;
        if keep == 0 {
            std::fs::remove_file(&self.path).map_err(|e| fail(&self.path, "remove", e))?;
        } else {
            for n in (1..keep).rev() {
                let from = self.rotated(n);
                match std::fs::rename(&from, self.rotated(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(fail(&from, "rename", e))
                    }
                    _ => {}
                }
            }
            std::fs::rename(&self.path, self.rotated(1))
                .map_err(|e| fail(&self.path, "rename", e))?;
        }
        self.file = open_append(&self.path).map_err(|e| fail(&self.path, "create", e))?;
        self.len = 0;
        // The renames reach the disk with the folder.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| fail(dir, "sync", e))?;
        }
        Ok(())
    }
}

/// Replaces `path` with `bytes` as a whole: they are written to a temporary file beside it
/// (never through a symbolic link), synced when `fsync` says so, and renamed over `path`. A
/// reader sees the old file or the new one, never a part; on an error the temporary file is
/// removed.
pub fn replace(path: &Path, bytes: &[u8], fsync: Fsync) -> io::Result<()> {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".tmp");
    let temp = path.with_file_name(name);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            if fsync == Fsync::Always {
                file.sync_all()?;
            }
            Ok(())
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kith-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn settings(rotate_bytes: u64, keep: u32) -> FileSettings {
        FileSettings {
            rotate_bytes,
            keep,
            fsync: Fsync::Never,
        }
    }

    #[test]
    fn reopening_appends_and_ends_a_cut_record() {
        let dir = temp_dir("append");
        let path = dir.join("results.jsonl");
        std::fs::write(&path, "{\"frame\":0}\n{\"fra").unwrap();
        let mut f = AppendFile::open(&path, settings(0, 0)).unwrap();
        f.append(b"{\"frame\":1}\n").unwrap();
        drop(f);
        let mut f = AppendFile::open(&path, settings(0, 0)).unwrap();
        f.append(b"{\"frame\":2}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"frame\":0}\n{\"fra\n{\"frame\":1}\n{\"frame\":2}\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotates_by_size_keeping_n_files() {
        let dir = temp_dir("rotate");
        let path = dir.join("results.jsonl");
        let mut f = AppendFile::open(&path, settings(20, 2)).unwrap();
        for i in 0..7 {
            // 10 bytes each: two per file.
            f.append(format!("record {i}\n").as_bytes()).unwrap();
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(path.clone()), "record 6\n");
        assert_eq!(read(dir.join("results.jsonl.1")), "record 4\nrecord 5\n");
        assert_eq!(read(dir.join("results.jsonl.2")), "record 2\nrecord 3\n");
        assert!(!dir.join("results.jsonl.3").exists());
        // keep = 0: the old records go.
        let mut f = AppendFile::open(&path, settings(10, 0)).unwrap();
        f.append(b"record 7\n").unwrap();
        assert_eq!(read(path.clone()), "record 7\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlinks_and_devices_are_refused() {
        let dir = temp_dir("symlink");
        let target = dir.join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let link = dir.join("results.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = AppendFile::open(&link, settings(0, 0))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = AppendFile::open(Path::new("/dev/null"), settings(0, 0))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/dev/null: cannot open: is a device"), "{e}");
        // A snapshot's temporary name that is a symlink is not followed either.
        let png = dir.join("000000.png");
        std::os::unix::fs::symlink(&target, dir.join(".000000.png.tmp")).unwrap();
        assert!(replace(&png, b"png", Fsync::Always).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replace_writes_whole_files_and_leaves_no_temporary() {
        let dir = temp_dir("replace");
        let path = dir.join("000001.png");
        replace(&path, b"first", Fsync::Never).unwrap();
        replace(&path, b"second", Fsync::Always).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_device_is_warned_once_and_is_no_error() {
        let mut full = FullDisk::default();
        let path = Path::new("/dev/full");
        let mut dev = OpenOptions::new().write(true).open(path).unwrap();
        for _ in 0..3 {
            let e = dev.write_all(b"x\n").and_then(|_| dev.flush()).unwrap_err();
            full.failed(path, e).unwrap();
        }
        assert_eq!(full.lost, Some(3));
        full.succeeded(path);
        assert!(!full.is_full());
        let other = io::Error::from_raw_os_error(libc::EIO);
        assert!(full.failed(path, other).is_err());
    }

    #[test]
    fn output_errors_name_the_field() {
        let parse = |text: &str| {
            toml::from_str::<OutputConfig>(text)
                .unwrap()
                .into_settings()
        };
        let s = parse("").unwrap();
        assert_eq!(s, FileSettings::default());
        assert_eq!(
            (s.rotate_bytes, s.keep, s.fsync),
            (64 << 20, 4, Fsync::Never)
        );
        let s = parse("rotate_mb = 0\nkeep = 0\nfsync = \"always\"").unwrap();
        assert_eq!((s.rotate_bytes, s.keep, s.fsync), (0, 0, Fsync::Always));
        for (text, want) in [
            (
                "keep = 1001",
                "field `output.keep` = 1001 is not within 0..=1000",
            ),
            ("rotate_mb = 2000000", "field `output.rotate_mb` = 2000000"),
            (
                "fsync = \"often\"",
                "field `output.fsync` = \"often\" is not one of",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
