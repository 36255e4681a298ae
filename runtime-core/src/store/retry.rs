//! [`Retrying`]: a store that rides out transient failures of the store it wraps.
//!
//! A commit that fails with a [retriable](StoreError::is_retriable) error is tried again
//! with the same [`Batch`] (so the same batch id: a store that had committed it returns the
//! original sequence number instead of a second copy), after a backoff that doubles up to a
//! cap. A subscription that fails the same way is reopened from the sequence number after
//! the last entry it yielded, so its reader sees neither a gap nor a repeat. Each operation
//! gives up after [`RetryPolicy::give_up_after`] and returns the last error; a permanent
//! error is returned at once.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{Batch, LogEntry, Store, StoreError, Subscription};
use crate::clock::{Clock, format_duration};
use crate::state::{Seq, Snapshot, SnapshotKind};

/// How [`Retrying`] retries.
///
/// ```
/// use std::time::Duration;
/// use runtime_core::RetryPolicy;
///
/// let policy = RetryPolicy::giving_up_after(Duration::from_secs(30));
/// assert_eq!(policy.initial_backoff, Duration::from_millis(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles after each one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// How long one operation keeps trying before it returns the last error.
    pub give_up_after: Duration,
}

impl RetryPolicy {
    /// Backoff from 10 ms doubling to 1 s, giving up after `give_up_after`.
    pub fn giving_up_after(give_up_after: Duration) -> Self {
        Self {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            give_up_after,
        }
    }
}

/// One operation's retries: when it first failed and how long to wait next.
struct Attempts {
    policy: RetryPolicy,
    first_failure: Option<crate::clock::Timestamp>,
    backoff: Duration,
}

impl Attempts {
    fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            first_failure: None,
            backoff: policy.initial_backoff,
        }
    }

    /// After `error`: the wait before the next attempt, or `None` to give up.
    fn after(&mut self, error: &StoreError, clock: &dyn Clock, what: &str) -> Option<Duration> {
        if !error.is_retriable() {
            return None;
        }
        let now = clock.now();
        let first = *self.first_failure.get_or_insert(now);
        let failing_for = now.saturating_since(first);
        if failing_for + self.backoff > self.policy.give_up_after {
            tracing::warn!(%error, failing_for = %format_duration(failing_for), "{what} kept failing; giving up");
            return None;
        }
        if failing_for.is_zero() {
            tracing::warn!(%error, retry_in = %format_duration(self.backoff), "{what} failed; retrying");
        } else {
            tracing::debug!(%error, retry_in = %format_duration(self.backoff), "{what} failed again; retrying");
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.policy.max_backoff);
        Some(wait)
    }

    fn succeeded(&mut self) {
        if self.first_failure.take().is_some() {
            tracing::info!("the store is back");
        }
        self.backoff = self.policy.initial_backoff;
    }
}

/// A store that retries what the store it wraps fails to do for now. Agents wrap their
/// store in one; any client that prefers waiting to failing can too.
///
/// ```
/// use std::time::Duration;
/// use runtime_core::{CellDeleted, ManualClock, MemoryStore, RetryPolicy, Retrying, Store};
///
/// # futures::executor::block_on(async {
/// let store = Retrying::new(MemoryStore::new(), ManualClock::default(), RetryPolicy::giving_up_after(Duration::from_secs(30)));
/// assert_eq!(store.commit(vec![CellDeleted { cell_id: "c".into() }.into()]).await?, 1);
/// # Ok::<(), runtime_core::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Retrying {
    inner: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
}

