//! Time, injected.
//!
//! The core never reads the system clock (`Instant::now` and `SystemTime::now` panic on
//! `wasm32-unknown-unknown`) and never sleeps by itself. Adapters pass a [`Clock`]: tokio's
//! timer natively, `setTimeout` in a browser. [`ManualClock`] moves only when told to, which
//! makes tests and simulations deterministic.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::maybe_send::{BoxFuture, MaybeSend, MaybeSync};

/// A duration for people, in the unit `runtime_native::config::parse_duration` reads back:
/// `"10 min"`, `"90 s"`, `"500 ms"`, `"250 µs"`. Integer arithmetic only: formatting
/// floats would add their code to every build, the browser's included.
///
/// ```
/// use std::time::Duration;
/// use runtime_core::clock::format_duration;
///
/// assert_eq!(format_duration(Duration::from_secs(600)), "10 min");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1500 ms");
/// assert_eq!(format_duration(Duration::from_micros(250)), "250 µs");
/// ```
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if !nanos.is_multiple_of(1_000_000) {
        format!("{} µs", duration.as_micros())
    } else if nanos != 0 {
        format!("{} ms", duration.as_millis())
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// A point in time: milliseconds since the Unix epoch, as carried in event payloads.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// This time plus `duration`, saturating instead of overflowing.
    pub fn saturating_add(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(millis(duration)))
    }

    /// The time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Whole milliseconds of a duration, saturating at `u64::MAX`.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The source of time for an agent: the current time and a way to wait.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use runtime_core::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new(Timestamp(1_000));
/// let sleep = clock.sleep(Duration::from_millis(50));
/// clock.advance(Duration::from_millis(50));
/// futures::executor::block_on(sleep); // ready: the clock has reached its deadline
/// assert_eq!(clock.now(), Timestamp(1_050));
/// ```
pub trait Clock: MaybeSend + MaybeSync {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// A future that completes once `duration` has passed.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        (**self).sleep(duration)
    }
}

/// A clock that moves only when [`advance`](ManualClock::advance) or
/// [`set`](ManualClock::set) is called. Clones share the same time.
#[derive(Clone, Default)]
pub struct ManualClock {
    inner: Arc<Mutex<ManualInner>>,
}

#[derive(Default)]
struct ManualInner {
    now: Timestamp,
    next_id: u64,
    /// Sleepers by (deadline, id), so the earliest deadline comes first.
    sleepers: BTreeMap<(Timestamp, u64), Waker>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        let clock = Self::default();
        clock.lock().now = start;
        clock
    }

    /// Moves the clock forward by `duration` and wakes every sleeper that is due.
    pub fn advance(&self, duration: Duration) {
        let to = self.lock().now.saturating_add(duration);
        self.set(to);
    }

    /// Moves the clock to `to` (never backwards) and wakes every sleeper that is due.
    pub fn set(&self, to: Timestamp) {
        let due: Vec<Waker> = {
            let mut inner = self.lock();
            inner.now = inner.now.max(to);
            let first_not_due = (Timestamp(inner.now.0.saturating_add(1)), 0);
            let later = inner.sleepers.split_off(&first_not_due);
            std::mem::replace(&mut inner.sleepers, later)
                .into_values()
                .collect()
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// The earliest deadline anyone is sleeping until, if any.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.lock()
            .sleepers
            .keys()
            .next()
            .map(|(deadline, _)| *deadline)
    }

    fn lock(&self) -> MutexGuard<'_, ManualInner> {
        // A panic while holding this lock cannot leave the time inconsistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.lock().now
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let deadline = self.now().saturating_add(duration);
        Box::pin(ManualSleep {
            clock: self.clone(),
            deadline,
            id: None,
        })
    }
}

struct ManualSleep {
    clock: ManualClock,
    deadline: Timestamp,
    id: Option<u64>,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let mut inner = self.clock.lock();
        if inner.now >= deadline {
            return Poll::Ready(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                inner.next_id += 1;
                inner.next_id
            }
        };
        inner.sleepers.insert((deadline, id), cx.waker().clone());
        drop(inner);
        self.id = Some(id);
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.clock.lock().sleepers.remove(&(self.deadline, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn sleep_completes_only_when_the_clock_reaches_its_deadline() {
        let clock = ManualClock::new(Timestamp(10));
        let mut sleep = clock.sleep(Duration::from_millis(5));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(Duration::from_millis(4));
        assert!((&mut sleep).now_or_never().is_none());
        assert_eq!(clock.next_deadline(), Some(Timestamp(15)));
        clock.advance(Duration::from_millis(1));
        assert!(sleep.now_or_never().is_some());
        assert_eq!(clock.next_deadline(), None);
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn dropped_sleepers_are_forgotten_and_time_never_goes_back() {
        let clock = ManualClock::new(Timestamp(100));
        let mut sleep = clock.sleep(Duration::from_millis(5));
        assert!((&mut sleep).now_or_never().is_none());
        drop(sleep);
        assert_eq!(clock.next_deadline(), None);
        clock.set(Timestamp(50));
        assert_eq!(clock.now(), Timestamp(100));
    }
}
