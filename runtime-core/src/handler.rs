//! [`ExecutionHandler`]: the pluggable part that actually runs things.
//!
//! Anything that takes an [`ExecutionContext`] and resolves to a
//! `Result<impl Into<Outcome>, ExecutionError>` is a handler, async closures included.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use crate::clock::Clock;
use crate::context::{ExecutionContext, OutputError};
use crate::maybe_send::{MaybeSend, MaybeSync};
use crate::schema::{CellType, MediaBundle};

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
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
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

/// The echo runtime's handler, the reference every adapter's demo uses.
///
/// - Code, SQL and raw cells answer `Echo: <source>` as a result.
/// - AI cells answer in markdown streamed in a few appends, the way a model's answer arrives.
/// - A first line `%sleep <seconds>` makes it wait that long first, cancellably: a slow cell
///   for trying out cancel. `%block <seconds>` waits ignoring cancel, to see the agent's
///   cancel grace at work.
///
/// ```
/// use runtime_core::{ManualClock, handler::Echo};
/// fn takes(_: impl runtime_core::ExecutionHandler) {}
/// takes(Echo::new(ManualClock::default()));
/// ```
pub struct Echo {
    clock: Arc<dyn Clock>,
}

impl Echo {
    /// An echo handler that sleeps on `clock`.
    pub fn new(clock: impl Clock + 'static) -> Self {
        Echo {
            clock: Arc::new(clock),
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl ExecutionHandler for Echo {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        if let Some((seconds, cancellable)) = sleep_magic(ctx.source())? {
            ctx.stdout(format!("sleeping {seconds} s\n"))?;
            let sleep = self.clock.sleep(Duration::from_secs_f64(seconds)).fuse();
            let cancelled = ctx.cancelled().fuse();
            futures::pin_mut!(sleep, cancelled);
            if !cancellable {
                sleep.await;
            } else {
                futures::select_biased! {
                    _ = cancelled => return Err(ExecutionError::Cancelled),
                    () = sleep => {}
                }
            }
        }
        if ctx.cell_type() != CellType::Ai {
            return Ok(MediaBundle::plain(format!("Echo: {}", ctx.source())).into());
        }
        let answer = ctx.markdown("**Echo:**")?;
        let words: Vec<&str> = ctx.source().split_whitespace().collect();
        for chunk in words.chunks(words.len().div_ceil(3).max(1)) {
            // Yield so each chunk is committed as it comes, like a streamed answer.
            yield_now().await;
            ctx.append_markdown(&answer, format!(" {}", chunk.join(" ")))?;
        }
        Ok(Outcome::default())
    }
}

/// The seconds of a leading `%sleep <seconds>` (cancellable) or `%block <seconds>` line.
fn sleep_magic(source: &str) -> Result<Option<(f64, bool)>, ExecutionError> {
    let first = source.lines().next().unwrap_or_default().trim();
    let (magic, rest, cancellable) =
        match (first.strip_prefix("%sleep"), first.strip_prefix("%block")) {
            (Some(rest), _) => ("%sleep", rest, true),
            (_, Some(rest)) => ("%block", rest, false),
            _ => return Ok(None),
        };
    match rest.trim().parse::<f64>() {
        Ok(seconds) if (0.0..=86_400.0).contains(&seconds) => Ok(Some((seconds, cancellable))),
        _ => {
            let message = format!(
                "{magic} takes seconds from 0 to 86400, got {:?}",
                rest.trim()
            );
            Err(ExecutionError::new("UsageError", message))
        }
    }
}

/// Lets other futures (the output writer) run once.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}
