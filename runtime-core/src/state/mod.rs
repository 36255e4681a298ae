//! The reducer: folds a notebook's log into its state and enforces the rules that make
//! sharing one log between agents and UIs safe.
//!
//! [`NotebookState::apply`] is pure and deterministic: no clock, no randomness, no I/O, so
//! every replica that folds the same log reaches the same state. Each event either applies
//! or is ignored with an [`Ignored`] reason that is counted; nothing panics, nothing is
//! fatal. The rules (see `docs/architecture.md`):
//!
//! 1. One active runtime session: `RuntimeSessionStarted` makes a session active and ends
//!    the previous one (displaced, or expired if its lease had run out by then).
//! 2. Claims are decided by log order: `ExecutionAssigned` applies only to a pending entry
//!    from the active session; `ExecutionStarted` only from the session holding the claim.
//! 3. Fencing: outputs and completions apply only from the session executing the entry.
//! 4. Leases: an `expired` termination applies only if the lease had run out at its `at`.
//! 5. When a session ends, its claimed entries return to pending and its running entries
//!    end `runtime_lost`: never re-run silently.
//! 6. Terminal states are final and distinct; execution counts are assigned at start.
//! 7. A repeated request id is ignored; an id (cell, output) is never used twice, even
//!    after the thing it named was deleted or cleared.
//! 8. Malformed, unknown and rule-breaking events are skipped and counted, and an event
//!    that is skipped changes nothing.
//! 9. Capabilities route work: a claim applies only if the claiming session's capabilities
//!    cover the entry's cell type.
//!
//! A UI folds with [`NotebookState::new`] and keeps every output. An agent folds with
//! [`NotebookState::lean`]: the same decisions and statistics, but no output bodies and
//! nothing of an entry once it has completed but its id and final state.

mod done;
mod model;
mod snapshot;
mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use done::DoneIds;
pub use model::*;
pub use snapshot::{SNAPSHOT_FORMAT, Snapshot, SnapshotError, SnapshotKind};
pub use view::{CellView, ExecutionView, NotebookView, RuntimeView};

use serde_json::Map;

use crate::clock::Timestamp;
use crate::schema::*;
use crate::store::{LogEntry, Stamp};

/// Why an event did not change the state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Ignored {
    /// Its sequence number is not after the last one applied (a replayed delivery).
    OutOfOrder,
    /// It does not decode, or breaks the schema (an empty id).
    Malformed,
    /// Its type is unknown to this version.
    Unknown,
    /// It creates something (a cell, a request, a session, an output) whose id exists.
    DuplicateId,
    /// It names a cell, entry, session or output that does not exist.
    NotFound,
    /// A claim for an entry that is no longer pending, or by a session that is not active.
    ClaimRejected,
    /// A start, output or completion from a session that does not hold the entry:
    /// late output from a displaced agent, for instance.
    Fenced,
    /// A second result for one execution.
    DuplicateResult,
    /// It targets a session that has ended or an entry that has completed.
    AlreadyEnded,
    /// An expiry for a session whose lease had not run out at the given time.
    LeaseStillValid,
    /// A claim by a session whose capabilities do not cover the entry's cell type.
    NotCapable,
    /// It acts for a runtime session (a claim, an output, a renewal, an end) but its
    /// [`Stamp`] names another author than the one that started the session: someone
    /// writing as a runtime they are not.
    WrongAuthor,
}

/// What [`NotebookState::apply`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state changed.
    Applied,
    /// The event was skipped, for this reason.
    Ignored(Ignored),
}

/// Counts of what the reducer did, for diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApplyStats {
    /// Events applied.
    pub applied: u64,
    /// Events ignored, by reason.
    pub ignored: BTreeMap<Ignored, u64>,
}

impl ApplyStats {
    /// How many events were ignored for `reason`.
    pub fn ignored(&self, reason: Ignored) -> u64 {
        self.ignored.get(&reason).copied().unwrap_or(0)
    }
}

/// A notebook's state: the fold of its log.
///
/// # Example
///
/// ```
/// use runtime_core::*;
///
/// let mut state = NotebookState::new();
/// let cell = Event::from(CellCreated { cell_id: "c1".into(), cell_type: CellType::Code, source: "1 + 1".into() });
/// assert_eq!(state.apply(1, &cell), Applied::Applied);
/// let request = Event::from(ExecutionRequested {
///     queue_id: "q1".into(),
///     cell_id: "c1".into(),
///     cell_type: CellType::Code,
///     source: "1 + 1".into(),
///     requested_by: "alice".into(),
/// });
/// assert_eq!(state.apply(2, &request), Applied::Applied);
/// assert_eq!(state.entry(&"q1".into()).unwrap().state, EntryState::Pending);
/// ```
#[derive(Debug, Clone, Default)]
pub struct NotebookState {
    /// Keep output bodies (a UI) or only ids and states (an agent).
    lean: bool,
    last_seq: Seq,
    cells: HashMap<CellId, Cell>,
    /// Ids of deleted cells: never created again.
    deleted_cells: HashSet<CellId>,
    cell_order: Vec<CellId>,
    /// The runtime the notebook asks for (a full state only).
    runtime_request: Option<NotebookRuntimeRequested>,
    /// The notebook's metadata (a full state only).
    notebook_metadata: Option<NotebookMetadataChanged>,
    /// Queue entries by position (request order): all of them in a full state, the
    /// unfinished ones in a lean state.
    entries: BTreeMap<usize, QueueEntry>,
    /// Where each entry of `entries` is.
    entry_index: HashMap<QueueId, usize>,
    /// A lean state's completed executions: their ids and how they ended.
    done: DoneIds,
    pending: BTreeSet<usize>,
    held: BTreeSet<usize>,
    sessions: Vec<RuntimeSession>,
    session_index: HashMap<SessionId, usize>,
    active_session: Option<usize>,
    execution_count: u64,
    displays: HashMap<DisplayId, Vec<(usize, OutputId)>>,
    /// The notebook's title, kept by a full state (an agent does not need it).
    title: Option<String>,
    stats: ApplyStats,
}