impl Retrying {
    /// Wraps `inner`, waiting on `clock` between attempts.
    pub fn new(
        inner: impl Store + 'static,
        clock: impl Clock + 'static,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(inner),
            clock: Arc::new(clock),
            policy,
        }
    }

    /// The wrapped store, for what must not be retried (a last best-effort commit).
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for Retrying {
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError> {
        let mut attempts = Attempts::new(self.policy);
        loop {
            match self.inner.commit_batch(batch).await {
                Err(error) => match attempts.after(&error, &*self.clock, "a commit") {
                    Some(wait) => self.clock.sleep(wait).await,
                    None => return Err(error),
                },
                Ok(seq) => {
                    attempts.succeeded();
                    return Ok(seq);
                }
            }
        }
    }

    async fn head(&self) -> Result<Seq, StoreError> {
        let mut attempts = Attempts::new(self.policy);
        loop {
            match self.inner.head().await {
                Err(error) => match attempts.after(&error, &*self.clock, "reading the head") {
                    Some(wait) => self.clock.sleep(wait).await,
                    None => return Err(error),
                },
                Ok(head) => {
                    attempts.succeeded();
                    return Ok(head);
                }
            }
        }
    }

    /// Not retried: a snapshot is a cache, and a reader without one folds the log.
    async fn latest_snapshot(&self, kind: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        self.inner.latest_snapshot(kind).await
    }

    /// Not retried: a snapshot is a cache, and the next one will do.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }

    fn keeps_snapshots(&self) -> bool {
        self.inner.keeps_snapshots()
    }

    fn subscribe(&self, from: Seq) -> Subscription {
        let resuming = Resuming {
            subscription: self.inner.subscribe(from),
            store: self.inner.clone(),
            clock: self.clock.clone(),
            next: from.max(1),
            attempts: Attempts::new(self.policy),
        };
        Box::pin(futures::stream::unfold(
            resuming,
            |mut resuming| async move {
                let item = resuming.next_entry().await?;
                Some((item, resuming))
            },
        ))
    }
}

/// A subscription that reopens itself after a retriable error.
struct Resuming {
    subscription: Subscription,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// The sequence number of the next entry to yield.
    next: Seq,
    attempts: Attempts,
}

impl Resuming {
    async fn next_entry(&mut self) -> Option<Result<LogEntry, StoreError>> {
        loop {
            match self.subscription.next().await? {
                Ok(entry) if entry.seq < self.next => {} // seen before a reopen
                Ok(entry) => {
                    self.attempts.succeeded();
                    self.next = entry.seq + 1;
                    return Some(Ok(entry));
                }
                Err(error) => match self.attempts.after(&error, &*self.clock, "reading the log") {
                    Some(wait) => {
                        self.clock.sleep(wait).await;
                        self.subscription = self.store.subscribe(self.next);
                    }
                    None => return Some(Err(error)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::FutureExt;

    use super::*;
    use crate::clock::{ManualClock, Timestamp};
    use crate::schema::CellDeleted;

    /// Fails every commit with `error`, counting attempts.
    struct Failing {
        error: StoreError,
        attempts: Arc<AtomicUsize>,
    }

    #[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
    #[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
    impl Store for Failing {
        async fn commit_batch(&self, _batch: &Batch) -> Result<Seq, StoreError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            Err(self.error.clone())
        }

        fn subscribe(&self, _from: Seq) -> Subscription {
            Box::pin(futures::stream::empty())
        }
    }

    /// Commits through `Retrying` over a store failing with `error`, moving the clock to
    /// each wait's end; returns the result, the attempts and the time it took.
    fn commit_failing(error: StoreError) -> (Result<Seq, StoreError>, usize, Duration) {
        let clock = ManualClock::new(Timestamp(0));
        let attempts = Arc::new(AtomicUsize::new(0));
        let store = Retrying::new(
            Failing {
                error,
                attempts: attempts.clone(),
            },
            clock.clone(),
            RetryPolicy::giving_up_after(Duration::from_secs(5)),
        );
        let mut commit = Box::pin(store.commit(vec![
                CellDeleted {
                    cell_id: "c".into(),
                }
                .into(),
            ]));
        let result = loop {
            if let Some(result) = commit.as_mut().now_or_never() {
                break result;
            }
            clock.advance(Duration::from_millis(10));
        };
        let took = clock.now().saturating_since(Timestamp(0));
        (result, attempts.load(Ordering::SeqCst), took)
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn a_retriable_error_is_retried_until_the_limit_then_returned() {
        let (result, attempts, took) = commit_failing(StoreError::Unavailable("busy".into()));
        assert_eq!(result, Err(StoreError::Unavailable("busy".into())));
        assert!(attempts > 5, "{attempts} attempts");
        assert!(took <= Duration::from_secs(5), "gave up after {took:?}");
        assert!(
            took >= Duration::from_secs(3),
            "gave up early, after {took:?}"
        );
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn a_permanent_error_is_returned_at_once() {
        let (result, attempts, took) = commit_failing(StoreError::Backend("corrupt".into()));
        assert_eq!(result, Err(StoreError::Backend("corrupt".into())));
        assert_eq!((attempts, took), (1, Duration::ZERO));
    }
}
