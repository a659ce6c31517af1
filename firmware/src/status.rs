//! The running kith's state for `kith status`: a small JSON file that `kith run` rewrites atomically
//! (a temporary file renamed over it) once a second, and removes when it stops. It lives in the
//! runtime directory: `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=kith`, i.e. /run/kith), else
//! /run/kith for root, else `$XDG_RUNTIME_DIR/kith`; one file per board config, named after the
//! config's path, so several kiths can run side by side.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How often `kith run` rewrites its status file.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// A status file not rewritten for this long belongs to a kith that is gone or stuck.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// The ending of every status file's name.
const SUFFIX: &str = ".status.json";

/// What a running kith reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Process id of `kith run`.
    pub pid: u32,
    /// The board's `name`.
    pub board: String,
    /// The board config file it runs.
    pub board_file: PathBuf,
    /// When this was written, in milliseconds since the Unix epoch.
    pub updated_unix_ms: u64,
    /// Seconds since `kith run` started.
    pub uptime_s: f64,
    /// Frames finished since start.
    pub frames: u64,
    /// Frames finished per second over the last status interval (about a second).
    pub frames_per_s: f64,
    pub camera: CameraStatus,
    /// MQTT messages dropped because the queue to the broker was full (0 without `[mqtt]`).
    pub mqtt_dropped: u64,
    pub models: Models,
    /// Peak resident memory (VmHWM) in KiB.
    pub peak_rss_kib: u64,
    /// SIGHUP reloads applied, and the last one's outcome.
    pub reloads: u64,
    pub last_reload: Option<String>,
}

/// How the camera is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraStatus {
    /// "running" (frames arrive) or "lost" (reconnecting with back-off).
    pub state: CameraState,
    /// How many times it was lost since start.
    pub losses: u64,
    /// The last loss, if any.
    pub last_loss: Option<Loss>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    Running,
    Lost,
}

/// One camera outage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loss {
    /// When it began, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What the source said.
    pub detail: String,
    /// How long it lasted; `None` while it goes on.
    pub lasted_s: Option<f64>,
}

/// The models in use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Models {
    pub detector: Model,
    pub relation: Model,
}

/// One model file and the tract-linalg matmul kernels it runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub file: String,
    pub kernels: Vec<String>,
}

/// Why the status could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no runtime directory: RUNTIME_DIRECTORY and XDG_RUNTIME_DIR are unset and kith is not root")]
    NoRuntimeDir,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a kith status file: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no kith is running (no status file in {dirs})")]
    NotRunning { dirs: String },
    #[error("no kith is running board {board} (no {})", path.display())]
    BoardNotRunning { board: PathBuf, path: PathBuf },
    #[error("{count} kiths are running ({boards}): pass --board FILE")]
    Several { count: usize, boards: String },
}

impl StatusError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        StatusError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl Status {
    /// One line for sd_notify `STATUS=` and the journal: frames, rate, camera, drops, memory.
    pub fn summary(&self) -> String {
        let camera = match self.camera.state {
            CameraState::Running => "camera running".to_owned(),
            CameraState::Lost => "CAMERA LOST".to_owned(),
        };
        format!(
            "board \"{}\": {} frames, {:.1} frames/s, {camera} ({} losses), {} MQTT dropped, peak RSS {:.1} MiB, up {}",
            self.board,
            self.frames,
            self.frames_per_s,
            self.camera.losses,
            self.mqtt_dropped,
            self.peak_rss_kib as f64 / 1024.0,
            duration_text(self.uptime_s),
        )
    }

    /// The text `kith status` prints.
    pub fn text(&self) -> String {
        let mut t = format!(
            "kith (pid {}) running board \"{}\" ({})\n",
            self.pid,
            self.board,
            self.board_file.display()
        );
        t += &format!("  uptime    {}\n", duration_text(self.uptime_s));
        t += &format!(
            "  frames    {} ({:.1} frames/s)\n",
            self.frames, self.frames_per_s
        );
        let state = match self.camera.state {
            CameraState::Running => "running",
            CameraState::Lost => "lost (reconnecting)",
        };
        t += &format!("  camera    {state}, lost {} time(s)", self.camera.losses);
        if let Some(loss) = &self.camera.last_loss {
            let ago = (self.updated_unix_ms.saturating_sub(loss.at_unix_ms)) as f64 / 1000.0;
            t += &format!("; last loss {} ago: {}", duration_text(ago), loss.detail);
            if let Some(lasted) = loss.lasted_s {
                t += &format!(" (lasted {lasted:.1} s)");
            }
        }
        t += "\n";
        t += &format!("  mqtt      {} message(s) dropped\n", self.mqtt_dropped);
        for (role, m) in [
            ("detector", &self.models.detector),
            ("relations", &self.models.relation),
        ] {
            t += &format!("  {role:<9} {} ({})\n", m.file, m.kernels.join(", "));
        }
        t += &format!(
            "  memory    peak RSS {:.1} MiB\n",
            self.peak_rss_kib as f64 / 1024.0
        );
        t += &format!("  reloads   {}", self.reloads);
        if let Some(last) = &self.last_reload {
            t += &format!(", last: {last}");
        }
        t += "\n";
        t
    }

