//! Snapshots: a folded state, encoded, so that a reader starts from it and folds only the
//! entries after it instead of the whole log.
//!
//! A snapshot is a cache, never the truth: the log is. It holds the state's own data
//! (cells, entries, sessions, counts), not its indices, which decoding rebuilds and checks,
//! so a damaged or hostile snapshot is refused with an error (the reader then folds from
//! the start), never trusted into a panic. A lean snapshot is what agents read; a full one
//! (with outputs and sources) what UIs read.

use std::collections::HashSet;
use std::num::NonZeroU64;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::model::{InputRequest, OutputIndex};
use super::{
    ApplyStats, Cell, EntryState, NotebookState, Output, OutputKind, QueueEntry, RuntimeSession,
};
use crate::clock::Timestamp;
use crate::schema::{
    CellId, CellType, CompletionStatus, DisplayId, NotebookMetadataChanged,
    NotebookRuntimeRequested, OutputId, QueueId, SessionId,
};
use crate::state::Seq;

/// The encoding version this build writes and reads; a snapshot in another is refused.
pub const SNAPSHOT_FORMAT: u32 = 3;

/// Which state a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotKind {
    /// What an agent folds ([`NotebookState::lean`]): ids and states, no bodies.
    Lean,
    /// What a UI folds ([`NotebookState::new`]): everything.
    Full,
}

impl SnapshotKind {
    /// Its name: `lean` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Lean => "lean",
            SnapshotKind::Full => "full",
        }
    }
}

/// A notebook's state after the entry `seq`, encoded for a store to keep. On the wire:
/// `{"seq": 1000, "kind": "lean", "state": "<the state as JSON text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last sequence number folded into it: a reader continues from `seq + 1`.
    pub seq: Seq,
    /// Lean or full.
    pub kind: SnapshotKind,
    /// The state, as JSON text in format [`SNAPSHOT_FORMAT`]. Stores keep it as it is.
    pub state: Arc<str>,
}

impl Snapshot {
    /// `true` if it was written in this version's format ([`SNAPSHOT_FORMAT`]), read from
    /// its first bytes without decoding it: a maker of snapshots replaces one in another
    /// format at once, rather than hand readers a snapshot they cannot use.
    ///
    /// ```
    /// use runtime_core::{NotebookState, Snapshot, SnapshotKind};
    ///
    /// assert!(NotebookState::lean().snapshot().in_current_format());
    /// let old = Snapshot { seq: 1, kind: SnapshotKind::Lean, state: r#"{"format":2,"lean":true}"#.into() };
    /// assert!(!old.in_current_format());
    /// ```
    pub fn in_current_format(&self) -> bool {
        let current = format!("{{\"format\":{SNAPSHOT_FORMAT},");
        self.state.starts_with(&current)
    }
}

/// Why a snapshot could not be used. The reader folds the log from the start instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// It does not decode as a state.
    #[error("the snapshot does not decode: {0}")]
    Decode(String),
    /// It was written in another format.
    #[error("the snapshot is in format {found}; this version reads format {SNAPSHOT_FORMAT}")]
    Format {
        /// Its format.
        found: u32,
    },
    /// It is not the kind asked for, or says one thing in its envelope and another inside.
    #[error("the snapshot holds a {found} state, not a {wanted} one")]
    Kind {
        /// The kind asked for.
        wanted: &'static str,
        /// The kind it holds.
        found: &'static str,
    },
    /// Its content contradicts itself (ids twice, an active session that is not).
    #[error("the snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

/// What is encoded: the state's own data, borrowed to encode.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Encoding<'a> {
    format: u32,
    lean: bool,
    last_seq: Seq,
    execution_count: u64,
    cells: Vec<&'a Cell>,
    deleted_cells: &'a HashSet<CellId>,
    done: String,
    /// A lean state's completed entries whose ids cannot be fields of `done`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    done_other: Vec<(&'a str, CompletionStatus, Option<NonZeroU64>)>,
    entries: Vec<(usize, EncodedRow<'a>)>,
    display_ids: Vec<&'a DisplayId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime_request: Option<&'a NotebookRuntimeRequested>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notebook_metadata: Option<&'a NotebookMetadataChanged>,
    sessions: &'a [RuntimeSession],
    active_session: Option<&'a SessionId>,
    stats: &'a ApplyStats,
}