const ABORTED: &str = "aborted: an earlier execution in the queue failed (stop_on_error)";

impl NotebookState {
    /// An empty notebook that keeps everything: what a UI folds.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty notebook that keeps what an agent needs: ids, states, sessions and the
    /// queue, but no output bodies and no source or outputs of completed entries. It makes
    /// the same decisions and counts the same events as [`new`](Self::new), in memory that
    /// does not grow with the output ever written.
    ///
    /// ```
    /// use runtime_core::{NotebookState, CellCreated, CellType};
    ///
    /// let mut state = NotebookState::lean();
    /// state.apply(1, &CellCreated { cell_id: "c".into(), cell_type: CellType::Code, source: "x = 1".into() }.into());
    /// assert_eq!(state.cell(&"c".into()).unwrap().source, ""); // bodies are not kept
    /// ```
    pub fn lean() -> Self {
        Self {
            lean: true,
            ..Self::default()
        }
    }

    /// `true` for a state made with [`lean`](Self::lean).
    pub fn is_lean(&self) -> bool {
        self.lean
    }

    /// Folds one unstamped event in, going by the times and names it carries. `seq` must
    /// increase from call to call; a repeated or smaller one is ignored, so replaying a
    /// delivery is harmless.
    pub fn apply(&mut self, seq: Seq, event: &Event) -> Applied {
        self.fold(seq, event, None)
    }

    /// Folds one log entry in, by its [`Stamp`] where it has one: a lease runs from the
    /// stamp's time and an expiry is judged at the stamp's time (one authority's clock,
    /// never the writers'), and an event that acts for a runtime session applies only if
    /// its stamp's author started that session ([`Ignored::WrongAuthor`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use runtime_core::*;
    ///
    /// let stamped = |seq, author: &str, event: Event| LogEntry {
    ///     seq,
    ///     event: Arc::new(event),
    ///     stamp: Some(Stamp::new(Timestamp(1_000), author)),
    /// };
    /// let mut state = NotebookState::new();
    /// let started = RuntimeSessionStarted {
    ///     session_id: "s".into(),
    ///     runtime_id: "r".into(),
    ///     runtime_type: "echo".into(),
    ///     client_id: "runner".into(),
    ///     capabilities: Capabilities::code(),
    ///     at: Timestamp(0),
    ///     valid_for_ms: 30_000,
    /// };
    /// assert_eq!(state.apply_entry(&stamped(1, "runner", started.into())), Applied::Applied);
    /// // Someone else ends the session in its name: refused.
    /// let forged = RuntimeSessionTerminated {
    ///     session_id: "s".into(),
    ///     reason: TerminationReason::Shutdown,
    ///     by: "s".into(),
    ///     at: Timestamp(0),
    ///     detail: None,
    /// };
    /// assert_eq!(
    ///     state.apply_entry(&stamped(2, "mallory", forged.into())),
    ///     Applied::Ignored(Ignored::WrongAuthor)
    /// );
    /// // The lease runs from the stamp's time, not from the `at` the event claims.
    /// assert_eq!(state.active_session().unwrap().lease_until, Timestamp(31_000));
    /// ```
    pub fn apply_entry(&mut self, entry: &LogEntry) -> Applied {
        self.fold(entry.seq, &entry.event, entry.stamp.as_ref())
    }

    fn fold(&mut self, seq: Seq, event: &Event, stamp: Option<&Stamp>) -> Applied {
        let outcome = if seq <= self.last_seq {
            Err(Ignored::OutOfOrder)
        } else {
            self.last_seq = seq;
            if event.has_empty_id() {
                Err(Ignored::Malformed)
            } else {
                self.check_author(event, stamp)
                    .and_then(|()| self.apply_event(seq, event, stamp))
            }
        };
        match outcome {
            Ok(()) => {
                self.stats.applied += 1;
                Applied::Applied
            }
            Err(reason) => {
                *self.stats.ignored.entry(reason).or_default() += 1;
                Applied::Ignored(reason)
            }
        }
    }

