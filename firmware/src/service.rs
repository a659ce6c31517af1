//! The process's life: SIGINT and SIGTERM set a stop flag that every loop and every wait in kith
//! checks, so kith stops within a second in any state (capturing, waiting for a lost camera,
//! drawing); and, under systemd (`Type=notify`), the readiness and watchdog notifications that
//! let systemd restart a stalled pipeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a wait sleeps before it looks at the stop flag again.
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// A stop request shared by the signal handlers and the loops; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag that only [`StopFlag::request`] sets.
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag that SIGINT and SIGTERM set.
    pub fn on_signals() -> std::io::Result<Self> {
        let flag = Self::new();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&flag.0))?;
        }
        Ok(flag)
    }

    /// Asks every loop holding this flag to stop.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration`, waking early on a stop request; returns `false` if stopped.
    pub fn sleep(&self, duration: Duration) -> bool {
        let end = Instant::now() + duration;
        loop {
            if self.is_set() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(STOP_POLL));
        }
    }
}

/// systemd's notification socket could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot notify systemd at NOTIFY_SOCKET={socket}: {detail}")]
pub struct NotifyError {
    pub socket: String,
    pub detail: String,
}

/// Tells systemd how kith is doing: `READY=1` once the models are loaded, `WATCHDOG=1` from the
/// frame loop (a pipeline that stops stepping stops the pings, and systemd restarts kith after
/// `WatchdogSec=`), `STOPPING=1` on the way out. A no-op when `NOTIFY_SOCKET` is unset, i.e. when
/// kith was not started by systemd.
#[derive(Debug)]
pub struct Notifier {
    /// `NOTIFY_SOCKET`, when set.
    socket: Option<String>,
    /// The shortest time between two watchdog pings, when systemd asked for them
    /// (`WATCHDOG_USEC` for this process): a quarter of the watchdog timeout.
    ping_every: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Notifier {
    /// A notifier for the socket and watchdog timeout systemd passed in the environment.
    pub fn from_env() -> Self {
        Notifier {
            socket: std::env::var_os("NOTIFY_SOCKET").map(|s| s.to_string_lossy().into_owned()),
            ping_every: sd_notify::watchdog_enabled().map(|timeout| timeout / 4),
            last_ping: None,
        }
    }

    /// Whether systemd expects watchdog pings from this process.
    pub fn watchdog_enabled(&self) -> bool {
        self.socket.is_some() && self.ping_every.is_some()
    }

    /// Start-up is done (models loaded, devices open): `READY=1` with a status line.
    pub fn ready(&mut self, status: &str) -> Result<(), NotifyError> {
        self.send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ])
    }

    /// The loop is alive: `WATCHDOG=1`, at most once per quarter of the watchdog timeout. Call it
    /// after every step of the frame loop, and while waiting for a lost camera (a lost camera is
    /// kith working as designed; a stalled pipeline is not).
    pub fn alive(&mut self) -> Result<(), NotifyError> {
        let Some(every) = self.ping_every.filter(|_| self.socket.is_some()) else {
            return Ok(());
        };
        if self.last_ping.is_some_and(|last| last.elapsed() < every) {
            return Ok(());
        }
        self.send(&[sd_notify::NotifyState::Watchdog])?;
        self.last_ping = Some(Instant::now());
        Ok(())
    }

    /// kith is shutting down: `STOPPING=1`.
    pub fn stopping(&mut self) -> Result<(), NotifyError> {
        self.send(&[sd_notify::NotifyState::Stopping])
    }

    fn send(&self, states: &[sd_notify::NotifyState]) -> Result<(), NotifyError> {
        match &self.socket {
            None => Ok(()),
            Some(socket) => sd_notify::notify(states).map_err(|e| NotifyError {
                socket: socket.clone(),
                detail: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_wakes_on_request() {
        let flag = StopFlag::new();
        let other = flag.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.request();
        });
        let start = Instant::now();
        assert!(!flag.sleep(Duration::from_secs(30)));
        assert!(start.elapsed() < Duration::from_secs(2));
        t.join().unwrap();
    }

    #[test]
    fn sleep_runs_its_time_without_request() {
        let flag = StopFlag::new();
        assert!(flag.sleep(Duration::from_millis(20)));
        assert!(!flag.is_set());
    }
}
