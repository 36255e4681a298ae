//! The opt-in subreaper: helpers that leave their job's process group and outlive their
//! parent are reaped, while every job still gets its own exit status. Its own test binary:
//! becoming a subreaper changes the whole process.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use runtime_core::CompletionStatus;
use runtime_native::process::{Input, Job, Program, adopt_orphans};
use support::{ended, serve, text_of};

/// The state letter of `pid` in `/proc/<pid>/stat`, if it exists.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_helpers_are_reaped_and_jobs_keep_their_exit_status() {
    adopt_orphans().unwrap();
    let served = serve(Job::new(Program::new("sh").args(["-c"])).input(Input::Argument));
    // The helper starts a session of its own (leaving the job's group), and its parent
    // exits at once: it becomes this process's child, and exits 300 ms later.
    let entry = served
        .run("setsid sh -c 'echo helper $$; sleep 0.3' & sleep 0.1")
        .await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    let helper: i32 = text_of(&entry.outputs)
        .trim()
        .strip_prefix("helper ")
        .unwrap()
        .parse()
        .unwrap();
    let mut last = state(helper);
    for _ in 0..1000 {
        last = state(helper);
        if last.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(last, None, "the orphaned helper {helper} was not reaped");

    // Jobs exiting while the reaper runs: each keeps its own status.
    let runs = (0..16).map(|code| {
        let served = &served;
        async move {
            let entry = served
                .run(&format!("sleep 0.0{}; exit {}", code % 5, code + 1))
                .await;
            (code + 1, ended(&entry))
        }
    });
    for (code, (status, reason)) in futures::future::join_all(runs).await {
        assert_eq!(status, CompletionStatus::Error);
        assert!(
            reason.contains(&format!("exited with code {code}")),
            "{code}: {reason}"
        );
    }
}
