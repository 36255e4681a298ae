//! Time in the browser (and Node): `Date.now()` and `setTimeout`.

use std::time::Duration;

use gloo_timers::future::TimeoutFuture;
use runtime_core::{BoxFuture, Clock, Timestamp};

/// Wall-clock time from `Date.now()`, sleeps from `setTimeout`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrowserClock;

impl Clock for BrowserClock {
    fn now(&self) -> Timestamp {
        Timestamp(js_sys::Date::now() as u64)
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        // setTimeout takes at most 2^31 - 1 ms; longer sleeps wake early and are re-checked
        // by whoever slept (the agent recomputes its deadlines).
        let millis = u32::try_from(duration.as_millis())
            .unwrap_or(u32::MAX)
            .min(i32::MAX as u32);
        Box::pin(TimeoutFuture::new(millis))
    }
}
