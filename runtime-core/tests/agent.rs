//! The agent on a MemoryStore, driven by the deterministic executor: every behaviour a
//! user of the agent would notice.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use runtime_core::*;
use serde_json::json;
use support::{Output, Sim, Skewed, TaskId, describe, fold, options, request, wait_for};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

type Ended = Output<Result<TerminationReason, AgentError>>;

#[test]
fn a_quiet_agent_says_through_where_and_a_stop_says_why() {
    let mut sim = Sim::new(2);
    let store = MemoryStore::new();
    let clock = sim.clock.clone();
    let (_, ended, handle) = spawn_agent(
        &mut sim,
        &store,
        options("alice"),
        sleeper(clock, Duration::from_secs(1)),
    );
    sim.run_until(|| handle.quiet_through().is_some());
    assert_eq!(handle.executions_started(), 0);
    let queue_id = request(&mut sim, &store, "one second");
    wait_until_running(&mut sim, &store, &queue_id);
    assert_eq!(handle.quiet_through(), None, "not quiet while it runs");
    let done = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(done.state.status(), Some(CompletionStatus::Success));
    sim.run_until(|| handle.quiet_through().is_some());
    let quiet = handle.quiet_through().unwrap();
    assert!(
        quiet >= fold(&store).last_seq() - 1,
        "quiet through the completion: {quiet}"
    );
    assert_eq!(handle.executions_started(), 1);

    handle.shutdown_saying("idle for 10 min");
    handle.shutdown_saying("a second reason is not kept");
    assert_eq!(sim.run_to(&ended), Ok(TerminationReason::Shutdown));
    assert_eq!(handle.quiet_through(), None, "not quiet once stopped");
    let head = fold(&store).last_seq();
    let last = store.subscribe(head).take(1).collect::<Vec<_>>();
    let last = futures::executor::block_on(last);
    let Some(Ok(entry)) = last.last() else {
        panic!("no log")
    };
    let Event::RuntimeSessionTerminated(terminated) = &*entry.event else {
        panic!("the log ends with {:?}", entry.event)
    };
    assert_eq!(terminated.detail.as_deref(), Some("idle for 10 min"));
}

fn spawn_agent(
    sim: &mut Sim,
    store: &MemoryStore,
    options: AgentOptions,
    handler: impl ExecutionHandler + 'static,
) -> (TaskId, Ended, AgentHandle) {
    spawn_agent_with(sim, store, Capabilities::code(), options, handler)
}

fn spawn_agent_with(
    sim: &mut Sim,
    store: &MemoryStore,
    capabilities: Capabilities,
    options: AgentOptions,
    handler: impl ExecutionHandler + 'static,
) -> (TaskId, Ended, AgentHandle) {
    let agent = RuntimeAgent::new(store.clone(), sim.clock.clone(), capabilities, options)
        .unwrap()
        .on_execution(handler);
    let handle = agent.handle();
    let (task, ended) = sim.spawn(agent.run());
    (task, ended, handle)
}

async fn echo(ctx: ExecutionContext) -> Result<MediaBundle, ExecutionError> {
    Ok(MediaBundle::plain(format!("Echo: {}", ctx.source())))
}

/// A handler that sleeps `duration` of virtual time, cooperating with cancel.
fn sleeper(clock: ManualClock, duration: Duration) -> impl ExecutionHandler {
    move |ctx: ExecutionContext| {
        let sleep = clock.sleep(duration);
        async move {
            ctx.stdout("started\n")?;
            futures::select_biased! {
                _ = futures::FutureExt::fuse(ctx.cancelled()) => Err(ExecutionError::Cancelled),
                () = futures::FutureExt::fuse(sleep) => Ok(()),
            }
        }
    }
}

fn status_of(sim: &mut Sim, store: &MemoryStore, queue_id: &QueueId) -> Option<CompletionStatus> {
    wait_for(sim, store, queue_id).state.status()
}

fn wait_until_running(sim: &mut Sim, store: &MemoryStore, queue_id: &QueueId) {
    let mut watcher = NotebookWatcher::new(store);
    let queue_id = queue_id.clone();
    let (_, done) = sim.spawn(async move {
        let running = |s: &NotebookState| {
            s.entry(&queue_id)
                .is_some_and(|e| matches!(e.state, EntryState::Executing { .. }))
        };
        watcher.wait_until(running).await.map(drop).unwrap();
    });
    sim.run_to(&done);
}

fn error_of(entry: &QueueEntry) -> String {
    match &entry.state {
        EntryState::Completed { error, .. } => error.clone().unwrap_or_default(),
        other => panic!("not completed: {other:?}"),
    }
}

#[test]
fn echo_end_to_end_then_shutdown_leaves_nothing_running() {
    let mut sim = Sim::new(1);
    let store = MemoryStore::new();
    let (_, ended, handle) = spawn_agent(&mut sim, &store, options("alice"), echo);
    let first = request(&mut sim, &store, "1 + 1");
    let second = request(&mut sim, &store, "2 + 2");
    let entry = wait_for(&mut sim, &store, &second);
    assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
    assert_eq!(describe(&entry.outputs), ["result[2]:Echo: 2 + 2"]);
    assert_eq!(wait_for(&mut sim, &store, &first).execution_count, Some(1));
    assert_eq!(handle.status(), AgentStatus::Idle);

    handle.shutdown();
    handle.shutdown(); // idempotent
    assert_eq!(sim.run_to(&ended), Ok(TerminationReason::Shutdown));
    assert_eq!(handle.status(), AgentStatus::Stopped);
    let state = fold(&store);
    let session = state.session(handle.session_id()).unwrap();
    assert_eq!(
        session.state,
        SessionState::Ended(TerminationReason::Shutdown)
    );
    assert_eq!(state.in_progress().count(), 0);
    assert_eq!(state.pending().count(), 0);
}

#[test]
fn outputs_of_every_kind_land_in_order_and_streams_coalesce() {
    let mut sim = Sim::new(2);
    let store = MemoryStore::new();
    let handler = |ctx: ExecutionContext| async move {
        ctx.stdout("a")?;
        ctx.stdout("b")?;
        ctx.stdout("c\n")?;
        ctx.stderr("warn\n")?;
        ctx.display(Display::new(MediaBundle::plain("0%")).id("progress"))?;
        ctx.update_display("progress", MediaBundle::plain("50%"))?;
        ctx.update_display("progress", MediaBundle::plain("100%"))?;
        let answer = ctx.markdown("# Answer")?;
        ctx.append_markdown(&answer, " is")?;
        ctx.append_markdown(&answer, " 42")?;
        ctx.stdout("after\n")?;
        ctx.error("Warning", "just so you know", vec!["line 1".into()])?;
        ctx.result(MediaBundle::plain("42"))?;
        Ok(())
    };
    spawn_agent(&mut sim, &store, options("alice"), handler);
    let queue_id = request(&mut sim, &store, "everything");
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(
        describe(&entry.outputs),
        [
            "Stdout:abc\n",
            "Stderr:warn\n",
            "display(progress):100%",
            "md:# Answer is 42",
            "Stdout:after\n",
            "error:Warning:just so you know",
            "result[1]:42",
        ]
    );
    // A handler that returns Ok after showing an error still succeeded.
    assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
    // Consecutive writes became one output event; the two updates collapsed into one.
    let log: Vec<String> = store
        .entries()
        .iter()
        .map(|e| e.event.type_name().to_owned())
        .collect();
    let count = |name: &str| log.iter().filter(|n| *n == name).count();
    assert_eq!(count("v1.StreamOutputAdded"), 3);
    assert!(count("v1.DisplayOutputUpdated") <= 1, "{log:?}");
    let completed_at = log
        .iter()
        .position(|n| n == "v1.ExecutionCompleted")
        .unwrap();
    assert!(
        log[..completed_at]
            .iter()
            .filter(|n| n.contains("Output") || n.contains("Result"))
            .count()
            >= 7
    );
}

#[test]
fn a_streamed_markdown_answer_appends_across_commits() {
    let mut sim = Sim::new(3);
    let store = MemoryStore::new();
    let clock = sim.clock.clone();
    let handler = move |ctx: ExecutionContext| {
        let clock = clock.clone();
        async move {
            let answer = ctx.markdown("Once")?;
            for word in [" upon", " a", " time"] {
                clock.sleep(Duration::from_millis(5)).await;
                ctx.append_markdown(&answer, word)?;
            }
            Ok(())
        }
    };
    spawn_agent(&mut sim, &store, options("alice"), handler);
    let queue_id = request(&mut sim, &store, "tell me a story");
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(describe(&entry.outputs), ["md:Once upon a time"]);
    let appends = store
        .entries()
        .iter()
        .filter(|e| e.event.type_name() == "v1.MarkdownOutputAppended")
        .count();
    assert_eq!(appends, 3, "each word was committed as it came");
}