    /// An event that acts for a runtime session must be stamped by the author that started
    /// it (where the session's start was stamped). Starting a session, and ending one whose
    /// lease ran out, are anyone's to do.
    fn check_author(&self, event: &Event, stamp: Option<&Stamp>) -> Result<(), Ignored> {
        let acts_for = match event {
            Event::RuntimeSessionStarted(_) => None,
            Event::RuntimeSessionTerminated(e) if e.reason == TerminationReason::Expired => None,
            _ => event.session_id(),
        };
        let owner = acts_for
            .and_then(|session_id| self.session(session_id))
            .and_then(|session| session.author.as_deref());
        match (owner, stamp) {
            (None, _) => Ok(()),
            (Some(owner), Some(stamp)) if *stamp.author == *owner => Ok(()),
            (Some(_), _) => Err(Ignored::WrongAuthor),
        }
    }

    fn apply_event(
        &mut self,
        seq: Seq,
        event: &Event,
        stamp: Option<&Stamp>,
    ) -> Result<(), Ignored> {
        // The authority's time where the entry is stamped; the writer's otherwise.
        let at = |own: Timestamp| stamp.map_or(own, |stamp| stamp.at);
        match event {
            Event::Malformed(_) => Err(Ignored::Malformed),
            Event::Unknown(_) => Err(Ignored::Unknown),
            Event::CellCreated(e) => self.create_cell(e),
            Event::CellSourceChanged(e) => {
                let cell = self.cells.get_mut(&e.cell_id).ok_or(Ignored::NotFound)?;
                if !self.lean {
                    cell.source.clone_from(&e.source);
                }
                Ok(())
            }
            Event::CellDeleted(e) => self.delete_cell(&e.cell_id),
            Event::NotebookTitleChanged(e) => {
                if !self.lean {
                    self.title = Some(e.title.clone()).filter(|title| !title.is_empty());
                }
                Ok(())
            }
            Event::NotebookRuntimeRequested(e) => {
                if !self.lean {
                    self.runtime_request = Some(e.clone()).filter(|e| !e.runtime_type.is_empty());
                }
                Ok(())
            }
            Event::NotebookMetadataChanged(e) => {
                if !self.lean {
                    self.notebook_metadata = Some(e.clone());
                }
                Ok(())
            }
            Event::CellMetadataChanged(e) => {
                let lean = self.lean;
                let cell = self.cells.get_mut(&e.cell_id).ok_or(Ignored::NotFound)?;
                if !lean {
                    cell.metadata.clone_from(&e.metadata);
                    cell.attachments.clone_from(&e.attachments);
                    cell.other.clone_from(&e.other);
                }
                Ok(())
            }
            Event::CellMoved(e) => self.move_cell(e),
            Event::CellOutputsImported(e) => {
                let lean = self.lean;
                let cell = self.cells.get_mut(&e.cell_id).ok_or(Ignored::NotFound)?;
                cell.shown_execution = None;
                if !lean {
                    cell.imported = Some(ImportedOutputs {
                        execution_count: e.execution_count,
                        outputs: e.outputs.clone(),
                    });
                }
                Ok(())
            }
            Event::ExecutionRequested(e) => self.request(seq, e),
            Event::ExecutionAssigned(e) => self.assign(e),
            Event::ExecutionStarted(e) => self.start(e, at(e.at)),
            Event::ExecutionCompleted(e) => self.complete(e),
            Event::ExecutionCancelRequested(e) => self.cancel(&e.target),
            Event::InputRequested(e) => {
                let index = self.owned_entry(&e.queue_id, &e.session_id)?;
                self.live_mut(index)?.input = Some(InputRequest::from(e));
                Ok(())
            }
            Event::InputReplied(e) => {
                let index = self.unfinished(&e.queue_id, Ignored::AlreadyEnded)?;
                let open = self
                    .live_mut(index)?
                    .input
                    .as_mut()
                    .filter(|input| input.input_id == e.input_id)
                    .ok_or(Ignored::NotFound)?;
                if open.reply.is_some() {
                    return Err(Ignored::DuplicateId);
                }
                open.reply = Some(e.value.clone());
                Ok(())
            }
            Event::RuntimeSessionStarted(e) => self.start_session(e, stamp),
            Event::RuntimeSessionStatusChanged(e) => {
                self.active_session_mut(&e.session_id)?.status = e.status;
                Ok(())
            }
            Event::RuntimeSessionRenewed(e) => {
                let session = self.active_session_mut(&e.session_id)?;
                let until =
                    at(e.at).saturating_add(std::time::Duration::from_millis(e.valid_for_ms));
                session.lease_until = session.lease_until.max(until);
                Ok(())
            }
            Event::RuntimeSessionTerminated(e) => self.terminate(e, at(e.at)),
            Event::StreamOutputAdded(e) => {
                let kind = OutputKind::Stream {
                    name: e.name,
                    text: self.body(&e.text),
                };
                self.add_output(&e.queue_id, &e.session_id, &e.output_id, kind)
                    .map(drop)
            }
            Event::StreamOutputAppended(e) => {
                let lean = self.lean;
                let output = self.owned_output(&e.queue_id, &e.session_id, &e.output_id)?;
                match &mut output.kind {
                    OutputKind::Stream { text, .. } if !lean => text.push_str(&e.text),
                    OutputKind::Stream { .. } => {}
                    _ => return Err(Ignored::NotFound),
                }
                Ok(())
            }
            Event::MarkdownOutputAdded(e) => {
                let kind = OutputKind::Markdown {
                    text: self.body(&e.text),
                };
                self.add_output(&e.queue_id, &e.session_id, &e.output_id, kind)
                    .map(drop)
            }
            Event::MarkdownOutputAppended(e) => {
                let lean = self.lean;
                let output = self.owned_output(&e.queue_id, &e.session_id, &e.output_id)?;
                match &mut output.kind {
                    OutputKind::Markdown { text } if !lean => text.push_str(&e.text),
                    OutputKind::Markdown { .. } => {}
                    _ => return Err(Ignored::NotFound),
                }
                Ok(())
            }
            Event::DisplayOutputAdded(e) => {
                let kind = OutputKind::Display {
                    data: self.body(&e.data),
                    metadata: self.body(&e.metadata),
                    display_id: e.display_id.clone(),
                };
                let index = self.add_output(&e.queue_id, &e.session_id, &e.output_id, kind)?;
                self.show_display(e.display_id.as_ref(), index, &e.output_id);
                Ok(())
            }
            Event::DisplayOutputUpdated(e) => self.update_display(e),
            Event::ExecuteResultAdded(e) => {
                let index = self.owned_entry(&e.queue_id, &e.session_id)?;
                let entry = self.live(index)?;
                if entry.has_result && !entry.clear_pending {
                    return Err(Ignored::DuplicateResult);
                }
                let kind = OutputKind::Result {
                    data: self.body(&e.data),
                    metadata: self.body(&e.metadata),
                    execution_count: e.execution_count,
                    display_id: e.display_id.clone(),
                };
                let index = self.add_output(&e.queue_id, &e.session_id, &e.output_id, kind)?;
                self.show_display(e.display_id.as_ref(), index, &e.output_id);
                Ok(())
            }
            Event::ErrorOutputAdded(e) => {
                let kind = OutputKind::Error {
                    ename: e.ename.clone(),
                    evalue: self.body(&e.evalue),
                    traceback: self.body(&e.traceback),
                };
                self.add_output(&e.queue_id, &e.session_id, &e.output_id, kind)
                    .map(drop)
            }
            Event::OutputsCleared(e) => {
                let index = self.owned_entry(&e.queue_id, &e.session_id)?;
                let entry = self.live_mut(index)?;
                if e.wait {
                    entry.clear_pending = true;
                } else {
                    entry.clear_outputs();
                }
                Ok(())
            }
        }
    }

