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
    /// A [`Timeout`](crate::handler::Timeout) around the handler ran out; the execution
    /// will end `timed_out`.
    TimedOut,
}

/// A one-way flag: once raised it stays raised, and every waiter wakes. A child flag
/// (see [`child`](Self::child)) is also raised whenever its parent is.
#[derive(Clone, Default)]
pub(crate) struct CancelSignal {
    inner: Arc<Mutex<CancelState>>,
    parent: Option<Arc<CancelSignal>>,
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

    /// A flag raised by its own [`cancel`](Self::cancel) or by this one's.
    pub(crate) fn child(&self) -> CancelSignal {
        CancelSignal {
            inner: Arc::default(),
            parent: Some(Arc::new(self.clone())),
        }
    }

    /// This flag's reason, or the nearest raised ancestor's.
    pub(crate) fn reason(&self) -> Option<CancelReason> {
        let own = self.lock().reason;
        own.or_else(|| self.parent.as_ref().and_then(|parent| parent.reason()))
    }

    /// Completes once the flag is raised.
    pub(crate) fn cancelled(&self) -> Cancelled {
        Cancelled {
            signal: self.clone(),
        }
    }

    /// Ready with the reason once raised; otherwise registers `waker` here and on every
    /// ancestor.
    fn poll_reason(&self, waker: &Waker) -> Poll<CancelReason> {
        {
            let mut state = self.lock();
            if let Some(reason) = state.reason {
                return Poll::Ready(reason);
            }
            if !state.waiters.iter().any(|waiter| waiter.will_wake(waker)) {
                state.waiters.push(waker.clone());
            }
        }
        match &self.parent {
            Some(parent) => parent.poll_reason(waker),
            None => Poll::Pending,
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
        self.signal.poll_reason(cx.waker())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_child_is_raised_by_its_parent_but_not_the_other_way_round() {
        let parent = CancelSignal::default();
        let child = parent.child();
        child.cancel(CancelReason::TimedOut);
        assert_eq!(parent.reason(), None);
        assert_eq!(child.reason(), Some(CancelReason::TimedOut));

        let other = parent.child();
        let mut waiting = other.cancelled();
        assert!((&mut waiting).now_or_never().is_none());
        parent.cancel(CancelReason::Requested);
        assert_eq!(waiting.now_or_never(), Some(CancelReason::Requested));
        assert_eq!(other.reason(), Some(CancelReason::Requested));
        // The child's own reason, raised first, wins.
        assert_eq!(child.reason(), Some(CancelReason::TimedOut));
    }
}
