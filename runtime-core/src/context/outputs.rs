//! The output pipeline: handlers enqueue, one writer commits in batches.
//!
//! - Group commit: while a commit is in flight, new outputs accumulate; the writer then
//!   commits all of them at once. An idle agent adds no latency; a busy one amortises.
//! - Consecutive writes to one stream coalesce into one append; markdown appends to one
//!   output coalesce; pending updates of one display id collapse into the newest.
//! - The completion is queued behind every pending output, so "completed" means "all
//!   outputs are in the log".
//! - A per-execution byte limit truncates with a visible marker, never silently. Every byte
//!   a handler writes counts (text, bundles, metadata, display ids, updates); an output the
//!   limit dropped still gets its id, and later appends or updates to it are counted as
//!   dropped too, so the handler never sees an error it did not cause.

use std::collections::HashSet;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use futures::task::AtomicWaker;
use serde_json::{Map, Value};

use crate::schema::*;
use crate::store::{Store, StoreError};

/// How many executor turns the writer holds a growing batch before committing it.
const MAX_HOLDS: u32 = 256;

/// Why an output was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OutputError {
    /// The media bundle is invalid; the message says what is wrong.
    #[error("invalid media bundle: {0}")]
    InvalidBundle(#[from] MediaError),
    /// A second result for one execution.
    #[error("this execution already has a result; an execution has at most one")]
    DuplicateResult,
    /// The execution has completed; later outputs would be dropped by the log, so they
    /// are refused here instead.
    #[error("the execution has finished; outputs after its completion are not recorded")]
    Finished,
    /// `append_markdown` named an output this execution did not create with `markdown`.
    #[error("output {0} is not a markdown output of this execution")]
    UnknownOutput(OutputId),
    /// The store failed while committing outputs.
    #[error("outputs could not be committed: {0}")]
    Store(StoreError),
}

/// A rich display to show: a bundle plus optional metadata and display id.
///
/// ```
/// use runtime_core::{Display, MediaBundle};
///
/// let progress = Display::new(MediaBundle::plain("0%")).id("progress");
/// assert_eq!(progress.display_id.unwrap().as_str(), "progress");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Display {
    /// The representations.
    pub data: MediaBundle,
    /// Per-MIME metadata.
    pub metadata: Map<String, Value>,
    /// The id later updates use.
    pub display_id: Option<DisplayId>,
}

impl Display {
    /// A display of `data`, with no metadata and no display id.
    pub fn new(data: MediaBundle) -> Self {
        Self {
            data,
            metadata: Map::new(),
            display_id: None,
        }
    }

    /// With a display id, so [`update_display`](crate::ExecutionContext::update_display)
    /// can replace it.
    pub fn id(mut self, display_id: impl Into<DisplayId>) -> Self {
        self.display_id = Some(display_id.into());
        self
    }

    /// With metadata.
    pub fn metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = metadata;
        self
    }
}

impl From<MediaBundle> for Display {
    fn from(data: MediaBundle) -> Self {
        Display::new(data)
    }
}

/// One execution's outgoing outputs, shared by its context and its writer.
pub(crate) struct OutputSink {
    state: Mutex<SinkState>,
    writer: AtomicWaker,
}

struct SinkState {
    queue_id: QueueId,
    session_id: SessionId,
    execution_count: u64,
    pending: Vec<Event>,
    /// How many writes were queued so far: the writer holds its batch while it grows.
    writes: u64,
    /// A batch is being committed.
    committing: bool,
    /// [`OutputSink::flush`] asked for the pending batch now, without holding it.
    flush_asked: bool,
    /// Who waits in [`OutputSink::flush`] for the writer to catch up.
    flushers: Vec<Waker>,
    /// The newest output of the execution, if it is a stream: the next write appends to it.
    open_stream: Option<(OutputId, StreamName)>,
    markdown_outputs: HashSet<OutputId>,
    /// Outputs the limit dropped: appends to them are dropped (and counted) too.
    dropped_outputs: HashSet<OutputId>,
    has_result: bool,
    has_error: bool,
    limit: Option<u64>,
    used: u64,
    dropped: u64,
    truncation_marked: bool,
    /// No more outputs are accepted.
    finished: bool,
    /// The completion is queued: the writer stops once the queue is empty.
    closing: bool,
    failure: Option<StoreError>,
    /// What [`ExecutionContext::annotate`](crate::ExecutionContext::annotate) recorded.
    annotations: Map<String, Value>,
}

