//! [`ExecutionHandler`]: the pluggable part that actually runs things, and combinators
//! that wrap any handler, in the style of tower layers.
//!
//! Anything that takes an [`ExecutionContext`] and resolves to a
//! `Result<impl Into<Outcome>, ExecutionError>` is a handler, async closures included.
//!
//! - [`Timeout`]: ends a handler that runs too long as `timed_out`, cancelling it first.
//! - [`OutputLimit`]: caps the bytes a handler may write, with a visible marker.
//! - [`Redact`]: masks secrets in everything a handler writes.
//! - [`Fallback`]: runs a secondary handler when the primary could not have done anything.
//! - [`Echo`]: the reference handler.
//!
//! [`HandlerExt`] chains them:
//!
//! ```
//! use std::time::Duration;
//! use runtime_core::handler::{Echo, HandlerExt, Redactor};
//! use runtime_core::ManualClock;
//!
//! let clock = ManualClock::default();
//! let handler = Echo::new(clock.clone())
//!     .redact(Redactor::new().literal("hunter2"))
//!     .limit_output(1 << 20)
//!     .timeout(Duration::from_secs(30), clock);
//! # fn takes(_: impl runtime_core::ExecutionHandler) {}
//! # takes(handler);
//! ```

mod echo;
mod fallback;
mod limit;
mod redact;
mod timeout;

use std::future::Future;
use std::time::Duration;

pub use echo::Echo;
pub use fallback::{Fallback, FallbackMode, ParseFallbackModeError};
pub use limit::OutputLimit;
pub use redact::{MAX_HELD, Redact, Redactor};
pub use timeout::Timeout;

use crate::clock::Clock;
use crate::context::{ExecutionContext, OutputError};
use crate::maybe_send::{MaybeSend, MaybeSync};
use crate::schema::MediaBundle;

/// What a handler returns when it finishes normally.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// A result value to show, committed once (unless the handler already set one).
    pub result: Option<MediaBundle>,
}

impl From<()> for Outcome {
    fn from((): ()) -> Self {
        Outcome::default()
    }
}

impl From<MediaBundle> for Outcome {
    fn from(result: MediaBundle) -> Self {
        Outcome {
            result: Some(result),
        }
    }
}

impl From<Option<MediaBundle>> for Outcome {
    fn from(result: Option<MediaBundle>) -> Self {
        Outcome { result }
    }
}

/// How a handler reports that an execution did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecutionError {
    /// The code failed. Shown as an error output (unless the handler showed one) and
    /// recorded as status `error`.
    #[error("{ename}: {evalue}")]
    Failed {
        /// The error's name, e.g. `ValueError`.
        ename: String,
        /// Its message.
        evalue: String,
        /// Traceback lines.
        traceback: Vec<String>,
    },
    /// The handler stopped because it was cancelled; recorded as `cancelled`.
    #[error("cancelled")]
    Cancelled,
    /// The handler ran out of time; recorded as `timed_out`.
    #[error("timed out after {}", crate::clock::format_duration(*.0))]
    TimedOut(Duration),
    /// The handler could not start (a program that does not exist, a service that refused
    /// the connection): nothing ran, so nothing had side effects. Recorded as `error`;
    /// [`Fallback`] may try another handler.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Writing an output failed.
    #[error(transparent)]
    Output(#[from] OutputError),
}

impl ExecutionError {
    /// A failure with an error name and message.
    pub fn new(ename: impl Into<String>, evalue: impl Into<String>) -> Self {
        ExecutionError::Failed {
            ename: ename.into(),
            evalue: evalue.into(),
            traceback: Vec::new(),
        }
    }

    /// A failure with just a message (named `Error`).
    pub fn msg(evalue: impl Into<String>) -> Self {
        Self::new("Error", evalue)
    }
}

/// Runs one execution.
///
/// # Example
///
/// ```
/// use runtime_core::{ExecutionContext, ExecutionError, ExecutionHandler, Outcome, MediaBundle};
///
/// struct Echo;
///
/// #[async_trait::async_trait]
/// impl ExecutionHandler for Echo {
///     async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
///         Ok(MediaBundle::plain(format!("Echo: {}", ctx.source())).into())
///     }
/// }
///
/// // A closure is a handler too.
/// fn takes(_: impl ExecutionHandler) {}
/// takes(|ctx: ExecutionContext| async move {
///     ctx.stdout(ctx.source())?;
///     Ok(())
/// });
/// takes(Echo);
/// ```
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait ExecutionHandler: MaybeSend + MaybeSync {
    /// Runs the execution described by `ctx`, writing outputs through it.
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError>;
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl<F, Fut, O> ExecutionHandler for F
where
    F: Fn(ExecutionContext) -> Fut + MaybeSend + MaybeSync,
    Fut: Future<Output = Result<O, ExecutionError>> + MaybeSend,
    O: Into<Outcome>,
{
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        (self)(ctx).await.map(Into::into)
    }
}

/// An `Arc<dyn ExecutionHandler>` is a handler: pick one at run time from configuration.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl<H: ExecutionHandler + ?Sized> ExecutionHandler for std::sync::Arc<H> {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        (**self).execute(ctx).await
    }
}

/// Wraps handlers in the combinators of this module.
pub trait HandlerExt: ExecutionHandler + Sized {
    /// See [`Timeout`].
    fn timeout(self, after: Duration, clock: impl Clock + 'static) -> Timeout<Self> {
        Timeout::new(self, after, clock)
    }

    /// See [`OutputLimit`].
    fn limit_output(self, bytes: u64) -> OutputLimit<Self> {
        OutputLimit::new(self, bytes)
    }

    /// See [`Redact`].
    fn redact(self, redactor: Redactor) -> Redact<Self> {
        Redact::new(self, redactor)
    }

    /// See [`Fallback`]: this handler first, `secondary` when this one could not have
    /// done anything.
    fn or_fallback<S: ExecutionHandler>(self, secondary: S) -> Fallback<Self, S> {
        Fallback::new(self, secondary)
    }
}

impl<H: ExecutionHandler> HandlerExt for H {}
