//! What the reducer builds: cells, queue entries, outputs and runtime sessions.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::SealError;
use crate::clock::Timestamp;
use crate::schema::{
    Capabilities, CellId, CellType, CompletionStatus, DisplayId, InputId, InputReplied,
    InputRequested, MediaBundle, OutputId, QueueId, SessionId, SessionStatus, StreamName,
    TerminationReason,
};

/// Position of an event in a notebook's log. The first event has sequence number 1.
pub type Seq = u64;

/// A cell of the notebook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    /// Its id.
    pub id: CellId,
    /// Its kind.
    pub cell_type: CellType,
    /// Its current source.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The execution whose outputs the cell shows: the one most recently started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shown_execution: Option<QueueId>,
    /// Its metadata (tags, anything an editor keeps).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// Its attachments (images a markdown cell shows by name), if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Map<String, Value>>,
    /// Fields of the `.ipynb` cell it came from that this version does not name.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub other: Map<String, Value>,
    /// Outputs it shows without having run here (an imported notebook's), until it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<ImportedOutputs>,
}

/// An imported cell's outputs: nbformat JSON, verbatim, and their execution count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportedOutputs {
    /// The execution count they came with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<u64>,
    /// The outputs.
    #[serde(default)]
    pub outputs: Vec<Value>,
}

/// Where a queue entry is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryState {
    /// Waiting for a runtime to claim it.
    Pending,
    /// Claimed by a session that has not started it yet.
    Assigned {
        /// The claiming session.
        session_id: SessionId,
    },
    /// Running in a session.
    Executing {
        /// The session running it.
        session_id: SessionId,
        /// When it started.
        started_at: Timestamp,
    },
    /// Finished, one way or another. Final.
    Completed {
        /// How it ended.
        status: CompletionStatus,
        /// Why, for anything but success.
        error: Option<String>,
    },
}

impl EntryState {
    /// The session holding the entry (assigned or executing), if any.
    pub fn session_id(&self) -> Option<&SessionId> {
        match self {
            EntryState::Assigned { session_id } | EntryState::Executing { session_id, .. } => {
                Some(session_id)
            }
            EntryState::Pending | EntryState::Completed { .. } => None,
        }
    }

