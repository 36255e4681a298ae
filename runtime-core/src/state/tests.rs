//! One test per reducer rule. They also run on wasm32.

use serde_json::{Map, json};

use super::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A state plus the next sequence number, so tests read as a log.
///
/// A request for a cell the log never mentioned creates that cell first (as clients do in
/// one batch), unless the log is `strict`.
struct Log {
    state: NotebookState,
    seq: Seq,
    strict: bool,
    mentioned: std::collections::HashSet<CellId>,
}

impl Log {
    fn new() -> Self {
        Self {
            state: NotebookState::new(),
            seq: 0,
            strict: false,
            mentioned: Default::default(),
        }
    }

    fn strict() -> Self {
        Self {
            strict: true,
            ..Self::new()
        }
    }

    fn apply(&mut self, event: impl Into<Event>) -> Applied {
        let event = event.into();
        if let Event::ExecutionRequested(request) = &event
            && !self.strict
            && self.mentioned.insert(request.cell_id.clone())
        {
            self.seq += 1;
            let cell = CellCreated {
                cell_id: request.cell_id.clone(),
                cell_type: request.cell_type,
                source: request.source.clone(),
            };
            assert_eq!(self.state.apply(self.seq, &cell.into()), Applied::Applied);
        }
        if let Event::CellCreated(cell) = &event {
            self.mentioned.insert(cell.cell_id.clone());
        }
        self.seq += 1;
        self.state.apply(self.seq, &event)
    }

    /// Folds `event` as an entry stamped by `author` at `at`.
    fn stamped(&mut self, author: &str, at: u64, event: impl Into<Event>) -> Applied {
        self.seq += 1;
        let entry = LogEntry {
            seq: self.seq,
            event: std::sync::Arc::new(event.into()),
            stamp: Some(Stamp::new(Timestamp(at), author)),
        };
        self.state.apply_entry(&entry)
    }

    #[track_caller]
    fn ok(&mut self, event: impl Into<Event>) {
        assert_eq!(self.apply(event), Applied::Applied);
    }

    #[track_caller]
    fn ignored(&mut self, event: impl Into<Event>, reason: Ignored) {
        assert_eq!(self.apply(event), Applied::Ignored(reason));
    }

    fn entry(&self, queue_id: &str) -> &QueueEntry {
        self.state.entry(&queue_id.into()).expect("entry exists")
    }

    fn status(&self, queue_id: &str) -> Option<CompletionStatus> {
        self.entry(queue_id).state.status()
    }
}

fn request(queue_id: &str) -> ExecutionRequested {
    ExecutionRequested {
        queue_id: queue_id.into(),
        cell_id: format!("cell-{queue_id}").into(),
        cell_type: CellType::Code,
        source: format!("source of {queue_id}"),
        requested_by: "user".into(),
    }
}

/// The cell `request(queue_id)` runs.
fn cell_of(queue_id: &str) -> CellCreated {
    CellCreated {
        cell_id: format!("cell-{queue_id}").into(),
        cell_type: CellType::Code,
        source: String::new(),
    }
}

fn started(session: &str, at: u64) -> RuntimeSessionStarted {
    RuntimeSessionStarted {
        session_id: session.into(),
        runtime_id: "runtime".into(),
        runtime_type: "echo".into(),
        client_id: "user".into(),
        capabilities: Capabilities::code(),
        at: Timestamp(at),
        valid_for_ms: 1_000,
    }
}

fn assigned(queue_id: &str, session: &str) -> ExecutionAssigned {
    ExecutionAssigned {
        queue_id: queue_id.into(),
        session_id: session.into(),
    }
}

fn start(queue_id: &str, session: &str) -> ExecutionStarted {
    ExecutionStarted {
        queue_id: queue_id.into(),
        session_id: session.into(),
        at: Timestamp(0),
    }
}

fn completed(queue_id: &str, session: &str, status: CompletionStatus) -> ExecutionCompleted {
    ExecutionCompleted {
        queue_id: queue_id.into(),
        session_id: session.into(),
        status,
        error: None,
        duration_ms: 1,
        abort_pending: false,
        metadata: Default::default(),
    }
}

fn stdout(queue_id: &str, session: &str, output: &str, text: &str) -> StreamOutputAdded {
    StreamOutputAdded {
        queue_id: queue_id.into(),
        session_id: session.into(),
        output_id: output.into(),
        name: StreamName::Stdout,
        text: text.into(),
    }
}

fn terminated(session: &str, reason: TerminationReason, at: u64) -> RuntimeSessionTerminated {
    RuntimeSessionTerminated {
        session_id: session.into(),
        reason,
        by: "observer".into(),
        at: Timestamp(at),
        detail: None,
    }
}

/// A log where session `s1` runs `q1`.
fn running() -> Log {
    let mut log = Log::new();
    log.ok(started("s1", 0));
    log.ok(request("q1"));
    log.ok(assigned("q1", "s1"));
    log.ok(start("q1", "s1"));
    log
}

