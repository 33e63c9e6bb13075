//! Jittered exponential back-off, so agents that lost their collector together do not all
//! come back in the same second (a reconnection storm).
use std::time::Duration;

/// The delay before the first retry; doubled per failure up to [`Backoff::max`].
const FIRST: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
pub struct Backoff {
    failures: u32,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Backoff { failures: 0, max }
    }

    /// After a success: the next failure starts from the first delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay before the next attempt: `min(max, FIRST * 2^failures)` scaled by a random
    /// factor in [0.5, 1).
    pub fn next_delay(&mut self) -> Duration {
        let exponent = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let ceiling = FIRST.saturating_mul(1 << exponent).min(self.max);
        jitter(ceiling)
    }
}

/// `delay` scaled by a random factor in [0.5, 1).
pub fn jitter(delay: Duration) -> Duration {
    let mut bytes = [0u8; 2];
    // Without randomness the delay is still bounded, only not spread.
    let random = match fim_engine::platform::random_bytes(&mut bytes) {
        Ok(()) => u16::from_le_bytes(bytes),
        Err(_) => u16::MAX / 2,
    };
    let factor = 0.5 + f64::from(random) / (2.0 * (f64::from(u16::MAX) + 1.0));
    delay.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling_and_stay_jittered() {
        let mut backoff = Backoff::new(Duration::from_secs(4));
        let ceilings = [500, 1000, 2000, 4000, 4000];
        for ceiling in ceilings {
            let delay = backoff.next_delay();
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                delay >= ceiling / 2 && delay < ceiling,
                "{delay:?} vs {ceiling:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() < FIRST);
    }
}