    /// The final status, once completed.
    pub fn status(&self) -> Option<CompletionStatus> {
        match self {
            EntryState::Completed { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An input request of a running execution (see
/// [`InputRequested`](crate::InputRequested)).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputRequest {
    /// The request, which a reply names.
    pub input_id: InputId,
    /// The prompt to show.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// A password: UIs hide what is typed, and the reply is sealed to `seal_key`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password: bool,
    /// The key a password reply is sealed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_key: Option<String>,
    /// The reply, once one came (for a password, the sealed box).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

impl InputRequest {
    /// `true` while no reply has come: a UI shows the prompt and an input field.
    pub fn is_waiting(&self) -> bool {
        self.reply.is_none()
    }

    /// The event that answers this request of entry `queue_id` with `value`, in the name of
    /// `replied_by`. For a password, `value` is sealed to the request's key, so the event
    /// can go into the log (see [`NotebookClient::reply_input`](crate::NotebookClient::reply_input),
    /// which commits it).
    ///
    /// ```
    /// use runtime_core::{InputRequest, InputRequested};
    ///
    /// let asked = InputRequested {
    ///     queue_id: "q1".into(),
    ///     session_id: "s1".into(),
    ///     input_id: "i1".into(),
    ///     prompt: "Name? ".into(),
    ///     password: false,
    ///     seal_key: None,
    /// };
    /// let reply = InputRequest::from(&asked).answer(&asked.queue_id, "Ada", "alice")?;
    /// assert_eq!(reply.value, "Ada");
    /// # Ok::<(), runtime_core::SealError>(())
    /// ```
    pub fn answer(
        &self,
        queue_id: &QueueId,
        value: &str,
        replied_by: &str,
    ) -> Result<InputReplied, SealError> {
        let value = match (self.password, &self.seal_key) {
            (false, _) => value.to_owned(),
            (true, Some(key)) => crate::sealed::seal(key, value)?,
            (true, None) => return Err(SealError::BadKey),
        };
        Ok(InputReplied {
            queue_id: queue_id.clone(),
            input_id: self.input_id.clone(),
            value,
            replied_by: replied_by.to_owned(),
        })
    }
}

impl From<&InputRequested> for InputRequest {
    fn from(request: &InputRequested) -> Self {
        InputRequest {
            input_id: request.input_id.clone(),
            prompt: request.prompt.clone(),
            password: request.password,
            seal_key: request.seal_key.clone(),
            reply: None,
        }
    }
}

/// Where an execution is in its life: what lean and full states both know of every
/// execution ever requested (see [`NotebookState::queue_status`](crate::NotebookState::queue_status)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStatus {
    /// Waiting for a runtime to claim it.
    Pending,
    /// Claimed, not started yet.
    Assigned,
    /// Running.
    Executing {
        /// Its execution count.
        execution_count: u64,
    },
    /// Ended, one way or another.
    Completed {
        /// How.
        status: CompletionStatus,
        /// Its execution count, if it ever started.
        execution_count: Option<u64>,
    },
}

impl QueueStatus {
    /// Its word, as the CLI and UIs show it: `pending`, `assigned`, `executing`, or the
    /// completion status (`success`, `error`, `cancelled`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Pending => "pending",
            QueueStatus::Assigned => "assigned",
            QueueStatus::Executing { .. } => "executing",
            QueueStatus::Completed { status, .. } => status.as_str(),
        }
    }

    /// `true` once it has ended.
    pub fn is_completed(self) -> bool {
        matches!(self, QueueStatus::Completed { .. })
    }
}

/// One execution request and everything that happened to it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEntry {
    /// Its id.
    pub queue_id: QueueId,
    /// The cell it runs.
    pub cell_id: CellId,
    /// The cell's kind.
    pub cell_type: CellType,
    /// The source snapshot to run.
    pub source: String,
    /// Who asked.
    pub requested_by: String,
    /// Where the request is in the log; the queue is ordered by it.
    pub requested_seq: Seq,
    /// Where it is in its life.
    pub state: EntryState,
    /// Someone asked to cancel it while it ran.
    pub cancel_requested: bool,
    /// Its execution count, assigned when it started.
    pub execution_count: Option<u64>,
    /// Its outputs, in order.
    pub outputs: Vec<Output>,
    /// A `clear(wait)` is waiting for the next output.
    pub clear_pending: bool,
    /// The completion's metadata (which backend ran, how it was stopped, token usage).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The running execution's latest input request, while it runs: waiting for a reply,
    /// or answered (until the next request or the end).
    pub input: Option<InputRequest>,
    /// Finds outputs by id, and remembers the ids of cleared ones.
    pub(crate) output_index: OutputIndex,
    /// The entry shows a result (one per execution).
    pub(crate) has_result: bool,
}

impl QueueEntry {
    /// Where it is in its life.
    pub fn queue_status(&self) -> QueueStatus {
        match &self.state {
            EntryState::Pending => QueueStatus::Pending,
            EntryState::Assigned { .. } => QueueStatus::Assigned,
            EntryState::Executing { .. } => QueueStatus::Executing {
                execution_count: self.execution_count.unwrap_or_default(),
            },
            EntryState::Completed { status, .. } => QueueStatus::Completed {
                status: *status,
                execution_count: self.execution_count,
            },
        }
    }

    /// `true` once the entry has completed.
    pub fn is_completed(&self) -> bool {
        matches!(self.state, EntryState::Completed { .. })
    }

    pub(crate) fn output_mut(&mut self, output_id: &OutputId) -> Option<&mut Output> {
        let position = self.output_position(output_id)?;
        self.outputs.get_mut(position)
    }

    fn output_position(&self, output_id: &OutputId) -> Option<usize> {
        match &self.output_index.positions {
            Some(positions) => positions.get(output_id).copied(),
            // Few outputs: a scan from the newest (appends target the last ones) is
            // cheaper than hashing.
            None => self
                .outputs
                .iter()
                .rposition(|output| &output.output_id == output_id),
        }
    }

    /// `true` if the entry ever had an output with this id (shown, or cleared since).
    pub(crate) fn used_output_id(&self, output_id: &OutputId) -> bool {
        self.output_index
            .spent
            .as_ref()
            .is_some_and(|spent| spent.contains(output_id))
            || self.output_position(output_id).is_some()
    }

    /// Removes every shown output; their ids stay used.
    pub(crate) fn clear_outputs(&mut self) {
        if !self.outputs.is_empty() {
            let spent = self.output_index.spent.get_or_insert_default();
            spent.extend(self.outputs.drain(..).map(|output| output.output_id));
        }
        self.output_index.positions = None;
        self.has_result = false;
        self.clear_pending = false;
    }

    /// Shows `output` after the others; the caller checked its id is new.
    pub(crate) fn push_output(&mut self, output: Output) {
        self.has_result |= matches!(output.kind, OutputKind::Result { .. });
        let position = self.outputs.len();
        match &mut self.output_index.positions {
            Some(positions) => {
                positions.insert(output.output_id.clone(), position);
            }
            None if position >= OutputIndex::LINEAR => {
                let positions = (0..)
                    .zip(&self.outputs)
                    .map(|(n, o)| (o.output_id.clone(), n))
                    .chain([(output.output_id.clone(), position)])
                    .collect();
                self.output_index.positions = Some(Box::new(positions));
            }
            None => {}
        }
        self.outputs.push(output);
    }