/// What is decoded.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Decoding<'a> {
    format: u32,
    lean: bool,
    last_seq: Seq,
    execution_count: u64,
    cells: Vec<Cell>,
    deleted_cells: HashSet<CellId>,
    /// Borrowed from the snapshot's text: its separators need no escaping in JSON.
    #[serde(borrow)]
    done: std::borrow::Cow<'a, str>,
    #[serde(default)]
    done_other: Vec<(String, CompletionStatus, Option<NonZeroU64>)>,
    entries: Vec<(usize, DecodedRow)>,
    /// Every display id ever shown: an update for one applies even when nothing shows it
    /// any more (and one never shown is not found).
    #[serde(default)]
    display_ids: Vec<DisplayId>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    runtime_request: Option<NotebookRuntimeRequested>,
    #[serde(default)]
    notebook_metadata: Option<NotebookMetadataChanged>,
    sessions: Vec<RuntimeSession>,
    active_session: Option<SessionId>,
    stats: ApplyStats,
}

/// Most entries of a long notebook are completed ones, which a lean state keeps as their
/// ids and ends: they are lines of `done`, one text (`queueId status executionCount`,
/// separated by spaces, each line ended by `;`, in no particular order), which decodes at
/// a fraction of the cost of JSON values. JSON escapes neither separator, so the text is
/// read where it lies, without a copy. An id that cannot be a field goes to `doneOther`.
/// The entries kept whole are rows of `entries`, each with its position.
const DONE_FIELDS: usize = 3;

/// Ends a line of `done`.
const LINE_END: char = ';';

/// Separates the fields of a line of `done`.
const FIELD_SEPARATOR: char = ' ';

/// `true` for an id that can be a field of a line of `done`: neither separator, nothing
/// JSON escapes.
fn plain(id: &str) -> bool {
    !id.contains([LINE_END, FIELD_SEPARATOR, '"', '\\']) && !id.contains(char::is_control)
}

/// A completed entry's line in a lean state, if its id can be a field.
fn done_line(
    queue_id: &str,
    status: CompletionStatus,
    execution_count: Option<NonZeroU64>,
    out: &mut String,
) -> bool {
    use std::fmt::Write;
    if !plain(queue_id) {
        return false;
    }
    let _ = write!(
        out,
        "{queue_id}{FIELD_SEPARATOR}{}{FIELD_SEPARATOR}",
        status.as_str()
    );
    if let Some(count) = execution_count {
        let _ = write!(out, "{count}");
    }
    out.push(LINE_END);
    true
}

/// A lean state's completed entry from its line.
fn decode_done_line(
    line: &str,
) -> Result<(&str, CompletionStatus, Option<NonZeroU64>), SnapshotError> {
    let bad = || SnapshotError::Decode(format!("a completed entry's line is not one: {line:?}"));
    let mut fields = line.splitn(DONE_FIELDS, FIELD_SEPARATOR);
    let mut next = || fields.next().ok_or_else(bad);
    let (queue_id, status, count) = (next()?, next()?, next()?);
    if queue_id.is_empty() {
        return Err(bad());
    }
    Ok((
        queue_id,
        status_named(status).ok_or_else(bad)?,
        match count {
            "" => None,
            n => Some(n.parse().map_err(|_| bad())?),
        },
    ))
}

/// The completion status with this wire name.
fn status_named(name: &str) -> Option<CompletionStatus> {
    [
        CompletionStatus::Success,
        CompletionStatus::Error,
        CompletionStatus::Cancelled,
        CompletionStatus::TimedOut,
        CompletionStatus::RuntimeLost,
    ]
    .into_iter()
    .find(|status| status.as_str() == name)
}

/// A queue entry as a JSON array:
/// `[queueId, cellId, cellType, requestedSeq, state, holder, startedAt, status, error,
/// executionCount, extra]`, where `state` is 0 pending, 1 assigned, 2 executing, 3
/// completed, and `extra` holds what a lean completed entry lacks (null when empty).
#[derive(Serialize, Deserialize)]
struct EntryRow<Q, C, S, T, X>(
    Q,
    C,
    CellType,
    Seq,
    u8,
    Option<S>,
    Option<Timestamp>,
    Option<CompletionStatus>,
    Option<T>,
    Option<u64>,
    Option<X>,
);

