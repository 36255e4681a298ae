//! What the example binaries share: following a notebook's log and printing outputs as
//! they arrive.

use futures::StreamExt;
use runtime_core::{
    CompletionStatus, Event, NotebookState, OutputKind, QueueEntry, QueueId, Store, StoreError,
    Subscription,
};
use runtime_native::SqliteStore;

/// The text a person should see for an output event of an execution, as it arrives.
pub fn output_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::StreamOutputAdded(e) => e.text.clone(),
        Event::StreamOutputAppended(e) => e.text.clone(),
        Event::MarkdownOutputAdded(e) => e.text.clone(),
        Event::MarkdownOutputAppended(e) => e.text.clone(),
        Event::ExecuteResultAdded(e) => format!("{}\n", bundle_text(&e.data)),
        Event::DisplayOutputAdded(e) => format!("{}\n", bundle_text(&e.data)),
        Event::DisplayOutputUpdated(e) => format!("(update) {}\n", bundle_text(&e.data)),
        Event::ErrorOutputAdded(e) => format!("{}: {}\n", e.ename, e.evalue),
        Event::OutputsCleared(_) => "(cleared)\n".to_owned(),
        _ => return None,
    })
}

/// The text of a stored output.
pub fn stored_output_text(kind: &OutputKind) -> String {
    match kind {
        OutputKind::Stream { text, .. } | OutputKind::Markdown { text } => text.clone(),
        OutputKind::Display { data, .. } | OutputKind::Result { data, .. } => bundle_text(data),
        OutputKind::Error { ename, evalue, .. } => format!("{ename}: {evalue}"),
    }
}

fn bundle_text(data: &runtime_core::MediaBundle) -> String {
    data.clone()
        .with_text_fallback()
        .text()
        .unwrap_or_default()
        .to_owned()
}

/// Follows a notebook's log, folding it into a state.
pub struct Follower {
    log: Subscription,
    /// The state folded so far.
    pub state: NotebookState,
}

impl Follower {
    /// Follows `store` from its first event.
    pub fn new(store: &SqliteStore) -> Self {
        Self {
            log: store.subscribe(1),
            state: NotebookState::new(),
        }
    }

    /// Folds until the state includes event `seq`.
    pub async fn catch_up(&mut self, seq: u64) -> Result<&NotebookState, StoreError> {
        while self.state.last_seq() < seq {
            self.next().await?;
        }
        Ok(&self.state)
    }

    /// Folds the next event and returns it.
    pub async fn next(&mut self) -> Result<std::sync::Arc<Event>, StoreError> {
        let entry = self.log.next().await.ok_or(StoreError::Closed)??;
        self.state.apply(entry.seq, &entry.event);
        Ok(entry.event)
    }

    /// Calls `on_event` with each event about `queue_id` until it completes; returns its
    /// final entry.
    pub async fn follow(
        &mut self,
        queue_id: &QueueId,
        mut on_event: impl FnMut(&Event),
    ) -> Result<QueueEntry, StoreError> {
        loop {
            if let Some(entry) = self.state.entry(queue_id).filter(|e| e.is_completed()) {
                return Ok(entry.clone());
            }
            let event = self.next().await?;
            if event.queue_id() == Some(queue_id) {
                on_event(&event);
            }
        }
    }
}

/// A short word for how an entry ended.
pub fn status_word(entry: &QueueEntry) -> &'static str {
    match entry.state.status() {
        Some(CompletionStatus::Success) => "success",
        Some(CompletionStatus::Error) => "error",
        Some(CompletionStatus::Cancelled) => "cancelled",
        Some(CompletionStatus::TimedOut) => "timed out",
        Some(CompletionStatus::RuntimeLost) => "runtime lost",
        None => "unfinished",
    }
}