#[test]
fn cancelling_a_pending_entry_never_runs_it() {
    let mut sim = Sim::new(4);
    let store = MemoryStore::new();
    let runs = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = runs.clone();
    let clock = sim.clock.clone();
    let handler = move |ctx: ExecutionContext| {
        seen.lock().unwrap().push(ctx.source().to_owned());
        let sleep = clock.sleep(Duration::from_millis(20));
        async move {
            sleep.await;
            Ok(())
        }
    };
    spawn_agent(&mut sim, &store, options("alice"), handler);
    let first = request(&mut sim, &store, "first");
    let second = request(&mut sim, &store, "second");
    wait_until_running(&mut sim, &store, &first);
    let client = NotebookClient::new(store.clone(), "alice");
    let target = second.clone();
    let (_, cancelled) = sim.spawn(async move { client.cancel(&target).await.unwrap() });
    sim.run_to(&cancelled);
    let second_entry = wait_for(&mut sim, &store, &second);
    assert_eq!(
        second_entry.state.status(),
        Some(CompletionStatus::Cancelled)
    );
    assert_eq!(
        status_of(&mut sim, &store, &first),
        Some(CompletionStatus::Success)
    );
    sim.settle(Duration::from_secs(1));
    assert_eq!(*runs.lock().unwrap(), ["first"]);
}

#[test]
fn cancelling_a_running_cooperative_handler_ends_it_cancelled_not_failed() {
    let mut sim = Sim::new(5);
    let store = MemoryStore::new();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = failures.clone();
    let agent = RuntimeAgent::new(
        store.clone(),
        sim.clock.clone(),
        Capabilities::code(),
        options("alice"),
    )
    .unwrap()
    .on_execution(sleeper(sim.clock.clone(), Duration::from_secs(3600)))
    .on_execution_error(move |failure| seen.lock().unwrap().push(failure.status));
    sim.spawn(agent.run());
    let queue_id = request(&mut sim, &store, "long");
    wait_until_running(&mut sim, &store, &queue_id);
    let before = sim.clock.now();
    let client = NotebookClient::new(store.clone(), "alice");
    let target = queue_id.clone();
    sim.spawn(async move { client.cancel(&target).await.unwrap() });
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(entry.state.status(), Some(CompletionStatus::Cancelled));
    assert_eq!(error_of(&entry), "cancelled on request");
    assert_eq!(
        describe(&entry.outputs),
        ["Stdout:started\n"],
        "no error output for a cancel"
    );
    assert_eq!(
        sim.clock.now(),
        before,
        "a cooperative handler stops without waiting for the grace"
    );
    assert_eq!(*failures.lock().unwrap(), [CompletionStatus::Cancelled]);
}

#[test]
fn a_handler_that_ignores_cancel_is_dropped_after_the_grace_period() {
    let mut sim = Sim::new(6);
    let store = MemoryStore::new();
    let clock = sim.clock.clone();
    let stubborn = move |ctx: ExecutionContext| {
        let sleep = clock.sleep(Duration::from_secs(3600));
        async move {
            ctx.stdout("ignoring you\n")?;
            sleep.await;
            Ok(())
        }
    };
    spawn_agent(&mut sim, &store, options("alice"), stubborn);
    let queue_id = request(&mut sim, &store, "stubborn");
    wait_until_running(&mut sim, &store, &queue_id);
    let before = sim.clock.now();
    let client = NotebookClient::new(store.clone(), "alice");
    sim.spawn(async move { client.cancel_all().await.unwrap() });
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(entry.state.status(), Some(CompletionStatus::Cancelled));
    assert!(
        error_of(&entry).contains("did not stop within 50 ms"),
        "{}",
        error_of(&entry)
    );
    assert_eq!(
        sim.clock.now().saturating_since(before),
        Duration::from_millis(50)
    );
    // The agent is free again.
    let next = request(&mut sim, &store, "next");
    wait_until_running(&mut sim, &store, &next);
}

