//! Snapshots: a folded state, encoded, so that a reader starts from it and folds only the
//! entries after it instead of the whole log.
//!
//! A snapshot is a cache, never the truth: the log is. It holds the state's own data
//! (cells, entries, sessions, counts), not its indices, which decoding rebuilds and checks,
//! so a damaged or hostile snapshot is refused with an error (the reader then folds from
//! the start), never trusted into a panic. A lean snapshot is what agents read; a full one
//! (with outputs and sources) what UIs read.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::model::OutputIndex;
use super::{
    ApplyStats, Cell, EntryState, NotebookState, Output, OutputKind, QueueEntry, RuntimeSession,
};
use crate::clock::Timestamp;
use crate::schema::{CellId, CellType, CompletionStatus, DisplayId, OutputId, QueueId, SessionId};
use crate::state::Seq;

/// The encoding version this build writes and reads; a snapshot in another is refused.
pub const SNAPSHOT_FORMAT: u32 = 2;

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
    entries: Vec<(usize, EncodedRow<'a>)>,
    display_ids: Vec<&'a DisplayId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
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
    entries: Vec<(usize, DecodedRow)>,
    /// Every display id ever shown: an update for one applies even when nothing shows it
    /// any more (and one never shown is not found).
    #[serde(default)]
    display_ids: Vec<DisplayId>,
    #[serde(default)]
    title: Option<String>,
    sessions: Vec<RuntimeSession>,
    active_session: Option<SessionId>,
    stats: ApplyStats,
}

/// Most entries of a long notebook are plain completed ones: they are lines of `done`, one
/// text (`queueId cellId cellType requestedSeq status executionCount`, separated by spaces,
/// each line ended by `;`), which decodes at a fraction of the cost of JSON values. JSON
/// escapes neither separator, so the text is read where it lies, without a copy. The
/// others are rows of `entries`, each with its position among all entries.
const FIELDS: usize = 6;

/// Ends a line of `done`.
const LINE_END: char = ';';

/// Separates the fields of a line of `done`.
const FIELD_SEPARATOR: char = ' ';

/// A plain completed entry's line, if it can be one: completed without an error, nothing
/// else to keep, and ids with neither separator nor anything JSON escapes.
fn done_line(entry: &QueueEntry, out: &mut String) -> bool {
    use std::fmt::Write;
    let EntryState::Completed {
        status,
        error: None,
    } = entry.state
    else {
        return false;
    };
    let plain = |id: &str| {
        !id.contains([LINE_END, FIELD_SEPARATOR, '"', '\\']) && !id.contains(char::is_control)
    };
    if !(extra_of(entry).is_none()
        && plain(entry.queue_id.as_str())
        && plain(entry.cell_id.as_str()))
    {
        return false;
    }
    let count = entry
        .execution_count
        .map(|n| n.to_string())
        .unwrap_or_default();
    let _ = write!(
        out,
        "{}{FIELD_SEPARATOR}{}{FIELD_SEPARATOR}{}{FIELD_SEPARATOR}{}{FIELD_SEPARATOR}{}{FIELD_SEPARATOR}{count}{LINE_END}",
        entry.queue_id,
        entry.cell_id,
        entry.cell_type.as_str(),
        entry.requested_seq,
        status.as_str(),
    );
    true
}

/// A plain completed entry from its line.
fn decode_done_line(line: &str, state: &NotebookState) -> Result<QueueEntry, SnapshotError> {
    use serde::de::IntoDeserializer;
    let bad = || SnapshotError::Decode(format!("a completed entry's line is not one: {line:?}"));
    let mut fields = line.splitn(FIELDS, FIELD_SEPARATOR);
    let mut next = || fields.next().ok_or_else(bad);
    let (queue_id, cell_id, cell_type, requested_seq, status, count) =
        (next()?, next()?, next()?, next()?, next()?, next()?);
    if queue_id.is_empty() || cell_id.is_empty() {
        return Err(bad());
    }
    fn unit(text: &str) -> serde::de::value::StrDeserializer<'_, serde::de::value::Error> {
        text.into_deserializer()
    }
    let de = |_: serde::de::value::Error| bad();
    Ok(QueueEntry {
        queue_id: queue_id.into(),
        // Many entries run one cell: share its id rather than copy it.
        cell_id: match state.cells.get_key_value(cell_id) {
            Some((id, _)) => id.clone(),
            None => state
                .deleted_cells
                .get(cell_id)
                .cloned()
                .unwrap_or_else(|| cell_id.into()),
        },
        cell_type: CellType::deserialize(unit(cell_type)).map_err(de)?,
        source: String::new(),
        requested_by: String::new(),
        requested_seq: requested_seq.parse().map_err(|_| bad())?,
        state: EntryState::Completed {
            status: CompletionStatus::deserialize(unit(status)).map_err(de)?,
            error: None,
        },
        cancel_requested: false,
        execution_count: match count {
            "" => None,
            n => Some(n.parse().map_err(|_| bad())?),
        },
        outputs: Vec::new(),
        clear_pending: false,
        metadata: Map::new(),
        output_index: OutputIndex::default(),
        has_result: false,
    })
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
        outputs: &entry.outputs,
        clear_pending: entry.clear_pending,
        metadata: &entry.metadata,
        spent_output_ids: entry.output_index.spent(),
        has_result: entry.has_result,
    };
    let empty = extra.source.is_empty()
        && extra.requested_by.is_empty()
        && !extra.cancel_requested
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
        let entries = (0..)
            .zip(&self.entries)
            .filter(|(_, entry)| !done_line(entry, &mut done))
            .map(|(index, entry)| (index, encode_entry(entry)))
            .collect();
        let encoding = Encoding {
            format: SNAPSHOT_FORMAT,
            lean: self.lean,
            last_seq: self.last_seq,
            execution_count: self.execution_count,
            cells: self.cells().collect(),
            deleted_cells: &self.deleted_cells,
            done,
            entries,
            display_ids: self.displays.keys().collect(),
            title: self.title.as_deref(),
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
        let mut lines = decoded.done.split_terminator(LINE_END);
        let mut rows = decoded.entries.into_iter();
        let total = decoded.done.matches(LINE_END).count() + rows.len();
        // The next row, held until its position comes (rows are large: move each once).
        let mut row = rows.next();
        state.entries.reserve_exact(total);
        state.entry_index.reserve(total);
        for index in 0..total {
            let entry = match row.take_if(|(at, _)| *at == index) {
                Some((_, taken)) => {
                    row = rows.next();
                    decode_entry(taken)?
                }
                None => match lines.next() {
                    Some(line) => decode_done_line(line, &state)?,
                    None => break,
                },
            };
            if state
                .entry_index
                .insert(entry.queue_id.clone(), index)
                .is_some()
            {
                return Err(twice("queue entry", entry.queue_id.as_str()));
            }
            match entry.state {
                EntryState::Pending => {
                    state.pending.insert(index);
                }
                EntryState::Assigned { .. } | EntryState::Executing { .. } => {
                    state.held.insert(index);
                }
                EntryState::Completed { .. } => {}
            }
            for output in &entry.outputs {
                if let OutputKind::Display {
                    display_id: Some(display_id),
                    ..
                } = &output.kind
                {
                    state
                        .displays
                        .entry(display_id.clone())
                        .or_default()
                        .push((index, output.output_id.clone()));
                }
            }
            state.entries.push(entry);
        }
        for display_id in decoded.display_ids {
            state.displays.entry(display_id).or_default();
        }
        if row.is_some() || lines.next().is_some() {
            return Err(SnapshotError::Inconsistent(
                "the positions of its queue entries do not add up".into(),
            ));
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
}
