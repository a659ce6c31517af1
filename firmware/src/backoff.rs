//! Capped exponential back-off between attempts to reopen a lost device (a camera, or a display
//! that is not there yet).

use std::time::{Duration, Instant};

use crate::service::StopFlag;

/// The first and the longest delay between two attempts to reopen a lost camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub min: Duration,
    pub max: Duration,
}

/// When the next reconnection attempt may be made; the delay doubles per failed attempt up to
/// [`Retry::max`].
#[derive(Debug, Clone)]
pub struct Backoff {
    retry: Retry,
    next_delay: Duration,
    retry_at: Option<Instant>,
}

impl Backoff {
    pub fn new(retry: Retry) -> Self {
        Backoff {
            retry,
            next_delay: retry.min,
            retry_at: None,
        }
    }

    /// Schedules the next attempt and returns how far away it is.
    pub fn schedule(&mut self) -> Duration {
        let delay = self.next_delay;
        self.next_delay = (delay * 2).min(self.retry.max);
        self.retry_at = Some(Instant::now() + delay);
        delay
    }

    /// Sleeps until the scheduled attempt (waking on a stop request); `false` if stopped.
    pub fn wait(&self, stop: &StopFlag) -> bool {
        let left = self.retry_at.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        });
        stop.sleep(left)
    }

    /// Whether the scheduled attempt is due (or none was scheduled), without waiting.
    pub fn due(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    /// Forgets the failed attempts: the camera works again.
    pub fn reset(&mut self) {
        self.next_delay = self.retry.min;
        self.retry_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(Retry {
            min: ms(250),
            max: ms(1500),
        });
        let delays: Vec<_> = (0..5).map(|_| b.schedule()).collect();
        assert_eq!(delays, [ms(250), ms(500), ms(1000), ms(1500), ms(1500)]);
        b.reset();
        assert_eq!(b.schedule(), ms(250));
    }

    #[test]
    fn wait_sleeps_until_the_attempt_or_a_stop() {
        let mut b = Backoff::new(Retry {
            min: Duration::from_millis(30),
            max: Duration::from_secs(60),
        });
        let stop = StopFlag::new();
        b.schedule();
        let start = Instant::now();
        assert!(b.wait(&stop));
        assert!(start.elapsed() >= Duration::from_millis(25));
        for _ in 0..3 {
            b.schedule();
        }
        stop.request();
        assert!(!b.wait(&stop), "a stop request ends the wait");
        assert!(!b.due(), "the attempt is seconds away");
        b.reset();
        assert!(b.due(), "nothing scheduled");
    }
}