#[test]
fn shutdown_mid_execution_completes_it_cancelled_and_ends_the_session() {
    let mut sim = Sim::new(7);
    let store = MemoryStore::new();
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let counted = shutdowns.clone();
    let agent = RuntimeAgent::new(
        store.clone(),
        sim.clock.clone(),
        Capabilities::code(),
        options("alice"),
    )
    .unwrap()
    .on_execution(sleeper(sim.clock.clone(), Duration::from_secs(3600)))
    .on_shutdown(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let handle = agent.handle();
    let (_, ended) = sim.spawn(agent.run());
    let running = request(&mut sim, &store, "long");
    let queued = request(&mut sim, &store, "queued");
    wait_until_running(&mut sim, &store, &running);
    assert_eq!(handle.status(), AgentStatus::Busy);
    handle.shutdown();
    assert_eq!(sim.run_to(&ended), Ok(TerminationReason::Shutdown));
    let state = fold(&store);
    let entry = state.entry(&running).unwrap();
    assert_eq!(entry.state.status(), Some(CompletionStatus::Cancelled));
    assert_eq!(error_of(entry), "cancelled: the runtime shut down");
    assert_eq!(
        state.entry(&queued).unwrap().state,
        EntryState::Pending,
        "left for the next agent"
    );
    assert_eq!(state.in_progress().count(), 0);
    assert!(state.active_session().is_none());
    assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
}

#[test]
fn a_new_agent_displaces_the_old_one_which_stops_and_is_fenced_off() {
    let mut sim = Sim::new(8);
    let store = MemoryStore::new();
    let clock = sim.clock.clone();
    // Keeps writing after it is told to stop: its late outputs must not land.
    let chatty = move |ctx: ExecutionContext| {
        let clock = clock.clone();
        async move {
            for n in 0.. {
                let _ = ctx.stdout(format!("{n}\n"));
                clock.sleep(Duration::from_millis(10)).await;
            }
            Ok(())
        }
    };
    let (_, old_ended, old) = spawn_agent(&mut sim, &store, options("alice"), chatty);
    let queue_id = request(&mut sim, &store, "chatty");
    wait_until_running(&mut sim, &store, &queue_id);
    sim.settle(Duration::from_millis(30));

    let (_, _, new) = spawn_agent(&mut sim, &store, options("alice"), echo);
    assert_eq!(sim.run_to(&old_ended), Ok(TerminationReason::Displaced));
    let state = fold(&store);
    assert_eq!(
        state.active_session().unwrap().session_id,
        *new.session_id()
    );
    let entry = state.entry(&queue_id).unwrap();
    assert_eq!(entry.state.status(), Some(CompletionStatus::RuntimeLost));
    assert!(
        state.stats().ignored(Ignored::Fenced) > 0,
        "late outputs were written and fenced"
    );
    assert_eq!(
        entry.outputs.len(),
        1,
        "one coalesced stream output, nothing after displacement"
    );
    assert_eq!(old.status(), AgentStatus::Stopped);

    // The new agent serves the notebook.
    let next = request(&mut sim, &store, "hello");
    assert_eq!(
        describe(&wait_for(&mut sim, &store, &next).outputs),
        ["result[2]:Echo: hello"]
    );
}

#[test]
fn after_a_crash_the_lease_expires_and_the_next_agent_takes_over_without_rerunning() {
    let mut sim = Sim::new(9);
    let store = MemoryStore::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let clock = sim.clock.clone();
    let handler = move |ctx: ExecutionContext| {
        counted.fetch_add(1, Ordering::SeqCst);
        let sleep = clock.sleep(Duration::from_secs(10));
        async move {
            ctx.stdout("side effect done\n")?;
            sleep.await;
            Ok(())
        }
    };
    let handler = Arc::new(handler);
    let first_handler = handler.clone();
    let (crashed, _, first) = spawn_agent(&mut sim, &store, options("alice"), move |ctx| {
        first_handler(ctx)
    });
    let lost = request(&mut sim, &store, "lost");
    let next = request(&mut sim, &store, "next");
    wait_until_running(&mut sim, &store, &lost);
    sim.kill(crashed); // no goodbye
    sim.clock.advance(Duration::from_millis(400)); // past the 300 ms lease

    let (_, _, second) = spawn_agent(&mut sim, &store, options("alice"), move |ctx| handler(ctx));
    let lost_entry = wait_for(&mut sim, &store, &lost);
    assert_eq!(
        lost_entry.state.status(),
        Some(CompletionStatus::RuntimeLost)
    );
    wait_until_running(&mut sim, &store, &next);
    let state = fold(&store);
    let crashed_session = state.session(first.session_id()).unwrap();
    assert_eq!(
        crashed_session.state,
        SessionState::Ended(TerminationReason::Expired)
    );
    // The starting agent committed the expiry itself, before announcing.
    let expiry = store.entries().into_iter().find_map(|e| match &*e.event {
        Event::RuntimeSessionTerminated(t) if t.reason == TerminationReason::Expired => {
            Some(t.clone())
        }
        _ => None,
    });
    let expiry = expiry.expect("an explicit expiry event");
    assert_eq!(expiry.session_id, *first.session_id());
    assert_eq!(expiry.by, second.session_id().to_string());
    assert_eq!(
        state.active_session().unwrap().session_id,
        *second.session_id()
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "`lost` ran once and was not re-run; `next` ran"
    );
}

#[test]
fn claimed_but_unstarted_work_of_a_dead_session_is_run_by_the_next_agent() {
    let mut sim = Sim::new(10);
    let store = MemoryStore::new();
    // Another implementation claimed two entries and started one, then died.
    let dead = SessionId::from("dead");
    let at = sim.clock.now();
    store
        .commit_now(vec![
            RuntimeSessionStarted {
                session_id: dead.clone(),
                runtime_id: "other".into(),
                runtime_type: "other".into(),
                client_id: "bob".into(),
                capabilities: Capabilities::code(),
                at,
                valid_for_ms: 100,
            }
            .into(),
        ])
        .unwrap();
    let started = request(&mut sim, &store, "started by the dead one");
    let claimed = request(&mut sim, &store, "claimed by the dead one");
    store
        .commit_now(vec![
            ExecutionAssigned {
                queue_id: started.clone(),
                session_id: dead.clone(),
            }
            .into(),
            ExecutionStarted {
                queue_id: started.clone(),
                session_id: dead.clone(),
                at,
            }
            .into(),
            ExecutionAssigned {
                queue_id: claimed.clone(),
                session_id: dead.clone(),
            }
            .into(),
        ])
        .unwrap();
    sim.clock.advance(Duration::from_millis(500));
    spawn_agent(&mut sim, &store, options("alice"), echo);
    let claimed_entry = wait_for(&mut sim, &store, &claimed);
    assert_eq!(
        describe(&claimed_entry.outputs),
        ["result[2]:Echo: claimed by the dead one"]
    );
    let state = fold(&store);
    assert_eq!(
        state.entry(&started).unwrap().state.status(),
        Some(CompletionStatus::RuntimeLost)
    );
    assert_eq!(
        state.session(&dead).unwrap().state,
        SessionState::Ended(TerminationReason::Expired)
    );
}

#[test]
fn stop_on_error_cancels_what_was_queued_but_not_later_requests() {
    let mut sim = Sim::new(11);
    let store = MemoryStore::new();
    let handler = |ctx: ExecutionContext| async move {
        if ctx.source() == "fail" {
            return Err(ExecutionError::new("ValueError", "bad value"));
        }
        Ok(MediaBundle::plain("ok"))
    };
    let store_for_requests = store.clone();
    // Queue all three before the agent starts, as "run all" would.
    let failing = request(&mut sim, &store_for_requests, "fail");
    let queued = request(&mut sim, &store_for_requests, "after");
    spawn_agent(
        &mut sim,
        &store,
        AgentOptions {
            stop_on_error: true,
            ..options("alice")
        },
        handler,
    );
    let failed = wait_for(&mut sim, &store, &failing);
    assert_eq!(failed.state.status(), Some(CompletionStatus::Error));
    assert_eq!(error_of(&failed), "ValueError: bad value");
    assert_eq!(describe(&failed.outputs), ["error:ValueError:bad value"]);
    let aborted = wait_for(&mut sim, &store, &queued);
    assert_eq!(aborted.state.status(), Some(CompletionStatus::Cancelled));
    assert!(error_of(&aborted).contains("stop_on_error"));
    let later = request(&mut sim, &store, "later");
    assert_eq!(
        status_of(&mut sim, &store, &later),
        Some(CompletionStatus::Success)
    );
}

#[test]
fn without_stop_on_error_the_queue_continues_after_an_error() {
    let mut sim = Sim::new(12);
    let store = MemoryStore::new();
    let handler = |ctx: ExecutionContext| async move {
        match ctx.source() {
            "fail" => Err(ExecutionError::msg("boom")),
            _ => Ok(()),
        }
    };
    let failing = request(&mut sim, &store, "fail");
    let queued = request(&mut sim, &store, "after");
    spawn_agent(&mut sim, &store, options("alice"), handler);
    assert_eq!(
        status_of(&mut sim, &store, &failing),
        Some(CompletionStatus::Error)
    );
    assert_eq!(
        status_of(&mut sim, &store, &queued),
        Some(CompletionStatus::Success)
    );
}

#[test]
fn handler_outcomes_map_to_truthful_statuses() {
    let mut sim = Sim::new(13);
    let store = MemoryStore::new();
    let handler = |ctx: ExecutionContext| async move {
        match ctx.source() {
            "timeout" => Err(ExecutionError::TimedOut(Duration::from_secs(2))),
            "self-cancel" => Err(ExecutionError::Cancelled),
            "shown" => {
                ctx.error("KeyError", "'x'", vec!["Traceback".into()])?;
                Err(ExecutionError::new("KeyError", "'x'"))
            }
            "bad result" => Ok(MediaBundle::new().with("image/png", json!("not base64!"))),
            "twice" => {
                ctx.result(MediaBundle::plain("first"))?;
                Ok(MediaBundle::plain("second"))
            }
            _ => Ok(MediaBundle::plain("fine")),
        }
    };
    spawn_agent(&mut sim, &store, options("alice"), handler);
    let cases = [
        ("timeout", CompletionStatus::TimedOut, vec![]),
        ("self-cancel", CompletionStatus::Cancelled, vec![]),
        ("shown", CompletionStatus::Error, vec!["error:KeyError:'x'"]),
        ("twice", CompletionStatus::Success, vec!["result[4]:first"]),
    ];
    for (source, status, outputs) in cases {
        let queue_id = request(&mut sim, &store, source);
        let entry = wait_for(&mut sim, &store, &queue_id);
        assert_eq!(entry.state.status(), Some(status), "{source}");
        assert_eq!(describe(&entry.outputs), outputs, "{source}");
    }
    let bad = request(&mut sim, &store, "bad result");
    let entry = wait_for(&mut sim, &store, &bad);
    assert_eq!(entry.state.status(), Some(CompletionStatus::Error));
    assert!(
        error_of(&entry).contains("image/png must be a base64 string"),
        "{}",
        error_of(&entry)
    );
}

#[test]
fn invalid_bundles_and_duplicate_results_are_clear_errors_to_the_handler() {
    let mut sim = Sim::new(14);
    let store = MemoryStore::new();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let handler = move |ctx: ExecutionContext| {
        let seen = seen.clone();
        async move {
            let record =
                |r: Result<(), OutputError>| seen.lock().unwrap().push(r.unwrap_err().to_string());
            record(
                ctx.display(MediaBundle::new().with("text/plain", json!(5)))
                    .map(drop),
            );
            record(ctx.result(MediaBundle::new()));
            ctx.result(MediaBundle::plain("one"))?;
            record(ctx.result(MediaBundle::plain("two")));
            record(ctx.append_markdown(&OutputId::from("nope"), "x"));
            Ok(())
        }
    };
    spawn_agent(&mut sim, &store, options("alice"), handler);
    let queue_id = request(&mut sim, &store, "x");
    assert_eq!(
        status_of(&mut sim, &store, &queue_id),
        Some(CompletionStatus::Success)
    );
    assert_eq!(
        *errors.lock().unwrap(),
        [
            "invalid media bundle: text/plain must be a string (or a list of strings), got a number",
            "invalid media bundle: a media bundle needs at least one MIME type",
            "this execution already has a result; an execution has at most one",
            "output nope is not a markdown output of this execution",
        ]
    );
}

#[test]
fn outputs_after_completion_are_refused_not_lost_silently() {
    let mut sim = Sim::new(15);
    let store = MemoryStore::new();
    let leaked: Arc<Mutex<Option<ExecutionContext>>> = Arc::default();
    let keep = leaked.clone();
    let handler = move |ctx: ExecutionContext| {
        *keep.lock().unwrap() = Some(ctx);
        async { Ok(()) }
    };
    spawn_agent(&mut sim, &store, options("alice"), handler);
    let queue_id = request(&mut sim, &store, "x");
    wait_for(&mut sim, &store, &queue_id);
    let ctx = leaked.lock().unwrap().take().unwrap();
    assert_eq!(ctx.stdout("too late"), Err(OutputError::Finished));
}

#[test]
fn the_output_limit_truncates_with_a_visible_marker() {
    let mut sim = Sim::new(16);
    let store = MemoryStore::new();
    let handler = |ctx: ExecutionContext| async move {
        for _ in 0..100 {
            ctx.stdout("0123456789")?;
        }
        ctx.display(MediaBundle::plain("a picture"))?;
        Ok(())
    };
    let limited = AgentOptions {
        max_output_bytes: Some(25),
        ..options("alice")
    };
    spawn_agent(&mut sim, &store, limited, handler);
    let queue_id = request(&mut sim, &store, "flood");
    let entry = wait_for(&mut sim, &store, &queue_id);
    let outputs = describe(&entry.outputs);
    assert_eq!(outputs[0], "Stdout:0123456789012345678901234");
    assert!(
        outputs[1].starts_with("Stderr:\n[output truncated"),
        "{outputs:?}"
    );
    assert!(outputs[1].contains("limit of 25 bytes"));
    assert_eq!(
        outputs.len(),
        2,
        "nothing after the marker, the marker only once"
    );
    assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
}

#[test]
fn clear_wait_replaces_output_at_the_next_write() {
    let mut sim = Sim::new(17);
    let store = MemoryStore::new();
    let handler = |ctx: ExecutionContext| async move {
        ctx.stdout("frame 1")?;
        ctx.clear(true)?;
        ctx.stdout("frame 2")?;
        Ok(())
    };
    spawn_agent(&mut sim, &store, options("alice"), handler);
    let queue_id = request(&mut sim, &store, "animate");
    assert_eq!(
        describe(&wait_for(&mut sim, &store, &queue_id).outputs),
        ["Stdout:frame 2"]
    );
}

#[test]
fn a_malformed_event_in_the_log_is_skipped_and_counted() {
    let mut sim = Sim::new(18);
    let store = MemoryStore::new();
    store
        .commit_now(vec![Event::from_json_str(
            "{\"type\":\"v1.ExecutionRequested\",\"queueId\":1}",
        )])
        .unwrap();
    store
        .commit_now(vec![Event::from_json_str("not json at all")])
        .unwrap();
    spawn_agent(&mut sim, &store, options("alice"), echo);
    let queue_id = request(&mut sim, &store, "still works");
    assert_eq!(
        status_of(&mut sim, &store, &queue_id),
        Some(CompletionStatus::Success)
    );
    assert_eq!(fold(&store).stats().ignored(Ignored::Malformed), 2);
}

#[test]
fn the_agent_renews_its_lease_and_reports_busy_and_idle() {
    let mut sim = Sim::new(19);
    let store = MemoryStore::new();
    let busy_for_a_while = sleeper(sim.clock.clone(), Duration::from_millis(250));
    let (_, _, handle) = spawn_agent(&mut sim, &store, options("alice"), busy_for_a_while);
    sim.settle(Duration::from_millis(1_000));
    let state = fold(&store);
    let session = state.session(handle.session_id()).unwrap();
    assert!(
        session.is_active(),
        "renewals kept it alive past its 300 ms lease"
    );
    assert!(session.lease_until > sim.clock.now());
    let queue_id = request(&mut sim, &store, "busy for a while");
    wait_until_running(&mut sim, &store, &queue_id);
    assert_eq!(
        fold(&store).session(handle.session_id()).unwrap().status,
        SessionStatus::Busy
    );
    wait_for(&mut sim, &store, &queue_id);
    sim.settle(Duration::ZERO);
    assert_eq!(
        fold(&store).session(handle.session_id()).unwrap().status,
        SessionStatus::Idle
    );
}

/// A completion with nothing else queued says the session is idle in its own commit: one
/// commit fewer per execution, and no commit right behind it for a client's next request
/// to collide with. With more queued, the agent stays busy and claims the next.
#[test]
fn a_completion_with_nothing_queued_says_idle_in_the_same_commit() {
    let mut sim = Sim::new(41);
    let memory = MemoryStore::new();
    let store = Counting::new(&memory);
    let busy_for_a_while = sleeper(sim.clock.clone(), Duration::from_millis(50));
    spawn_counted_agent(&mut sim, &store, busy_for_a_while);
    sim.settle(Duration::from_millis(10));
    let first = request(&mut sim, &memory, "first");
    wait_until_running(&mut sim, &memory, &first);
    let second = request(&mut sim, &memory, "second");
    wait_for(&mut sim, &memory, &second);
    sim.settle(Duration::from_millis(10));
    let batches = store.batches.lock().unwrap().clone();
    let with_completion: Vec<&Vec<String>> = batches
        .iter()
        .filter(|batch| {
            batch
                .iter()
                .any(|name| name.ends_with("ExecutionCompleted"))
        })
        .collect();
    assert_eq!(with_completion.len(), 2, "{batches:?}");
    let says_idle = |batch: &Vec<String>| {
        batch
            .iter()
            .any(|name| name.ends_with("RuntimeSessionStatusChanged"))
    };
    assert!(
        !says_idle(with_completion[0]),
        "another was queued: {batches:?}"
    );
    assert!(says_idle(with_completion[1]), "nothing queued: {batches:?}");
    let status_only = batches
        .iter()
        .filter(|batch| batch.len() == 1 && says_idle(batch))
        .count();
    assert_eq!(status_only, 0, "no status commit of its own: {batches:?}");
    let state = fold(&memory);
    let session = state.active_session().unwrap();
    assert_eq!(session.status, SessionStatus::Idle);
}

#[test]
fn lifecycle_hooks_fire_in_order() {
    let mut sim = Sim::new(20);
    let store = MemoryStore::new();
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let (a, b, c) = (events.clone(), events.clone(), events.clone());
    let agent = RuntimeAgent::new(
        store.clone(),
        sim.clock.clone(),
        Capabilities::code(),
        options("alice"),
    )
    .unwrap()
    .on_execution(echo)
    .on_startup(move |_| a.lock().unwrap().push("startup".into()))
    .on_ready(move |_| b.lock().unwrap().push("ready".into()))
    .on_shutdown(move |reason| c.lock().unwrap().push(format!("shutdown:{reason:?}")));
    let handle = agent.handle();
    let (_, ended) = sim.spawn(agent.run());
    sim.settle(Duration::ZERO);
    handle.shutdown();
    sim.run_to(&ended).unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        ["startup", "ready", "shutdown:Shutdown"]
    );
}