/// The rest of an entry, borrowed to encode.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryExtra<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    source: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    requested_by: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    cancel_requested: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a InputRequest>,
    #[serde(skip_serializing_if = "<[Output]>::is_empty")]
    outputs: &'a [Output],
    #[serde(skip_serializing_if = "is_false")]
    clear_pending: bool,
    #[serde(skip_serializing_if = "Map::is_empty")]
    metadata: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spent_output_ids: Option<&'a HashSet<OutputId>>,
    #[serde(skip_serializing_if = "is_false")]
    has_result: bool,
}

/// The rest of an entry, decoded.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct OwnedExtra {
    source: String,
    requested_by: String,
    cancel_requested: bool,
    input: Option<InputRequest>,
    outputs: Vec<Output>,
    clear_pending: bool,
    metadata: Map<String, Value>,
    spent_output_ids: HashSet<OutputId>,
    has_result: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

type EncodedRow<'a> = EntryRow<&'a QueueId, &'a CellId, &'a SessionId, &'a str, EntryExtra<'a>>;
type DecodedRow = EntryRow<QueueId, CellId, SessionId, String, OwnedExtra>;

fn encode_entry(entry: &QueueEntry) -> EncodedRow<'_> {
    let (code, holder, started_at, status, error) = match &entry.state {
        EntryState::Pending => (0, None, None, None, None),
        EntryState::Assigned { session_id } => (1, Some(session_id), None, None, None),
        EntryState::Executing {
            session_id,
            started_at,
        } => (2, Some(session_id), Some(*started_at), None, None),
        EntryState::Completed { status, error } => (3, None, None, Some(*status), error.as_deref()),
    };
    EntryRow(
        &entry.queue_id,
        &entry.cell_id,
        entry.cell_type,
        entry.requested_seq,
        code,
        holder,
        started_at,
        status,
        error,
        entry.execution_count,
        extra_of(entry),
    )
}

/// What an entry holds besides its ids, place and state, if anything.
fn extra_of(entry: &QueueEntry) -> Option<EntryExtra<'_>> {
    let extra = EntryExtra {
        source: &entry.source,
        requested_by: &entry.requested_by,
        cancel_requested: entry.cancel_requested,
        input: entry.input.as_ref(),
        outputs: &entry.outputs,
        clear_pending: entry.clear_pending,
        metadata: &entry.metadata,
        spent_output_ids: entry.output_index.spent(),
        has_result: entry.has_result,
    };
    let empty = extra.source.is_empty()
        && extra.requested_by.is_empty()
        && !extra.cancel_requested
        && extra.input.is_none()
        && extra.outputs.is_empty()
        && !extra.clear_pending
        && extra.metadata.is_empty()
        && extra.spent_output_ids.is_none()
        && !extra.has_result;
    (!empty).then_some(extra)
}

fn decode_entry(row: DecodedRow) -> Result<QueueEntry, SnapshotError> {
    let EntryRow(
        queue_id,
        cell_id,
        cell_type,
        requested_seq,
        code,
        holder,
        started_at,
        status,
        error,
        execution_count,
        extra,
    ) = row;
    let state = match (code, holder, started_at, status) {
        (0, None, None, None) => EntryState::Pending,
        (1, Some(session_id), None, None) => EntryState::Assigned { session_id },
        (2, Some(session_id), Some(started_at), None) => EntryState::Executing {
            session_id,
            started_at,
        },
        (3, None, None, Some(status)) => EntryState::Completed { status, error },
        _ => {
            return Err(SnapshotError::Inconsistent(format!(
                "queue entry {queue_id} has no state this version knows"
            )));
        }
    };
    let extra = extra.unwrap_or_default();
    let mut entry = QueueEntry {
        queue_id,
        cell_id,
        cell_type,
        source: extra.source,
        requested_by: extra.requested_by,
        requested_seq,
        state,
        cancel_requested: extra.cancel_requested,
        input: extra.input,
        execution_count,
        outputs: extra.outputs,
        clear_pending: extra.clear_pending,
        metadata: extra.metadata,
        output_index: OutputIndex::default(),
        has_result: extra.has_result,
    };
    entry.reindex_outputs(extra.spent_output_ids);
    Ok(entry)
}

/// Only the format, read first so a snapshot in another format says so.
#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

fn kind_of(lean: bool) -> SnapshotKind {
    if lean {
        SnapshotKind::Lean
    } else {
        SnapshotKind::Full
    }
}