    /// How long ago the file was written, as of `now` (ms since the epoch).
    pub fn age(&self, now_unix_ms: u64) -> Duration {
        Duration::from_millis(now_unix_ms.saturating_sub(self.updated_unix_ms))
    }
}

/// What `kith run` counts for its status between two writes.
#[derive(Debug)]
pub struct Tracker {
    started: Instant,
    frames: u64,
    /// Start and frame count of the current frames/s window.
    window: (Instant, u64),
    frames_per_s: f64,
    camera: CameraStatus,
    lost_since: Option<Instant>,
    reloads: u64,
    last_reload: Option<String>,
    /// Whether [`Tracker::due`] said yes before (the first call always does).
    started_writing: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    /// Counting from now.
    pub fn new() -> Self {
        let now = Instant::now();
        Tracker {
            started: now,
            frames: 0,
            window: (now, 0),
            frames_per_s: 0.0,
            camera: CameraStatus {
                state: CameraState::Running,
                losses: 0,
                last_loss: None,
            },
            lost_since: None,
            reloads: 0,
            last_reload: None,
            started_writing: false,
        }
    }

    /// A frame finished.
    pub fn frame(&mut self) {
        self.frames += 1;
        self.camera_back();
    }

    /// The camera was lost (only the first report of an outage counts).
    pub fn camera_lost(&mut self, detail: &str) {
        if self.lost_since.is_none() {
            self.lost_since = Some(Instant::now());
            self.camera.state = CameraState::Lost;
            self.camera.losses += 1;
            self.camera.last_loss = Some(Loss {
                at_unix_ms: now_unix_ms(),
                detail: detail.to_owned(),
                lasted_s: None,
            });
        }
    }

    /// Frames come again.
    pub fn camera_back(&mut self) {
        if let Some(since) = self.lost_since.take() {
            self.camera.state = CameraState::Running;
            if let Some(loss) = &mut self.camera.last_loss {
                loss.lasted_s = Some(since.elapsed().as_secs_f64());
            }
        }
    }

    /// A SIGHUP reload was handled; `outcome` is its log line.
    pub fn reloaded(&mut self, outcome: String) {
        self.reloads += 1;
        self.last_reload = Some(outcome);
    }

    /// Whether a status write is due (at once, then every [`WRITE_EVERY`]); when it is, the
    /// frames/s window restarts.
    pub fn due(&mut self) -> bool {
        let (since, frames) = self.window;
        let elapsed = since.elapsed();
        if !self.started_writing {
            self.started_writing = true;
            return true;
        }
        if elapsed < WRITE_EVERY {
            return false;
        }
        self.frames_per_s = (self.frames - frames) as f64 / elapsed.as_secs_f64();
        self.window = (Instant::now(), self.frames);
        true
    }

    /// The status now, for `board` (its name and file), `models` and `mqtt_dropped`.
    pub fn status(&self, board: (&str, &Path), models: Models, mqtt_dropped: u64) -> Status {
        Status {
            pid: std::process::id(),
            board: board.0.to_owned(),
            board_file: std::path::absolute(board.1).unwrap_or_else(|_| board.1.to_owned()),
            updated_unix_ms: now_unix_ms(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            frames: self.frames,
            frames_per_s: self.frames_per_s,
            camera: self.camera.clone(),
            mqtt_dropped,
            models,
            peak_rss_kib: peak_rss_kib(),
            reloads: self.reloads,
            last_reload: self.last_reload.clone(),
        }
    }
}

/// "1 h 02 min", "3 min 05 s", "4.2 s".
fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0);
    let whole = s as u64;
    if whole >= 3600 {
        format!("{} h {:02} min", whole / 3600, whole % 3600 / 60)
    } else if whole >= 60 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{s:.1} s")
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This process's peak resident memory in KiB (`VmHWM` of /proc/self/status; 0 where there is none).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// This process's effective user id (the second value of `Uid:` in /proc/self/status).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// Where `kith run` writes its status: `$RUNTIME_DIRECTORY` (the first, if systemd gives several),
/// else /run/kith for root, else `$XDG_RUNTIME_DIR/kith`.
pub fn write_dir() -> Result<PathBuf, StatusError> {
    if let Some(dir) = runtime_directory() {
        return Ok(dir);
    }
    if effective_uid() == Some(0) {
        return Ok(PathBuf::from("/run/kith"));
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("kith"))
        .ok_or(StatusError::NoRuntimeDir)
}

/// Where `kith status` looks: `$RUNTIME_DIRECTORY` alone when it is set, else /run/kith (the
/// service's) and then `$XDG_RUNTIME_DIR/kith` (the user's own kith).
pub fn read_dirs() -> Vec<PathBuf> {
    if let Some(dir) = runtime_directory() {
        return vec![dir];
    }
    let mut dirs = vec![PathBuf::from("/run/kith")];
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d).join("kith"));
    }
    dirs
}