    /// A copy of `body` to keep, or its empty value in a lean state.
    fn body<T: Clone + Default>(&self, body: &T) -> T {
        if self.lean {
            T::default()
        } else {
            body.clone()
        }
    }

    fn create_cell(&mut self, e: &CellCreated) -> Result<(), Ignored> {
        if self.cells.contains_key(&e.cell_id) || self.deleted_cells.contains(&e.cell_id) {
            return Err(Ignored::DuplicateId);
        }
        let cell = Cell {
            id: e.cell_id.clone(),
            cell_type: e.cell_type,
            source: self.body(&e.source),
            shown_execution: None,
            metadata: Map::new(),
            attachments: None,
            other: Map::new(),
            imported: None,
        };
        self.cells.insert(e.cell_id.clone(), cell);
        self.cell_order.push(e.cell_id.clone());
        Ok(())
    }

    fn move_cell(&mut self, e: &CellMoved) -> Result<(), Ignored> {
        let exists = |id: &CellId| self.cells.contains_key(id);
        if !exists(&e.cell_id) || e.after.as_ref().is_some_and(|after| !exists(after)) {
            return Err(Ignored::NotFound);
        }
        if e.after.as_ref() == Some(&e.cell_id) {
            return Ok(());
        }
        self.cell_order.retain(|id| id != &e.cell_id);
        let at = match &e.after {
            None => 0,
            Some(after) => self
                .cell_order
                .iter()
                .position(|id| id == after)
                .map_or(self.cell_order.len(), |index| index + 1),
        };
        self.cell_order.insert(at, e.cell_id.clone());
        Ok(())
    }

    fn delete_cell(&mut self, cell_id: &CellId) -> Result<(), Ignored> {
        self.cells.remove(cell_id).ok_or(Ignored::NotFound)?;
        self.deleted_cells.insert(cell_id.clone());
        self.cell_order.retain(|id| id != cell_id);
        let queued: Vec<usize> = self.pending.iter().chain(&self.held).copied().collect();
        for index in queued {
            let Ok(entry) = self.live(index) else {
                continue;
            };
            if &entry.cell_id == cell_id && !matches!(entry.state, EntryState::Executing { .. }) {
                self.finish(
                    index,
                    CompletionStatus::Cancelled,
                    Some("cell deleted".into()),
                );
            }
        }
        Ok(())
    }

