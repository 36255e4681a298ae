//! [`ConnectionWatch`]: the connection's state, for a UI to show and a program to wait on.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::store::StoreError;

/// The state of a [`HubStore`](super::HubStore)'s connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// The first attempt is under way.
    Connecting,
    /// Connected and authenticated.
    Connected {
        /// Who the hub says the token belongs to.
        identity: String,
    },
    /// The connection was lost (or not made); the next attempt comes after `retry_in`.
    Reconnecting {
        /// Attempts since the last success.
        attempt: u32,
        /// The delay before the next one.
        retry_in: Duration,
        /// What went wrong.
        error: String,
    },
    /// The hub refused the token: nothing is retried; every call fails.
    Failed(String),
}

#[derive(Debug)]
struct Shared {
    state: ConnectionState,
    /// Counts changes, so a watcher knows whether it saw the latest.
    version: u64,
    /// Set when the connection task is gone: the state changes no more.
    closed: bool,
    wakers: Vec<Waker>,
}

/// Watches a connection's state. Cloning gives another watcher of the same connection.
///
/// ```
/// # futures::executor::block_on(async {
/// use runtime_core::sync::{ConnectionState, ConnectionWatch};
/// let (publisher, watch) = ConnectionWatch::channel();
/// publisher.set(ConnectionState::Connected { identity: "alice".into() });
/// let state = watch.wait_for(|state| matches!(state, ConnectionState::Connected { .. })).await;
/// assert!(state.is_ok());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionWatch {
    shared: Arc<Mutex<Shared>>,
    /// The version [`ConnectionWatch::changed`] returned last.
    seen: Option<u64>,
}

/// The connection task's end of a [`ConnectionWatch`]. Dropping it tells watchers the
/// state will not change again.
#[derive(Debug)]
pub struct StatePublisher {
    shared: Arc<Mutex<Shared>>,
}

impl ConnectionWatch {
    /// A publisher and a first watcher, starting at [`ConnectionState::Connecting`].
    pub fn channel() -> (StatePublisher, ConnectionWatch) {
        let shared = Arc::new(Mutex::new(Shared {
            state: ConnectionState::Connecting,
            version: 0,
            closed: false,
            wakers: Vec::new(),
        }));
        (
            StatePublisher {
                shared: shared.clone(),
            },
            ConnectionWatch { shared, seen: None },
        )
    }

    /// The state now.
    pub fn get(&self) -> ConnectionState {
        lock(&self.shared).state.clone()
    }

    /// The first state that satisfies `done`, now or later; [`StoreError::Closed`] if the
    /// connection task ended before one did.
    pub async fn wait_for(
        &self,
        done: impl Fn(&ConnectionState) -> bool,
    ) -> Result<ConnectionState, StoreError> {
        futures::future::poll_fn(|cx| {
            let mut shared = lock(&self.shared);
            if done(&shared.state) {
                return Poll::Ready(Ok(shared.state.clone()));
            }
            if shared.closed {
                return Poll::Ready(Err(StoreError::Closed));
            }
            shared.park(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// The state once it differs from the last one this watcher returned (the first call
    /// returns the current state); `None` once it will not change again.
    pub async fn changed(&mut self) -> Option<ConnectionState> {
        let seen = self.seen;
        let (state, version) = futures::future::poll_fn(|cx| {
            let mut shared = lock(&self.shared);
            if seen.is_none_or(|seen| shared.version > seen) {
                return Poll::Ready(Some((shared.state.clone(), shared.version)));
            }
            if shared.closed {
                return Poll::Ready(None);
            }
            shared.park(cx.waker());
            Poll::Pending
        })
        .await?;
        self.seen = Some(version);
        Some(state)
    }
}

impl Shared {
    /// Remembers `waker` for the next change, once however often it is polled.
    fn park(&mut self, waker: &Waker) {
        if !self.wakers.iter().any(|parked| parked.will_wake(waker)) {
            self.wakers.push(waker.clone());
        }
    }
}

impl StatePublisher {
    /// Changes the state and wakes the watchers.
    pub fn set(&self, state: ConnectionState) {
        let wakers = {
            let mut shared = lock(&self.shared);
            shared.state = state;
            shared.version += 1;
            std::mem::take(&mut shared.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Drop for StatePublisher {
    fn drop(&mut self) {
        let wakers = {
            let mut shared = lock(&self.shared);
            shared.closed = true;
            std::mem::take(&mut shared.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // Every update is a single assignment: a panic elsewhere cannot leave it half made.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