#[test]
fn configuration_errors_are_clear() {
    let store = MemoryStore::new();
    let clock = ManualClock::default();
    let missing = RuntimeAgent::new(
        store.clone(),
        clock.clone(),
        Capabilities::code(),
        AgentOptions::new("  "),
    );
    let error = missing.err().unwrap();
    assert_eq!(error, AgentError::MissingClientId);
    assert!(error.to_string().contains("client id is required"));
    let contradictory = AgentOptions {
        lease_duration: Duration::from_secs(1),
        ..AgentOptions::new("a")
    };
    let error = RuntimeAgent::new(
        store.clone(),
        clock.clone(),
        Capabilities::code(),
        contradictory,
    )
    .err()
    .unwrap();
    assert!(matches!(error, AgentError::InvalidOptions(_)), "{error}");
    let no_handler =
        RuntimeAgent::new(store, clock, Capabilities::code(), AgentOptions::new("a")).unwrap();
    assert_eq!(
        futures::executor::block_on(no_handler.run()),
        Err(AgentError::NoHandler)
    );
}

#[test]
fn a_reused_session_id_is_refused() {
    let mut sim = Sim::new(21);
    let store = MemoryStore::new();
    let fixed = AgentOptions {
        session_id: Some("fixed".into()),
        ..options("alice")
    };
    let (_, ended, handle) = spawn_agent(&mut sim, &store, fixed.clone(), echo);
    sim.settle(Duration::ZERO);
    handle.shutdown();
    sim.run_to(&ended).unwrap();
    let (_, again, _) = spawn_agent(&mut sim, &store, fixed, echo);
    assert_eq!(
        sim.run_to(&again),
        Err(AgentError::SessionIdReused("fixed".into()))
    );
}

