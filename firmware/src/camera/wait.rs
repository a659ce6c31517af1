//! Waiting for a camera's file descriptor without ever blocking a stop request or starving
//! systemd's watchdog: `poll` in slices of at most [`STOP_POLL`], looking at the [`StopFlag`] (which
//! feeds the watchdog) between them, so a pipe with no writer or a long `timeout_ms` is safe.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::service::{StopFlag, STOP_POLL};

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Data can be read, or the other end hung up (a read then returns 0).
    Ready,
    /// The descriptor reported an error (POLLERR / POLLNVAL), e.g. an unplugged V4L2 device.
    Error,
    /// Nothing happened within the timeout.
    TimedOut,
    /// A stop was requested.
    Stopped,
}

/// Waits until `fd` is readable, `timeout` has passed (`None`: no limit) or `stop` is set.
pub fn wait_readable(
    fd: BorrowedFd<'_>,
    stop: &StopFlag,
    timeout: Option<Duration>,
) -> io::Result<Wait> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if stop.waiting() {
            return Ok(Wait::Stopped);
        }
        let slice = match deadline {
            Some(end) => {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Wait::TimedOut);
                }
                left.min(STOP_POLL)
            }
            None => STOP_POLL,
        };
        // Rounded up so a sub-millisecond rest does not spin.
        let ms = u16::try_from(slice.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {
                let revents = fds[0].revents().unwrap_or(PollFlags::empty());
                if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
                    return Ok(Wait::Ready);
                }
                if revents.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL) {
                    return Ok(Wait::Error);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reports_data_timeout_and_stop() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let stop = StopFlag::new();
        let t = Duration::from_millis(30);
        assert_eq!(
            wait_readable(b.as_fd(), &stop, Some(t)).unwrap(),
            Wait::TimedOut
        );
        a.write_all(b"x").unwrap();
        assert_eq!(
            wait_readable(b.as_fd(), &stop, Some(t)).unwrap(),
            Wait::Ready
        );
        stop.request();
        assert_eq!(
            wait_readable(b.as_fd(), &stop, None).unwrap(),
            Wait::Stopped
        );
    }

    #[test]
    fn an_endless_wait_ends_on_a_stop_request() {
        let (_a, b) = UnixStream::pair().unwrap();
        let stop = StopFlag::new();
        let other = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.request();
        });
        let start = Instant::now();
        assert_eq!(
            wait_readable(b.as_fd(), &stop, None).unwrap(),
            Wait::Stopped
        );
        assert!(start.elapsed() < Duration::from_secs(1));
        t.join().unwrap();
    }
}