fn texts(entry: &QueueEntry) -> Vec<String> {
    entry
        .outputs
        .iter()
        .map(|output| match &output.kind {
            OutputKind::Stream { text, .. } | OutputKind::Markdown { text } => text.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_new_session_displaces_the_active_one() {
    let mut log = Log::new();
    log.ok(started("s1", 0));
    log.ok(started("s2", 10));
    let s1 = log.state.session(&"s1".into()).unwrap();
    assert_eq!(s1.state, SessionState::Ended(TerminationReason::Displaced));
    assert_eq!(log.state.active_session().unwrap().session_id, "s2".into());
}

#[test]
fn a_new_session_after_the_old_lease_ran_out_records_it_as_expired() {
    let mut log = Log::new();
    log.ok(started("s1", 0));
    log.ok(started("s2", 1_000));
    let s1 = log.state.session(&"s1".into()).unwrap();
    assert_eq!(s1.state, SessionState::Ended(TerminationReason::Expired));
}

#[test]
fn a_reused_session_id_is_refused() {
    let mut log = Log::new();
    log.ok(started("s1", 0));
    log.ok(terminated("s1", TerminationReason::Shutdown, 5));
    log.ignored(started("s1", 10), Ignored::DuplicateId);
    assert!(log.state.active_session().is_none());
}

#[test]
fn claims_are_decided_by_log_order() {
    let mut log = Log::new();
    log.ok(started("s1", 0));
    log.ok(request("q1"));
    log.ok(assigned("q1", "s1"));
    log.ignored(assigned("q1", "s1"), Ignored::ClaimRejected);
    log.ok(started("s2", 1));
    // s1 was displaced: its unstarted claim is pending again, and s1 can no longer claim.
    assert_eq!(log.entry("q1").state, EntryState::Pending);
    log.ignored(assigned("q1", "s1"), Ignored::ClaimRejected);
    log.ok(assigned("q1", "s2"));
    log.ignored(start("q1", "s1"), Ignored::Fenced);
    log.ok(start("q1", "s2"));
    assert_eq!(log.state.stats().ignored(Ignored::ClaimRejected), 2);
}

#[test]
fn a_claim_for_an_unknown_entry_or_from_no_session_is_ignored() {
    let mut log = Log::new();
    log.ok(request("q1"));
    log.ignored(assigned("q1", "nobody"), Ignored::ClaimRejected);
    log.ignored(assigned("nope", "nobody"), Ignored::NotFound);
}

#[test]
fn the_queue_is_fifo_and_execution_counts_are_assigned_at_start() {
    let mut log = Log::new();
    log.ok(started("s1", 0));
    for queue_id in ["q1", "q2", "q3"] {
        log.ok(request(queue_id));
    }
    assert_eq!(log.state.next_pending().unwrap().queue_id, "q1".into());
    log.ok(assigned("q2", "s1"));
    assert_eq!(log.entry("q2").execution_count, None);
    log.ok(start("q2", "s1"));
    log.ok(assigned("q1", "s1"));
    log.ok(start("q1", "s1"));
    assert_eq!(log.entry("q2").execution_count, Some(1));
    assert_eq!(log.entry("q1").execution_count, Some(2));
    assert_eq!(log.state.next_pending().unwrap().queue_id, "q3".into());
    let order: Vec<&str> = log.state.entries().map(|e| e.queue_id.as_str()).collect();
    assert_eq!(order, ["q1", "q2", "q3"]);
}

#[test]
fn a_repeated_request_id_is_ignored() {
    let mut log = Log::new();
    log.ok(request("q1"));
    let mut again = request("q1");
    again.source = "something else".into();
    log.ignored(again, Ignored::DuplicateId);
    assert_eq!(log.entry("q1").source, "source of q1");
    assert_eq!(log.state.pending().count(), 1);
}

#[test]
fn outputs_from_a_session_that_does_not_run_the_entry_are_fenced() {
    let mut log = running();
    log.ok(stdout("q1", "s1", "o1", "mine"));
    log.ignored(stdout("q1", "intruder", "o2", "not mine"), Ignored::Fenced);
    log.ok(started("s2", 5));
    // The displaced session's late output is dropped.
    log.ignored(stdout("q1", "s1", "o3", "late"), Ignored::Fenced);
    log.ignored(
        completed("q1", "s1", CompletionStatus::Success),
        Ignored::AlreadyEnded,
    );
    assert_eq!(texts(log.entry("q1")), ["mine"]);
    assert_eq!(log.state.stats().ignored(Ignored::Fenced), 2);
}

#[test]
fn no_output_is_accepted_after_completion() {
    let mut log = running();
    log.ok(completed("q1", "s1", CompletionStatus::Success));
    log.ignored(stdout("q1", "s1", "o1", "after"), Ignored::Fenced);
    log.ignored(
        completed("q1", "s1", CompletionStatus::Error),
        Ignored::AlreadyEnded,
    );
    assert_eq!(log.status("q1"), Some(CompletionStatus::Success));
}

#[test]
fn an_ended_session_returns_claimed_work_and_loses_running_work() {
    let mut log = Log::new();
    log.ok(started("s1", 0));
    log.ok(request("q1"));
    log.ok(request("q2"));
    log.ok(assigned("q1", "s1"));
    log.ok(start("q1", "s1"));
    log.ok(assigned("q2", "s1"));
    log.ok(terminated("s1", TerminationReason::Shutdown, 3));
    assert_eq!(log.status("q1"), Some(CompletionStatus::RuntimeLost));
    assert_eq!(log.entry("q2").state, EntryState::Pending);
    assert_eq!(log.state.next_pending().unwrap().queue_id, "q2".into());
    assert_eq!(log.state.in_progress().count(), 0);
}

#[test]
fn an_expiry_applies_only_once_the_lease_has_run_out() {
    let mut log = running();
    log.ok(RuntimeSessionRenewed {
        session_id: "s1".into(),
        at: Timestamp(900),
        valid_for_ms: 1_000,
    });
    // An observer whose view predates the renewal must not end a live session.
    log.ignored(
        terminated("s1", TerminationReason::Expired, 1_500),
        Ignored::LeaseStillValid,
    );
    assert!(log.state.expired_session(Timestamp(1_899)).is_none());
    assert!(log.state.expired_session(Timestamp(1_900)).is_some());
    log.ok(terminated("s1", TerminationReason::Expired, 1_900));
    assert_eq!(log.status("q1"), Some(CompletionStatus::RuntimeLost));
    log.ignored(
        terminated("s1", TerminationReason::Shutdown, 2_000),
        Ignored::AlreadyEnded,
    );
    log.ignored(
        RuntimeSessionRenewed {
            session_id: "s1".into(),
            at: Timestamp(2_000),
            valid_for_ms: 9,
        },
        Ignored::AlreadyEnded,
    );
}

#[test]
fn in_a_stamped_log_only_the_author_of_a_session_acts_for_it() {
    let mut log = Log::new();
    let ok = Applied::Applied;
    let forged = Applied::Ignored(Ignored::WrongAuthor);
    assert_eq!(log.stamped("runner", 0, started("s1", 0)), ok);
    assert_eq!(log.stamped("alice", 1, cell_of("q1")), ok);
    assert_eq!(log.stamped("alice", 1, request("q1")), ok);
    // Mallory copies the session id from the log and writes in its name: nothing applies.
    assert_eq!(log.stamped("mallory", 2, assigned("q1", "s1")), forged);
    assert_eq!(log.stamped("runner", 2, assigned("q1", "s1")), ok);
    assert_eq!(log.stamped("mallory", 3, start("q1", "s1")), forged);
    assert_eq!(log.stamped("runner", 3, start("q1", "s1")), ok);
    assert_eq!(
        log.stamped("mallory", 4, stdout("q1", "s1", "o1", "forged")),
        forged
    );
    let success = completed("q1", "s1", CompletionStatus::Success);
    assert_eq!(log.stamped("mallory", 4, success.clone()), forged);
    let renewed = RuntimeSessionRenewed {
        session_id: "s1".into(),
        at: Timestamp(4),
        valid_for_ms: 1_000_000,
    };
    assert_eq!(log.stamped("mallory", 4, renewed), forged);
    let status = RuntimeSessionStatusChanged {
        session_id: "s1".into(),
        status: SessionStatus::Idle,
    };
    assert_eq!(log.stamped("mallory", 4, status), forged);
    let shutdown = terminated("s1", TerminationReason::Shutdown, 4);
    assert_eq!(log.stamped("mallory", 4, shutdown.clone()), forged);
    // Nor can an unstamped entry act for a session whose start was stamped.
    log.ignored(stdout("q1", "s1", "o2", "unstamped"), Ignored::WrongAuthor);
    // Expiring a lease is anyone's to do, but only once it has run out.
    let expiry = terminated("s1", TerminationReason::Expired, 999_999);
    assert_eq!(
        log.stamped("mallory", 5, expiry),
        Applied::Ignored(Ignored::LeaseStillValid)
    );
    assert_eq!(
        log.state.active_session().unwrap().lease_until,
        Timestamp(1_000)
    );
    // The runner's own work applies, and the forged events changed nothing.
    assert_eq!(
        log.stamped("runner", 6, stdout("q1", "s1", "o1", "real")),
        ok
    );
    assert_eq!(log.stamped("runner", 7, success), ok);
    assert_eq!(texts(log.entry("q1")), ["real"]);
    assert_eq!(log.status("q1"), Some(CompletionStatus::Success));
    assert_eq!(log.stamped("runner", 8, shutdown), ok);
    assert_eq!(log.state.stats().ignored(Ignored::WrongAuthor), 8);
}

#[test]
fn in_a_stamped_log_leases_run_by_the_stamps_not_the_writers_clocks() {
    let mut log = Log::new();
    let ok = Applied::Applied;
    // The runtime's clock runs a minute behind the authority's.
    assert_eq!(log.stamped("runner", 60_000, started("s1", 0)), ok);
    assert_eq!(
        log.state.active_session().unwrap().started_at,
        Timestamp(60_000)
    );
    let renewed = RuntimeSessionRenewed {
        session_id: "s1".into(),
        at: Timestamp(900),
        valid_for_ms: 1_000,
    };
    assert_eq!(log.stamped("runner", 60_900, renewed), ok);
    assert_eq!(
        log.state.active_session().unwrap().lease_until,
        Timestamp(61_900)
    );
    // An observer whose clock runs ahead says the lease ran out: the stamp says it did not.
    let early = terminated("s1", TerminationReason::Expired, 3_600_000);
    assert_eq!(
        log.stamped("watcher", 61_000, early),
        Applied::Ignored(Ignored::LeaseStillValid)
    );
    // One whose clock runs behind says it has not yet: the stamp says it has.
    let late = terminated("s1", TerminationReason::Expired, 0);
    assert_eq!(log.stamped("watcher", 61_900, late), ok);
    assert_eq!(
        log.state.sessions()[0].state,
        SessionState::Ended(TerminationReason::Expired)
    );

    // A new session displaces, or expires, the active one by its stamp's time too.
    let mut log = Log::new();
    assert_eq!(log.stamped("runner", 0, started("s1", 0)), ok);
    assert_eq!(log.stamped("other", 500, started("s2", 5_000)), ok);
    assert_eq!(
        log.state.sessions()[0].state,
        SessionState::Ended(TerminationReason::Displaced)
    );
    assert_eq!(log.stamped("third", 1_500, started("s3", 0)), ok);
    assert_eq!(
        log.state.sessions()[1].state,
        SessionState::Ended(TerminationReason::Expired)
    );
    assert_eq!(log.state.sessions()[2].author.as_deref(), Some("third"));
}

#[test]
fn terminal_states_are_distinct_and_final() {
    let mut log = Log::new();
    log.ok(started("s1", 0));
    let statuses = [
        CompletionStatus::Success,
        CompletionStatus::Error,
        CompletionStatus::Cancelled,
        CompletionStatus::TimedOut,
        CompletionStatus::RuntimeLost,
    ];
    for (n, status) in statuses.into_iter().enumerate() {
        let queue_id = format!("q{n}");
        log.ok(request(&queue_id));
        log.ok(assigned(&queue_id, "s1"));
        log.ok(start(&queue_id, "s1"));
        log.ok(completed(&queue_id, "s1", status));
        assert_eq!(log.status(&queue_id), Some(status));
        log.ignored(
            ExecutionCancelRequested {
                target: CancelTarget::Entry {
                    queue_id: queue_id.as_str().into(),
                },
                requested_by: "user".into(),
            },
            Ignored::AlreadyEnded,
        );
        assert_eq!(log.status(&queue_id), Some(status));
    }
}

#[test]
fn cancel_ends_queued_entries_at_once_and_flags_running_ones() {
    let mut log = running();
    log.ok(request("q2"));
    log.ok(request("q3"));
    log.ok(ExecutionCancelRequested {
        target: CancelTarget::Entry {
            queue_id: "q2".into(),
        },
        requested_by: "user".into(),
    });
    assert_eq!(log.status("q2"), Some(CompletionStatus::Cancelled));
    log.ok(ExecutionCancelRequested {
        target: CancelTarget::All,
        requested_by: "user".into(),
    });
    assert_eq!(log.status("q3"), Some(CompletionStatus::Cancelled));
    // The running one is flagged; its session decides how it ended.
    assert!(log.entry("q1").cancel_requested);
    assert!(!log.entry("q1").is_completed());
    log.ok(completed("q1", "s1", CompletionStatus::Cancelled));
    assert_eq!(log.status("q1"), Some(CompletionStatus::Cancelled));
}

#[test]
fn an_error_with_abort_pending_cancels_what_was_queued_then_but_not_later_requests() {
    let mut log = running();
    log.ok(request("q2"));
    log.ok(ExecutionCompleted {
        abort_pending: true,
        metadata: Default::default(),
        error: Some("boom".into()),
        ..completed("q1", "s1", CompletionStatus::Error)
    });
    assert_eq!(log.status("q2"), Some(CompletionStatus::Cancelled));
    let EntryState::Completed { error, .. } = &log.entry("q2").state else {
        unreachable!()
    };
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .contains("stop_on_error")
    );
    log.ok(request("q3"));
    assert_eq!(log.entry("q3").state, EntryState::Pending);
}

#[test]
fn streams_append_and_markdown_appends_target_their_output() {
    let mut log = running();
    log.ok(stdout("q1", "s1", "o1", "a"));
    log.ok(StreamOutputAppended {
        queue_id: "q1".into(),
        session_id: "s1".into(),
        output_id: "o1".into(),
        text: "b".into(),
    });
    log.ok(MarkdownOutputAdded {
        queue_id: "q1".into(),
        session_id: "s1".into(),
        output_id: "m1".into(),
        text: "# x".into(),
    });
    log.ok(MarkdownOutputAppended {
        queue_id: "q1".into(),
        session_id: "s1".into(),
        output_id: "m1".into(),
        text: "y".into(),
    });
    log.ignored(
        StreamOutputAppended {
            queue_id: "q1".into(),
            session_id: "s1".into(),
            output_id: "m1".into(),
            text: "wrong kind".into(),
        },
        Ignored::NotFound,
    );
    log.ignored(stdout("q1", "s1", "o1", "same id"), Ignored::DuplicateId);
    assert_eq!(texts(log.entry("q1")), ["ab", "# xy"]);
}

#[test]
fn display_updates_replace_every_output_with_that_display_id() {
    let mut log = running();
    let display = |output: &str, text: &str| DisplayOutputAdded {
        queue_id: "q1".into(),
        session_id: "s1".into(),
        output_id: output.into(),
        data: MediaBundle::plain(text),
        metadata: Map::new(),
        display_id: Some("progress".into()),
    };
    log.ok(display("o1", "0%"));
    log.ok(display("o2", "0%"));
    log.ok(DisplayOutputUpdated {
        queue_id: "q1".into(),
        session_id: "s1".into(),
        display_id: "progress".into(),
        data: MediaBundle::plain("100%"),
        metadata: json!({"k": 1}).as_object().cloned().unwrap(),
    });
    for output in &log.entry("q1").outputs {
        let OutputKind::Display { data, metadata, .. } = &output.kind else {
            panic!()
        };
        assert_eq!(data.text(), Some("100%"));
        assert_eq!(metadata.get("k"), Some(&json!(1)));
    }
    log.ignored(
        DisplayOutputUpdated {
            queue_id: "q1".into(),
            session_id: "s1".into(),
            display_id: "never-shown".into(),
            data: MediaBundle::plain("x"),
            metadata: Map::new(),
        },
        Ignored::NotFound,
    );
}

#[test]
fn clear_now_empties_and_clear_wait_empties_at_the_next_output() {
    let mut log = running();
    log.ok(stdout("q1", "s1", "o1", "old"));
    let clear = |wait| OutputsCleared {
        queue_id: "q1".into(),
        session_id: "s1".into(),
        wait,
    };
    log.ok(clear(true));
    assert_eq!(
        texts(log.entry("q1")),
        ["old"],
        "kept until the next output"
    );
    log.ok(stdout("q1", "s1", "o2", "new"));
    assert_eq!(texts(log.entry("q1")), ["new"]);
    log.ok(clear(false));
    assert!(log.entry("q1").outputs.is_empty());
}

#[test]
fn one_result_per_execution() {
    let mut log = running();
    let result = |output: &str| ExecuteResultAdded {
        queue_id: "q1".into(),
        session_id: "s1".into(),
        output_id: output.into(),
        data: MediaBundle::plain("2"),
        metadata: Map::new(),
        execution_count: 1,
        display_id: Some("answer".into()),
    };
    log.ok(result("r1"));
    log.ignored(result("r2"), Ignored::DuplicateResult);
    assert_eq!(log.entry("q1").outputs.len(), 1);
    // A result with a display id is updated by it, as Jupyter updates an execute_result.
    log.ok(update("answer", "3"));
    let OutputKind::Result { data, .. } = &log.entry("q1").outputs[0].kind else {
        panic!("not a result")
    };
    assert_eq!(data.text(), Some("3"));
}

#[test]
fn a_cell_shows_the_outputs_of_its_latest_started_execution() {
    let mut log = Log::new();
    log.ok(started("s1", 0));
    log.ok(CellCreated {
        cell_id: "c".into(),
        cell_type: CellType::Code,
        source: "1".into(),
    });
    for (queue_id, text) in [("q1", "first"), ("q2", "second")] {
        log.ok(ExecutionRequested {
            cell_id: "c".into(),
            ..request(queue_id)
        });
        log.ok(assigned(queue_id, "s1"));
        log.ok(start(queue_id, "s1"));
        log.ok(stdout(queue_id, "s1", &format!("o-{queue_id}"), text));
        let shown: Vec<&Output> = log.state.cell_outputs(&"c".into()).iter().collect();
        assert_eq!(shown.len(), 1);
        assert!(matches!(&shown[0].kind, OutputKind::Stream { text: t, .. } if t == text));
    }
}

#[test]
fn cells_are_created_edited_and_deleted_and_deletion_cancels_their_queued_runs() {
    let mut log = Log::new();
    let create = |id: &str| CellCreated {
        cell_id: id.into(),
        cell_type: CellType::Ai,
        source: "".into(),
    };
    log.ok(create("a"));
    log.ok(create("b"));
    log.ignored(create("a"), Ignored::DuplicateId);
    log.ok(CellSourceChanged {
        cell_id: "a".into(),
        source: "hello".into(),
    });
    log.ignored(
        CellSourceChanged {
            cell_id: "zz".into(),
            source: "x".into(),
        },
        Ignored::NotFound,
    );
    assert_eq!(log.state.cell(&"a".into()).unwrap().source, "hello");
    log.ok(ExecutionRequested {
        cell_id: "a".into(),
        ..request("q1")
    });
    log.ok(CellDeleted {
        cell_id: "a".into(),
    });
    assert_eq!(log.status("q1"), Some(CompletionStatus::Cancelled));
    let ids: Vec<&str> = log.state.cells().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["b"]);
}

#[test]
fn bad_events_are_skipped_and_counted_never_fatal() {
    let mut log = running();
    let bad = [
        json!({"type": "v1.StreamOutputAdded", "queueId": "q1"}),
        json!({"type": "v1.ExecutionStarted", "queueId": 5, "sessionId": "s1", "at": "x"}),
        json!("not an object"),
        json!({"type": "v7.FromTheFuture", "x": 1}),
    ];
    for raw in bad {
        let _ = log.apply(Event::from_json(raw));
    }
    log.ok(stdout("q1", "s1", "o1", "still fine"));
    let stats = log.state.stats();
    assert_eq!(stats.ignored(Ignored::Malformed), 3);
    assert_eq!(stats.ignored(Ignored::Unknown), 1);
}

#[test]
fn replayed_sequence_numbers_are_ignored() {
    let mut state = NotebookState::new();
    for (seq, queue_id) in [(1, "q1"), (2, "q2"), (3, "q3")] {
        assert_eq!(
            state.apply(seq, &cell_of(queue_id).into()),
            Applied::Applied
        );
    }
    let event = Event::from(request("q1"));
    assert_eq!(state.apply(5, &event), Applied::Applied);
    assert_eq!(
        state.apply(5, &Event::from(request("q2"))),
        Applied::Ignored(Ignored::OutOfOrder)
    );
    assert_eq!(
        state.apply(4, &Event::from(request("q3"))),
        Applied::Ignored(Ignored::OutOfOrder)
    );
    assert_eq!(state.last_seq(), 5);
    assert_eq!(state.entries().len(), 1);
}

#[test]
fn folding_the_same_log_twice_gives_the_same_state() {
    let events: Vec<Event> = vec![
        started("s9", 0).into(),
        cell_of("x").into(),
        request("x").into(),
        cell_of("y").into(),
        request("y").into(),
        assigned("x", "s9").into(),
        start("x", "s9").into(),
        stdout("x", "s9", "o", "t").into(),
        started("s10", 5).into(),
    ];
    let fold = || {
        let mut state = NotebookState::new();
        for (n, event) in events.iter().enumerate() {
            state.apply(n as Seq + 1, event);
        }
        state
    };
    let (a, b) = (fold(), fold());
    assert_eq!(entries(&a), entries(&b));
    assert_eq!(a.sessions(), b.sessions());
    assert_eq!(a.stats(), b.stats());
    assert_eq!(
        entries(&a)[0].state.status(),
        Some(CompletionStatus::RuntimeLost)
    );
}

fn display(output: &str, text: &str, display_id: Option<&str>) -> DisplayOutputAdded {
    DisplayOutputAdded {
        queue_id: "q1".into(),
        session_id: "s1".into(),
        output_id: output.into(),
        data: MediaBundle::plain(text),
        metadata: Map::new(),
        display_id: display_id.map(Into::into),
    }
}

fn update(display_id: &str, text: &str) -> DisplayOutputUpdated {
    DisplayOutputUpdated {
        queue_id: "q1".into(),
        session_id: "s1".into(),
        display_id: display_id.into(),
        data: MediaBundle::plain(text),
        metadata: Map::new(),
    }
}

fn clear(wait: bool) -> OutputsCleared {
    OutputsCleared {
        queue_id: "q1".into(),
        session_id: "s1".into(),
        wait,
    }
}

#[test]
fn a_display_update_never_rewrites_an_output_that_is_not_that_display() {
    let mut log = running();
    log.ok(display("o1", "0%", Some("progress")));
    log.ok(clear(false));
    // The id of a cleared output is spent: a new output cannot take it over...
    log.ignored(display("o1", "unrelated", None), Ignored::DuplicateId);
    log.ok(display("o2", "unrelated", None));
    // ...so an update of the old display id reaches nothing it should not.
    log.ok(update("progress", "100%"));
    assert_eq!(
        texts(log.entry("q1")),
        [format!("{:?}", display_kind("unrelated", None))]
    );
}

fn display_kind(text: &str, display_id: Option<&str>) -> OutputKind {
    OutputKind::Display {
        data: MediaBundle::plain(text),
        metadata: Map::new(),
        display_id: display_id.map(Into::into),
    }
}

#[test]
fn output_ids_are_never_reused_after_a_clear() {
    let mut log = running();
    log.ok(stdout("q1", "s1", "o1", "first"));
    log.ok(clear(false));
    log.ignored(stdout("q1", "s1", "o1", "again"), Ignored::DuplicateId);
    log.ok(clear(true));
    log.ignored(stdout("q1", "s1", "o1", "again"), Ignored::DuplicateId);
    assert!(
        log.entry("q1").clear_pending,
        "an ignored output clears nothing"
    );
}

#[test]
fn an_ignored_append_changes_nothing() {
    let mut log = running();
    log.ok(stdout("q1", "s1", "o1", "kept"));
    log.ok(clear(true));
    log.ignored(
        StreamOutputAppended {
            queue_id: "q1".into(),
            session_id: "s1".into(),
            output_id: "o1".into(),
            text: " more".into(),
        },
        Ignored::NotFound,
    );
    assert_eq!(
        texts(log.entry("q1")),
        ["kept"],
        "the pending clear waits on"
    );
    assert!(log.entry("q1").clear_pending);
    log.ignored(
        StreamOutputAppended {
            queue_id: "q1".into(),
            session_id: "s1".into(),
            output_id: "nope".into(),
            text: "x".into(),
        },
        Ignored::NotFound,
    );
    assert_eq!(texts(log.entry("q1")), ["kept"]);
}

#[test]
fn a_deleted_cell_id_is_never_created_again() {
    let mut log = Log::strict();
    log.ok(cell_of("q1"));
    log.ok(CellDeleted {
        cell_id: "cell-q1".into(),
    });
    log.ignored(cell_of("q1"), Ignored::DuplicateId);
    assert!(log.state.cell(&"cell-q1".into()).is_none());
}

#[test]
fn a_request_for_a_cell_that_does_not_exist_is_refused() {
    let mut log = Log::strict();
    log.ok(started("s1", 0));
    log.ignored(request("q1"), Ignored::NotFound);
    assert!(log.state.entry(&"q1".into()).is_none());
    log.ok(cell_of("q1"));
    log.ok(request("q1"));
    log.ok(CellDeleted {
        cell_id: "cell-q1".into(),
    });
    log.ignored(request("q2-for-deleted"), Ignored::NotFound);
}

#[test]
fn empty_ids_are_refused_by_the_decoder_and_skipped_by_the_reducer() {
    let decoded =
        Event::from_json(json!({"type": "v1.CellCreated", "cellId": "", "cellType": "code"}));
    let Event::Malformed(malformed) = &decoded else {
        panic!("{decoded:?}")
    };
    assert!(
        malformed.error.contains("empty CellId"),
        "{}",
        malformed.error
    );
    let mut log = Log::strict();
    log.ignored(
        CellCreated {
            cell_id: "".into(),
            cell_type: CellType::Code,
            source: String::new(),
        },
        Ignored::Malformed,
    );
    log.ok(started("s1", 0));
    log.ok(cell_of("q1"));
    log.ignored(request(""), Ignored::Malformed);
    log.ok(request("q1"));
    log.ignored(assigned("q1", ""), Ignored::Malformed);
    log.ok(assigned("q1", "s1"));
    log.ok(start("q1", "s1"));
    log.ignored(stdout("q1", "s1", "", "x"), Ignored::Malformed);
    log.ignored(update("", "x"), Ignored::Malformed);
    assert!(log.entry("q1").outputs.is_empty());
}

#[test]
fn a_claim_needs_capabilities_that_cover_the_cell_type() {
    let mut log = Log::new();
    log.ok(started("s1", 0)); // code only
    let ai = ExecutionRequested {
        cell_type: CellType::Ai,
        ..request("ai")
    };
    log.ok(ai);
    log.ok(request("code"));
    assert_eq!(
        log.state
            .next_pending_for(&Capabilities::code())
            .unwrap()
            .queue_id,
        "code".into(),
        "the agent skips what it cannot run"
    );
    log.ignored(assigned("ai", "s1"), Ignored::NotCapable);
    assert_eq!(log.entry("ai").state, EntryState::Pending);
    assert_eq!(
        log.state.why_pending(&"ai".into()).unwrap(),
        "no runtime here runs ai cells (the active runtime, echo, does not)"
    );
    assert_eq!(
        log.state.why_pending(&"code".into()).unwrap(),
        "waiting for the echo runtime to take it"
    );
    let mut markdown = started("s2", 1);
    markdown.capabilities.can_execute_markdown = true;
    log.ok(markdown);
    let md = ExecutionRequested {
        cell_type: CellType::Markdown,
        ..request("md")
    };
    log.ok(md);
    log.ok(assigned("md", "s2"));
}

#[test]
fn a_lean_fold_decides_and_counts_alike_but_keeps_no_bodies() {
    let events: Vec<Event> = vec![
        started("s1", 0).into(),
        cell_of("q1").into(),
        request("q1").into(),
        cell_of("q2").into(),
        request("q2").into(),
        assigned("q1", "s1").into(),
        start("q1", "s1").into(),
        stdout("q1", "s1", "o1", "a large body").into(),
        StreamOutputAppended {
            queue_id: "q1".into(),
            session_id: "s1".into(),
            output_id: "o1".into(),
            text: " and more".into(),
        }
        .into(),
        display("d1", "0%", Some("p")).into(),
        update("p", "50%").into(),
        stdout("q1", "s1", "o1", "duplicate").into(),
        clear(true).into(),
        stdout("q1", "s1", "o2", "after").into(),
        completed("q1", "s1", CompletionStatus::Success).into(),
        stdout("q1", "s1", "o3", "late").into(),
        update("p", "late").into(),
        assigned("q2", "s1").into(),
        start("q2", "s1").into(),
        DisplayOutputAdded {
            queue_id: "q2".into(),
            ..display("d2", "x", Some("p"))
        }
        .into(),
    ];
    let fold = |mut state: NotebookState| {
        for (seq, event) in (1..).zip(&events) {
            state.apply(seq, event);
        }
        state
    };
    let (full, lean) = (fold(NotebookState::new()), fold(NotebookState::lean()));
    assert_eq!(full.stats(), lean.stats());
    assert_same_progress(&full, &lean);
    assert_eq!(texts(entries(&full)[0]), ["after"]);
    assert!(lean.entry(&"q1".into()).is_none(), "completed: forgotten");
    assert_eq!(
        lean.entries().len(),
        1,
        "only the running entry is kept whole"
    );
    assert_eq!(lean.requested_count(), 2);
    let OutputKind::Display { data, .. } = &entries(&lean)[0].outputs[0].kind else {
        panic!()
    };
    assert!(data.is_empty(), "running: ids and kinds, no bodies");
}

#[test]
fn many_outputs_are_found_by_id_and_stay_spent_after_a_clear() {
    let mut log = running();
    for n in 0..100 {
        log.ok(stdout("q1", "s1", &format!("o{n}"), &format!("{n}")));
    }
    for target in ["o3", "o99", "o50"] {
        log.ok(StreamOutputAppended {
            queue_id: "q1".into(),
            session_id: "s1".into(),
            output_id: target.into(),
            text: "+".into(),
        });
    }
    let shown = texts(log.entry("q1"));
    assert_eq!(
        (shown[3].as_str(), shown[50].as_str(), shown[99].as_str()),
        ("3+", "50+", "99+")
    );
    log.ignored(stdout("q1", "s1", "o42", "again"), Ignored::DuplicateId);
    log.ok(clear(false));
    for n in [0, 42, 99] {
        log.ignored(
            stdout("q1", "s1", &format!("o{n}"), "again"),
            Ignored::DuplicateId,
        );
    }
    log.ok(stdout("q1", "s1", "fresh", "new"));
    assert_eq!(texts(log.entry("q1")), ["new"]);
}

/// A log that exercises every part of the state: cells, a deleted cell, a queue, outputs
/// with a display updated across executions, a clear, a cancel, a lost execution, two
/// sessions.
#[test]
fn cells_keep_their_file_details_move_and_show_imported_outputs_until_they_run() {
    let mut log = running();
    for id in ["a", "b", "c"] {
        log.ok(CellCreated {
            cell_id: id.into(),
            cell_type: CellType::Code,
            source: id.into(),
        });
    }
    let order = |log: &Log| -> Vec<String> {
        log.state
            .cells()
            .map(|cell| cell.id.to_string())
            .filter(|id| id.len() == 1)
            .collect()
    };
    let moved = |cell: &str, after: Option<&str>| CellMoved {
        cell_id: cell.into(),
        after: after.map(CellId::from),
    };
    log.ok(moved("c", None));
    assert_eq!(order(&log), ["c", "a", "b"]);
    log.ok(moved("c", Some("b")));
    assert_eq!(order(&log), ["a", "b", "c"]);
    log.ok(moved("a", Some("b")));
    assert_eq!(order(&log), ["b", "a", "c"]);
    log.ok(moved("a", Some("a")));
    assert_eq!(order(&log), ["b", "a", "c"]);
    log.ignored(moved("x", None), Ignored::NotFound);
    log.ignored(moved("a", Some("x")), Ignored::NotFound);

    let metadata = Map::from_iter([("tags".to_owned(), json!(["parameters"]))]);
    log.ok(CellMetadataChanged {
        cell_id: "a".into(),
        metadata: metadata.clone(),
        attachments: None,
        other: Map::from_iter([("future".to_owned(), json!("yes"))]),
    });
    let cell = log.state.cell(&"a".into()).unwrap();
    assert_eq!(cell.metadata, metadata);
    assert_eq!(cell.other["future"], "yes");
    log.ignored(
        CellMetadataChanged {
            cell_id: "x".into(),
            metadata: Map::new(),
            attachments: None,
            other: Map::new(),
        },
        Ignored::NotFound,
    );
    log.ok(NotebookMetadataChanged {
        metadata: Map::from_iter([("language_info".to_owned(), json!({"name": "python"}))]),
        nbformat_minor: Some(2),
        other: Map::new(),
    });
    assert_eq!(
        log.state.notebook_metadata().unwrap().nbformat_minor,
        Some(2)
    );

    let imported = json!({"output_type": "stream", "name": "stdout", "text": ["old\n"]});
    log.ok(CellOutputsImported {
        cell_id: "a".into(),
        execution_count: Some(4),
        outputs: vec![imported.clone()],
    });
    let cell = log.state.cell(&"a".into()).unwrap();
    let shown = cell.imported.as_ref().unwrap();
    assert_eq!(
        (shown.execution_count, &shown.outputs[..]),
        (Some(4), &[imported][..])
    );
    // Running the cell replaces what it showed.
    log.ok(ExecutionRequested {
        queue_id: "qa".into(),
        cell_id: "a".into(),
        cell_type: CellType::Code,
        source: "a".into(),
        requested_by: "user".into(),
    });
    log.ok(completed("q1", "s1", CompletionStatus::Success));
    log.ok(assigned("qa", "s1"));
    log.ok(start("qa", "s1"));
    let cell = log.state.cell(&"a".into()).unwrap();
    assert_eq!(cell.imported, None);
    assert_eq!(cell.shown_execution, Some("qa".into()));
    // An import shows its outputs again, over the run's.
    log.ok(CellOutputsImported {
        cell_id: "a".into(),
        execution_count: None,
        outputs: Vec::new(),
    });
    assert_eq!(log.state.cell(&"a".into()).unwrap().shown_execution, None);
}

fn input_request(queue_id: &str, session: &str, input_id: &str) -> InputRequested {
    InputRequested {
        queue_id: queue_id.into(),
        session_id: session.into(),
        input_id: input_id.into(),
        prompt: "? ".into(),
        password: false,
        seal_key: None,
    }
}

fn input_reply(queue_id: &str, input_id: &str, value: &str) -> InputReplied {
    InputReplied {
        queue_id: queue_id.into(),
        input_id: input_id.into(),
        value: value.into(),
        replied_by: "user".into(),
    }
}

#[test]
fn an_input_request_is_fenced_answered_once_and_gone_when_the_entry_ends() {
    let mut log = running();
    log.ok(started("s2", 1));
    // s2 displaced s1, whose entry is lost; a fresh entry runs on s2.
    log.ok(request("q2"));
    log.ok(assigned("q2", "s2"));
    log.ok(start("q2", "s2"));
    log.ignored(input_request("q2", "s1", "i0"), Ignored::Fenced);
    log.ignored(input_reply("q2", "i0", "x"), Ignored::NotFound);
    log.ok(input_request("q2", "s2", "i1"));
    let asked = log.entry("q2").input.clone().unwrap();
    assert!(asked.is_waiting());
    assert_eq!(asked.prompt, "? ");
    log.ignored(input_reply("q2", "other", "x"), Ignored::NotFound);
    log.ok(input_reply("q2", "i1", "yes"));
    assert_eq!(
        log.entry("q2").input.as_ref().unwrap().reply.as_deref(),
        Some("yes")
    );
    log.ignored(input_reply("q2", "i1", "no"), Ignored::DuplicateId);
    // A new request replaces the answered one.
    log.ok(input_request("q2", "s2", "i2"));
    assert!(log.entry("q2").input.as_ref().unwrap().is_waiting());
    log.ok(completed("q2", "s2", CompletionStatus::Success));
    assert_eq!(log.entry("q2").input, None);
    log.ignored(input_reply("q2", "i2", "late"), Ignored::AlreadyEnded);
    log.ignored(input_request("q2", "s2", "i3"), Ignored::Fenced);
}

fn rich_log() -> Vec<Event> {
    let mut events: Vec<Event> = vec![
        started("s1", 0).into(),
        NotebookTitleChanged {
            title: "Report".into(),
        }
        .into(),
        cell_of("q1").into(),
        cell_of("q2").into(),
        cell_of("q3").into(),
        request("q1").into(),
        request("q2").into(),
        request("q3").into(),
        assigned("q1", "s1").into(),
        start("q1", "s1").into(),
        ExecutionStarted {
            queue_id: "q1".into(),
            session_id: "s1".into(),
            at: Timestamp(5),
        }
        .into(),
    ];
    events.push(display("d1", "first", Some("shared")).into());
    for n in 0..20 {
        events.push(stdout("q1", "s1", &format!("o{n}"), "line\n").into());
    }
    events.push(clear(true).into());
    events.push(stdout("q1", "s1", "after-clear", "x").into());
    events.push(completed("q1", "s1", CompletionStatus::Success).into());
    events.push(
        NotebookMetadataChanged {
            metadata: Map::from_iter([("kernelspec".to_owned(), json!({"name": "python3"}))]),
            nbformat_minor: Some(4),
            other: Map::new(),
        }
        .into(),
    );
    events.push(
        CellMetadataChanged {
            cell_id: "cell-q2".into(),
            metadata: Map::from_iter([("tags".to_owned(), json!(["slow"]))]),
            attachments: Some(Map::new()),
            other: Map::from_iter([("extra".to_owned(), json!(5))]),
        }
        .into(),
    );
    events.push(
        CellMoved {
            cell_id: "cell-q2".into(),
            after: None,
        }
        .into(),
    );
    events.push(
        CellOutputsImported {
            cell_id: "cell-q2".into(),
            execution_count: Some(9),
            outputs: vec![json!({"output_type": "future_kind", "x": 1})],
        }
        .into(),
    );
    events.push(assigned("q2", "s1").into());
    events.push(start("q2", "s1").into());
    events.push(input_request("q2", "s1", "i1").into());
    events.push(input_reply("q2", "i1", "yes").into());
    events.push(input_reply("q2", "i1", "again").into());
    events.push(input_request("q2", "s1", "i2").into());
    events.push(
        DisplayOutputAdded {
            queue_id: "q2".into(),
            ..display("d2", "second", Some("shared"))
        }
        .into(),
    );
    events.push(
        DisplayOutputUpdated {
            queue_id: "q2".into(),
            ..update("shared", "updated")
        }
        .into(),
    );
    events.push(
        ExecutionCancelRequested {
            target: CancelTarget::Entry {
                queue_id: "q3".into(),
            },
            requested_by: "user".into(),
        }
        .into(),
    );
    events.push(
        CellDeleted {
            cell_id: "cell-q3".into(),
        }
        .into(),
    );
    // Everything showing display "first" is cleared; an update for it still applies.
    events.push(
        OutputsCleared {
            queue_id: "q2".into(),
            ..clear(false)
        }
        .into(),
    );
    events.push(
        DisplayOutputUpdated {
            queue_id: "q2".into(),
            ..update("shared", "after the clear")
        }
        .into(),
    );
    events.push(started("s2", 10_000).into());
    events.push(request("q4").into()); // a request for a deleted-and-unknown cell: refused
    events.push(cell_of("q5").into());
    events.push(request("q5").into());
    events.push(assigned("q5", "s2").into());
    events.push(
        DisplayOutputUpdated {
            queue_id: "q5".into(),
            session_id: "s2".into(),
            ..update("shared", "late")
        }
        .into(),
    );
    events
}

#[track_caller]
fn assert_same_state(a: &NotebookState, b: &NotebookState) {
    assert_eq!(a.last_seq(), b.last_seq());
    assert_eq!(a.title(), b.title());
    assert_eq!(entries(a), entries(b));
    assert_eq!(a.requested_count(), b.requested_count());
    assert_eq!(a.sessions(), b.sessions());
    assert_eq!(a.active_session(), b.active_session());
    assert_eq!(a.stats(), b.stats());
    assert_eq!(a.execution_count(), b.execution_count());
    assert_eq!(a.cells().collect::<Vec<_>>(), b.cells().collect::<Vec<_>>());
    let pending = |s: &NotebookState| s.pending().map(|e| e.queue_id.clone()).collect::<Vec<_>>();
    assert_eq!(pending(a), pending(b));
    let held = |s: &NotebookState| {
        s.in_progress()
            .map(|e| e.queue_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(held(a), held(b));
}

/// From a snapshot taken after any prefix of the log, folding the rest decides every
/// event as the whole fold does and ends in the same state, lean and full.
#[test]
fn a_state_resumed_from_a_snapshot_at_any_point_folds_on_as_the_whole_log_does() {
    let events = rich_log();
    for (kind, make) in [
        (
            SnapshotKind::Full,
            NotebookState::new as fn() -> NotebookState,
        ),
        (SnapshotKind::Lean, NotebookState::lean),
    ] {
        let mut whole = make();
        let decisions: Vec<Applied> = (1..)
            .zip(&events)
            .map(|(seq, event)| whole.apply(seq, event))
            .collect();
        for split in 0..=events.len() {
            let mut prefix = make();
            for (seq, event) in (1..).zip(&events[..split]) {
                prefix.apply(seq, event);
            }
            let snapshot = prefix.snapshot();
            assert_eq!(snapshot.seq, split as Seq);
            let mut resumed = NotebookState::from_snapshot(&snapshot, kind).unwrap();
            assert_same_state(&resumed, &prefix);
            for (seq, event) in (1..).zip(&events).skip(split) {
                let decided = resumed.apply(seq, event);
                assert_eq!(
                    decided,
                    decisions[seq as usize - 1],
                    "{kind:?} split {split}, seq {seq}"
                );
            }
            assert_same_state(&resumed, &whole);
        }
    }
}

#[test]
fn a_snapshot_of_another_kind_format_or_a_contradiction_is_refused() {
    let mut log = running();
    log.ok(stdout("q1", "s1", "o1", "hi"));
    let full = log.state.snapshot();
    let refused = |state: &str| {
        let snapshot = Snapshot {
            state: state.into(),
            ..full.clone()
        };
        NotebookState::from_snapshot(&snapshot, SnapshotKind::Full).unwrap_err()
    };
    assert!(matches!(
        NotebookState::from_snapshot(&full, SnapshotKind::Lean),
        Err(SnapshotError::Kind { .. })
    ));
    assert!(matches!(refused("not json"), SnapshotError::Decode(_)));
    assert!(matches!(
        refused("{\"format\": 99}"),
        SnapshotError::Format { found: 99 }
    ));
    assert!(matches!(refused("[]"), SnapshotError::Decode(_)));
    let json: serde_json::Value = serde_json::from_str(&full.state).unwrap();
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut json = json.clone();
        edit(&mut json);
        refused(&json.to_string())
    };
    let twice = edited(&|json| {
        let entry = json["entries"][0].clone();
        json["entries"].as_array_mut().unwrap().push(entry);
    });
    assert!(matches!(twice, SnapshotError::Inconsistent(_)), "{twice}");
    let two_active = edited(&|json| {
        let mut session = json["sessions"][0].clone();
        session["sessionId"] = "s2".into();
        json["sessions"].as_array_mut().unwrap().push(session);
    });
    assert!(
        matches!(two_active, SnapshotError::Inconsistent(_)),
        "{two_active}"
    );
    let no_such_active = edited(&|json| json["activeSession"] = "nobody".into());
    assert!(
        matches!(no_such_active, SnapshotError::Inconsistent(_)),
        "{no_such_active}"
    );
    let wrong_seq = Snapshot {
        seq: full.seq + 1,
        ..full.clone()
    };
    assert!(NotebookState::from_snapshot(&wrong_seq, SnapshotKind::Full).is_err());
}

/// A lean state's completed entries become lines of a compact text unless an id holds one
/// of its separators or something JSON escapes; either way a state comes back as it was,
/// lean or full, and a line that is not one is refused, as is any line in a full state
/// (which keeps every entry whole).
#[test]
fn completed_entries_with_awkward_ids_survive_a_snapshot_and_a_bad_line_is_refused() {
    let ids = [
        "plain",
        "with space",
        "semi;colon",
        "quote\"d",
        "back\\slash",
        "tab\there",
        "line\nbreak",
        "ünïcödé",
    ];
    let bad_lines = |kind| match kind {
        SnapshotKind::Full => vec!["q1 success 1;"],
        SnapshotKind::Lean => vec![
            "q1 success 1",     // no end
            "q1 success x;",    // not a count
            "q1 success 0;",    // counts start at 1
            "q1 bogus 1;",      // not a status
            " success 1;",      // no queue id
            "plain success 1;", // listed twice
        ],
    };
    for (kind, make) in [
        (
            SnapshotKind::Full,
            NotebookState::new as fn() -> NotebookState,
        ),
        (SnapshotKind::Lean, NotebookState::lean),
    ] {
        let mut log = Log::new();
        log.state = make();
        log.ok(started("s1", 0));
        for id in ids {
            log.ok(cell_of(id));
            log.ok(request(id));
            log.ok(assigned(id, "s1"));
            log.ok(start(id, "s1"));
            log.ok(completed(id, "s1", CompletionStatus::Success));
        }
        let snapshot = log.state.snapshot();
        let json: serde_json::Value = serde_json::from_str(&snapshot.state).unwrap();
        let done = json["done"].as_str().unwrap();
        let lines = if kind == SnapshotKind::Lean { 2 } else { 0 };
        assert_eq!(done.matches(';').count(), lines, "plain ids only: {done}");
        let resumed = NotebookState::from_snapshot(&snapshot, kind).unwrap();
        assert_same_state(&resumed, &log.state);
        for (n, id) in (1..).zip(ids) {
            assert_eq!(
                resumed.queue_status(&id.into()),
                Some(QueueStatus::Completed {
                    status: CompletionStatus::Success,
                    execution_count: Some(n)
                }),
                "{kind:?} {id}"
            );
        }
        for bad in bad_lines(kind) {
            let mut edited = json.clone();
            edited["done"] = format!("{done}{bad}").into();
            let refused = NotebookState::from_snapshot(
                &Snapshot {
                    state: edited.to_string().into(),
                    ..snapshot.clone()
                },
                kind,
            );
            assert!(refused.is_err(), "{kind:?}: {bad:?} was accepted");
        }
    }
}

fn entries(state: &NotebookState) -> Vec<&QueueEntry> {
    state.entries().collect()
}

/// A lean and a full fold of one log know the same of every execution: how far it got,
/// how it ended, its count, and whether a cancel waits on it.
#[track_caller]
fn assert_same_progress(full: &NotebookState, lean: &NotebookState) {
    assert_eq!(full.requested_count(), lean.requested_count());
    for entry in full.entries() {
        let id = &entry.queue_id;
        assert_eq!(full.queue_status(id), lean.queue_status(id), "{id}");
        if let Some(kept) = lean.entry(id) {
            assert_eq!(kept.state, entry.state, "{id}");
            assert_eq!(kept.cancel_requested, entry.cancel_requested, "{id}");
        } else {
            assert!(
                entry.is_completed(),
                "{id}: a lean state keeps what has not ended"
            );
        }
    }
}

#[test]
fn the_view_shows_each_cell_with_its_latest_execution_and_the_outputs_of_the_last_run() {
    let mut log = running();
    log.ok(stdout("q1", "s1", "o1", "first run"));
    log.ok(completed("q1", "s1", CompletionStatus::Success));
    // A rerun of the same cell, queued: the cell shows the queued run and the old outputs.
    log.ok(ExecutionRequested {
        cell_id: "cell-q1".into(),
        ..request("q2")
    });
    let view = log.state.view();
    assert_eq!(view.cells.len(), 1);
    let cell = &view.cells[0];
    let execution = cell.execution.as_ref().expect("the latest execution");
    assert_eq!((execution.queue_id, execution.status), ("q2", "pending"));
    assert_eq!(cell.execution_count, Some(1));
    assert_eq!(cell.outputs.len(), 1);
    assert_eq!(view.queue.len(), 1);
    assert_eq!(view.queue[0].queue_id, "q2");
    let runtime = view.runtime.expect("the active session");
    assert_eq!((runtime.session_id, runtime.runtime_type), ("s1", "echo"));
    let json = serde_json::to_value(log.state.view()).unwrap();
    assert_eq!(json["cells"][0]["outputs"][0]["outputType"], "stream");
    assert_eq!(json["cells"][0]["outputs"][0]["text"], "first run");
    assert_eq!(json["runtime"]["status"], "ready");
}

#[test]
fn the_view_folds_by_the_reducers_rules_so_a_displaced_sessions_output_never_shows() {
    let mut log = running();
    log.ok(stdout("q1", "s1", "o1", "kept"));
    log.ok(started("s2", 10)); // s1 is displaced: q1 is lost
    log.ignored(stdout("q1", "s1", "o2", "late"), Ignored::Fenced);
    let view = log.state.view();
    let cell = &view.cells[0];
    assert_eq!(cell.execution.as_ref().unwrap().status, "runtime_lost");
    assert_eq!(cell.outputs.len(), 1);
    assert_eq!(view.runtime.unwrap().session_id, "s2");
    assert!(view.queue.is_empty());
}

#[test]
fn the_view_shows_a_waiting_question_until_it_is_answered() {
    let mut log = running();
    let asked = InputRequested {
        queue_id: "q1".into(),
        session_id: "s1".into(),
        input_id: "i1".into(),
        prompt: "Name? ".into(),
        password: false,
        seal_key: None,
    };
    log.ok(asked.clone());
    let view = log.state.view();
    let input = view.cells[0].execution.as_ref().unwrap().input.unwrap();
    assert_eq!(input.prompt, "Name? ");
    log.ok(InputRequest::from(&asked)
        .answer(&"q1".into(), "Ada", "user")
        .unwrap());
    assert!(
        log.state.view().cells[0]
            .execution
            .as_ref()
            .unwrap()
            .input
            .is_none()
    );
}
