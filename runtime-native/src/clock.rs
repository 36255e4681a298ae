//! The real clock: system time for timestamps, tokio's timer for sleeping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runtime_core::{BoxFuture, Clock, Timestamp};

/// Wall-clock time and tokio sleeps. Needs a tokio runtime with the time driver.
///
/// ```
/// use runtime_core::Clock;
/// use runtime_native::TokioClock;
///
/// assert!(TokioClock.now().as_millis() > 1_700_000_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}
