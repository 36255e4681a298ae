//! [`Fallback`]: a secondary handler for when the primary could not have done anything.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use super::{ExecutionError, ExecutionHandler, Outcome};
use crate::context::{ExecutionContext, OutputLayer, OutputType};

/// Which of a [`Fallback`]'s two handlers may run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FallbackMode {
    /// The primary; the secondary only when the primary could not have done anything.
    #[default]
    Auto,
    /// Only the primary.
    PrimaryOnly,
    /// Only the secondary.
    SecondaryOnly,
}

/// A fallback mode that is not `auto`, `primary-only` or `secondary-only`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of auto, primary-only, secondary-only; got {0:?}")]
pub struct ParseFallbackModeError(String);

impl FromStr for FallbackMode {
    type Err = ParseFallbackModeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(FallbackMode::Auto),
            "primary-only" => Ok(FallbackMode::PrimaryOnly),
            "secondary-only" => Ok(FallbackMode::SecondaryOnly),
            other => Err(ParseFallbackModeError(other.to_owned())),
        }
    }
}

/// Runs `primary`; in [`FallbackMode::Auto`] runs `secondary` instead only when the primary
/// **could not start**: it returned [`ExecutionError::Unavailable`]. Nothing of the request
/// ran, so running it elsewhere cannot do anything twice.
///
/// Two opt-ins widen that, at a risk the configuration accepts: a primary that ran and
/// then failed or printed nothing may still have had side effects (a job that charged a card
/// and then failed before printing), and the secondary does them again.
///
/// - [`after_silent_failure`](Self::after_silent_failure): also when the primary failed
///   ([`ExecutionError::Failed`]) before writing any output;
/// - [`empty_is_failure`](Self::empty_is_failure): also when it succeeded without writing
///   any output or result.
///
/// Never after the primary wrote an output, never after it timed out or was cancelled, and
/// never while it may still be running: the primary's future has returned before the
/// secondary starts.
///
/// The completion's metadata says what happened, under `fallback`:
/// `{"ran": "secondary", "fellBack": true, "reason": "..."}` (names from
/// [`names`](Self::names)), and a tracing event says the same.
///
/// ```
/// use runtime_core::{ExecutionContext, ExecutionError, handler::{Fallback, FallbackMode}};
///
/// let sdk = |_ctx: ExecutionContext| async move {
///     Err::<(), _>(ExecutionError::Unavailable("the SDK is not installed".into()))
/// };
/// let cli = |ctx: ExecutionContext| async move { ctx.stdout("ran by the CLI\n").map_err(ExecutionError::from) };
/// let handler = Fallback::new(sdk, cli)
///     .mode(FallbackMode::Auto)
///     .names("sdk", "cli");
/// # fn takes(_: impl runtime_core::ExecutionHandler) {}
/// # takes(handler);
/// ```
pub struct Fallback<P, S> {
    primary: P,
    secondary: S,
    mode: FallbackMode,
    names: (String, String),
    after_silent_failure: bool,
    empty_is_failure: bool,
}

impl<P, S> Fallback<P, S> {
    /// `primary`, then `secondary` when allowed; mode [`FallbackMode::Auto`].
    pub fn new(primary: P, secondary: S) -> Self {
        Fallback {
            primary,
            secondary,
            mode: FallbackMode::Auto,
            names: ("primary".to_owned(), "secondary".to_owned()),
            after_silent_failure: false,
            empty_is_failure: false,
        }
    }

    /// Which handlers may run.
    pub fn mode(mut self, mode: FallbackMode) -> Self {
        self.mode = mode;
        self
    }

    /// The names the metadata and logs use for the two handlers.
    pub fn names(mut self, primary: impl Into<String>, secondary: impl Into<String>) -> Self {
        self.names = (primary.into(), secondary.into());
        self
    }

    /// Whether a primary that failed before writing any output falls back too. Off by
    /// default: it ran, and may have had effects the secondary would repeat.
    pub fn after_silent_failure(mut self, after_silent_failure: bool) -> Self {
        self.after_silent_failure = after_silent_failure;
        self
    }

    /// Whether a primary that succeeded without any output counts as failed (and falls
    /// back). Off by default, for the same reason as
    /// [`after_silent_failure`](Self::after_silent_failure).
    pub fn empty_is_failure(mut self, empty_is_failure: bool) -> Self {
        self.empty_is_failure = empty_is_failure;
        self
    }

    /// Why the primary's end allows the secondary to run, if it does.
    fn fallback_reason(
        &self,
        returned: &Result<Outcome, ExecutionError>,
        wrote: bool,
    ) -> Option<String> {
        match returned {
            Err(ExecutionError::Unavailable(why)) => Some(format!("could not start: {why}")),
            Err(error @ ExecutionError::Failed { .. }) if self.after_silent_failure && !wrote => {
                Some(format!("failed before any output: {error}"))
            }
            Ok(outcome) if self.empty_is_failure && !wrote && outcome.result.is_none() => {
                Some("succeeded without any output".to_owned())
            }
            _ => None,
        }
    }
}

/// Notes whether anything was written through it.
#[derive(Default)]
struct Wrote(AtomicBool);

impl OutputLayer for Wrote {
    fn on_output(&self, _kind: OutputType) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl<P: ExecutionHandler, S: ExecutionHandler> ExecutionHandler for Fallback<P, S> {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        let (primary, secondary) = (&self.names.0, &self.names.1);
        match self.mode {
            FallbackMode::PrimaryOnly => {
                ctx.annotate("fallback", json!({"ran": primary, "fellBack": false}));
                return self.primary.execute(ctx).await;
            }
            FallbackMode::SecondaryOnly => {
                ctx.annotate("fallback", json!({"ran": secondary, "fellBack": false}));
                return self.secondary.execute(ctx).await;
            }
            FallbackMode::Auto => {}
        }
        ctx.annotate("fallback", json!({"ran": primary, "fellBack": false}));
        let wrote = Arc::new(Wrote::default());
        let returned = self.primary.execute(ctx.with_layer(wrote.clone())).await;
        let reason = match self.fallback_reason(&returned, wrote.0.load(Ordering::Relaxed)) {
            Some(reason) if !ctx.is_cancelled() => reason,
            _ => {
                tracing::debug!(backend = %primary, fell_back = false, "ran the primary");
                return returned;
            }
        };
        // The reason can quote what the primary said (a URL with a key in it): it goes to
        // the completion's metadata, where redaction applies, not into the log.
        tracing::warn!(backend = %secondary, fell_back = true, "the primary {primary} could not run; falling back (the completion's metadata says why)");
        ctx.annotate(
            "fallback",
            json!({"ran": secondary, "fellBack": true, "reason": reason}),
        );
        self.secondary.execute(ctx).await
    }
}
