//! The echo runtime's handler.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use super::{ExecutionError, ExecutionHandler, Outcome};
use crate::clock::Clock;
use crate::context::ExecutionContext;
use crate::schema::{CellType, MediaBundle};

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
            // Each chunk is committed as it comes, like a streamed answer.
            ctx.flush().await?;
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