    fn request(&mut self, seq: Seq, e: &ExecutionRequested) -> Result<(), Ignored> {
        if self.entry_index.contains_key(&e.queue_id) || self.done.contains(e.queue_id.as_str()) {
            return Err(Ignored::DuplicateId);
        }
        if !self.cells.contains_key(&e.cell_id) {
            return Err(Ignored::NotFound);
        }
        // Positions are never reused: every id ever requested had one.
        let index = self.requested_count();
        self.entries.insert(
            index,
            QueueEntry {
                queue_id: e.queue_id.clone(),
                cell_id: e.cell_id.clone(),
                cell_type: e.cell_type,
                source: e.source.clone(),
                requested_by: e.requested_by.clone(),
                requested_seq: seq,
                state: EntryState::Pending,
                cancel_requested: false,
                input: None,
                execution_count: None,
                outputs: Vec::new(),
                clear_pending: false,
                metadata: Default::default(),
                output_index: Default::default(),
                has_result: false,
            },
        );
        self.entry_index.insert(e.queue_id.clone(), index);
        self.pending.insert(index);
        Ok(())
    }

    fn assign(&mut self, e: &ExecutionAssigned) -> Result<(), Ignored> {
        let index = self.unfinished(&e.queue_id, Ignored::ClaimRejected)?;
        let entry = self.live(index)?;
        if !self.is_active(&e.session_id) || entry.state != EntryState::Pending {
            return Err(Ignored::ClaimRejected);
        }
        let cell_type = entry.cell_type;
        if !self
            .active_session()
            .is_some_and(|session| session.capabilities.covers(cell_type))
        {
            return Err(Ignored::NotCapable);
        }
        self.live_mut(index)?.state = EntryState::Assigned {
            session_id: e.session_id.clone(),
        };
        self.pending.remove(&index);
        self.held.insert(index);
        Ok(())
    }

    fn start(&mut self, e: &ExecutionStarted, at: Timestamp) -> Result<(), Ignored> {
        let index = self.unfinished(&e.queue_id, Ignored::AlreadyEnded)?;
        let count = self.execution_count + 1;
        let entry = self.entries.get_mut(&index).ok_or(Ignored::NotFound)?;
        match &entry.state {
            EntryState::Assigned { session_id } if session_id == &e.session_id => {}
            _ => return Err(Ignored::Fenced),
        }
        self.execution_count = count;
        entry.execution_count = Some(self.execution_count);
        entry.state = EntryState::Executing {
            session_id: e.session_id.clone(),
            started_at: at,
        };
        if let Some(cell) = self.cells.get_mut(&entry.cell_id) {
            cell.shown_execution = Some(e.queue_id.clone());
            cell.imported = None;
        }
        Ok(())
    }

    fn complete(&mut self, e: &ExecutionCompleted) -> Result<(), Ignored> {
        let index = self.unfinished(&e.queue_id, Ignored::AlreadyEnded)?;
        let metadata = self.body(&e.metadata);
        let entry = self.live_mut(index)?;
        match entry.state.session_id() {
            Some(holder) if holder == &e.session_id => {}
            _ => return Err(Ignored::Fenced),
        }
        entry.metadata = metadata;
        self.finish(index, e.status, e.error.clone());
        if e.abort_pending && e.status == CompletionStatus::Error {
            for index in std::mem::take(&mut self.pending) {
                self.finish(index, CompletionStatus::Cancelled, Some(ABORTED.to_owned()));
            }
        }
        Ok(())
    }

    fn cancel(&mut self, target: &CancelTarget) -> Result<(), Ignored> {
        let targets: Vec<usize> = match target {
            CancelTarget::Entry { queue_id } => {
                vec![self.unfinished(queue_id, Ignored::AlreadyEnded)?]
            }
            CancelTarget::All => self.pending.iter().chain(&self.held).copied().collect(),
        };
        for index in targets {
            let Ok(entry) = self.live_mut(index) else {
                continue;
            };
            if let EntryState::Executing { .. } = entry.state {
                // The session running it cancels it and reports how it ended.
                entry.cancel_requested = true;
            } else {
                let reason = Some("cancelled before it started".to_owned());
                self.finish(index, CompletionStatus::Cancelled, reason);
            }
        }
        Ok(())
    }

    fn start_session(
        &mut self,
        e: &RuntimeSessionStarted,
        stamp: Option<&Stamp>,
    ) -> Result<(), Ignored> {
        if self.session_index.contains_key(&e.session_id) {
            return Err(Ignored::DuplicateId);
        }
        let at = stamp.map_or(e.at, |stamp| stamp.at);
        if let Some(previous) = self.active_session {
            let reason = if self.sessions[previous].lease_until <= at {
                TerminationReason::Expired
            } else {
                TerminationReason::Displaced
            };
            self.end_session(previous, reason);
        }
        let index = self.sessions.len();
        self.sessions.push(RuntimeSession {
            session_id: e.session_id.clone(),
            runtime_id: e.runtime_id.clone(),
            runtime_type: e.runtime_type.clone(),
            client_id: e.client_id.clone(),
            capabilities: e.capabilities.clone(),
            author: stamp.map(|stamp| stamp.author.clone()),
            started_at: at,
            lease_until: at.saturating_add(std::time::Duration::from_millis(e.valid_for_ms)),
            status: SessionStatus::Ready,
            state: SessionState::Active,
        });
        self.session_index.insert(e.session_id.clone(), index);
        self.active_session = Some(index);
        Ok(())
    }

