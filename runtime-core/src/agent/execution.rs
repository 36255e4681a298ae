//! One execution: the handler and the output writer, driven together, ending with one
//! truthful completion event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, pin_mut, select_biased};
use tracing::Instrument;

use crate::clock::{Clock, Timestamp, format_duration, millis};
use crate::context::{CancelReason, CancelSignal, ExecutionContext, OutputError, OutputSink};
use crate::handler::{ExecutionError, ExecutionHandler, Outcome};
use crate::maybe_send::BoxFuture;
use crate::schema::{
    CompletionStatus, ExecutionCompleted, RuntimeSessionStatusChanged, SessionStatus,
};
use crate::store::{Store, StoreError};

/// How an execution ended, as the agent learns it.
pub(crate) struct ExecutionReport {
    pub(crate) status: CompletionStatus,
    pub(crate) error: Option<String>,
    pub(crate) store_error: Option<StoreError>,
    /// The completion's commit also said the session is idle.
    pub(crate) said_idle: bool,
}

/// What an execution needs besides its context.
pub(crate) struct ExecutionSetup {
    pub(crate) handler: Arc<dyn ExecutionHandler>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) context: ExecutionContext,
    pub(crate) sink: Arc<OutputSink>,
    pub(crate) cancel: CancelSignal,
    pub(crate) cancel_grace: Duration,
    pub(crate) stop_on_error: bool,
    pub(crate) started_at: Timestamp,
    /// Set by the agent while nothing else waits for it to claim: the completion then
    /// says in the same commit that the session is idle, instead of a commit of its own
    /// right behind it (which a client's next request would collide with).
    pub(crate) nothing_queued: Arc<AtomicBool>,
}

/// Runs the handler while the writer commits its outputs; when the handler returns (or is
/// dropped after the cancel grace), queues the completion behind the last output.
pub(crate) fn run_execution(setup: ExecutionSetup) -> BoxFuture<'static, ExecutionReport> {
    let span = tracing::info_span!(
        "execution",
        queue_id = %setup.context.queue_id(),
        cell_id = %setup.context.cell_id(),
        session_id = %setup.context.session_id(),
        execution_count = setup.context.execution_count(),
    );
    Box::pin(
        async move {
            let ExecutionSetup {
                handler,
                store,
                clock,
                context,
                sink,
                cancel,
                cancel_grace,
                stop_on_error,
                started_at,
                nothing_queued,
            } = setup;
            let handler_side = async {
                let returned = {
                    let run = handler.execute(context.clone()).fuse();
                    let abandon = async {
                        cancel.cancelled().await;
                        clock.sleep(cancel_grace).await;
                    }
                    .fuse();
                    pin_mut!(run, abandon);
                    select_biased! {
                        returned = run => Some(returned),
                        () = abandon => None,
                    }
                };
                let (status, error) = settle(returned, &sink, cancel.reason(), cancel_grace);
                let metadata = sink.take_annotations();
                let error = match (error, metadata.get("detail").and_then(|d| d.as_str())) {
                    (Some(error), Some(detail)) => Some(format!("{error}; {detail}")),
                    (error, _) => error,
                };
                let completion = ExecutionCompleted {
                    queue_id: context.queue_id().clone(),
                    session_id: context.session_id().clone(),
                    status,
                    error: error.clone(),
                    duration_ms: millis(clock.now().saturating_since(started_at)),
                    abort_pending: stop_on_error && status == CompletionStatus::Error,
                    metadata,
                };
                let dropped = sink.dropped_bytes();
                if dropped > 0 {
                    tracing::warn!(dropped_bytes = dropped, "output limit reached");
                }
                let abort_pending = completion.abort_pending;
                let mut last = vec![completion.into()];
                // Aborting the queue changes what is pending: the agent reports after.
                let said_idle = !abort_pending && nothing_queued.load(Ordering::SeqCst);
                if said_idle {
                    let idle = RuntimeSessionStatusChanged {
                        session_id: context.session_id().clone(),
                        status: SessionStatus::Idle,
                    };
                    last.push(idle.into());
                }
                sink.finish(last);
                (status, error, said_idle)
            };
            let writer = sink.write(&*store).fuse();
            let handler_side = handler_side.fuse();
            pin_mut!(writer, handler_side);
            select_biased! {
                (status, error, said_idle) = handler_side => {
                    let written = writer.await;
                    tracing::debug!(?status, "execution completed");
                    ExecutionReport { status, error, store_error: written.err(), said_idle }
                }
                // The writer stops early only when the store failed (its retries given up):
                // nothing the handler does can reach the log any more, so it is dropped
                // rather than left running while the agent renews its lease.
                written = writer => match written {
                    Err(store_error) => {
                        tracing::warn!(%store_error, "outputs cannot be stored; dropping the handler");
                        ExecutionReport {
                            status: CompletionStatus::Error,
                            error: Some(store_error.to_string()),
                            store_error: Some(store_error),
                            said_idle: false,
                        }
                    }
                    Ok(()) => {
                        let (status, error, said_idle) = handler_side.await;
                        ExecutionReport { status, error, store_error: None, said_idle }
                    }
                },
            }
        }
        .instrument(span),
    )
}

