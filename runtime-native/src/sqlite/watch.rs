//! Wakes subscribers when another process commits to their notebook.
//!
//! Every notebook of a store file has a signal file, `<file>-wake/<hash of its id>`. A
//! commit writes a byte to its notebook's signal file once the transaction is published,
//! and each open watches only the signal files of the notebooks it reads. So a commit wakes
//! the processes that read that notebook and no others: a hundred agents on a hundred
//! notebooks of one file do not all wake for each other's lease renewals, as they did when
//! every open watched the file itself.
//!
//! A commit through this open also reaches its own watch; SQLite's `data_version` on the
//! writer's connection changes only when *another* connection committed, so that event is
//! recognised and ignored (the commit already woke this open's readers directly). The
//! version is remembered per notebook: one check that saw another process's commits must
//! not hide them from the next notebook's event.
//!
//! Processes of versions that write no signal files are still seen, at the readers'
//! safety re-read.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use rusqlite::Connection;
use tokio::sync::Notify;

/// What wakes the readers of each notebook, by notebook id: shared by this open's commits
/// and its watch.
pub(super) type NotebookWakes = Mutex<HashMap<Arc<str>, Arc<Notify>>>;

/// The signal files of one store file, and the watch on those this open reads.
pub(super) struct Signals {
    dir: PathBuf,
    /// `None` when the platform refused a watch: readers then rely on their safety re-read.
    watcher: Mutex<Option<RecommendedWatcher>>,
    /// The notebooks watched, by signal file name.
    watched: Arc<Mutex<HashMap<OsString, Arc<str>>>>,
}

impl Signals {
    /// The signal files next to the store at `path`; their events wake `wakes`, unless the
    /// commit was this open's own (as `writer` tells).
    pub(super) fn start(
        path: &Path,
        wakes: Arc<NotebookWakes>,
        writer: Arc<Mutex<Connection>>,
    ) -> Signals {
        let mut dir = path.as_os_str().to_owned();
        dir.push("-wake");
        let dir = PathBuf::from(dir);
        if let Err(error) = std::fs::create_dir_all(&dir) {
            tracing::warn!(%error, dir = %dir.display(), "cannot make the signal directory");
        }
        let watched: Arc<Mutex<HashMap<OsString, Arc<str>>>> = Arc::default();
        let names = watched.clone();
        let mut seen_versions: HashMap<Arc<str>, i64> = HashMap::new();
        let everyone = wakes.clone();
        let handler = move |event: notify::Result<notify::Event>| match event {
            // The platform dropped events (a full queue): any notebook may have changed.
            Ok(event) if event.need_rescan() => {
                let wakes = everyone.lock().unwrap_or_else(PoisonError::into_inner);
                wakes.values().for_each(|wake| wake.notify_waiters());
            }
            Ok(event) if matches!(event.kind, EventKind::Modify(_) | EventKind::Create(_)) => {
                let notebooks: Vec<Arc<str>> = {
                    let names = names.lock().unwrap_or_else(PoisonError::into_inner);
                    event
                        .paths
                        .iter()
                        .filter_map(|path| names.get(path.file_name()?).cloned())
                        .collect()
                };
                if notebooks.is_empty() {
                    return;
                }
                let version = data_version(&writer);
                let wakes = wakes.lock().unwrap_or_else(PoisonError::into_inner);
                for notebook in notebooks {
                    let seen = match version {
                        Some(version) => seen_versions.insert(notebook.clone(), version),
                        None => None,
                    };
                    // Unchanged since this notebook's last event: that was this open's commit.
                    if version.is_some() && seen == version {
                        continue;
                    }
                    if let Some(wake) = wakes.get(&notebook) {
                        wake.notify_waiters();
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "file watch error"),
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "cannot watch for other processes' commits; they will be seen at the \
                     safety re-read instead of at once"
                );
                None
            }
        };
        Signals {
            dir,
            watcher: Mutex::new(watcher),
            watched,
        }
    }

    /// Watches `notebook`'s signal file from now on (once per notebook and open); `false`
    /// if it cannot be watched, and other processes' commits are then seen only when its
    /// readers look again.
    pub(super) fn watch(&self, notebook: &Arc<str>) -> bool {
        let name = signal_name(notebook);
        let watching = |watched: &Self| {
            watched
                .watched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(&name)
        };
        if watching(self) {
            return true;
        }
        let path = self.dir.join(&name);
        // The file must be there to be watched; another process may make it first.
        let made = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path);
        // Not under the `watched` lock: adding a watch waits for the watcher's thread,
        // which may be in the event handler, waiting for that lock.
        let added = {
            let mut watcher = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(watcher) = watcher.as_mut() else {
                return false;
            };
            made.and_then(|_| {
                watcher
                    .watch(&path, RecursiveMode::NonRecursive)
                    .map_err(std::io::Error::other)
            })
        };
        match added {
            Ok(()) => {
                self.watched
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(name, notebook.clone());
                true
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    path = %path.display(),
                    "cannot watch a notebook's signal file; other processes' commits will be \
                     seen within 500 ms instead of at once"
                );
                false
            }
        }
    }

    /// Tells the processes that read `notebook` that a commit to it is published.
    pub(super) fn signal(&self, notebook: &str) {
        let path = self.dir.join(signal_name(notebook));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .and_then(|mut file| file.write_all(b"."));
        if let Err(error) = written {
            // Readers elsewhere see the commit at their safety re-read instead.
            tracing::debug!(%error, path = %path.display(), "could not signal a commit");
        }
    }
}

/// A notebook's signal file name: the FNV-1a hash of its id in hex (ids may hold any
/// character; two ids that share a hash only wake each other's readers for nothing).
fn signal_name(notebook: &str) -> OsString {
    let hash = notebook
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{hash:016x}").into()
}

/// The file's `data_version` as `writer` sees it, which changes only when *another*
/// connection commits; `None` when it cannot tell now (this open is committing, the pragma
/// fails), and the caller then wakes, so no wake-up is lost.
fn data_version(writer: &Mutex<Connection>) -> Option<i64> {
    let writer = writer.try_lock().ok()?;
    writer
        .prepare_cached("PRAGMA data_version")
        .and_then(|mut pragma| pragma.query_row([], |row| row.get::<_, i64>(0)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_are_stable_and_tell_ids_apart() {
        assert_eq!(signal_name("nb"), signal_name("nb"));
        assert_ne!(signal_name("nb"), signal_name("nb2"));
        // FNV-1a of the empty string: the offset basis. Stable across builds and versions,
        // as processes of different builds share the files.
        assert_eq!(signal_name(""), OsString::from("cbf29ce484222325"));
    }
}