    fn terminate(&mut self, e: &RuntimeSessionTerminated, at: Timestamp) -> Result<(), Ignored> {
        let index = *self
            .session_index
            .get(&e.session_id)
            .ok_or(Ignored::NotFound)?;
        let session = &self.sessions[index];
        if !session.is_active() {
            return Err(Ignored::AlreadyEnded);
        }
        if e.reason == TerminationReason::Expired && at < session.lease_until {
            return Err(Ignored::LeaseStillValid);
        }
        self.end_session(index, e.reason);
        Ok(())
    }

    /// Ends a session: claimed entries go back to pending, running ones are lost.
    fn end_session(&mut self, index: usize, reason: TerminationReason) {
        let session_id = self.sessions[index].session_id.clone();
        self.sessions[index].state = SessionState::Ended(reason);
        if self.active_session == Some(index) {
            self.active_session = None;
        }
        let held: Vec<usize> = self.held.iter().copied().collect();
        for entry_index in held {
            let Ok(entry) = self.live_mut(entry_index) else {
                continue;
            };
            match &entry.state {
                EntryState::Assigned { session_id: holder } if holder == &session_id => {
                    entry.state = EntryState::Pending;
                    self.held.remove(&entry_index);
                    self.pending.insert(entry_index);
                }
                EntryState::Executing {
                    session_id: holder, ..
                } if holder == &session_id => {
                    let reason = format!(
                        "the runtime session ended ({}) while running",
                        reason.as_str()
                    );
                    self.finish(entry_index, CompletionStatus::RuntimeLost, Some(reason));
                }
                _ => {}
            }
        }
    }

    /// Ends an entry. A lean state keeps only how it ended: later outputs and lifecycle
    /// events for it are ignored whatever they say, so nothing else of it matters.
    fn finish(&mut self, index: usize, status: CompletionStatus, error: Option<String>) {
        self.pending.remove(&index);
        self.held.remove(&index);
        if !self.lean {
            if let Some(entry) = self.entries.get_mut(&index) {
                entry.state = EntryState::Completed { status, error };
                entry.input = None;
            }
            return;
        }
        let Some(entry) = self.entries.remove(&index) else {
            return;
        };
        self.entry_index.remove(&entry.queue_id);
        let execution_count = entry.execution_count.and_then(std::num::NonZeroU64::new);
        self.done
            .insert(entry.queue_id.as_str(), status, execution_count);
    }

    fn add_output(
        &mut self,
        queue_id: &QueueId,
        session_id: &SessionId,
        output_id: &OutputId,
        kind: OutputKind,
    ) -> Result<usize, Ignored> {
        let index = self.owned_entry(queue_id, session_id)?;
        let entry = self.live_mut(index)?;
        if entry.used_output_id(output_id) {
            return Err(Ignored::DuplicateId);
        }
        if entry.clear_pending {
            entry.clear_outputs();
        }
        entry.push_output(Output {
            output_id: output_id.clone(),
            kind,
        });
        Ok(index)
    }

    /// Remembers that the output at `index` shows `display_id`, so updates find it.
    fn show_display(&mut self, display_id: Option<&DisplayId>, index: usize, output_id: &OutputId) {
        if let Some(display_id) = display_id {
            let shown = self.displays.entry(display_id.clone()).or_default();
            shown.push((index, output_id.clone()));
        }
    }

    fn update_display(&mut self, e: &DisplayOutputUpdated) -> Result<(), Ignored> {
        self.owned_entry(&e.queue_id, &e.session_id)?;
        let shown = self
            .displays
            .get_mut(&e.display_id)
            .ok_or(Ignored::NotFound)?;
        let entries = &mut self.entries;
        let lean = self.lean;
        shown.retain(|(index, output_id)| {
            match entries
                .get_mut(index)
                .and_then(|entry| entry.output_mut(output_id))
                .map(|output| &mut output.kind)
            {
                Some(
                    OutputKind::Display {
                        data,
                        metadata,
                        display_id: Some(shown_as),
                    }
                    | OutputKind::Result {
                        data,
                        metadata,
                        display_id: Some(shown_as),
                        ..
                    },
                ) if shown_as == &e.display_id => {
                    if !lean {
                        data.clone_from(&e.data);
                        metadata.clone_from(&e.metadata);
                    }
                    true
                }
                // Cleared since (or forgotten by a lean state): forget it.
                _ => false,
            }
        });
        Ok(())
    }

    fn owned_entry(&self, queue_id: &QueueId, session_id: &SessionId) -> Result<usize, Ignored> {
        let index = self.unfinished(queue_id, Ignored::Fenced)?;
        match &self.live(index)?.state {
            EntryState::Executing {
                session_id: holder, ..
            } if holder == session_id => Ok(index),
            _ => Err(Ignored::Fenced),
        }
    }

