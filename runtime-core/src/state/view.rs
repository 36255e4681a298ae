//! What a UI shows of a notebook, read from a full [`NotebookState`]: its cells in order,
//! each with its latest execution and the outputs it shows, the queue, and the runtime
//! serving it. It serialises to the JSON the wasm package's `NotebookView` returns, so a
//! page renders with the reducer's own rules (fencing included) instead of a second fold
//! written in JavaScript.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Cell, EntryState, InputRequest, NotebookState, Output, QueueEntry, RuntimeSession};
use crate::clock::Timestamp;
use crate::schema::{Capabilities, CellType, QueueId, SessionStatus};

/// A notebook as a UI shows it. Build it with [`NotebookState::view`].
///
/// ```
/// use runtime_core::*;
///
/// let mut state = NotebookState::new();
/// state.apply(1, &CellCreated { cell_id: "c".into(), cell_type: CellType::Code, source: "1 + 1".into() }.into());
/// state.apply(2, &ExecutionRequested {
///     queue_id: "q".into(), cell_id: "c".into(), cell_type: CellType::Code,
///     source: "1 + 1".into(), requested_by: "alice".into(),
/// }.into());
/// let view = state.view();
/// assert_eq!(view.cells[0].execution.as_ref().unwrap().status, "pending");
/// let json = serde_json::to_value(&view).unwrap();
/// assert_eq!(json["cells"][0]["execution"]["queueId"], "q");
/// assert_eq!(json["queue"][0]["status"], "pending");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NotebookView<'a> {
    /// The notebook's title, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'a str>,
    /// The runtime the notebook asks for, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_request: Option<&'a crate::NotebookRuntimeRequested>,
    /// The last sequence number folded in.
    pub last_seq: u64,
    /// The cells, in notebook order.
    pub cells: Vec<CellView<'a>>,
    /// Executions not finished yet, in the order they will run.
    pub queue: Vec<ExecutionView<'a>>,
    /// The active runtime session, if one serves the notebook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeView<'a>>,
}

/// One cell as a UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CellView<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its kind.
    pub cell_type: CellType,
    /// Its current source.
    pub source: &'a str,
    /// Its latest execution (the most recently requested), if it ever ran or is queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionView<'a>>,
    /// The outputs it shows: its most recently started execution's, until the next one
    /// starts.
    pub outputs: &'a [Output],
    /// The execution count of the run whose outputs it shows, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<u64>,
    /// Outputs it shows without having run here (an imported notebook's), as nbformat
    /// JSON, until it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imported_outputs: Option<&'a [Value]>,
    /// Its metadata (tags, anything an editor keeps).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub metadata: &'a Map<String, Value>,
}

/// One execution as a UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView<'a> {
    /// Its queue id (what a cancel names).
    pub queue_id: &'a str,
    /// The cell it runs.
    pub cell_id: &'a str,
    /// `pending`, `assigned`, `executing`, or how it ended: `success`, `error`,
    /// `cancelled`, `timed_out`, `runtime_lost`.
    #[cfg_attr(feature = "json-schema", schemars(schema_with = "status_words"))]
    pub status: &'static str,
    /// Its execution count, once it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<u64>,
    /// Why it ended, for anything but success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// Who asked for it.
    pub requested_by: &'a str,
    /// A cancel was asked for while it ran.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// When it started (milliseconds since the epoch), while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// The question it waits on an answer to, while it does (answer it with the wasm
    /// package's `inputReply`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a InputRequest>,
}

/// The runtime session serving the notebook.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RuntimeView<'a> {
    /// The session.
    pub session_id: &'a str,
    /// The runtime it belongs to.
    pub runtime_id: &'a str,
    /// Its kind, e.g. `echo`, `python`.
    pub runtime_type: &'a str,
    /// Who it runs for.
    pub client_id: &'a str,
    /// `ready`, `busy` or `idle`.
    pub status: SessionStatus,
    /// Its lease runs out at this time (milliseconds since the epoch) unless renewed.
    pub lease_until: Timestamp,
    /// What it can run.
    pub capabilities: &'a Capabilities,
}

/// The words an execution's `status` takes.
#[cfg(feature = "json-schema")]
fn status_words(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "enum": ["pending", "assigned", "executing", "success", "error", "cancelled", "timed_out", "runtime_lost"]
    })
}

impl NotebookState {
    /// What a UI shows of the notebook now. Meant for a full state ([`new`](Self::new)):
    /// a lean one keeps no outputs and no finished executions.
    pub fn view(&self) -> NotebookView<'_> {
        let mut latest: std::collections::HashMap<&str, &QueueEntry> =
            std::collections::HashMap::new();
        for entry in self.entries() {
            latest.insert(entry.cell_id.as_str(), entry);
        }
        NotebookView {
            title: self.title(),
            runtime_request: self.runtime_request(),
            last_seq: self.last_seq(),
            cells: self
                .cells()
                .map(|cell| self.cell_view(cell, latest.get(cell.id.as_str()).copied()))
                .collect(),
            queue: self
                .entries()
                .filter(|entry| !entry.is_completed())
                .map(execution_view)
                .collect(),
            runtime: self.active_session().map(runtime_view),
        }
    }

    fn cell_view<'a>(&'a self, cell: &'a Cell, latest: Option<&'a QueueEntry>) -> CellView<'a> {
        let shown = cell
            .shown_execution
            .as_ref()
            .and_then(|queue_id: &QueueId| self.entry(queue_id));
        CellView {
            id: cell.id.as_str(),
            cell_type: cell.cell_type,
            source: &cell.source,
            execution: latest.map(execution_view),
            outputs: shown.map_or(&[], |entry| &entry.outputs),
            execution_count: shown.and_then(|entry| entry.execution_count),
            imported_outputs: cell
                .imported
                .as_ref()
                .map(|imported| imported.outputs.as_slice()),
            metadata: &cell.metadata,
        }
    }
}

fn execution_view(entry: &QueueEntry) -> ExecutionView<'_> {
    let (error, started_at) = match &entry.state {
        EntryState::Completed { error, .. } => (error.as_deref(), None),
        EntryState::Executing { started_at, .. } => (None, Some(*started_at)),
        EntryState::Pending | EntryState::Assigned { .. } => (None, None),
    };
    ExecutionView {
        queue_id: entry.queue_id.as_str(),
        cell_id: entry.cell_id.as_str(),
        status: entry.queue_status().as_str(),
        execution_count: entry.execution_count,
        error,
        requested_by: &entry.requested_by,
        cancel_requested: entry.cancel_requested,
        started_at,
        input: entry.input.as_ref().filter(|input| input.is_waiting()),
    }
}

fn runtime_view(session: &RuntimeSession) -> RuntimeView<'_> {
    RuntimeView {
        session_id: session.session_id.as_str(),
        runtime_id: &session.runtime_id,
        runtime_type: &session.runtime_type,
        client_id: &session.client_id,
        status: session.status,
        lease_until: session.lease_until,
        capabilities: &session.capabilities,
    }
}