/// Turns what the handler did into a status and a reason, showing what should be shown.
fn settle(
    returned: Option<Result<Outcome, ExecutionError>>,
    sink: &OutputSink,
    cancel: Option<CancelReason>,
    grace: Duration,
) -> (CompletionStatus, Option<String>) {
    let cancelled = |reason: CancelReason| {
        let why = match reason {
            CancelReason::Requested => "cancelled on request",
            CancelReason::Shutdown => "cancelled: the runtime shut down",
            CancelReason::SessionEnded => "cancelled: the runtime session ended",
            // Only a combinator's own scope is cancelled this way, never the agent's.
            CancelReason::TimedOut => "cancelled: timed out",
        };
        (CompletionStatus::Cancelled, Some(why.to_owned()))
    };
    match (returned, cancel) {
        (None, reason) => {
            let reason = reason.unwrap_or(CancelReason::Requested);
            let (status, why) = cancelled(reason);
            let why = format!(
                "{}; the handler did not stop within {} and was dropped",
                why.unwrap_or_default(),
                format_duration(grace)
            );
            (status, Some(why))
        }
        // Once cancelled, however the handler ended, the execution was cancelled.
        (Some(Ok(outcome)), Some(reason)) => {
            if let Err(error) = show_result(sink, outcome) {
                tracing::warn!(%error, "the cancelled handler returned an invalid result");
            }
            cancelled(reason)
        }
        (Some(Err(_)), Some(reason)) => cancelled(reason),
        (Some(Ok(outcome)), None) => match show_result(sink, outcome) {
            Ok(()) => (CompletionStatus::Success, None),
            Err(error) => fail(sink, &ExecutionError::Output(error)),
        },
        (Some(Err(ExecutionError::Cancelled)), None) => (
            CompletionStatus::Cancelled,
            Some("cancelled by the handler".to_owned()),
        ),
        // The reason is the error's own message, so both say it alike.
        (Some(Err(error @ ExecutionError::TimedOut(_))), None) => {
            (CompletionStatus::TimedOut, Some(error.to_string()))
        }
        (Some(Err(error)), None) => fail(sink, &error),
    }
}

fn show_result(sink: &OutputSink, outcome: Outcome) -> Result<(), OutputError> {
    let Some(result) = outcome.result else {
        return Ok(());
    };
    match sink.result(crate::Display::new(result)) {
        Err(OutputError::DuplicateResult) => {
            tracing::warn!("the handler returned a result after setting one; keeping the first");
            Ok(())
        }
        other => other,
    }
}

fn fail(sink: &OutputSink, error: &ExecutionError) -> (CompletionStatus, Option<String>) {
    if !sink.has_error() {
        let (ename, evalue, traceback) = match error {
            ExecutionError::Failed {
                ename,
                evalue,
                traceback,
            } => (ename.as_str(), evalue.clone(), traceback.clone()),
            ExecutionError::Unavailable(why) => ("Unavailable", why.clone(), Vec::new()),
            other => ("Error", other.to_string(), Vec::new()),
        };
        if let Err(output_error) = sink.error(ename, &evalue, traceback) {
            tracing::warn!(%output_error, "could not show the execution's error");
        }
    }
    (CompletionStatus::Error, Some(error.to_string()))
}