    fn owned_output(
        &mut self,
        queue_id: &QueueId,
        session_id: &SessionId,
        output_id: &OutputId,
    ) -> Result<&mut Output, Ignored> {
        let index = self.owned_entry(queue_id, session_id)?;
        let entry = self.live_mut(index)?;
        if entry.clear_pending {
            // Its target is about to be cleared: an append cannot be the next output (the
            // writer starts a new one after a clear), so it is ignored and changes nothing.
            return Err(Ignored::NotFound);
        }
        entry.output_mut(output_id).ok_or(Ignored::NotFound)
    }

    /// The position of an entry that has not completed; `if_completed` if it has (a lean
    /// state keeps no more of it), `NotFound` if it was never requested.
    fn unfinished(&self, queue_id: &QueueId, if_completed: Ignored) -> Result<usize, Ignored> {
        match self.entry_index.get(queue_id) {
            Some(&index) => match self.entries.get(&index) {
                Some(entry) if entry.is_completed() => Err(if_completed),
                Some(_) => Ok(index),
                None => Err(Ignored::NotFound),
            },
            None if self.done.contains(queue_id.as_str()) => Err(if_completed),
            None => Err(Ignored::NotFound),
        }
    }

    fn live(&self, index: usize) -> Result<&QueueEntry, Ignored> {
        self.entries.get(&index).ok_or(Ignored::NotFound)
    }

    fn live_mut(&mut self, index: usize) -> Result<&mut QueueEntry, Ignored> {
        self.entries.get_mut(&index).ok_or(Ignored::NotFound)
    }

    fn is_active(&self, session_id: &SessionId) -> bool {
        self.active_session()
            .is_some_and(|s| &s.session_id == session_id)
    }

    fn active_session_mut(
        &mut self,
        session_id: &SessionId,
    ) -> Result<&mut RuntimeSession, Ignored> {
        let index = *self
            .session_index
            .get(session_id)
            .ok_or(Ignored::NotFound)?;
        let session = &mut self.sessions[index];
        if session.is_active() {
            Ok(session)
        } else {
            Err(Ignored::AlreadyEnded)
        }
    }

    /// The runtime the notebook asks for (the last [`NotebookRuntimeRequested`], unless it
    /// withdrew the request), in a full state; none in a lean one.
    ///
    /// ```
    /// use runtime_core::{NotebookRuntimeRequested, NotebookState};
    ///
    /// let mut state = NotebookState::new();
    /// let request = NotebookRuntimeRequested { runtime_type: "shell".into(), worktree: None };
    /// state.apply(1, &request.clone().into());
    /// assert_eq!(state.runtime_request(), Some(&request));
    /// ```
    pub fn runtime_request(&self) -> Option<&NotebookRuntimeRequested> {
        self.runtime_request.as_ref()
    }

    /// The notebook's title (the last non-empty `NotebookTitleChanged`), in a full state;
    /// always `None` in a lean one.
    ///
    /// ```
    /// use runtime_core::{NotebookState, NotebookTitleChanged};
    ///
    /// let mut state = NotebookState::new();
    /// state.apply(1, &NotebookTitleChanged { title: "Weekly report".into() }.into());
    /// assert_eq!(state.title(), Some("Weekly report"));
    /// ```
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The sequence number of the last event folded in (0 before any).
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// What the reducer applied and ignored so far.
    pub fn stats(&self) -> &ApplyStats {
        &self.stats
    }

    /// The last execution count handed out.
    pub fn execution_count(&self) -> u64 {
        self.execution_count
    }

    /// The active runtime session, if any.
    pub fn active_session(&self) -> Option<&RuntimeSession> {
        self.active_session.map(|index| &self.sessions[index])
    }

    /// The active session, if its lease has run out by `now`: an observer should commit
    /// `RuntimeSessionTerminated { reason: Expired }` for it. In a stamped log leases are in
    /// the authority's time: see [`NotebookWatcher`](crate::NotebookWatcher) for how an
    /// observer estimates that without trusting its own clock.
    pub fn expired_session(&self, now: Timestamp) -> Option<&RuntimeSession> {
        self.active_session()
            .filter(|session| session.lease_until <= now)
    }

    /// A session by id.
    pub fn session(&self, session_id: &SessionId) -> Option<&RuntimeSession> {
        self.session_index
            .get(session_id)
            .map(|&index| &self.sessions[index])
    }

    /// Every session, in the order they started.
    pub fn sessions(&self) -> &[RuntimeSession] {
        &self.sessions
    }

    /// A queue entry by id, with everything that happened to it. A lean state keeps no
    /// completed entry: ask [`queue_status`](Self::queue_status) how one ended.
    pub fn entry(&self, queue_id: &QueueId) -> Option<&QueueEntry> {
        self.entries.get(self.entry_index.get(queue_id)?)
    }

