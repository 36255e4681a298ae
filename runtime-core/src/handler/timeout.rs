//! [`Timeout`]: a deadline around any handler.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, pin_mut, select_biased};

use super::{ExecutionError, ExecutionHandler, Outcome};
use crate::clock::{Clock, format_duration};
use crate::context::{CancelReason, ExecutionContext};

/// Ends an execution that runs longer than `after` as `timed_out`.
///
/// At the deadline the inner handler sees its context cancelled (reason
/// [`CancelReason::TimedOut`]) and gets a grace period (5 s unless set) to stop: a process
/// backend uses it to stop its process group. A handler still running after the grace is
/// dropped. Either way the execution ends `timed_out`, unless the execution itself was
/// cancelled meanwhile, which stays `cancelled`.
///
/// ```
/// use std::time::Duration;
/// use runtime_core::{ManualClock, handler::{Echo, Timeout}};
///
/// let clock = ManualClock::default();
/// let handler = Timeout::new(Echo::new(clock.clone()), Duration::from_secs(10), clock)
///     .grace(Duration::from_secs(1));
/// # fn takes(_: impl runtime_core::ExecutionHandler) {}
/// # takes(handler);
/// ```
pub struct Timeout<H> {
    inner: H,
    after: Duration,
    grace: Duration,
    clock: Arc<dyn Clock>,
}

impl<H> Timeout<H> {
    /// `inner`, ended after `after` as measured by `clock`.
    pub fn new(inner: H, after: Duration, clock: impl Clock + 'static) -> Self {
        Timeout {
            inner,
            after,
            grace: Duration::from_secs(5),
            clock: Arc::new(clock),
        }
    }

    /// How long the inner handler may take to stop once its time is up.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl<H: ExecutionHandler> ExecutionHandler for Timeout<H> {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        let (scoped, scope) = ctx.with_cancel_scope();
        let run = self.inner.execute(scoped).fuse();
        let deadline = self.clock.sleep(self.after).fuse();
        pin_mut!(run, deadline);
        select_biased! {
            returned = run => return returned,
            () = deadline => {}
        }
        scope.cancel(CancelReason::TimedOut);
        tracing::info!(after = %format_duration(self.after), "timed out; stopping the handler");
        let grace = self.clock.sleep(self.grace).fuse();
        pin_mut!(grace);
        select_biased! {
            _ = run => {}
            () = grace => {
                tracing::warn!(
                    grace = %format_duration(self.grace),
                    "the timed-out handler did not stop; dropped it"
                );
            }
        }
        if ctx.is_cancelled() {
            return Err(ExecutionError::Cancelled);
        }
        Err(ExecutionError::TimedOut(self.after))
    }
}
