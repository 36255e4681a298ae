//! Wakes subscribers when another process commits to the store file.
//!
//! SQLite in WAL mode appends each commit to `<file>-wal`, so a change to it (or to the
//! file itself, at a checkpoint) means new events may be there. The directory is watched,
//! not the files: the WAL file comes and goes. Only creations and modifications of those two
//! files wake anyone; reading them does not, so readers cannot wake themselves.
//!
//! Commits through this open wake their own notebook's subscribers directly, and the file
//! events they cause are recognised and ignored: SQLite's `data_version` on the writer's
//! connection changes only when *another* connection committed. So with thousands of
//! subscriptions in one process (a hub), a commit wakes only its notebook's readers.

use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use rusqlite::Connection;
use tokio::sync::Notify;

/// How many times, [`RECHECK_DELAY`] apart, an event that shows no other connection's
/// commit is checked again: the WAL is written a moment before the commit is published.
const RECHECKS: usize = 5;
const RECHECK_DELAY: Duration = Duration::from_micros(200);

/// A live watch; dropping it stops watching.
pub(super) struct FileWatch {
    _watcher: RecommendedWatcher,
}

impl FileWatch {
    /// Watches the file at `path`; `None` (with a warning) if the platform refuses, in which
    /// case subscribers still see other processes' commits by their safety re-read.
    pub(super) fn start(
        path: &Path,
        changed: Arc<Notify>,
        writer: Arc<Mutex<Connection>>,
    ) -> Option<FileWatch> {
        let name = path.file_name()?.to_os_string();
        let mut wal = name.clone();
        wal.push("-wal");
        let ours =
            move |file: Option<&std::ffi::OsStr>| file.is_some_and(|f| f == name || f == wal);
        let mut seen_version = None;
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event)
                if matches!(event.kind, EventKind::Modify(_) | EventKind::Create(_))
                    && event.paths.iter().any(|p| ours(p.file_name())) =>
            {
                if another_connection_committed(&writer, &mut seen_version) {
                    changed.notify_waiters();
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "file watch error"),
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => OsString::from(".").into(),
        };
        let started = notify::recommended_watcher(handler).and_then(|mut watcher| {
            watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .map(|()| watcher)
        });
        match started {
            Ok(watcher) => Some(FileWatch { _watcher: watcher }),
            Err(error) => {
                tracing::warn!(
                    %error,
                    dir = %dir.display(),
                    "cannot watch the store's directory; commits from other processes will be \
                     seen within 500 ms instead of at once"
                );
                None
            }
        }
    }
}

/// Whether a connection other than `writer` committed since the last call said so; `true`
/// when it cannot tell (the writer is busy, the pragma fails), so no wake-up is lost.
fn another_connection_committed(
    writer: &Mutex<Connection>,
    seen_version: &mut Option<i64>,
) -> bool {
    let mut told = false;
    for attempt in 0..=RECHECKS {
        if attempt > 0 {
            std::thread::sleep(RECHECK_DELAY);
        }
        // A commit through this open holds the writer: look again in a moment.
        let Ok(writer) = writer.try_lock() else {
            continue;
        };
        told = true;
        let Ok(version) = writer.query_row("PRAGMA data_version", [], |row| row.get::<_, i64>(0))
        else {
            return true;
        };
        if *seen_version != Some(version) {
            *seen_version = Some(version);
            return true;
        }
    }
    !told
}