    /// Rebuilds the lookup of outputs by id, with `spent` the ids of cleared outputs
    /// (after decoding a snapshot, which keeps only the outputs and the spent ids).
    pub(crate) fn reindex_outputs(&mut self, spent: HashSet<OutputId>) {
        let outputs = std::mem::take(&mut self.outputs);
        self.output_index = OutputIndex {
            positions: None,
            spent: (!spent.is_empty()).then(|| Box::new(spent)),
        };
        for output in outputs {
            self.push_output(output);
        }
    }
}

/// An entry's outputs by id: a scan while there are few, a map once there are many, so
/// folding stays linear in the number of outputs; plus the ids of cleared outputs, which
/// are never used again (an append or update cannot reach a newer output that took one).
///
/// Both parts are boxed and absent until needed: most entries have few outputs and never
/// clear them, and a long notebook's state holds many entries (16 bytes each instead of 96).
#[derive(Debug, Clone, Default, PartialEq)]
#[allow(clippy::box_collection)] // the box is what keeps an absent collection at 8 bytes
pub(crate) struct OutputIndex {
    positions: Option<Box<HashMap<OutputId, usize>>>,
    spent: Option<Box<HashSet<OutputId>>>,
}

impl OutputIndex {
    /// Up to this many shown outputs, lookups scan.
    const LINEAR: usize = 16;

    /// The ids of cleared outputs, if any were.
    pub(crate) fn spent(&self) -> Option<&HashSet<OutputId>> {
        self.spent.as_deref()
    }
}

/// One output of an execution. As JSON (for UIs and the hub's REST view):
/// `{"outputId": "...", "outputType": "stream", "name": "stdout", "text": "..."}`, with
/// `outputType` one of `stream`, `display_data`, `execute_result`, `error`, `markdown`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Its id.
    pub output_id: OutputId,
    /// What it is.
    #[serde(flatten)]
    pub kind: OutputKind,
}

/// The kinds of output, as Jupyter frontends know them, plus markdown.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outputType", rename_all_fields = "camelCase")]
pub enum OutputKind {
    /// Text on stdout or stderr.
    #[serde(rename = "stream")]
    Stream {
        /// Which stream.
        name: StreamName,
        /// All the text so far.
        text: String,
    },
    /// A rich display.
    #[serde(rename = "display_data")]
    Display {
        /// The representations.
        data: MediaBundle,
        /// Per-MIME metadata.
        metadata: Map<String, Value>,
        /// The id updates use.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_id: Option<DisplayId>,
    },
    /// The execution's result.
    #[serde(rename = "execute_result")]
    Result {
        /// The representations.
        data: MediaBundle,
        /// Per-MIME metadata.
        metadata: Map<String, Value>,
        /// The execution count.
        execution_count: u64,
        /// The id updates replace it by, if it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_id: Option<DisplayId>,
    },
    /// An error.
    #[serde(rename = "error")]
    Error {
        /// Its name.
        ename: String,
        /// Its message.
        evalue: String,
        /// Its traceback.
        traceback: Vec<String>,
    },
    /// Markdown text.
    #[serde(rename = "markdown")]
    Markdown {
        /// All the markdown so far.
        text: String,
    },
}

/// Whether a session is the notebook's active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The active session: the only one that may claim and run work.
    Active,
    /// Ended for good.
    Ended(TerminationReason),
}

/// One run of one runtime agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSession {
    /// Its id.
    pub session_id: SessionId,
    /// The runtime it belongs to.
    pub runtime_id: String,
    /// The runtime's kind.
    pub runtime_type: String,
    /// Who it runs for.
    pub client_id: String,
    /// What it can run.
    pub capabilities: Capabilities,
    /// The identity that started it, by its start's [`Stamp`](crate::Stamp): only that
    /// author may act for the session. `None` in an unstamped log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<std::sync::Arc<str>>,
    /// When it started (by the authority's clock in a stamped log).
    pub started_at: Timestamp,
    /// Its lease runs out at this time unless renewed (the authority's time in a stamped
    /// log).
    pub lease_until: Timestamp,
    /// What it last reported.
    pub status: SessionStatus,
    /// Active or ended.
    pub state: SessionState,
}

impl RuntimeSession {
    /// `true` while it is the active session.
    pub fn is_active(&self) -> bool {
        self.state == SessionState::Active
    }
}
