//! [`OutputLimit`]: a byte cap around any handler.

use super::{ExecutionError, ExecutionHandler, Outcome};
use crate::context::ExecutionContext;

/// Caps what the inner handler may write at `bytes` (text bytes; rich outputs by their
/// JSON size). Output past the cap is discarded and one visible marker on stderr says so;
/// the execution itself goes on and ends as the handler says. The agent's own
/// `max_output_bytes`, if lower, still applies.
///
/// ```
/// use runtime_core::{ManualClock, handler::{Echo, OutputLimit}};
///
/// let handler = OutputLimit::new(Echo::new(ManualClock::default()), 64 * 1024);
/// # fn takes(_: impl runtime_core::ExecutionHandler) {}
/// # takes(handler);
/// ```
pub struct OutputLimit<H> {
    inner: H,
    bytes: u64,
}

impl<H> OutputLimit<H> {
    /// `inner`, allowed `bytes` of output per execution.
    pub fn new(inner: H, bytes: u64) -> Self {
        OutputLimit { inner, bytes }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl<H: ExecutionHandler> ExecutionHandler for OutputLimit<H> {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        ctx.limit_output(self.bytes);
        self.inner.execute(ctx).await
    }
}
