//! The opt-in child subreaper: orphaned grandchildren (a helper that left its job's process
//! group, then lost its parent) become this process's children, and a reaper collects
//! them when they exit instead of letting them pile up as zombies.

use std::collections::BTreeSet;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The pids of the processes this runtime started and still owns (their exit status
/// belongs to tokio, which waits for them); the reaper never touches these.
static OWNED: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Locks the owned set. A spawn holds it from before `fork` until its pid is recorded,
/// so the reaper can never mistake a freshly started process for an orphan.
pub(crate) fn owned() -> MutexGuard<'static, BTreeSet<i32>> {
    OWNED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes this process a child subreaper and starts a task that reaps every exited child
/// it did not start through the runtime (Linux; elsewhere an `Unsupported` error).
///
/// Without it, a helper that leaves its job's process group (codex's shells do) and
/// outlives its parent is adopted by init or the nearest subreaper, and is none of this
/// process's business. With it, such helpers become this process's children; the reaper
/// runs on every `SIGCHLD` and collects those that exited, so no `<defunct>` entries pile
/// up in a long-running agent.
///
/// This changes the whole process, so only an application decides it (the shipped agents
/// do, at start-up). Call it once, inside a tokio runtime. **Do not** call it in a process
/// that waits by pid for children it starts itself outside the runtime (with
/// `std::process::Child::wait`, say): the reaper could collect their exit status first.
///
/// ```no_run
/// # async fn start() -> std::io::Result<()> {
/// runtime_native::process::adopt_orphans()?;
/// # Ok(()) }
/// ```
#[cfg(target_os = "linux")]
pub fn adopt_orphans() -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut exits = signal(SignalKind::child())?;
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
    tokio::spawn(async move {
        loop {
            reap_orphans();
            if exits.recv().await.is_none() {
                return;
            }
        }
    });
    tracing::debug!("this process is now a child subreaper");
    Ok(())
}

/// Not available on this platform.
#[cfg(not(target_os = "linux"))]
pub fn adopt_orphans() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "a child subreaper needs Linux",
    ))
}

/// Reaps every exited child of this process that the runtime does not own; returns how
/// many it reaped.
#[cfg(target_os = "linux")]
pub(crate) fn reap_orphans() -> usize {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    use nix::unistd::Pid;
    let owned = owned();
    let mut reaped = 0;
    for pid in children() {
        if owned.contains(&pid) || !is_zombie(pid) {
            continue;
        }
        if let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            tracing::trace!(pid, ?status, "reaped an orphan");
            reaped += 1;
        }
    }
    reaped
}

/// This process's children, from `/proc/self/task/*/children`.
#[cfg(target_os = "linux")]
fn children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|pid| pid.parse::<i32>().ok()),
            );
        }
    }
    pids
}

/// Whether `pid` has exited and waits to be reaped (state `Z` in `/proc/<pid>/stat`).
#[cfg(target_os = "linux")]
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold any
        // character, so it is found after the last `)`.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}