#[test]
fn the_echo_handler_answers_code_with_a_result_and_ai_with_streamed_markdown() {
    let mut sim = Sim::new(22);
    let store = MemoryStore::new();
    let echo = handler::Echo::new(sim.clock.clone());
    let capabilities = Capabilities {
        can_execute_ai: true,
        ..Capabilities::code()
    };
    spawn_agent_with(&mut sim, &store, capabilities, options("alice"), echo);
    let code = request(&mut sim, &store, "x = 1");
    assert_eq!(
        describe(&wait_for(&mut sim, &store, &code).outputs),
        ["result[1]:Echo: x = 1"]
    );
    let client = NotebookClient::new(store.clone(), "alice");
    let (_, asked) = sim.spawn(async move {
        client
            .run_cell(CellType::Ai, "one two three four five six")
            .await
            .unwrap()
            .1
    });
    let prompt = sim.run_to(&asked);
    let entry = wait_for(&mut sim, &store, &prompt);
    assert_eq!(
        describe(&entry.outputs),
        ["md:**Echo:** one two three four five six"]
    );
    let appends = store
        .entries()
        .iter()
        .filter(|e| e.event.type_name() == "v1.MarkdownOutputAppended")
        .count();
    assert!(
        appends >= 2,
        "the answer streamed in several commits, got {appends} appends"
    );
}

#[test]
fn the_echo_handler_sleeps_cancellably_on_request() {
    let mut sim = Sim::new(23);
    let store = MemoryStore::new();
    let echo = handler::Echo::new(sim.clock.clone());
    spawn_agent(&mut sim, &store, options("alice"), echo);
    let before = sim.clock.now();
    let slow = request(&mut sim, &store, "%sleep 2\nslow");
    let entry = wait_for(&mut sim, &store, &slow);
    assert_eq!(
        sim.clock.now().saturating_since(before),
        Duration::from_secs(2)
    );
    assert_eq!(
        describe(&entry.outputs),
        ["Stdout:sleeping 2 s\n", "result[1]:Echo: %sleep 2\nslow"]
    );
    let endless = request(&mut sim, &store, "%sleep 3600");
    wait_until_running(&mut sim, &store, &endless);
    let client = NotebookClient::new(store.clone(), "alice");
    let target = endless.clone();
    sim.spawn(async move { client.cancel(&target).await.unwrap() });
    assert_eq!(
        status_of(&mut sim, &store, &endless),
        Some(CompletionStatus::Cancelled)
    );
    let stubborn = request(&mut sim, &store, "%block 3600");
    wait_until_running(&mut sim, &store, &stubborn);
    let before = sim.clock.now();
    let client = NotebookClient::new(store.clone(), "alice");
    let target = stubborn.clone();
    sim.spawn(async move { client.cancel(&target).await.unwrap() });
    assert_eq!(
        status_of(&mut sim, &store, &stubborn),
        Some(CompletionStatus::Cancelled)
    );
    assert_eq!(
        sim.clock.now().saturating_since(before),
        Duration::from_millis(50),
        "dropped after the grace"
    );
    let bad = request(&mut sim, &store, "%sleep forever");
    let entry = wait_for(&mut sim, &store, &bad);
    assert_eq!(
        describe(&entry.outputs),
        ["error:UsageError:%sleep takes seconds from 0 to 86400, got \"forever\""]
    );
}

/// `tokio::spawn` and friends need the agent's future to be `Send` natively.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_agent_future_is_send_on_native_targets() {
    fn spawnable<F: std::future::Future + Send + 'static>(_: &F) {}
    let agent = RuntimeAgent::new(
        MemoryStore::new(),
        ManualClock::default(),
        Capabilities::code(),
        options("a"),
    )
    .unwrap()
    .on_execution(echo);
    let run = agent.run();
    spawnable(&run);
}

#[test]
fn an_agent_claims_only_cell_types_its_capabilities_cover() {
    let mut sim = Sim::new(31);
    let store = MemoryStore::new();
    spawn_agent(&mut sim, &store, options("alice"), echo); // code only
    let client = NotebookClient::new(store.clone(), "alice");
    let (_, asked) = sim.spawn(async move {
        let ai = client.run_cell(CellType::Ai, "explain").await.unwrap().1;
        let sql = client.run_cell(CellType::Sql, "select 1").await.unwrap().1;
        let markdown = client.run_cell(CellType::Markdown, "# hi").await.unwrap().1;
        (ai, sql, markdown)
    });
    let (ai, sql, markdown) = sim.run_to(&asked);
    let code = request(&mut sim, &store, "x = 1");
    let entry = wait_for(&mut sim, &store, &code);
    assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
    sim.settle(Duration::from_secs(1));
    let state = fold(&store);
    for skipped in [&ai, &sql, &markdown] {
        assert_eq!(state.entry(skipped).unwrap().state, EntryState::Pending);
    }
    assert_eq!(
        state.why_pending(&ai).unwrap(),
        "no runtime here runs ai cells (the active runtime, test, does not)"
    );
    assert_eq!(
        state.stats().ignored(Ignored::NotCapable),
        0,
        "it never even tried"
    );
}

#[test]
fn the_output_limit_counts_every_byte_and_never_fails_the_execution() {
    let mut sim = Sim::new(32);
    let store = MemoryStore::new();
    let handler = |ctx: ExecutionContext| async move {
        ctx.stdout("0123456789")?;
        // Dropped whole: later appends to it are dropped too, not an error.
        let notes = ctx.markdown("m".repeat(2_000))?;
        ctx.append_markdown(&notes, "more")?;
        // Metadata counts: a tiny bundle with huge metadata does not get through.
        let mut metadata = serde_json::Map::new();
        metadata.insert("blob".into(), "x".repeat(20_000).into());
        ctx.display(Display::new(MediaBundle::plain("tiny")).metadata(metadata))?;
        ctx.display(Display::new(MediaBundle::plain("p")).id("progress"))?;
        for n in 0..1_000 {
            ctx.update_display("progress", MediaBundle::plain(format!("{n}%")))?;
        }
        Ok(MediaBundle::plain("done"))
    };
    let limited = AgentOptions {
        max_output_bytes: Some(1_000),
        ..options("alice")
    };
    spawn_agent(&mut sim, &store, limited, handler);
    let queue_id = request(&mut sim, &store, "flood");
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
    let stored: usize = store
        .entries()
        .iter()
        .filter(|e| e.event.is_output())
        .map(|e| e.event.to_json().to_string().len())
        .sum();
    assert!(stored < 8_000, "{stored} bytes of output events stored");
    let outputs = describe(&entry.outputs);
    assert!(
        outputs.iter().any(|o| o.contains("[output truncated")),
        "{outputs:?}"
    );
    assert_eq!(
        outputs
            .iter()
            .filter(|o| o.contains("[output truncated"))
            .count(),
        1
    );
}

#[test]
fn outputs_are_limited_by_default() {
    assert_eq!(
        AgentOptions::new("alice").max_output_bytes,
        Some(AgentOptions::DEFAULT_MAX_OUTPUT_BYTES)
    );
}

#[test]
fn a_lease_shorter_than_the_minimum_is_refused() {
    let store = MemoryStore::new();
    let hasty = AgentOptions {
        lease_duration: Duration::from_micros(400),
        renew_interval: Duration::from_micros(100),
        ..AgentOptions::new("alice")
    };
    let refused = RuntimeAgent::new(store, ManualClock::default(), Capabilities::code(), hasty);
    let message = refused.err().unwrap().to_string();
    assert!(message.contains("at least 100 ms"), "{message}");
}

#[test]
fn a_watcher_ends_a_crashed_agents_cell_when_its_lease_runs_out() {
    let mut sim = Sim::new(33);
    let store = MemoryStore::new();
    let forever = |ctx: ExecutionContext| async move {
        ctx.stdout("started\n")?;
        futures::future::pending::<()>().await;
        Ok(())
    };
    let (task, _, _) = spawn_agent(&mut sim, &store, options("alice"), forever);
    let queue_id = request(&mut sim, &store, "loop forever");
    wait_until_running(&mut sim, &store, &queue_id);
    sim.kill(task); // kill -9: nothing more is committed

    // No other agent ever starts: the waiting client itself enforces the lease.
    let mut watcher =
        NotebookWatcher::new(&store).enforcing_leases(store.clone(), sim.clock.clone(), "alice");
    let before = sim.clock.now();
    let waited = queue_id.clone();
    let (_, done) = sim.spawn(async move {
        watcher
            .wait_for_completion(&waited)
            .await
            .map(|entry| entry.state.clone())
    });
    let state = sim.run_to(&done).unwrap();
    assert!(
        matches!(
            state,
            EntryState::Completed {
                status: CompletionStatus::RuntimeLost,
                ..
            }
        ),
        "{state:?}"
    );
    let waited_for = sim.clock.now().saturating_since(before);
    assert!(
        waited_for <= Duration::from_millis(300) + runtime_core::client::EXPIRY_MARGIN,
        "ended within the lease plus the margin, not later: {waited_for:?}"
    );
    let ended = fold(&store);
    assert_eq!(
        ended.sessions()[0].state,
        SessionState::Ended(TerminationReason::Expired)
    );
}

