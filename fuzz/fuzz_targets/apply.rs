//! Any log (one event per line, optionally stamped: `author@millis {json}`) folds without
//! panicking, and an agent's lean fold makes the same decisions as a UI's full fold: the
//! same statistics, queue statuses, execution counts and sessions. A fold resumed from a
//! snapshot taken halfway decides the rest as the whole fold does.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use runtime_core::{Event, LogEntry, NotebookState, SnapshotKind, Stamp, Timestamp};

/// The line's stamp, if it starts with `author@millis `, and the event after it.
fn stamped(line: &str) -> (Option<Stamp>, &str) {
    let Some((head, json)) = line.split_once(' ') else {
        return (None, line);
    };
    let Some((author, at)) = head.split_once('@') else {
        return (None, line);
    };
    match at.parse::<u64>() {
        Ok(at) => (Some(Stamp::new(Timestamp(at), author)), json),
        Err(_) => (None, line),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut full = NotebookState::new();
    let mut lean = NotebookState::lean();
    let lines = text.lines().count();
    let mut resumed = None;
    for (seq, line) in (1..).zip(text.lines()) {
        if seq as usize == lines / 2 + 1 {
            let snapshot = full.snapshot();
            let state = NotebookState::from_snapshot(&snapshot, SnapshotKind::Full);
            resumed = Some(state.expect("a state's own snapshot restores"));
        }
        let (stamp, json) = stamped(line);
        let entry = LogEntry {
            seq,
            event: Arc::new(Event::from_json_str(json)),
            stamp,
        };
        let applied = full.apply_entry(&entry);
        assert_eq!(lean.apply_entry(&entry), applied, "seq {seq}: {line}");
        if let Some(resumed) = &mut resumed {
            assert_eq!(resumed.apply_entry(&entry), applied, "resumed, seq {seq}: {line}");
        }
    }
    if let Some(resumed) = &resumed {
        assert_eq!(resumed.stats(), full.stats());
        assert!(resumed.entries().eq(full.entries()));
        assert_eq!(resumed.sessions(), full.sessions());
    }
    assert_eq!(full.stats(), lean.stats());
    assert_eq!(full.sessions(), lean.sessions());
    assert_eq!(full.requested_count(), lean.requested_count());
    for a in full.entries() {
        assert_eq!(full.queue_status(&a.queue_id), lean.queue_status(&a.queue_id));
        match lean.entry(&a.queue_id) {
            Some(b) => {
                assert_eq!(a.state, b.state);
                assert_eq!(a.cancel_requested, b.cancel_requested);
                assert!(a.outputs.len() >= b.outputs.len());
            }
            None => assert!(a.is_completed(), "a lean state keeps what has not ended"),
        }
    }
    for entry in full.entries() {
        if let Some(cell) = full.cell(&entry.cell_id) {
            let _ = full.cell_outputs(&cell.id);
        }
        let _ = full.why_pending(&entry.queue_id);
    }
});
