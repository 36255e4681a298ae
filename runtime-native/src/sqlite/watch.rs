//! Wakes subscribers when another process commits to the store file.
//!
//! SQLite in WAL mode appends each commit to `<file>-wal`, so a change to it (or to the
//! file itself, at a checkpoint) means new events may be there. The directory is watched,
//! not the files: the WAL file comes and goes. Only creations and modifications of those two
//! files wake anyone; reading them does not, so readers cannot wake themselves.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// A live watch; dropping it stops watching.
pub(super) struct FileWatch {
    _watcher: RecommendedWatcher,
}

impl FileWatch {
    /// Watches the file at `path`; `None` (with a warning) if the platform refuses, in which
    /// case subscribers still see other processes' commits by their safety re-read.
    pub(super) fn start(path: &Path, changed: Arc<Notify>) -> Option<FileWatch> {
        let name = path.file_name()?.to_os_string();
        let mut wal = name.clone();
        wal.push("-wal");
        let ours =
            move |file: Option<&std::ffi::OsStr>| file.is_some_and(|f| f == name || f == wal);
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event)
                if matches!(event.kind, EventKind::Modify(_) | EventKind::Create(_))
                    && event.paths.iter().any(|p| ours(p.file_name())) =>
            {
                changed.notify_waiters();
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
