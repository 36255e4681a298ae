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

/// Reaps every exited child of this process that the runtime does not own.
#[cfg(target_os = "linux")]
fn reap_orphans() {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    use nix::unistd::Pid;
    let owned = owned();
    for pid in children() {
        if owned.contains(&pid) || !is_zombie(pid) {
            continue;
        }
        if let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            tracing::trace!(pid, ?status, "reaped an orphan");
        }
    }
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

/// Whether `pid` has exited and waits to be reaped (state `Z`).
#[cfg(target_os = "linux")]
fn is_zombie(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| state == 'Z')
}

/// The state letter and process group of `pid`, from `/proc/<pid>/stat`.
#[cfg(target_os = "linux")]
fn stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields follow the command name, which is in parentheses and may hold any
    // character, so they are found after the last `)`: state, ppid, pgrp, …
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether a process of group `pgid` is still running. Zombies do not count: they are
/// dead, and one re-parented to init is init's to reap.
#[cfg(target_os = "linux")]
pub(crate) fn group_has_live_member(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| stat(pid).is_some_and(|(state, pgrp)| pgrp == pgid && state != 'Z'))
}

/// Elsewhere: anything that answers signal 0 counts.
#[cfg(not(target_os = "linux"))]
pub(crate) fn group_has_live_member(_pgid: i32) -> bool {
    true
}
