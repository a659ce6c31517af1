//! Levelled logs for kith's binaries (`kith`, `kith-bench`, `kith-model`). The libraries only use
//! the `log` macros; [`init`] sends the records to the systemd journal, with their priorities,
//! when stderr is the journal stream systemd gave the service, and otherwise to stderr as one line
//! each: `kith: error: ...`, `kith: warning: ...`, `kith: ...` (info), `kith: debug: ...`.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use log::{Level, LevelFilter, Log, Metadata, Record, SetLoggerError};
use systemd_journal_logger::JournalLog;

/// How much is logged: kith's own records at the chosen level; other crates' (tract's) only when
/// verbose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Errors only (`--quiet`).
    Quiet,
    /// Errors, warnings and notices (the default).
    Normal,
    /// Everything down to debug (`-v`), and other crates' notices too.
    Verbose,
}

impl Verbosity {
    /// The most detailed level shown for records of kith's crates.
    fn own(self) -> LevelFilter {
        match self {
            Verbosity::Quiet => LevelFilter::Error,
            Verbosity::Normal => LevelFilter::Info,
            Verbosity::Verbose => LevelFilter::Debug,
        }
    }

    /// The most detailed level shown for records of other crates.
    fn others(self) -> LevelFilter {
        match self {
            Verbosity::Quiet | Verbosity::Normal => LevelFilter::Off,
            Verbosity::Verbose => LevelFilter::Info,
        }
    }
}

/// Where the records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The systemd journal, with the records' priorities (`journalctl -u kith`).
    Journal,
    /// One line per record on stderr.
    Stderr,
}

impl Sink {
    /// The journal when `journal_stream` (the value of `JOURNAL_STREAM`, `DEVICE:INODE`) names the
    /// file `stderr` is, as systemd.exec(5) documents; stderr otherwise (a terminal, a pipe, or a
    /// child that inherited the variable but not the stream). The same test as
    /// `systemd_journal_logger::connected_to_journal`, with its inputs given so it can be tested.
    pub fn choose(journal_stream: Option<&OsStr>, stderr: impl AsFd) -> Sink {
        let Some(stream) = journal_stream.and_then(OsStr::to_str) else {
            return Sink::Stderr;
        };
        let metadata = stderr
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .and_then(|file| file.metadata());
        match metadata {
            Ok(m) if stream == format!("{}:{}", m.dev(), m.ino()) => Sink::Journal,
            _ => Sink::Stderr,
        }
    }

    /// The choice for this process, from its environment and its stderr.
    pub fn of_process() -> Sink {
        Sink::choose(
            std::env::var_os("JOURNAL_STREAM").as_deref(),
            std::io::stderr(),
        )
    }
}

/// Whether `target` (a module path) is in one of kith's crates.
fn is_own(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    krate == "kith" || krate.starts_with("kith_")
}

/// The stderr line of a record of `program`.
fn line(program: &str, level: Level, message: &fmt::Arguments) -> String {
    match level {
        Level::Error => format!("{program}: error: {message}"),
        Level::Warn => format!("{program}: warning: {message}"),
        Level::Info => format!("{program}: {message}"),
        Level::Debug => format!("{program}: debug: {message}"),
        Level::Trace => format!("{program}: trace: {message}"),
    }
}

/// The installed logger.
struct Logger {
    program: &'static str,
    verbosity: Verbosity,
    /// Set when the sink is the journal and its socket could be made.
    journal: Option<JournalLog>,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let max = if is_own(metadata.target()) {
            self.verbosity.own()
        } else {
            self.verbosity.others()
        };
        metadata.level() <= max
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // A record the journal did not take still goes to stderr, which systemd also collects.
        if let Some(journal) = &self.journal {
            if journal.journal_send(record).is_ok() {
                return;
            }
        }
        let text = line(self.program, record.level(), record.args());
        // Nowhere left to report a failed write to stderr.
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger of `program` (the name its stderr lines start with and its syslog
/// identifier in the journal); call once, first thing in `main`. Returns where the records go.
pub fn init(program: &'static str, verbosity: Verbosity) -> Result<Sink, SetLoggerError> {
    let sink = Sink::of_process();
    let journal = match sink {
        Sink::Journal => JournalLog::new()
            .ok()
            .map(|j| j.with_syslog_identifier(program.to_owned())),
        Sink::Stderr => None,
    };
    log::set_boxed_logger(Box::new(Logger {
        program,
        verbosity,
        journal,
    }))?;
    log::set_max_level(verbosity.own().max(verbosity.others()));
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of its own and its `DEVICE:INODE`, as systemd would write it in `JOURNAL_STREAM`.
    fn stream() -> (std::fs::File, String) {
        let path = std::env::temp_dir().join(format!("kith-journal-stream-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let m = file.metadata().unwrap();
        (file, format!("{}:{}", m.dev(), m.ino()))
    }

    #[test]
    fn the_journal_only_when_the_variable_names_stderr() {
        let (file, id) = stream();
        assert_eq!(Sink::choose(Some(OsStr::new(&id)), &file), Sink::Journal);
        assert_eq!(Sink::choose(None, &file), Sink::Stderr);
        // A child that inherited JOURNAL_STREAM but writes its stderr elsewhere.
        let (other, other_id) = stream();
        assert_ne!(id, other_id);
        assert_eq!(Sink::choose(Some(OsStr::new(&id)), &other), Sink::Stderr);
        for wrong in ["", "garbage", "0:0", &format!("{id}0")] {
            assert_eq!(
                Sink::choose(Some(OsStr::new(wrong)), &file),
                Sink::Stderr,
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn stderr_lines_keep_the_program_prefix_and_the_level_word() {
        let line = |level| line("kith", level, &format_args!("camera /dev/video0: gone"));
        assert_eq!(line(Level::Error), "kith: error: camera /dev/video0: gone");
        assert_eq!(line(Level::Warn), "kith: warning: camera /dev/video0: gone");
        assert_eq!(line(Level::Info), "kith: camera /dev/video0: gone");
        assert_eq!(line(Level::Debug), "kith: debug: camera /dev/video0: gone");
    }

    #[test]
    fn other_crates_show_only_when_verbose() {
        let logger = |verbosity| Logger {
            program: "kith",
            verbosity,
            journal: None,
        };
        let at = |target, level| Metadata::builder().target(target).level(level).build();
        let normal = logger(Verbosity::Normal);
        assert!(normal.enabled(&at("kith::session", Level::Info)));
        assert!(normal.enabled(&at("kith_runtime::model", Level::Warn)));
        assert!(!normal.enabled(&at("kith_runtime::model", Level::Debug)));
        assert!(!normal.enabled(&at("tract_linalg::x86_64", Level::Warn)));
        assert!(!normal.enabled(&at("kithara", Level::Warn)));
        let quiet = logger(Verbosity::Quiet);
        assert!(quiet.enabled(&at("kith", Level::Error)));
        assert!(!quiet.enabled(&at("kith", Level::Warn)));
        let verbose = logger(Verbosity::Verbose);
        assert!(verbose.enabled(&at("kith_bench", Level::Debug)));
        assert!(!verbose.enabled(&at("kith_bench", Level::Trace)));
        assert!(verbose.enabled(&at("tract_core::optim", Level::Info)));
        assert!(!verbose.enabled(&at("tract_core::optim", Level::Debug)));
    }
}
