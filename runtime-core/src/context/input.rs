//! Input requests: a handler asks for a line, a client answers through the log, and the
//! agent hands the answer to the waiting handler.

use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use crate::context::OutputError;
use crate::schema::InputId;
use crate::sealed::SealError;

/// Why [`ExecutionContext::input`](crate::ExecutionContext::input) got no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// The execution was cancelled while it waited (the handler should stop, as for any
    /// cancel).
    #[error("cancelled while waiting for input")]
    Cancelled,
    /// The request could not be written (the execution has finished, or the store failed).
    #[error("the input request could not be written: {0}")]
    Output(#[from] OutputError),
    /// A password request needs a one-time key, and the system gave no randomness.
    #[error("a password cannot be asked for safely: {0}")]
    Seal(#[from] SealError),
}

impl From<InputError> for crate::ExecutionError {
    fn from(error: InputError) -> Self {
        match error {
            InputError::Cancelled => crate::ExecutionError::Cancelled,
            InputError::Output(error) => crate::ExecutionError::Output(error),
            InputError::Seal(error) => crate::ExecutionError::new("InputError", error.to_string()),
        }
    }
}

/// The one reply a running execution waits for, delivered by the agent from the log.
#[derive(Default)]
pub(crate) struct InputMailbox {
    state: Mutex<MailboxState>,
}

#[derive(Default)]
struct MailboxState {
    /// The request waited for (the newest: it replaces an earlier one).
    waiting: Option<InputId>,
    reply: Option<String>,
    waker: Option<Waker>,
}

impl InputMailbox {
    fn lock(&self) -> MutexGuard<'_, MailboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, waits for the reply to `input_id` (set before the request is written,
    /// so a reply cannot come first).
    pub(crate) fn expect(&self, input_id: InputId) {
        let mut state = self.lock();
        state.waiting = Some(input_id);
        state.reply = None;
    }

    /// The agent saw `value` answer `input_id` in the log: hands it over if that is the
    /// request waited for (a repeated delivery, or one for an older request, does nothing).
    pub(crate) fn deliver(&self, input_id: &InputId, value: &str) {
        let mut state = self.lock();
        if state.waiting.as_ref() != Some(input_id) || state.reply.is_some() {
            return;
        }
        state.reply = Some(value.to_owned());
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
    }

    /// Waits for the reply to `input_id`; the mailbox is then empty again.
    pub(crate) async fn reply(&self, input_id: &InputId) -> String {
        poll_fn(|cx| {
            let mut state = self.lock();
            if state.waiting.as_ref() == Some(input_id)
                && let Some(reply) = state.reply.take()
            {
                state.waiting = None;
                return Poll::Ready(reply);
            }
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}
