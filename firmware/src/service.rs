//! The process's life: SIGINT and SIGTERM set a stop flag that every loop and every wait in kith
//! checks, so kith stops within a second in any state (loading the models, capturing, waiting for
//! a lost camera, between the two models of a frame, drawing); SIGHUP asks for the board config to
//! be re-read; and, under systemd (`Type=notify`), the readiness, status and watchdog
//! notifications that let systemd restart a stalled pipeline. Every wait that looks at the stop
//! flag also feeds the watchdog, so no wait, however long the config lets it be, starves it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a wait sleeps before it looks at the stop flag again.
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// A stop request shared by the signal handlers and the loops; cheap to clone. Waits call
/// [`StopFlag::sleep`] or [`StopFlag::waiting`] at least every [`STOP_POLL`], which also feeds
/// the watchdog attached with [`StopFlag::with_watchdog`].
#[derive(Debug, Clone, Default)]
pub struct StopFlag {
    stop: Arc<AtomicBool>,
    watchdog: Option<Watchdog>,
}

impl StopFlag {
    /// A flag that only [`StopFlag::request`] sets.
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag that SIGINT and SIGTERM set.
    pub fn on_signals() -> std::io::Result<Self> {
        let flag = Self::new();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&flag.stop))?;
        }
        Ok(flag)
    }

    /// The same flag, whose waits also feed `watchdog`.
    pub fn with_watchdog(mut self, watchdog: Watchdog) -> Self {
        self.watchdog = Some(watchdog);
        self
    }

    /// Asks every loop holding this flag to stop.
    pub fn request(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The flag itself, for the pipeline's check between its two models (kith-runtime knows no
    /// firmware types).
    pub fn shared(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// One slice of a wait: feeds the watchdog (a wait is kith working as designed) and tells
    /// whether a stop was asked for.
    pub fn waiting(&self) -> bool {
        if let Some(watchdog) = &self.watchdog {
            watchdog.feed_from_wait();
        }
        self.is_set()
    }

    /// Sleeps for `duration`, waking early on a stop request; returns `false` if stopped.
    pub fn sleep(&self, duration: Duration) -> bool {
        let end = Instant::now() + duration;
        loop {
            if self.waiting() {
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

/// Ends the process at once on SIGINT/SIGTERM while armed: while the models load (seconds on a
/// small board, and nothing is written yet) no loop is there to look at the [`StopFlag`].
#[derive(Debug)]
pub struct StartupExit(Arc<AtomicBool>);

impl StartupExit {
    /// Armed: a SIGINT or SIGTERM from now on exits with status 0 until [`StartupExit::disarm`].
    pub fn arm() -> std::io::Result<Self> {
        let armed = Arc::new(AtomicBool::new(true));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(signal, 0, Arc::clone(&armed))?;
        }
        Ok(StartupExit(armed))
    }

    /// Start-up is over: from now on the signals only set the stop flag.
    pub fn disarm(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A SIGHUP not yet acted on: re-read the board config.
#[derive(Debug, Clone, Default)]
pub struct ReloadRequest(Arc<AtomicBool>);

impl ReloadRequest {
    /// A request that SIGHUP sets.
    pub fn on_sighup() -> std::io::Result<Self> {
        let request = Self::default();
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&request.0))?;
        Ok(request)
    }

    /// Whether a SIGHUP came since the last call.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// systemd's notification socket could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot notify systemd at NOTIFY_SOCKET={socket}: {detail}")]
pub struct NotifyError {
    pub socket: String,
    pub detail: String,
}

/// `WATCHDOG=1` pings, at most once per quarter of systemd's watchdog timeout; cheap to clone and
/// shared by the frame loop and every wait.
#[derive(Debug, Clone)]
pub struct Watchdog(Arc<WatchdogState>);

#[derive(Debug)]
struct WatchdogState {
    socket: String,
    every: Duration,
    last_ping: Mutex<Option<Instant>>,
}

impl Watchdog {
    /// Sends `WATCHDOG=1` unless one went out less than a quarter of the timeout ago.
    pub fn feed(&self) -> Result<(), NotifyError> {
        let state = &self.0;
        // A poisoned lock only means a ping panicked half-way; the instant inside is still valid.
        let mut last = state.last_ping.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < state.every) {
            return Ok(());
        }
        send(&state.socket, &[sd_notify::NotifyState::Watchdog])?;
        *last = Some(Instant::now());
        Ok(())
    }

    /// [`Watchdog::feed`] from inside a wait, which has no error path to systemd: a failure is
    /// logged (the frame loop's next ping reports it as an error).
    fn feed_from_wait(&self) {
        if let Err(e) = self.feed() {
            log::warn!("{e}");
        }
    }

    /// The watchdog timeout systemd set (`WatchdogSec=`).
    pub fn timeout(&self) -> Duration {
        self.0.every * 4
    }
}

/// Tells systemd how kith is doing: `READY=1` once the models are loaded, `STATUS=` lines,
/// `WATCHDOG=1` from the frame loop and every wait (a pipeline that stops stepping stops the
/// pings, and systemd restarts kith after `WatchdogSec=`), `STOPPING=1` on the way out. A no-op when `NOTIFY_SOCKET` is unset, i.e. when
/// kith was not started by systemd.
#[derive(Debug)]
pub struct Notifier {
    /// `NOTIFY_SOCKET`, when set.
    socket: Option<String>,
    /// The pings, when systemd asked for them (`WATCHDOG_USEC` for this process).
    watchdog: Option<Watchdog>,
}

impl Notifier {
    /// A notifier for the socket and watchdog timeout systemd passed in the environment.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").map(|s| s.to_string_lossy().into_owned());
        let watchdog =
            socket
                .clone()
                .zip(sd_notify::watchdog_enabled())
                .map(|(socket, timeout)| {
                    Watchdog(Arc::new(WatchdogState {
                        socket,
                        every: timeout / 4,
                        last_ping: Mutex::new(None),
                    }))
                });
        Notifier { socket, watchdog }
    }

    /// Whether systemd expects watchdog pings from this process.
    pub fn watchdog_enabled(&self) -> bool {
        self.watchdog.is_some()
    }

    /// The pings, to hand to the waits ([`StopFlag::with_watchdog`]).
    pub fn watchdog(&self) -> Option<Watchdog> {
        self.watchdog.clone()
    }

    /// Start-up is done (models loaded, devices open): `READY=1` with a status line.
    pub fn ready(&mut self, status: &str) -> Result<(), NotifyError> {
        let status = one_line(status);
        self.send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ])
    }

    /// What `systemctl status` shows on its "Status:" line (made one line).
    pub fn status(&mut self, status: &str) -> Result<(), NotifyError> {
        let status = one_line(status);
        self.send(&[sd_notify::NotifyState::Status(&status)])
    }

    /// The loop is alive: `WATCHDOG=1`, at most once per quarter of the watchdog timeout. Call it
    /// after every step of the frame loop; waits feed it through the [`StopFlag`].
    pub fn alive(&mut self) -> Result<(), NotifyError> {
        match &self.watchdog {
            Some(watchdog) => watchdog.feed(),
            None => Ok(()),
        }
    }

    /// kith is shutting down: `STOPPING=1`.
    pub fn stopping(&mut self) -> Result<(), NotifyError> {
        self.send(&[sd_notify::NotifyState::Stopping])
    }

    fn send(&self, states: &[sd_notify::NotifyState]) -> Result<(), NotifyError> {
        match &self.socket {
            None => Ok(()),
            Some(socket) => send(socket, states),
        }
    }
}

fn send(socket: &str, states: &[sd_notify::NotifyState]) -> Result<(), NotifyError> {
    sd_notify::notify(states).map_err(|e| NotifyError {
        socket: socket.to_owned(),
        detail: e.to_string(),
    })
}

/// `text` on one line: a newline (from a board name, say) would end the `STATUS=` field and start
/// a notify variable of its own.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
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
    fn a_status_stays_one_line() {
        assert_eq!(
            one_line("board \"a\nWATCHDOG=1\""),
            "board \"a WATCHDOG=1\""
        );
    }

    #[test]
    fn reload_requests_are_taken_once() {
        let request = ReloadRequest::default();
        assert!(!request.take());
        request.0.store(true, Ordering::SeqCst);
        assert!(request.take());
        assert!(!request.take());
    }

    #[test]
    fn sleep_runs_its_time_without_request() {
        let flag = StopFlag::new();
        assert!(flag.sleep(Duration::from_millis(20)));
        assert!(!flag.is_set());
    }
}