#[test]
fn a_watcher_never_expires_a_session_that_renews() {
    let mut sim = Sim::new(34);
    let store = MemoryStore::new();
    let five_seconds = sleeper(sim.clock.clone(), Duration::from_secs(5));
    let (_, _, handle) = spawn_agent(&mut sim, &store, options("alice"), five_seconds);
    let queue_id = request(&mut sim, &store, "five seconds");
    let mut watcher =
        NotebookWatcher::new(&store).enforcing_leases(store.clone(), sim.clock.clone(), "alice");
    let (_, done) = sim.spawn(async move {
        watcher
            .wait_for_completion(&queue_id)
            .await
            .map(|entry| entry.state.status())
    });
    assert_eq!(sim.run_to(&done).unwrap(), Some(CompletionStatus::Success));
    assert_eq!(handle.status(), AgentStatus::Idle);
}

/// A lean watcher keeps no completed entry: waiting for one's completion ends with an error
/// once it completes, not a wait forever, and its status is there to read.
#[test]
fn a_lean_watcher_waiting_for_a_completion_is_told_not_left_waiting() {
    let mut sim = Sim::new(42);
    let store = MemoryStore::new();
    spawn_agent(&mut sim, &store, options("alice"), echo);
    let queue_id = request(&mut sim, &store, "lean");
    let waited = queue_id.clone();
    let reader = store.clone();
    let (_, done) = sim.spawn(async move {
        let mut watcher = NotebookWatcher::resume_lean(&reader).await;
        let error = watcher.wait_for_completion(&waited).await.map(drop);
        (error, watcher.state().queue_status(&waited))
    });
    let (error, status) = sim.run_to(&done);
    assert!(matches!(error, Err(StoreError::Invalid(_))), "{error:?}");
    assert_eq!(
        status,
        Some(QueueStatus::Completed {
            status: CompletionStatus::Success,
            execution_count: Some(1)
        })
    );
}

/// With a stamping store, leases run by the store's clock: a runtime whose clock runs a
/// minute behind and a watcher whose clock runs a minute ahead (which, comparing their
/// clocks, would expire the runtime at once) leave a live runtime alone.
#[test]
fn skewed_clocks_never_expire_a_live_runtime_on_a_stamping_store() {
    let mut sim = Sim::new(36);
    let store = MemoryStore::stamping(sim.clock.clone(), "authority");
    let behind = Skewed {
        clock: sim.clock.clone(),
        offset_ms: -60_000,
    };
    let agent = RuntimeAgent::new(
        store.clone(),
        behind,
        Capabilities::code(),
        options("alice"),
    )
    .unwrap()
    .on_execution(sleeper(sim.clock.clone(), Duration::from_secs(5)));
    let handle = agent.handle();
    sim.spawn(agent.run());
    let queue_id = request(&mut sim, &store, "five seconds");
    let ahead = Skewed {
        clock: sim.clock.clone(),
        offset_ms: 60_000,
    };
    let mut watcher = NotebookWatcher::new(&store).enforcing_leases(store.clone(), ahead, "bob");
    let (_, done) = sim.spawn(async move {
        watcher
            .wait_for_completion(&queue_id)
            .await
            .map(|entry| entry.state.status())
    });
    assert_eq!(sim.run_to(&done).unwrap(), Some(CompletionStatus::Success));
    assert_eq!(handle.status(), AgentStatus::Idle);
    let state = fold(&store);
    assert!(state.sessions()[0].is_active(), "{:?}", state.sessions()[0]);
    let refused = state.stats().ignored(Ignored::LeaseStillValid);
    assert!(
        (1..=2).contains(&refused),
        "the watcher tried early, learned its clock runs ahead, and stopped: {refused} refused"
    );
}

/// A watcher whose clock runs a minute behind the store's still expires a crashed
/// runtime (whose own clock ran half a minute ahead) within a lease of starting to watch.
#[test]
fn a_watcher_whose_clock_runs_behind_expires_a_crashed_runtime_on_a_stamping_store() {
    let mut sim = Sim::new(37);
    let store = MemoryStore::stamping(sim.clock.clone(), "authority");
    let ahead = Skewed {
        clock: sim.clock.clone(),
        offset_ms: 30_000,
    };
    let forever = |ctx: ExecutionContext| async move {
        ctx.stdout("started\n")?;
        futures::future::pending::<()>().await;
        Ok(())
    };
    let agent = RuntimeAgent::new(store.clone(), ahead, Capabilities::code(), options("alice"))
        .unwrap()
        .on_execution(forever);
    let (task, _) = sim.spawn(agent.run());
    let queue_id = request(&mut sim, &store, "loop forever");
    wait_until_running(&mut sim, &store, &queue_id);
    sim.kill(task);

    let behind = Skewed {
        clock: sim.clock.clone(),
        offset_ms: -60_000,
    };
    let mut watcher = NotebookWatcher::new(&store).enforcing_leases(store.clone(), behind, "bob");
    let before = sim.clock.now();
    let waited = queue_id.clone();
    let (_, done) = sim.spawn(async move {
        watcher
            .wait_for_completion(&waited)
            .await
            .map(|entry| entry.state.status())
    });
    assert_eq!(
        sim.run_to(&done).unwrap(),
        Some(CompletionStatus::RuntimeLost)
    );
    let waited_for = sim.clock.now().saturating_since(before);
    assert!(
        waited_for <= Duration::from_millis(300) + runtime_core::client::EXPIRY_MARGIN,
        "ended within the lease plus the margin: {waited_for:?}"
    );
    assert_eq!(
        fold(&store).sessions()[0].state,
        SessionState::Ended(TerminationReason::Expired)
    );
}