fn runtime_directory() -> Option<PathBuf> {
    let dirs = std::env::var_os("RUNTIME_DIRECTORY")?;
    let first = dirs.to_string_lossy().split(':').next()?.to_owned();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

/// The status file's name for `board`: its absolute path with `/` turned into `-`.
pub fn file_name(board: &Path) -> String {
    let absolute = std::path::absolute(board).unwrap_or_else(|_| board.to_owned());
    let path = std::fs::canonicalize(&absolute).unwrap_or(absolute);
    let escaped: String = path
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .collect();
    format!("{escaped}{SUFFIX}")
}

/// The status file of one running kith, rewritten atomically.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    temp: PathBuf,
}

impl StatusFile {
    /// The status file for `board` in `dir` (created if missing).
    pub fn create(dir: &Path, board: &Path) -> Result<Self, StatusError> {
        std::fs::create_dir_all(dir).map_err(|e| StatusError::io(dir, e))?;
        let path = dir.join(file_name(board));
        let temp = dir.join(format!(".{}.{}.tmp", file_name(board), std::process::id()));
        Ok(StatusFile { path, temp })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `status` (written to a temporary file, then renamed over it).
    pub fn write(&self, status: &Status) -> Result<(), StatusError> {
        let json = serde_json::to_vec(status).map_err(|e| StatusError::Parse {
            path: self.path.clone(),
            source: e,
        })?;
        std::fs::write(&self.temp, json).map_err(|e| StatusError::io(&self.temp, e))?;
        std::fs::rename(&self.temp, &self.path).map_err(|e| StatusError::io(&self.path, e))
    }

    /// Removes the file: kith is stopping.
    pub fn remove(&self) -> Result<(), StatusError> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StatusError::io(&self.path, e))
            }
            _ => Ok(()),
        }
    }
}

/// Reads the status of the kith running `board`, or with `None`, of the one kith running.
pub fn read(board: Option<&Path>) -> Result<Status, StatusError> {
    let dirs = read_dirs();
    if let Some(board) = board {
        let name = file_name(board);
        let path = dirs
            .iter()
            .map(|d| d.join(&name))
            .find(|p| p.exists())
            .ok_or_else(|| StatusError::BoardNotRunning {
                board: board.to_owned(),
                path: dirs[0].join(&name),
            })?;
        return read_file(&path);
    }
    let mut found = vec![];
    for dir in &dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(SUFFIX) && !name.starts_with('.') {
                found.push(entry.path());
            }
        }
    }
    match &found[..] {
        [] => Err(StatusError::NotRunning {
            dirs: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" or "),
        }),
        [one] => read_file(one),
        several => Err(StatusError::Several {
            count: several.len(),
            boards: several
                .iter()
                .filter_map(|p| read_file(p).ok())
                .map(|s| s.board_file.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn read_file(path: &Path) -> Result<Status, StatusError> {
    let bytes = std::fs::read(path).map_err(|e| StatusError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| StatusError::Parse {
        path: path.to_owned(),
        source: e,
    })
}

/// Whether process `pid` exists.
pub fn is_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
            pid: 42,
            board: "pi".into(),
            board_file: "/etc/kith/kith.toml".into(),
            updated_unix_ms: 10_000,
            uptime_s: 3725.0,
            frames: 7,
            frames_per_s: 6.94,
            camera: CameraStatus {
                state: CameraState::Lost,
                losses: 2,
                last_loss: Some(Loss {
                    at_unix_ms: 7_000,
                    detail: "/dev/video0: camera lost: gone".into(),
                    lasted_s: None,
                }),
            },
            mqtt_dropped: 0,
            models: Models {
                detector: Model {
                    file: "d.onnx".into(),
                    kernels: vec!["k1".into()],
                },
                relation: Model {
                    file: "r.onnx".into(),
                    kernels: vec!["k2".into(), "k3".into()],
                },
            },
            peak_rss_kib: 2048,
            reloads: 1,
            last_reload: Some("applied: detector thresholds".into()),
        }
    }

    #[test]
    fn a_status_file_is_replaced_whole_and_read_back() {
        let dir = std::env::temp_dir().join(format!("kith-status-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = StatusFile::create(&dir, Path::new("/etc/kith/kith.toml")).unwrap();
        assert_eq!(
            file.path().file_name().unwrap(),
            "etc-kith-kith.toml.status.json"
        );
        let mut status = sample();
        file.write(&status).unwrap();
        status.frames = 8;
        file.write(&status).unwrap();
        assert_eq!(read_file(file.path()).unwrap(), status);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
        file.remove().unwrap();
        file.remove().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn texts_say_what_is_going_on() {
        let s = sample();
        assert_eq!(
            s.summary(),
            "board \"pi\": 7 frames, 6.9 frames/s, CAMERA LOST (2 losses), 0 MQTT dropped, peak RSS 2.0 MiB, up 1 h 02 min"
        );
        let text = s.text();
        assert!(
            text.contains("camera    lost (reconnecting), lost 2 time(s); last loss 3.0 s ago"),
            "{text}"
        );
        assert!(text.contains("relations r.onnx (k2, k3)"), "{text}");
        assert_eq!(s.age(12_500), Duration::from_millis(2_500));
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        assert!(peak_rss_kib() > 0);
    }
}
