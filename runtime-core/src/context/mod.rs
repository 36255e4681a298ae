//! [`ExecutionContext`]: what a handler knows about its execution and how it writes
//! outputs.

mod cancel;
mod outputs;

use std::sync::Arc;

use serde_json::Map;

pub(crate) use cancel::CancelSignal;
pub use cancel::{CancelReason, Cancelled};
pub(crate) use outputs::OutputSink;
pub use outputs::{Display, OutputError};

use crate::schema::{
    CellId, CellType, DisplayId, MediaBundle, OutputId, QueueId, SessionId, StreamName,
};

/// One execution as its handler sees it. Cheap to clone; clones share everything.
///
/// Output methods enqueue and return at once; the agent commits them in order, in batches,
/// and commits all of them before the execution's completion.
///
/// # Example
///
/// ```
/// use runtime_core::{ExecutionContext, ExecutionError, MediaBundle};
///
/// async fn handle(ctx: ExecutionContext) -> Result<MediaBundle, ExecutionError> {
///     ctx.stdout("working...\n")?;
///     if ctx.is_cancelled() {
///         return Err(ExecutionError::Cancelled);
///     }
///     Ok(MediaBundle::plain(format!("Echo: {}", ctx.source())))
/// }
/// ```
#[derive(Clone)]
pub struct ExecutionContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    info: ExecutionInfo,
    sink: Arc<OutputSink>,
    cancel: CancelSignal,
}

/// What the agent knows about an execution when it hands it to a handler.
pub(crate) struct ExecutionInfo {
    pub(crate) queue_id: QueueId,
    pub(crate) cell_id: CellId,
    pub(crate) cell_type: CellType,
    pub(crate) source: String,
    pub(crate) execution_count: u64,
    pub(crate) session_id: SessionId,
}

impl ExecutionContext {
    pub(crate) fn new(info: ExecutionInfo, sink: Arc<OutputSink>, cancel: CancelSignal) -> Self {
        Self {
            inner: Arc::new(ContextInner { info, sink, cancel }),
        }
    }

    /// The queue entry being executed.
    pub fn queue_id(&self) -> &QueueId {
        &self.inner.info.queue_id
    }

    /// The cell it came from.
    pub fn cell_id(&self) -> &CellId {
        &self.inner.info.cell_id
    }

    /// The cell's kind.
    pub fn cell_type(&self) -> CellType {
        self.inner.info.cell_type
    }

    /// The source to run (a snapshot taken when it was requested).
    pub fn source(&self) -> &str {
        &self.inner.info.source
    }

    /// The execution count the log assigned when it started.
    pub fn execution_count(&self) -> u64 {
        self.inner.info.execution_count
    }

    /// The runtime session running it.
    pub fn session_id(&self) -> &SessionId {
        &self.inner.info.session_id
    }

    /// Writes text to stdout. Consecutive writes coalesce into one output.
    pub fn stdout(&self, text: impl AsRef<str>) -> Result<(), OutputError> {
        self.inner.sink.stream(StreamName::Stdout, text.as_ref())
    }

    /// Writes text to stderr. Consecutive writes coalesce into one output.
    pub fn stderr(&self, text: impl AsRef<str>) -> Result<(), OutputError> {
        self.inner.sink.stream(StreamName::Stderr, text.as_ref())
    }

    /// Shows a rich display; give it an id ([`Display::id`]) to update it later.
    /// The bundle is validated (see [`MediaBundle::validated`]).
    pub fn display(&self, display: impl Into<Display>) -> Result<OutputId, OutputError> {
        self.inner.sink.display(display.into())
    }

    /// Replaces every display shown with `display_id`, in any cell.
    pub fn update_display(
        &self,
        display_id: impl Into<DisplayId>,
        data: MediaBundle,
    ) -> Result<(), OutputError> {
        self.inner
            .sink
            .update_display(display_id.into(), data, Map::new())
    }

    /// Sets the execution's result value. An execution has at most one result: a second
    /// one is refused with [`OutputError::DuplicateResult`].
    pub fn result(&self, data: MediaBundle) -> Result<(), OutputError> {
        self.inner.sink.result(data, Map::new())
    }

    /// Shows an error (name, message, traceback). Returning an error from the handler
    /// shows one too, unless the handler already showed one.
    pub fn error(
        &self,
        ename: impl AsRef<str>,
        evalue: impl AsRef<str>,
        traceback: Vec<String>,
    ) -> Result<(), OutputError> {
        self.inner
            .sink
            .error(ename.as_ref(), evalue.as_ref(), traceback)
    }

    /// Starts a markdown output; returns its id for [`append_markdown`](Self::append_markdown).
    pub fn markdown(&self, text: impl AsRef<str>) -> Result<OutputId, OutputError> {
        self.inner.sink.markdown(text.as_ref())
    }

    /// Appends to a markdown output this execution started (AI answers stream this way).
    pub fn append_markdown(
        &self,
        output_id: &OutputId,
        text: impl AsRef<str>,
    ) -> Result<(), OutputError> {
        self.inner.sink.append_markdown(output_id, text.as_ref())
    }

    /// Clears this execution's outputs: now, or with `wait`, when the next output arrives
    /// (Jupyter's `clear_output(wait=True)`).
    pub fn clear(&self, wait: bool) -> Result<(), OutputError> {
        self.inner.sink.clear(wait)
    }

    /// `true` once the execution is being cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.reason().is_some()
    }

    /// Why the execution is being cancelled, once it is.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.inner.cancel.reason()
    }

    /// Completes when the execution is cancelled. A handler that does not stop within the
    /// agent's cancel grace period is dropped, and the execution ends cancelled.
    pub fn cancelled(&self) -> Cancelled {
        self.inner.cancel.cancelled()
    }
}

impl std::fmt::Debug for ExecutionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionContext")
            .field("queue_id", &self.inner.info.queue_id)
            .field("cell_id", &self.inner.info.cell_id)
            .field("execution_count", &self.inner.info.execution_count)
            .field("session_id", &self.inner.info.session_id)
            .finish_non_exhaustive()
    }
}