/// A store that counts the entries its subscriptions deliver and the snapshots it is
/// handed, and keeps them or not.
#[derive(Clone)]
struct Counting {
    inner: MemoryStore,
    delivered: Arc<AtomicUsize>,
    handed: Arc<AtomicUsize>,
    keeps_snapshots: bool,
    /// The type names of each batch committed through it.
    batches: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Counting {
    fn new(inner: &MemoryStore) -> Self {
        Counting {
            inner: inner.clone(),
            delivered: Arc::default(),
            handed: Arc::default(),
            keeps_snapshots: true,
            batches: Arc::default(),
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for Counting {
    async fn commit_batch(&self, batch: &Batch) -> Result<u64, StoreError> {
        let names = batch.events.iter().map(|e| e.type_name().to_owned());
        self.batches.lock().unwrap().push(names.collect());
        self.inner.commit_batch(batch).await
    }

    fn subscribe(&self, from: u64) -> Subscription {
        let delivered = self.delivered.clone();
        Box::pin(self.inner.subscribe(from).inspect(move |_| {
            delivered.fetch_add(1, Ordering::SeqCst);
        }))
    }

    async fn latest_snapshot(&self, kind: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        self.inner.latest_snapshot(kind).await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.handed.fetch_add(1, Ordering::SeqCst);
        match self.keeps_snapshots {
            true => self.inner.save_snapshot(snapshot).await,
            false => Ok(()),
        }
    }

    fn keeps_snapshots(&self) -> bool {
        self.keeps_snapshots && self.inner.keeps_snapshots()
    }
}

/// Commits `count` events no reducer rule cares about (deletions of unknown cells).
fn filler(store: &MemoryStore, count: usize) {
    let events = (0..count)
        .map(|n| {
            CellDeleted {
                cell_id: format!("gone-{n}").into(),
            }
            .into()
        })
        .collect();
    store.commit_now(events).unwrap();
}

fn spawn_counted_agent(
    sim: &mut Sim,
    store: &Counting,
    handler: impl ExecutionHandler + 'static,
) -> AgentHandle {
    let agent = RuntimeAgent::new(
        store.clone(),
        sim.clock.clone(),
        Capabilities::code(),
        options("alice"),
    )
    .unwrap()
    .on_execution(handler);
    let handle = agent.handle();
    sim.spawn(agent.run());
    handle
}

/// Runs an agent on `store` until `queue_id` succeeds, then shuts it down.
fn serve_until_done(sim: &mut Sim, store: &Counting, queue_id: &QueueId) {
    let handle = spawn_counted_agent(sim, store, echo);
    assert_eq!(
        wait_for(sim, &store.inner, queue_id).state.status(),
        Some(CompletionStatus::Success)
    );
    handle.shutdown();
    sim.settle(Duration::from_secs(1));
}

/// An agent that folded more than SNAPSHOT_EVERY entries leaves a lean snapshot; the next
/// agent starts from it, reads only the entries after it, and decides as the first would.
#[test]
fn an_agent_leaves_a_snapshot_and_the_next_one_starts_from_it() {
    let mut sim = Sim::new(38);
    let memory = MemoryStore::new();
    let store = Counting::new(&memory);
    filler(&memory, SNAPSHOT_EVERY as usize + 500);
    let first = request(&mut sim, &memory, "first");
    serve_until_done(&mut sim, &store, &first);
    let snapshot = futures::executor::block_on(memory.latest_snapshot(SnapshotKind::Lean))
        .unwrap()
        .expect("the first agent saved a snapshot");
    assert!(snapshot.seq > SNAPSHOT_EVERY, "{}", snapshot.seq);

    let second = request(&mut sim, &memory, "second");
    store.delivered.store(0, Ordering::SeqCst);
    serve_until_done(&mut sim, &store, &second);
    let read = store.delivered.load(Ordering::SeqCst);
    let after = memory.len() - snapshot.seq as usize;
    assert!(
        read <= after,
        "the second agent read {read} entries; {after} follow the snapshot"
    );
    let state = fold(&memory);
    assert_eq!(state.sessions().len(), 2);
    assert_eq!(state.entry(&second).unwrap().execution_count, Some(2));
}

/// An agent does not encode its state for a store that keeps no snapshots (a hub's client:
/// the hub makes its own).
#[test]
fn an_agent_makes_no_snapshot_for_a_store_that_keeps_none() {
    let mut sim = Sim::new(40);
    let memory = MemoryStore::new();
    let store = Counting {
        keeps_snapshots: false,
        ..Counting::new(&memory)
    };
    filler(&memory, SNAPSHOT_EVERY as usize + 500);
    let queue_id = request(&mut sim, &memory, "run me");
    serve_until_done(&mut sim, &store, &queue_id);
    assert_eq!(store.handed.load(Ordering::SeqCst), 0);
}

/// A snapshot that does not decode (one of another version, say) costs only time: the
/// agent folds the log from the start, and replaces the snapshot as soon as it has folded
/// past it rather than SNAPSHOT_EVERY entries later, so the next agent starts from its own.
#[test]
fn an_unusable_snapshot_costs_only_time_and_is_replaced() {
    let mut sim = Sim::new(39);
    let store = MemoryStore::new();
    filler(&store, 10);
    let queue_id = request(&mut sim, &store, "run me");
    let garbage = Snapshot {
        seq: 5,
        kind: SnapshotKind::Lean,
        state: "{\"format\": 1, \"cells\": \"not a list\"}".into(),
    };
    futures::executor::block_on(store.save_snapshot(&garbage)).unwrap();
    let (_, _, handle) = spawn_agent(&mut sim, &store, options("alice"), echo);
    assert_eq!(
        wait_for(&mut sim, &store, &queue_id).state.status(),
        Some(CompletionStatus::Success)
    );
    handle.shutdown();
    sim.settle(Duration::from_secs(1));
    let saved = futures::executor::block_on(store.latest_snapshot(SnapshotKind::Lean))
        .unwrap()
        .expect("a snapshot");
    assert!(
        saved.seq > garbage.seq,
        "still the unusable one at {}",
        saved.seq
    );
    NotebookState::from_snapshot(&saved, SnapshotKind::Lean).expect("a usable snapshot");
}

#[test]
fn catching_up_on_a_long_log_lets_other_tasks_run() {
    let mut sim = Sim::new(35);
    let store = MemoryStore::new();
    for chunk in 0..20 {
        let events = (0..1_000)
            .map(|n| {
                CellDeleted {
                    cell_id: format!("gone-{chunk}-{n}").into(),
                }
                .into()
            })
            .collect();
        store.commit_now(events).unwrap();
    }
    let (_, _, handle) = spawn_agent(&mut sim, &store, options("alice"), echo);
    // Another task on the same executor, polled whenever it gets a turn.
    let turns = std::rc::Rc::new(std::cell::Cell::new(0_u32));
    let counted = turns.clone();
    let watched = handle.clone();
    sim.spawn(futures::future::poll_fn(move |cx| {
        if watched.status() != AgentStatus::Starting {
            return std::task::Poll::Ready(());
        }
        counted.set(counted.get() + 1);
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }));
    sim.run_until(|| handle.status() == AgentStatus::Idle);
    assert!(
        turns.get() >= 5,
        "the other task got {} turns while 20,000 events were folded",
        turns.get()
    );
}

#[test]
fn the_client_refuses_empty_ids_with_a_clear_error() {
    let store = MemoryStore::new();
    let client = NotebookClient::new(store.clone(), "alice");
    let refused = futures::executor::block_on(client.execute(&"".into(), CellType::Code, "x"));
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("v1.ExecutionRequested carries an empty id"),
        "{message}"
    );
    let refused = futures::executor::block_on(client.cancel(&"".into()));
    assert!(refused.is_err());
    assert!(store.is_empty(), "nothing reached the log");
}

/// A MemoryStore whose commits of output events fail for good: the agent must stop, and end
/// its session itself so that its running cell does not wait for the lease.
#[derive(Clone)]
struct RefusesOutputs(MemoryStore);

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for RefusesOutputs {
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError> {
        if batch.events.iter().any(|event| event.is_output()) {
            return Err(StoreError::Backend("the disk is read-only".into()));
        }
        self.0.commit_batch_now(batch)
    }

    fn subscribe(&self, from: Seq) -> Subscription {
        self.0.subscribe(from)
    }
}

#[test]
fn an_agent_stopped_by_a_permanent_store_error_ends_its_session_at_once() {
    let mut sim = Sim::new(36);
    let store = MemoryStore::new();
    let agent = RuntimeAgent::new(
        RefusesOutputs(store.clone()),
        sim.clock.clone(),
        Capabilities::code(),
        options("alice"),
    )
    .unwrap()
    .on_execution(|ctx: ExecutionContext| async move {
        ctx.stdout("cannot be stored\n")?;
        futures::future::pending::<()>().await;
        Ok(())
    });
    let (_, ended) = sim.spawn(agent.run());
    let queue_id = request(&mut sim, &store, "write");
    let before = sim.clock.now();
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(entry.state.status(), Some(CompletionStatus::RuntimeLost));
    assert!(
        sim.clock.now().saturating_since(before) < Duration::from_millis(300),
        "ended by the agent, not by its lease running out"
    );
    let failed = ended.take().unwrap().unwrap_err();
    assert!(failed.to_string().contains("read-only"), "{failed}");
    let state = fold(&store);
    assert_eq!(
        state.sessions()[0].state,
        SessionState::Ended(TerminationReason::Error)
    );
}

/// A store that never answers: every call waits forever, as one behind an unreachable hub
/// does while its client retries.
struct Unreachable;

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for Unreachable {
    async fn commit_batch(&self, _: &Batch) -> Result<Seq, StoreError> {
        futures::future::pending().await
    }

    fn subscribe(&self, _: Seq) -> Subscription {
        Box::pin(futures::stream::pending())
    }

    async fn head(&self) -> Result<Seq, StoreError> {
        futures::future::pending().await
    }

    async fn latest_snapshot(&self, _: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        futures::future::pending().await
    }
}

/// An agent asked to stop before its session started (a signal while its hub is down)
/// stops at once: it has nothing to end, so it does not wait out the store's retries.
#[test]
fn an_agent_whose_store_never_answers_stops_when_asked() {
    let mut sim = Sim::new(7);
    let agent = RuntimeAgent::new(
        Unreachable,
        sim.clock.clone(),
        Capabilities::code(),
        options("agent"),
    )
    .unwrap()
    .on_execution(echo);
    let handle = agent.handle();
    let (_, ended) = sim.spawn(agent.run());
    sim.settle(Duration::from_secs(1));
    assert!(!ended.is_ready(), "it waits for the store");
    handle.shutdown();
    sim.settle(Duration::from_millis(1));
    assert_eq!(
        ended.take().expect("it stopped").unwrap(),
        TerminationReason::Shutdown
    );
}

/// Returns `Pending` once (after asking to be polled again), so other futures run.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

fn stream_events(store: &MemoryStore) -> usize {
    store
        .entries()
        .iter()
        .filter(|e| e.event.type_name().starts_with("v1.StreamOutput"))
        .count()
}

#[test]
fn a_flood_written_line_by_line_with_yields_is_committed_in_a_few_batches() {
    let mut sim = Sim::new(41);
    let store = MemoryStore::new();
    let handler = |ctx: ExecutionContext| async move {
        for line in 0..2000 {
            ctx.stdout(format!("{line}\n"))?;
            yield_once().await;
        }
        Ok(())
    };
    spawn_agent(&mut sim, &store, options("alice"), handler);
    let queue_id = request(&mut sim, &store, "flood");
    let entry = wait_for(&mut sim, &store, &queue_id);
    let expected: String = (0..2000).map(|line| format!("{line}\n")).collect();
    assert_eq!(describe(&entry.outputs), [format!("Stdout:{expected}")]);
    let commits = stream_events(&store);
    assert!(
        commits <= 20,
        "2000 lines should take a few commits, took {commits}"
    );
}

#[test]
fn an_output_written_before_a_wait_is_committed_without_waiting_for_more() {
    let mut sim = Sim::new(42);
    let store = MemoryStore::new();
    let handler = |ctx: ExecutionContext| async move {
        ctx.stdout("ready\n")?;
        ctx.cancelled().await;
        Err::<(), _>(ExecutionError::Cancelled)
    };
    spawn_agent(&mut sim, &store, options("alice"), handler);
    let queue_id = request(&mut sim, &store, "wait");
    let mut watcher = NotebookWatcher::new(&store);
    let waited = queue_id.clone();
    let (_, shown) = sim.spawn(async move {
        let printed = |s: &NotebookState| s.entry(&waited).is_some_and(|e| !e.outputs.is_empty());
        let state = watcher.wait_until(printed).await.unwrap();
        describe(&state.entry(&waited).unwrap().outputs)
    });
    assert_eq!(sim.run_to(&shown), ["Stdout:ready\n"]);
    let client = NotebookClient::new(store.clone(), "alice");
    let cancelled = queue_id.clone();
    let (_, asked) = sim.spawn(async move { client.cancel(&cancelled).await.unwrap() });
    sim.run_to(&asked);
    assert_eq!(
        status_of(&mut sim, &store, &queue_id),
        Some(CompletionStatus::Cancelled)
    );
}

#[test]
fn flush_returns_once_what_was_written_is_in_the_log() {
    let mut sim = Sim::new(43);
    let store = MemoryStore::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let (store, seen) = (store.clone(), seen.clone());
        move |ctx: ExecutionContext| {
            let (store, seen) = (store.clone(), seen.clone());
            async move {
                ctx.flush().await?; // nothing written: returns at once
                for chunk in ["a", "b", "c"] {
                    ctx.stdout(chunk)?;
                    ctx.flush().await?;
                    seen.lock().unwrap().push(stream_events(&store));
                }
                Ok(())
            }
        }
    };
    spawn_agent(&mut sim, &store, options("alice"), handler);
    let queue_id = request(&mut sim, &store, "chunks");
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(describe(&entry.outputs), ["Stdout:abc"]);
    assert_eq!(
        *seen.lock().unwrap(),
        [1, 2, 3],
        "each chunk was in the log when flush returned, in a commit of its own"
    );
}

/// Waits until `queue_id` asks for input with a request not in `seen`; returns it.
fn wait_for_input(
    sim: &mut Sim,
    store: &MemoryStore,
    queue_id: &QueueId,
    seen: &[&InputRequest],
) -> InputRequest {
    let mut watcher = NotebookWatcher::new(store);
    let queue_id = queue_id.clone();
    let seen: Vec<InputId> = seen.iter().map(|r| r.input_id.clone()).collect();
    let (_, asked) = sim.spawn(async move {
        let waiting = |s: &NotebookState| {
            s.entry(&queue_id)
                .and_then(|e| e.input.as_ref())
                .is_some_and(|i| i.is_waiting() && !seen.contains(&i.input_id))
        };
        let state = watcher.wait_until(waiting).await.unwrap();
        state.entry(&queue_id).unwrap().input.clone().unwrap()
    });
    sim.run_to(&asked)
}

fn reply(
    sim: &mut Sim,
    store: &MemoryStore,
    queue_id: &QueueId,
    request: &InputRequest,
    value: &str,
) {
    let client = NotebookClient::new(store.clone(), "bob");
    let (queue_id, request, value) = (queue_id.clone(), request.clone(), value.to_owned());
    let (_, done) = sim.spawn(async move {
        client
            .reply_input(&queue_id, &request, &value)
            .await
            .unwrap();
    });
    sim.run_to(&done);
}

/// Asks for a name and a password, and shows what it got.
async fn asker(ctx: ExecutionContext) -> Result<(), ExecutionError> {
    let name = ctx.input("Name? ").await?;
    let secret = ctx.password("Password: ").await?;
    ctx.stdout(format!(
        "{name} has a secret of {} characters\n",
        secret.chars().count()
    ))?;
    Ok(())
}

#[test]
fn a_handler_asks_for_input_and_a_password_and_the_log_never_holds_the_password() {
    let mut sim = Sim::new(21);
    let store = MemoryStore::new();
    spawn_agent(&mut sim, &store, options("alice"), asker);
    let queue_id = request(&mut sim, &store, "ask");

    let name = wait_for_input(&mut sim, &store, &queue_id, &[]);
    assert_eq!((name.prompt.as_str(), name.password), ("Name? ", false));
    assert_eq!(name.seal_key, None);
    reply(&mut sim, &store, &queue_id, &name, "Ada");
    // A second reply to an answered request is ignored: the first wins.
    reply(&mut sim, &store, &queue_id, &name, "Eve");

    let password = wait_for_input(&mut sim, &store, &queue_id, &[&name]);
    assert!(password.password && password.seal_key.is_some());
    assert_ne!(password.input_id, name.input_id);
    reply(&mut sim, &store, &queue_id, &password, "correct horse");

    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
    assert_eq!(
        describe(&entry.outputs),
        ["Stdout:Name? Ada\nPassword: \nAda has a secret of 13 characters\n"]
    );
    assert_eq!(entry.input, None, "a finished entry asks for nothing");
    let log: Vec<String> = store
        .entries()
        .iter()
        .map(|entry| entry.event.to_json_string())
        .collect();
    let log = log.join("\n");
    assert!(log.contains("v1.InputReplied") && log.contains("Ada"));
    assert!(
        !log.contains("correct horse"),
        "the password is sealed in the log"
    );
}

#[test]
fn a_password_reply_not_sealed_to_the_key_is_refused_and_asked_again() {
    let mut sim = Sim::new(22);
    let store = MemoryStore::new();
    spawn_agent(
        &mut sim,
        &store,
        options("alice"),
        |ctx: ExecutionContext| async move {
            let secret = ctx.password("PIN: ").await?;
            ctx.stdout(format!("got {} digits\n", secret.len()))?;
            Ok::<(), ExecutionError>(())
        },
    );
    let queue_id = request(&mut sim, &store, "pin");
    let first = wait_for_input(&mut sim, &store, &queue_id, &[]);
    // A client that ignores the key writes the password in clear: it is not taken.
    let clear = InputReplied {
        queue_id: queue_id.clone(),
        input_id: first.input_id.clone(),
        value: "1234".into(),
        replied_by: "careless".into(),
    };
    store.commit_now(vec![clear.into()]).unwrap();
    let second = wait_for_input(&mut sim, &store, &queue_id, &[&first]);
    assert_ne!(
        second.input_id, first.input_id,
        "asked again with a new key"
    );
    assert_ne!(second.seal_key, first.seal_key);
    // Sealed to the first request's key, the reply does not answer the second.
    let client = NotebookClient::new(store.clone(), "bob");
    let stale = InputRequest {
        input_id: second.input_id.clone(),
        ..first.clone()
    };
    let (q, s) = (queue_id.clone(), stale);
    let (_, done) = sim.spawn(async move { client.reply_input(&q, &s, "1234").await.unwrap() });
    sim.run_to(&done);
    let third = wait_for_input(&mut sim, &store, &queue_id, &[&first, &second]);
    reply(&mut sim, &store, &queue_id, &third, "98765");
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(
        describe(&entry.outputs),
        ["Stdout:PIN: \ngot 5 digits\n"],
        "refused replies are not echoed"
    );
}

#[test]
fn cancel_while_waiting_for_input_ends_the_entry_cancelled_and_a_late_reply_is_ignored() {
    let mut sim = Sim::new(23);
    let store = MemoryStore::new();
    spawn_agent(&mut sim, &store, options("alice"), asker);
    let queue_id = request(&mut sim, &store, "ask");
    let request = wait_for_input(&mut sim, &store, &queue_id, &[]);
    let client = NotebookClient::new(store.clone(), "alice");
    let target = queue_id.clone();
    sim.spawn(async move { client.cancel(&target).await.unwrap() });
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(entry.state.status(), Some(CompletionStatus::Cancelled));
    assert_eq!(entry.input, None);
    reply(&mut sim, &store, &queue_id, &request, "too late");
    let state = fold(&store);
    assert_eq!(state.entry(&queue_id).unwrap().input, None);
    assert_eq!(
        state.stats().ignored(Ignored::AlreadyEnded),
        1,
        "the late reply is counted"
    );
}
