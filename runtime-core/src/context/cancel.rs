//! The cancellation signal a handler watches.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Why an execution is being cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// A client asked to cancel it.
    Requested,
    /// The agent is shutting down.
    Shutdown,
    /// The agent's session ended (displaced or expired); the entry is no longer its own.
    SessionEnded,
}

/// A one-way flag: once raised it stays raised, and every waiter wakes.
#[derive(Clone, Default)]
pub(crate) struct CancelSignal {
    inner: Arc<Mutex<CancelState>>,
}

#[derive(Default)]
struct CancelState {
    reason: Option<CancelReason>,
    waiters: Vec<Waker>,
}

impl CancelSignal {
    /// Raises the flag (the first reason wins) and wakes every waiter.
    pub(crate) fn cancel(&self, reason: CancelReason) {
        let waiters = {
            let mut state = self.lock();
            if state.reason.is_some() {
                return;
            }
            state.reason = Some(reason);
            std::mem::take(&mut state.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn reason(&self) -> Option<CancelReason> {
        self.lock().reason
    }

    /// Completes once the flag is raised.
    pub(crate) fn cancelled(&self) -> Cancelled {
        Cancelled {
            signal: self.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CancelState> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A future that completes when the execution is cancelled.
pub struct Cancelled {
    signal: CancelSignal,
}

impl Future for Cancelled {
    type Output = CancelReason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CancelReason> {
        let mut state = self.signal.lock();
        match state.reason {
            Some(reason) => Poll::Ready(reason),
            None => {
                if !state
                    .waiters
                    .iter()
                    .any(|waiter| waiter.will_wake(cx.waker()))
                {
                    state.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}