/// How much of an output fits in the byte limit.
enum Budget {
    All,
    Part(usize),
    Nothing,
}

impl OutputSink {
    pub(crate) fn new(
        queue_id: QueueId,
        session_id: SessionId,
        execution_count: u64,
        limit: Option<u64>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SinkState {
                queue_id,
                session_id,
                execution_count,
                pending: Vec::new(),
                writes: 0,
                committing: false,
                flush_asked: false,
                flushers: Vec::new(),
                open_stream: None,
                markdown_outputs: HashSet::new(),
                dropped_outputs: HashSet::new(),
                has_result: false,
                has_error: false,
                limit,
                used: 0,
                dropped: 0,
                truncation_marked: false,
                finished: false,
                closing: false,
                failure: None,
                annotations: Map::new(),
            }),
            writer: AtomicWaker::new(),
        })
    }

    pub(crate) fn stream(&self, name: StreamName, text: &str) -> Result<(), OutputError> {
        if text.is_empty() {
            return Ok(());
        }
        let mut state = self.open()?;
        let text = state.fit(text);
        if !text.is_empty() {
            state.push_stream(name, text);
        }
        state.mark_truncation_if_over();
        self.wake_writer(state);
        Ok(())
    }

    pub(crate) fn display(&self, display: Display) -> Result<OutputId, OutputError> {
        let data = display.data.validated()?;
        let output_id = OutputId::random();
        let size = json_size_of_bundle(&data)
            + json_size_of_map(&display.metadata)
            + display
                .display_id
                .as_ref()
                .map_or(0, |id| id.as_str().len() as u64);
        self.add(&output_id, size, |state| DisplayOutputAdded {
            queue_id: state.queue_id.clone(),
            session_id: state.session_id.clone(),
            output_id: output_id.clone(),
            data,
            metadata: display.metadata,
            display_id: display.display_id,
        })?;
        Ok(output_id)
    }

    pub(crate) fn update_display(
        &self,
        display_id: DisplayId,
        data: MediaBundle,
        metadata: Map<String, Value>,
    ) -> Result<(), OutputError> {
        let data = data.validated()?;
        let mut state = self.open()?;
        let size = json_size_of_bundle(&data)
            + json_size_of_map(&metadata)
            + display_id.as_str().len() as u64;
        if !matches!(state.budget(size), Budget::All) {
            state.dropped += size;
            state.mark_truncation_if_over();
            self.wake_writer(state);
            return Ok(());
        }
        // Only the newest update of a display matters: drop a pending older one.
        state.pending.retain(|event| {
            !matches!(event, Event::DisplayOutputUpdated(update) if update.display_id == display_id)
        });
        let update = DisplayOutputUpdated {
            queue_id: state.queue_id.clone(),
            session_id: state.session_id.clone(),
            display_id,
            data,
            metadata,
        };
        state.pending.push(update.into());
        self.wake_writer(state);
        Ok(())
    }

    pub(crate) fn result(&self, result: Display) -> Result<(), OutputError> {
        let data = result.data.validated()?;
        if self.lock().has_result {
            return Err(OutputError::DuplicateResult);
        }
        let size = json_size_of_bundle(&data)
            + json_size_of_map(&result.metadata)
            + result
                .display_id
                .as_ref()
                .map_or(0, |id| id.as_str().len() as u64);
        let output_id = OutputId::random();
        self.add(&output_id.clone(), size, |state| {
            state.has_result = true;
            ExecuteResultAdded {
                queue_id: state.queue_id.clone(),
                session_id: state.session_id.clone(),
                output_id,
                data,
                metadata: result.metadata,
                execution_count: state.execution_count,
                display_id: result.display_id,
            }
        })
    }

    pub(crate) fn error(
        &self,
        ename: &str,
        evalue: &str,
        traceback: Vec<String>,
    ) -> Result<(), OutputError> {
        let size =
            (ename.len() + evalue.len() + traceback.iter().map(String::len).sum::<usize>()) as u64;
        let output_id = OutputId::random();
        self.add(&output_id.clone(), size, |state| {
            state.has_error = true;
            ErrorOutputAdded {
                queue_id: state.queue_id.clone(),
                session_id: state.session_id.clone(),
                output_id,
                ename: ename.to_owned(),
                evalue: evalue.to_owned(),
                traceback,
            }
        })
    }

    pub(crate) fn markdown(&self, text: &str) -> Result<OutputId, OutputError> {
        let output_id = OutputId::random();
        self.add(&output_id, text.len() as u64, |state| {
            state.markdown_outputs.insert(output_id.clone());
            MarkdownOutputAdded {
                queue_id: state.queue_id.clone(),
                session_id: state.session_id.clone(),
                output_id: output_id.clone(),
                text: text.to_owned(),
            }
        })?;
        Ok(output_id)
    }

    pub(crate) fn append_markdown(
        &self,
        output_id: &OutputId,
        text: &str,
    ) -> Result<(), OutputError> {
        let mut state = self.open()?;
        if state.dropped_outputs.contains(output_id) {
            state.dropped += text.len() as u64;
            return Ok(());
        }
        if !state.markdown_outputs.contains(output_id) {
            return Err(OutputError::UnknownOutput(output_id.clone()));
        }
        let text = state.fit(text);
        let coalesced = text.is_empty()
            || state
                .pending_text_of(output_id)
                .map(|pending| pending.push_str(text))
                .is_some();
        if !coalesced {
            let append = MarkdownOutputAppended {
                queue_id: state.queue_id.clone(),
                session_id: state.session_id.clone(),
                output_id: output_id.clone(),
                text: text.to_owned(),
            };
            state.pending.push(append.into());
        }
        state.mark_truncation_if_over();
        self.wake_writer(state);
        Ok(())
    }

    /// Queues an input request of this execution.
    pub(crate) fn request_input(
        &self,
        input_id: InputId,
        prompt: &str,
        seal_key: Option<String>,
    ) -> Result<(), OutputError> {
        let mut state = self.open()?;
        let request = InputRequested {
            queue_id: state.queue_id.clone(),
            session_id: state.session_id.clone(),
            input_id,
            prompt: prompt.to_owned(),
            password: seal_key.is_some(),
            seal_key,
        };
        state.pending.push(request.into());
        self.wake_writer(state);
        Ok(())
    }

    pub(crate) fn clear(&self, wait: bool) -> Result<(), OutputError> {
        let mut state = self.open()?;
        state.open_stream = None;
        let clear = OutputsCleared {
            queue_id: state.queue_id.clone(),
            session_id: state.session_id.clone(),
            wait,
        };
        state.pending.push(clear.into());
        self.wake_writer(state);
        Ok(())
    }

    /// Lowers the limit to `bytes` more than is used now, unless it is already lower.
    pub(crate) fn tighten_limit(&self, bytes: u64) {
        let mut state = self.lock();
        let limit = state.used.saturating_add(bytes);
        state.limit = Some(state.limit.map_or(limit, |current| current.min(limit)));
    }

    pub(crate) fn annotate(&self, key: String, value: Value) {
        self.lock().annotations.insert(key, value);
    }

    /// What was annotated so far (for the completion event).
    pub(crate) fn take_annotations(&self) -> Map<String, Value> {
        std::mem::take(&mut self.lock().annotations)
    }

    pub(crate) fn has_error(&self) -> bool {
        self.lock().has_error
    }

    /// Bytes dropped by the output limit so far.
    pub(crate) fn dropped_bytes(&self) -> u64 {
        self.lock().dropped
    }

    /// Refuses further outputs and queues `completion` behind everything pending; the
    /// writer commits it and stops.
    pub(crate) fn finish(&self, completion: Vec<Event>) {
        let mut state = self.lock();
        state.finished = true;
        state.closing = true;
        state.pending.extend(completion);
        self.wake_writer(state);
    }

    /// Resolves once everything queued so far is committed; asks the writer not to hold
    /// the pending batch.
    pub(crate) async fn flush(&self) -> Result<(), OutputError> {
        poll_fn(|cx| {
            let mut state = self.lock();
            if let Some(failure) = &state.failure {
                return Poll::Ready(Err(OutputError::Store(failure.clone())));
            }
            if state.pending.is_empty() && !state.committing {
                return Poll::Ready(Ok(()));
            }
            state.flush_asked = true;
            // Polled again before the commit: one waker per waiting task, not per poll.
            if !state.flushers.iter().any(|w| w.will_wake(cx.waker())) {
                state.flushers.push(cx.waker().clone());
            }
            drop(state);
            self.writer.wake();
            Poll::Pending
        })
        .await
    }

    /// Commits pending outputs in batches until [`finish`](Self::finish) was called and
    /// everything queued is committed.
    ///
    /// A batch is held while the handler keeps adding to it: before committing, the writer
    /// lets the executor run once more (a handler that writes and yields runs again), and
    /// commits as soon as a turn added nothing, or after [`MAX_HOLDS`] turns, or once
    /// the completion is queued. An output written alone is committed one turn later; a
    /// flood written line by line with a yield between lines becomes a few hundred commits
    /// of many lines each instead of one commit per line.
    pub(crate) async fn write(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut seen_writes = 0;
        let mut holds = 0;
        loop {
            let batch = poll_fn(|cx| {
                self.writer.register(cx.waker());
                let mut state = self.lock();
                if state.pending.is_empty() {
                    return if state.closing {
                        Poll::Ready(None)
                    } else {
                        Poll::Pending
                    };
                }
                let growing = state.writes != seen_writes;
                if growing && !state.closing && !state.flush_asked && holds < MAX_HOLDS {
                    seen_writes = state.writes;
                    holds += 1;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                seen_writes = state.writes;
                holds = 0;
                state.flush_asked = false;
                state.committing = true;
                Poll::Ready(Some(std::mem::take(&mut state.pending)))
            })
            .await;
            let Some(batch) = batch else { return Ok(()) };
            let committed = store.commit(batch).await;
            let mut state = self.lock();
            state.committing = false;
            for flusher in state.flushers.drain(..) {
                flusher.wake();
            }
            if let Err(error) = committed {
                state.finished = true;
                state.failure = Some(error.clone());
                return Err(error);
            }
        }
    }

    /// Queues the output `make` builds if `size` bytes fit; otherwise drops it whole (a
    /// rich output is shown whole or not at all) and remembers `output_id` as dropped.
    fn add<E: Into<Event>>(
        &self,
        output_id: &OutputId,
        size: u64,
        make: impl FnOnce(&mut SinkState) -> E,
    ) -> Result<(), OutputError> {
        let mut state = self.open()?;
        if let Budget::All = state.budget(size) {
            state.open_stream = None;
            let event = make(&mut state).into();
            state.pending.push(event);
        } else {
            state.dropped += size;
            state.dropped_outputs.insert(output_id.clone());
            state.mark_truncation_if_over();
        }
        self.wake_writer(state);
        Ok(())
    }

    /// Counts a write and wakes the writer.
    fn wake_writer(&self, mut state: MutexGuard<'_, SinkState>) {
        state.writes = state.writes.wrapping_add(1);
        drop(state);
        self.writer.wake();
    }

    fn open(&self) -> Result<MutexGuard<'_, SinkState>, OutputError> {
        let state = self.lock();
        if let Some(failure) = &state.failure {
            return Err(OutputError::Store(failure.clone()));
        }
        if state.finished {
            return Err(OutputError::Finished);
        }
        Ok(state)
    }

    fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SinkState {
    fn budget(&mut self, wanted: u64) -> Budget {
        let Some(limit) = self.limit else {
            return Budget::All;
        };
        let left = limit.saturating_sub(self.used);
        if wanted <= left {
            self.used += wanted;
            Budget::All
        } else {
            self.used = limit;
            if left == 0 {
                Budget::Nothing
            } else {
                Budget::Part(left as usize)
            }
        }
    }

    /// The part of `text` that fits in the limit; counts the rest as dropped.
    fn fit<'t>(&mut self, text: &'t str) -> &'t str {
        let kept = match self.budget(text.len() as u64) {
            Budget::All => text.len(),
            Budget::Part(bytes) => floor_char_boundary(text, bytes),
            Budget::Nothing => 0,
        };
        self.dropped += (text.len() - kept) as u64;
        &text[..kept]
    }

    /// The text of the newest pending event if it adds or appends to `output_id`: more text
    /// for that output joins it instead of becoming another event.
    fn pending_text_of(&mut self, output_id: &OutputId) -> Option<&mut String> {
        match self.pending.last_mut()? {
            Event::StreamOutputAdded(e) if &e.output_id == output_id => Some(&mut e.text),
            Event::StreamOutputAppended(e) if &e.output_id == output_id => Some(&mut e.text),
            Event::MarkdownOutputAdded(e) if &e.output_id == output_id => Some(&mut e.text),
            Event::MarkdownOutputAppended(e) if &e.output_id == output_id => Some(&mut e.text),
            _ => None,
        }
    }

    fn push_stream(&mut self, name: StreamName, text: &str) {
        if let Some((open_id, open_name)) = self.open_stream.clone()
            && open_name == name
        {
            if let Some(pending) = self.pending_text_of(&open_id) {
                pending.push_str(text);
                return;
            }
            let append = StreamOutputAppended {
                queue_id: self.queue_id.clone(),
                session_id: self.session_id.clone(),
                output_id: open_id,
                text: text.to_owned(),
            };
            self.pending.push(append.into());
            return;
        }
        let output_id = OutputId::random();
        self.open_stream = Some((output_id.clone(), name));
        let added = StreamOutputAdded {
            queue_id: self.queue_id.clone(),
            session_id: self.session_id.clone(),
            output_id,
            name,
            text: text.to_owned(),
        };
        self.pending.push(added.into());
    }

    /// The first time the limit drops something, says so on stderr (outside the limit).
    fn mark_truncation_if_over(&mut self) {
        let Some(limit) = self.limit else { return };
        if self.dropped == 0 || self.truncation_marked {
            return;
        }
        self.truncation_marked = true;
        let marker = format!(
            "\n[output truncated: this execution reached its output limit of {limit} bytes; \
             further output is discarded]\n"
        );
        self.push_stream(StreamName::Stderr, &marker);
    }
}

/// The largest index `<= at` that is a char boundary of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// An estimate of a metadata map's size on the wire, for the output limit.
fn json_size_of_map(map: &Map<String, Value>) -> u64 {
    map.iter()
        .map(|(k, v)| k.len() as u64 + 3 + json_size(v))
        .sum::<u64>()
        + 2
}

/// An estimate of a bundle's size on the wire, for the output limit.
fn json_size_of_bundle(bundle: &MediaBundle) -> u64 {
    bundle
        .iter()
        .map(|(mime, value)| mime.len() as u64 + json_size(value))
        .sum()
}

fn json_size(value: &Value) -> u64 {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        Value::String(text) => text.len() as u64 + 2,
        Value::Array(items) => items.iter().map(json_size).sum::<u64>() + 2,
        Value::Object(map) => json_size_of_map(map),
    }
}
