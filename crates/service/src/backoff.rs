//! How long to wait before the next attempt of a queued request.

use std::time::Duration;

/// Exponential backoff with full jitter: the n-th retry waits a random time
/// between zero and `min(cap, base * 2^(n-1))`, and at least what the
/// service asked for in Retry-After.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The longest wait after an item's first failed call.
    pub base: Duration,
    /// The longest wait after any call, however many failed before.
    pub cap: Duration,
    /// Calls per item in one `sync` run.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60),
            max_attempts: 5,
        }
    }
}

impl Backoff {
    /// The wait after the `attempts`-th call of an item failed.
    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let ceiling = self
            .base
            .saturating_mul(1u32 << exp)
            .min(self.cap)
            .max(Duration::from_millis(1));
        let jitter = ceiling.mul_f64(rand::random::<f64>());
        jitter.max(retry_after.unwrap_or(Duration::ZERO))
    }
}