impl NotebookState {
    /// The state as a [`Snapshot`] at its last sequence number: lean for a state made
    /// with [`lean`](Self::lean), full otherwise.
    ///
    /// ```
    /// use runtime_core::*;
    ///
    /// let mut state = NotebookState::lean();
    /// state.apply(1, &CellCreated { cell_id: "c".into(), cell_type: CellType::Code, source: "1".into() }.into());
    /// let snapshot = state.snapshot();
    /// assert_eq!((snapshot.seq, snapshot.kind), (1, SnapshotKind::Lean));
    /// let restored = NotebookState::from_snapshot(&snapshot, SnapshotKind::Lean)?;
    /// assert_eq!(restored.last_seq(), 1);
    /// assert!(restored.cell(&"c".into()).is_some());
    /// # Ok::<(), SnapshotError>(())
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        let mut done = String::new();
        let mut done_other = Vec::new();
        for (queue_id, status, execution_count) in self.done.iter() {
            if !done_line(queue_id, status, execution_count, &mut done) {
                done_other.push((queue_id, status, execution_count));
            }
        }
        let entries = self
            .entries
            .iter()
            .map(|(&index, entry)| (index, encode_entry(entry)))
            .collect();
        let encoding = Encoding {
            format: SNAPSHOT_FORMAT,
            lean: self.lean,
            last_seq: self.last_seq,
            execution_count: self.execution_count,
            cells: self.cells().collect(),
            deleted_cells: &self.deleted_cells,
            done,
            done_other,
            entries,
            display_ids: self.displays.keys().collect(),
            title: self.title.as_deref(),
            runtime_request: self.runtime_request.as_ref(),
            notebook_metadata: self.notebook_metadata.as_ref(),
            sessions: &self.sessions,
            active_session: self.active_session().map(|session| &session.session_id),
            stats: &self.stats,
        };
        let state = serde_json::to_string(&encoding).unwrap_or_else(|error| {
            // Only a non-string map key could fail, and the state has none; a snapshot
            // that does not decode is refused and the reader folds the log instead.
            format!("unencodable state: {error}")
        });
        Snapshot {
            seq: self.last_seq,
            kind: kind_of(self.lean),
            state: state.into(),
        }
    }

    /// The state a snapshot holds, if it is of `kind`, in this version's format, and
    /// consistent; its indices are rebuilt. Fold the log from `snapshot.seq + 1` on.
    pub fn from_snapshot(snapshot: &Snapshot, kind: SnapshotKind) -> Result<Self, SnapshotError> {
        if snapshot.kind != kind {
            return Err(SnapshotError::Kind {
                wanted: kind.as_str(),
                found: snapshot.kind.as_str(),
            });
        }
        let decoded: Decoding = match serde_json::from_str(&snapshot.state) {
            Ok(decoded) => decoded,
            // Another format may not decode as this one: say so rather than why.
            Err(error) => {
                return Err(match serde_json::from_str::<FormatOnly>(&snapshot.state) {
                    Ok(FormatOnly { format }) if format != SNAPSHOT_FORMAT => {
                        SnapshotError::Format { found: format }
                    }
                    _ => SnapshotError::Decode(error.to_string()),
                });
            }
        };
        if decoded.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Format {
                found: decoded.format,
            });
        }
        if kind_of(decoded.lean) != kind || decoded.last_seq != snapshot.seq {
            return Err(SnapshotError::Kind {
                wanted: kind.as_str(),
                found: kind_of(decoded.lean).as_str(),
            });
        }
        Self::rebuild(decoded)
    }

    /// A state from its own data, with every index rebuilt and every id checked unique.
    fn rebuild(decoded: Decoding<'_>) -> Result<Self, SnapshotError> {
        let twice =
            |what: &str, id: &str| SnapshotError::Inconsistent(format!("{what} {id} twice"));
        let mut state = NotebookState {
            lean: decoded.lean,
            last_seq: decoded.last_seq,
            execution_count: decoded.execution_count,
            deleted_cells: decoded.deleted_cells,
            title: decoded.title,
            runtime_request: decoded.runtime_request,
            notebook_metadata: decoded.notebook_metadata,
            stats: decoded.stats,
            ..NotebookState::default()
        };
        for cell in decoded.cells {
            if state.deleted_cells.contains(&cell.id) {
                return Err(SnapshotError::Inconsistent(format!(
                    "cell {} is both shown and deleted",
                    cell.id
                )));
            }
            state.cell_order.push(cell.id.clone());
            if let Some(cell) = state.cells.insert(cell.id.clone(), cell) {
                return Err(twice("cell", cell.id.as_str()));
            }
        }
        state.rebuild_queue(&decoded.done, decoded.done_other, decoded.entries)?;
        for display_id in decoded.display_ids {
            state.displays.entry(display_id).or_default();
        }
        let mut active = None;
        for (index, session) in decoded.sessions.into_iter().enumerate() {
            if session.is_active() {
                if decoded.active_session.as_ref() != Some(&session.session_id) {
                    return Err(SnapshotError::Inconsistent(format!(
                        "session {} is active but not the active session",
                        session.session_id
                    )));
                }
                active = Some(index);
            }
            if state
                .session_index
                .insert(session.session_id.clone(), index)
                .is_some()
            {
                return Err(twice("session", session.session_id.as_str()));
            }
            state.sessions.push(session);
        }
        if active.is_none() && decoded.active_session.is_some() {
            return Err(SnapshotError::Inconsistent(
                "the active session is not an active session of the snapshot".into(),
            ));
        }
        state.active_session = active;
        Ok(state)
    }

    /// The queue: the completed entries a lean state keeps as their ids and ends, then the
    /// entries kept whole, each at its position, below the count of ids (a new entry takes
    /// that count as its position). A lean state keeps no completed entry whole, and a full
    /// one keeps every entry whole.
    fn rebuild_queue(
        &mut self,
        done: &str,
        done_other: Vec<(String, CompletionStatus, Option<NonZeroU64>)>,
        rows: Vec<(usize, DecodedRow)>,
    ) -> Result<(), SnapshotError> {
        if !done.is_empty() && !done.ends_with(LINE_END) {
            return Err(SnapshotError::Decode(
                "the completed entries' lines do not end with one".into(),
            ));
        }
        let lines = done.split_terminator(LINE_END);
        let done_count = lines.clone().count() + done_other.len();
        if !self.lean && done_count > 0 {
            return Err(SnapshotError::Inconsistent(
                "a full state lists completed entries without their content".into(),
            ));
        }
        self.done.reserve(done_count);
        self.entry_index.reserve(rows.len());
        let others = done_other.iter();
        let decoded = lines
            .map(decode_done_line)
            .chain(others.map(|(id, status, count)| Ok((id.as_str(), *status, *count))));
        for line in decoded {
            let (queue_id, status, execution_count) = line?;
            if !self.done.insert(queue_id, status, execution_count) {
                return Err(SnapshotError::Inconsistent(
                    "a completed queue entry is listed twice".into(),
                ));
            }
        }
        let total = self.done.len() + rows.len();
        for (index, row) in rows {
            if index >= total {
                return Err(SnapshotError::Inconsistent(format!(
                    "a queue entry's position {index} is past the {total} requested"
                )));
            }
            let entry = decode_entry(row)?;
            if self.lean && entry.is_completed() {
                return Err(SnapshotError::Inconsistent(format!(
                    "queue entry {} is kept whole although completed in a lean state",
                    entry.queue_id
                )));
            }
            self.insert_entry(index, entry)?;
        }
        Ok(())
    }

    /// Puts a decoded entry at `index` with its index entries; refuses an id or a position
    /// taken.
    fn insert_entry(&mut self, index: usize, entry: QueueEntry) -> Result<(), SnapshotError> {
        if self.entries.contains_key(&index) {
            return Err(SnapshotError::Inconsistent(format!(
                "two queue entries at position {index}"
            )));
        }
        if self.done.contains(entry.queue_id.as_str())
            || self
                .entry_index
                .insert(entry.queue_id.clone(), index)
                .is_some()
        {
            return Err(SnapshotError::Inconsistent(format!(
                "queue entry {} twice",
                entry.queue_id
            )));
        }
        match entry.state {
            EntryState::Pending => {
                self.pending.insert(index);
            }
            EntryState::Assigned { .. } | EntryState::Executing { .. } => {
                self.held.insert(index);
            }
            EntryState::Completed { .. } => {}
        }
        for output in &entry.outputs {
            if let OutputKind::Display {
                display_id: Some(display_id),
                ..
            } = &output.kind
            {
                self.displays
                    .entry(display_id.clone())
                    .or_default()
                    .push((index, output.output_id.clone()));
            }
        }
        self.entries.insert(index, entry);
        Ok(())
    }
}