    /// Where an execution is in its life, from a lean state or a full one alike; `None`
    /// if it was never requested.
    ///
    /// ```
    /// use runtime_core::*;
    ///
    /// let mut state = NotebookState::lean();
    /// state.apply(1, &CellCreated { cell_id: "c".into(), cell_type: CellType::Code, source: "1".into() }.into());
    /// state.apply(2, &ExecutionRequested { queue_id: "q".into(), cell_id: "c".into(), cell_type: CellType::Code, source: "1".into(), requested_by: "u".into() }.into());
    /// state.apply(3, &ExecutionCancelRequested { target: CancelTarget::Entry { queue_id: "q".into() }, requested_by: "u".into() }.into());
    /// let status = state.queue_status(&"q".into());
    /// assert_eq!(status, Some(QueueStatus::Completed { status: CompletionStatus::Cancelled, execution_count: None }));
    /// assert!(state.entry(&"q".into()).is_none()); // a lean state forgets the rest
    /// ```
    pub fn queue_status(&self, queue_id: &QueueId) -> Option<QueueStatus> {
        if let Some(entry) = self.entry(queue_id) {
            return Some(entry.queue_status());
        }
        let (status, execution_count) = self.done.get(queue_id.as_str())?;
        Some(QueueStatus::Completed {
            status,
            execution_count: execution_count.map(std::num::NonZeroU64::get),
        })
    }

    /// Queue entries in request order: every one in a full state; in a lean state, those
    /// that have not completed.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &QueueEntry> + ExactSizeIterator {
        self.entries.values()
    }

    /// How many executions were ever requested (each id counts once), completed or not.
    pub fn requested_count(&self) -> usize {
        self.entry_index.len() + self.done.len()
    }

    /// The oldest pending entry: the next to claim.
    pub fn next_pending(&self) -> Option<&QueueEntry> {
        self.pending().next()
    }

    /// The oldest pending entry that a runtime with `capabilities` may claim.
    pub fn next_pending_for(&self, capabilities: &Capabilities) -> Option<&QueueEntry> {
        self.pending()
            .find(|entry| capabilities.covers(entry.cell_type))
    }

    /// Why a pending entry is still waiting, in words a client can show: no runtime is
    /// active, the active one cannot run its cell type, or it is queued behind others.
    /// `None` when the entry is not pending.
    ///
    /// ```
    /// use runtime_core::*;
    ///
    /// let mut state = NotebookState::new();
    /// state.apply(1, &CellCreated { cell_id: "c".into(), cell_type: CellType::Ai, source: "hi".into() }.into());
    /// state.apply(2, &ExecutionRequested { queue_id: "q".into(), cell_id: "c".into(), cell_type: CellType::Ai, source: "hi".into(), requested_by: "u".into() }.into());
    /// assert_eq!(state.why_pending(&"q".into()).unwrap(), "no runtime is serving this notebook");
    /// ```
    pub fn why_pending(&self, queue_id: &QueueId) -> Option<String> {
        let entry = self.entry(queue_id)?;
        if entry.state != EntryState::Pending {
            return None;
        }
        let Some(session) = self.active_session() else {
            return Some("no runtime is serving this notebook".to_owned());
        };
        if !session.capabilities.covers(entry.cell_type) {
            return Some(format!(
                "no runtime here runs {} cells (the active runtime, {}, does not)",
                entry.cell_type.as_str(),
                session.runtime_type
            ));
        }
        let ahead = self
            .pending()
            .take_while(|other| other.queue_id != *queue_id)
            .filter(|other| session.capabilities.covers(other.cell_type))
            .count()
            + self.held.len();
        Some(match ahead {
            0 => format!(
                "waiting for the {} runtime to take it",
                session.runtime_type
            ),
            n => format!("queued behind {n} other execution(s)"),
        })
    }

    /// Pending entries, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &QueueEntry> {
        self.pending
            .iter()
            .filter_map(|index| self.entries.get(index))
    }

    /// Entries claimed or running, in request order.
    pub fn in_progress(&self) -> impl Iterator<Item = &QueueEntry> {
        self.held.iter().filter_map(|index| self.entries.get(index))
    }

    /// A cell by id.
    pub fn cell(&self, cell_id: &CellId) -> Option<&Cell> {
        self.cells.get(cell_id)
    }

    /// The notebook's metadata, as the latest [`NotebookMetadataChanged`] set it (a full
    /// state only).
    pub fn notebook_metadata(&self) -> Option<&NotebookMetadataChanged> {
        self.notebook_metadata.as_ref()
    }

    /// Every cell, in order (the order they were created in, as [`CellMoved`] changed it).
    pub fn cells(&self) -> impl Iterator<Item = &Cell> {
        self.cell_order.iter().filter_map(|id| self.cells.get(id))
    }

    /// The outputs a cell shows: those of its most recently started execution.
    pub fn cell_outputs(&self, cell_id: &CellId) -> &[Output] {
        self.cells
            .get(cell_id)
            .and_then(|cell| cell.shown_execution.as_ref())
            .and_then(|queue_id| self.entry(queue_id))
            .map_or(&[], |entry| &entry.outputs)
    }
}

#[cfg(test)]
mod tests;
