//! A child process in its own process group, stopped by a signal ladder, leaving nothing.

use std::io;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How a process group is stopped: SIGINT, a grace, SIGTERM, a grace, SIGKILL.
///
/// ```
/// use std::time::Duration;
/// use runtime_native::process::Ladder;
///
/// let ladder = Ladder { interrupt_grace: Duration::from_secs(1), ..Ladder::default() };
/// assert_eq!(ladder.terminate_grace, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ladder {
    /// How long the group has after SIGINT before SIGTERM.
    pub interrupt_grace: Duration,
    /// How long it has after SIGTERM before SIGKILL.
    pub terminate_grace: Duration,
}

/// How long the kernel gets, after SIGKILL, to end the group's processes before the stop
/// returns anyway (a process in uninterruptible sleep cannot die at once).
pub const KILL_SETTLE: Duration = Duration::from_secs(1);

impl Ladder {
    /// The longest a stop by this ladder takes: both graces and [`KILL_SETTLE`]. Whatever
    /// waits for a stop (the agent's cancel grace, a timeout's grace) must wait longer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use runtime_native::process::Ladder;
    ///
    /// assert_eq!(Ladder::default().longest_stop(), Duration::from_secs(5));
    /// ```
    pub fn longest_stop(&self) -> Duration {
        self.interrupt_grace + self.terminate_grace + KILL_SETTLE
    }
}

impl Default for Ladder {
    /// Two seconds for each step.
    fn default() -> Self {
        Ladder {
            interrupt_grace: Duration::from_secs(2),
            terminate_grace: Duration::from_secs(2),
        }
    }
}

/// The step of the ladder that ended a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopStep {
    /// It exited after SIGINT.
    Interrupt,
    /// It ignored SIGINT and exited after SIGTERM.
    Terminate,
    /// It ignored both and was killed with SIGKILL.
    Kill,
}

impl StopStep {
    /// The signal's name: `SIGINT`, `SIGTERM` or `SIGKILL`.
    pub fn signal_name(self) -> &'static str {
        match self {
            StopStep::Interrupt => "SIGINT",
            StopStep::Terminate => "SIGTERM",
            StopStep::Kill => "SIGKILL",
        }
    }
}

/// A spawned process leading its own process group. Dropping it kills the whole group.
pub(crate) struct Group {
    child: Child,
    pgid: Pid,
    exited: Option<ExitStatus>,
}

impl Group {
    /// Spawns `command` as the leader of a new process group, owned by the runtime (the
    /// orphan reaper leaves it to tokio).
    pub(crate) fn spawn(command: &mut Command) -> io::Result<Group> {
        super::interrupt::let_programs_be_interrupted();
        command.process_group(0).kill_on_drop(false);
        let mut owned = super::orphans::owned();
        let child = command.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("the process exited before it was seen"))?;
        let pgid = Pid::from_raw(i32::try_from(pid).map_err(io::Error::other)?);
        owned.insert(pgid.as_raw());
        drop(owned);
        Ok(Group {
            child,
            pgid,
            exited: None,
        })
    }

    /// The group leader, to take its pipes.
    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The group's id (the leader's pid).
    pub(crate) fn id(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// Waits for the leader to exit.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = self.child.wait().await?;
        self.exited = Some(status);
        super::orphans::owned().remove(&self.pgid.as_raw());
        Ok(status)
    }

    /// Sends `signal` to every process of the group.
    pub(crate) fn signal(&self, signal: Signal) {
        signal_group(self.id(), signal);
    }

    /// Runs the ladder until the leader exits; says which step ended it. The rest of the
    /// group is then killed and reaped ([`finish`](Self::finish)).
    pub(crate) async fn stop(&mut self, ladder: Ladder) -> (StopStep, io::Result<ExitStatus>) {
        self.stop_from(StopStep::Interrupt, ladder).await
    }

    /// Runs the ladder from `first` on (a caller that already sent SIGINT and waited
    /// starts at [`StopStep::Terminate`]).
    pub(crate) async fn stop_from(
        &mut self,
        first: StopStep,
        ladder: Ladder,
    ) -> (StopStep, io::Result<ExitStatus>) {
        let steps = [
            (StopStep::Interrupt, Signal::SIGINT, ladder.interrupt_grace),
            (StopStep::Terminate, Signal::SIGTERM, ladder.terminate_grace),
        ];
        let skip = usize::from(first != StopStep::Interrupt) + usize::from(first == StopStep::Kill);
        for (step, signal, grace) in steps.into_iter().skip(skip) {
            self.signal(signal);
            if let Ok(status) = tokio::time::timeout(grace, self.wait()).await {
                self.finish().await;
                return (step, status);
            }
            tracing::debug!(
                pgid = self.id(),
                ?signal,
                ?grace,
                "the process group outlived the signal"
            );
        }
        self.signal(Signal::SIGKILL);
        let deadline = Instant::now() + KILL_SETTLE;
        let status = match tokio::time::timeout_at(deadline.into(), self.wait()).await {
            Ok(status) => status,
            Err(_) => Err(io::Error::other(
                "the process did not die within a second of SIGKILL",
            )),
        };
        self.finish_by(deadline).await;
        (StopStep::Kill, status)
    }

    /// After the leader exited: kills what is left of the group and reaps it, so no
    /// process or zombie stays behind (waits at most [`KILL_SETTLE`] for the kernel).
    pub(crate) async fn finish(&mut self) {
        self.finish_by(Instant::now() + KILL_SETTLE).await;
    }

    async fn finish_by(&mut self, deadline: Instant) {
        self.signal(Signal::SIGKILL);
        while self.alive_members() {
            if Instant::now() > deadline {
                tracing::warn!(
                    pgid = self.id(),
                    "members of the process group are still there"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Reaps exited members that are our children; `true` while any member (or zombie)
    /// of the group exists.
    fn alive_members(&self) -> bool {
        if self.exited.is_some() {
            // Members re-parented to us (the subreaper) are reaped here; never the leader,
            // which tokio reaped already.
            loop {
                match waitpid(Pid::from_raw(-self.id()), Some(WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        }
        // Signal 0 checks existence, zombies included; only a live member keeps the group
        // alive (a zombie re-parented to init is init's to reap, unless this process
        // adopted orphans: then it was reaped above).
        killpg(self.pgid, None).is_ok() && super::orphans::group_has_live_member(self.id())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        super::orphans::owned().remove(&self.pgid.as_raw());
        if self.exited.is_some() && !self.alive_members() {
            return;
        }
        // Dropped mid-run (an abandoned handler): nothing may outlive it. tokio reaps the
        // leader once its `Child` is dropped; members re-parented to this process (only if
        // it chose to be a subreaper) are reaped by its orphan reaper.
        self.signal(Signal::SIGKILL);
    }
}

/// Sends `signal` to every process of group `pgid`: for a caller that is waiting on the
/// group's leader at the same time (the group id stays the leader's until it is reaped).
pub(crate) fn signal_group(pgid: i32, signal: Signal) {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => {
            tracing::warn!(pgid, %error, ?signal, "could not signal the process group")
        }
    }
}
