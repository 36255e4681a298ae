//! The handler combinators (timeout, output limit, redaction, fallback) on a real agent
//! and MemoryStore, driven by the deterministic executor.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use runtime_core::handler::{Fallback, FallbackMode, HandlerExt, Redactor};
use runtime_core::*;
use serde_json::json;
use support::{Sim, describe, options, request, wait_for};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Runs one cell through `handler` on a fresh agent and returns its entry once completed.
fn run_one(handler: impl ExecutionHandler + 'static) -> QueueEntry {
    let (mut sim, store, _handle) = serve(handler);
    let queue_id = request(&mut sim, &store, "go");
    wait_for(&mut sim, &store, &queue_id)
}

fn serve(handler: impl ExecutionHandler + 'static) -> (Sim, MemoryStore, AgentHandle) {
    serve_with_clock(|_| handler)
}

fn ended(entry: &QueueEntry) -> (CompletionStatus, String) {
    match &entry.state {
        EntryState::Completed { status, error } => (*status, error.clone().unwrap_or_default()),
        other => panic!("not completed: {other:?}"),
    }
}

/// Sleeps `duration` of virtual time; stops when cancelled if `cooperative`.
fn sleeper(clock: ManualClock, duration: Duration, cooperative: bool) -> impl ExecutionHandler {
    move |ctx: ExecutionContext| {
        let sleep = clock.sleep(duration);
        async move {
            if cooperative {
                futures::select_biased! {
                    reason = futures::FutureExt::fuse(ctx.cancelled()) => {
                        ctx.stdout(format!("stopping: {reason:?}\n"))?;
                        Err(ExecutionError::Cancelled)
                    }
                    () = futures::FutureExt::fuse(sleep) => Ok(()),
                }
            } else {
                sleep.await;
                Ok(())
            }
        }
    }
}

#[test]
fn timeout_cancels_the_inner_handler_and_ends_timed_out() {
    let (mut sim, store, _handle) = serve_with_clock(|clock| {
        sleeper(clock.clone(), Duration::from_secs(10), true).timeout(Duration::from_secs(1), clock)
    });
    let queue_id = request(&mut sim, &store, "go");
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(
        ended(&entry),
        (CompletionStatus::TimedOut, "timed out after 1 s".into())
    );
    // The inner handler saw why it was stopped, and its last output is in.
    assert_eq!(describe(&entry.outputs), ["Stdout:stopping: TimedOut\n"]);
}

/// Like [`serve`], with a handler built on the simulation's clock.
fn serve_with_clock<H: ExecutionHandler + 'static>(
    make: impl FnOnce(ManualClock) -> H,
) -> (Sim, MemoryStore, AgentHandle) {
    let mut sim = Sim::new(7);
    let store = MemoryStore::new();
    let handler = make(sim.clock.clone());
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
    (sim, store, handle)
}

#[test]
fn timeout_drops_a_handler_that_ignores_it_after_the_grace() {
    let (mut sim, store, _handle) = serve_with_clock(|clock| {
        sleeper(clock.clone(), Duration::from_secs(3600), false)
            .timeout(Duration::from_secs(1), clock)
            .grace(Duration::from_millis(200))
    });
    let queue_id = request(&mut sim, &store, "go");
    let started = sim.clock.now();
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(ended(&entry).0, CompletionStatus::TimedOut);
    let took = sim.clock.now().saturating_since(started);
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn timeout_lets_a_fast_handler_succeed_and_a_cancel_stays_a_cancel() {
    let (mut sim, store, _handle) = serve_with_clock(|clock| {
        sleeper(clock.clone(), Duration::from_millis(500), true)
            .timeout(Duration::from_secs(1), clock)
    });
    let fast = request(&mut sim, &store, "go");
    assert_eq!(
        ended(&wait_for(&mut sim, &store, &fast)).0,
        CompletionStatus::Success
    );

    let (mut sim, store, _handle) = serve_with_clock(|clock| {
        sleeper(clock.clone(), Duration::from_secs(10), true).timeout(Duration::from_secs(1), clock)
    });
    let slow = request(&mut sim, &store, "go");
    sim.settle(Duration::from_millis(100));
    let client = NotebookClient::new(store.clone(), "alice");
    let target = slow.clone();
    let (_, cancelled) = sim.spawn(async move { client.cancel(&target).await.unwrap() });
    sim.run_to(&cancelled);
    let entry = wait_for(&mut sim, &store, &slow);
    assert_eq!(ended(&entry).0, CompletionStatus::Cancelled);
    assert_eq!(describe(&entry.outputs), ["Stdout:stopping: Requested\n"]);
}

#[test]
fn output_limit_truncates_with_one_visible_marker() {
    let entry = run_one(
        (|ctx: ExecutionContext| async move {
            for _ in 0..10 {
                ctx.stdout("0123456789")?;
            }
            Ok(())
        })
        .limit_output(25),
    );
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    let shown = describe(&entry.outputs);
    assert_eq!(shown[0], "Stdout:0123456789012345678901234");
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown[1].starts_with("Stderr:\n[output truncated") && shown[1].contains("25 bytes"),
        "{shown:?}"
    );
}

#[test]
fn redaction_masks_every_output_the_result_and_the_error_before_the_store() {
    const TOKEN: &str = "sk-proj-abcdefghijklmnopqrstuvwxyz012345";
    let writes_secrets = |ctx: ExecutionContext| async move {
        ctx.stdout("password is hunter2\n")?;
        ctx.stderr(format!("export OPENAI_API_KEY={TOKEN}\n"))?;
        let md = ctx.markdown("token: ghp_0123456789abcdefghijABCDEFGHIJ012345")?;
        ctx.append_markdown(&md, " and hunter2")?;
        ctx.display(MediaBundle::plain(
            "Authorization: Bearer abcdefghijklmnopqrstuvwxyz",
        ))?;
        ctx.display(MediaBundle::new().with("application/json", json!({"key": "hunter2"})))?;
        // Keys, metadata, display ids and annotations reach the store too.
        let mut metadata = serde_json::Map::new();
        metadata.insert("hunter2-key".into(), json!({"nested hunter2": ["hunter2"]}));
        ctx.display(
            Display::new(MediaBundle::new().with("application/json", json!({"hunter2": 1})))
                .metadata(metadata)
                .id("progress-hunter2"),
        )?;
        ctx.update_display("progress-hunter2", MediaBundle::plain("done"))?;
        ctx.annotate("source", "https://api.example/v1?apikey=hunter2");
        ctx.result(MediaBundle::plain("hunter2 again"))?;
        Err::<(), _>(ExecutionError::new(
            "AuthError",
            format!("bad token {TOKEN}"),
        ))
    };
    let (mut sim, store, _handle) =
        serve(writes_secrets.redact(Redactor::new().literal("hunter2")));
    let queue_id = request(&mut sim, &store, "go");
    let entry = wait_for(&mut sim, &store, &queue_id);
    let (status, error) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    assert_eq!(error, "AuthError: bad token [redacted]");
    assert_eq!(
        describe(&entry.outputs),
        [
            "Stdout:password is [redacted]\n",
            "Stderr:export OPENAI_API_KEY=[redacted]\n",
            "md:token: [redacted] and [redacted]",
            "display():Authorization: Bearer [redacted]",
            "display():",
            "display(progress-[redacted]):done",
            "result[1]:[redacted] again",
            "error:AuthError:bad token [redacted]",
        ]
    );
    let log = serde_json::to_string(
        &store
            .entries()
            .iter()
            .map(|e| (*e.event).clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for secret in ["hunter2", TOKEN, "ghp_0123", "abcdefghijklmnopqrstuvwxyz"] {
        assert!(!log.contains(secret), "{secret} reached the store: {log}");
    }
    assert!(log.contains("[redacted]"));
}

/// An input request's prompt reaches the store like an output: a secret in it is masked.
#[test]
fn redaction_masks_an_input_prompt() {
    let asks = |ctx: ExecutionContext| async move {
        let answer = ctx.input("token hunter2? ").await?;
        ctx.stdout(answer)?;
        Ok::<(), ExecutionError>(())
    };
    let (mut sim, store, _handle) = serve(asks.redact(Redactor::new().literal("hunter2")));
    let queue_id = request(&mut sim, &store, "go");
    let asked = || {
        store
            .entries()
            .iter()
            .find_map(|entry| match &*entry.event {
                Event::InputRequested(request) => Some(request.prompt.clone()),
                _ => None,
            })
    };
    sim.run_until(|| asked().is_some());
    assert_eq!(asked().unwrap(), "token [redacted]? ");
    let client = NotebookClient::new(store.clone(), "alice");
    let target = queue_id.clone();
    sim.spawn(async move { client.cancel(&target).await.unwrap() });
    let entry = wait_for(&mut sim, &store, &queue_id);
    assert_eq!(ended(&entry).0, CompletionStatus::Cancelled);
}

/// A secret split across writes is masked whole: the end of a write that could still be
/// the start of one is held back until the next write settles it, another output comes,
/// or the handler returns.
#[test]
fn a_secret_split_across_writes_is_masked_whole() {
    let writes_in_pieces = |ctx: ExecutionContext| async move {
        for piece in ["key sk-abcdefghij", "klmnopqrstuv", "wxyz0123 done\n"] {
            ctx.stdout(piece)?;
        }
        ctx.stdout("pw hun")?;
        ctx.stdout("ter2 and https://app:s3")?;
        ctx.stdout("cr3t@db.example/x\nBearer ")?;
        // Another output releases what stdout held, in order.
        ctx.stderr("warn\n")?;
        ctx.stdout("abcdefghijklmnopqrstuvwxyz\n")?;
        ctx.stderr("auth: bearer abcdefgh")?;
        ctx.stderr("ijklmnopqrstuvwxyz")?;
        // Held at the end, released when the handler returns.
        ctx.stdout("last words: hunter")?;
        Ok::<(), ExecutionError>(())
    };
    let entry = run_one(writes_in_pieces.redact(Redactor::new().literal("hunter2")));
    assert_eq!(
        describe(&entry.outputs),
        [
            "Stdout:key [redacted] done\npw [redacted] and https://app:[redacted]@db.example/x\n",
            "Stderr:warn\n",
            "Stdout:Bearer [redacted]\n",
            "Stderr:auth: ",
            "Stdout:last words: hunter",
            // Held until the handler returned; stdout and stderr keep no order between them.
            "Stderr:bearer [redacted]",
        ]
    );
}

#[test]
fn redactor_leaves_ordinary_words_alone() {
    let redactor = Redactor::new();
    for text in [
        "task-0123456789abcdefghijklmnop is fine",
        "desk-abcdefghijklmnopqrstuvwxyz",
        "sk-short",
        "AKIA is a prefix but AKIAshort is not a key",
    ] {
        assert_eq!(redactor.redact(text), text);
    }
    assert_eq!(
        redactor.redact("id AKIAIOSFODNN7EXAMPLE and eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"),
        "id [redacted] and [redacted]"
    );
    assert_eq!(
        format!("{:?}", Redactor::new().literal("hunter2")),
        "Redactor { literals: 1, token_shapes: true }"
    );
    assert_eq!(
        Redactor::new()
            .token_shapes(false)
            .redact("sk-abcdefghijklmnopqrstuvwxyz"),
        "sk-abcdefghijklmnopqrstuvwxyz"
    );
}

/// A handler that counts its runs and then does what `behave` says.
fn counted<F, Fut>(runs: &Arc<AtomicUsize>, behave: F) -> impl ExecutionHandler + use<F, Fut>
where
    F: Fn(ExecutionContext) -> Fut + MaybeSend + MaybeSync + 'static,
    Fut: std::future::Future<Output = Result<Outcome, ExecutionError>> + MaybeSend + 'static,
{
    let runs = runs.clone();
    move |ctx: ExecutionContext| {
        runs.fetch_add(1, Ordering::SeqCst);
        behave(ctx)
    }
}

fn secondary(runs: &Arc<AtomicUsize>) -> impl ExecutionHandler + use<> {
    counted(runs, |ctx: ExecutionContext| async move {
        ctx.stdout("secondary ran\n")?;
        Ok(Outcome::default())
    })
}

/// Runs one cell through `primary` with a counted secondary: (entry, secondary runs).
fn with_fallback(
    primary: impl ExecutionHandler + 'static,
    configure: impl FnOnce(
        Fallback<Arc<dyn ExecutionHandler>, Arc<dyn ExecutionHandler>>,
    ) -> Fallback<Arc<dyn ExecutionHandler>, Arc<dyn ExecutionHandler>>,
) -> (QueueEntry, usize) {
    let runs = Arc::new(AtomicUsize::new(0));
    let primary: Arc<dyn ExecutionHandler> = Arc::new(primary);
    let secondary: Arc<dyn ExecutionHandler> = Arc::new(secondary(&runs));
    let entry = run_one(configure(
        Fallback::new(primary, secondary).names("sdk", "cli"),
    ));
    (entry, runs.load(Ordering::SeqCst))
}

#[test]
fn fallback_runs_the_secondary_when_the_primary_could_not_start() {
    let (entry, runs) = with_fallback(
        |_ctx: ExecutionContext| async move {
            Err::<(), _>(ExecutionError::Unavailable("no such program: codex".into()))
        },
        |f| f,
    );
    assert_eq!(runs, 1);
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert_eq!(describe(&entry.outputs), ["Stdout:secondary ran\n"]);
    assert_eq!(
        entry.metadata["fallback"],
        json!({"ran": "cli", "fellBack": true, "reason": "could not start: no such program: codex"})
    );
}

#[test]
fn fallback_after_a_silent_failure_only_when_opted_in_and_never_after_output() {
    // A job that charged a card and then failed before printing: by default it is not
    // run again by the secondary.
    let charged = Arc::new(AtomicUsize::new(0));
    let charging = {
        let charged = charged.clone();
        move |_ctx: ExecutionContext| {
            charged.fetch_add(1, Ordering::SeqCst);
            async move { Err::<(), _>(ExecutionError::msg("boom after the charge")) }
        }
    };
    let (entry, runs) = with_fallback(charging.clone(), |f| f);
    assert_eq!((runs, ended(&entry).0), (0, CompletionStatus::Error));
    assert_eq!(charged.load(Ordering::SeqCst), 1);

    let (entry, runs) = with_fallback(charging, |f| f.after_silent_failure(true));
    assert_eq!((runs, ended(&entry).0), (1, CompletionStatus::Success));
    assert_eq!(
        entry.metadata["fallback"]["reason"],
        "failed before any output: Error: boom after the charge"
    );

    let (entry, runs) = with_fallback(
        |ctx: ExecutionContext| async move {
            ctx.stdout("did something\n")?;
            Err::<(), _>(ExecutionError::msg("boom"))
        },
        |f| f.after_silent_failure(true),
    );
    assert_eq!(runs, 0, "a request that produced output must not be re-run");
    assert_eq!(
        ended(&entry),
        (CompletionStatus::Error, "Error: boom".into())
    );
    assert_eq!(
        entry.metadata["fallback"],
        json!({"ran": "sdk", "fellBack": false})
    );
}

#[test]
fn fallback_on_empty_output_only_when_configured() {
    let empty = |_ctx: ExecutionContext| async move { Ok(()) };
    let (_, runs) = with_fallback(empty, |f| f);
    assert_eq!(runs, 0);
    let (entry, runs) = with_fallback(empty, |f| f.empty_is_failure(true));
    assert_eq!(runs, 1);
    assert_eq!(
        entry.metadata["fallback"]["reason"],
        "succeeded without any output"
    );
    // A result is output.
    let (_, runs) = with_fallback(
        |_ctx: ExecutionContext| async move { Ok(MediaBundle::plain("42")) },
        |f| f.empty_is_failure(true),
    );
    assert_eq!(runs, 0);
}

#[test]
fn fallback_never_after_a_timeout_or_a_cancel() {
    let (entry, runs) = with_fallback(
        |_ctx: ExecutionContext| async move {
            Err::<(), _>(ExecutionError::TimedOut(Duration::from_secs(1)))
        },
        |f| f.empty_is_failure(true),
    );
    assert_eq!((runs, ended(&entry).0), (0, CompletionStatus::TimedOut));
    let (entry, runs) = with_fallback(
        |_ctx: ExecutionContext| async move { Err::<(), _>(ExecutionError::Cancelled) },
        |f| f.empty_is_failure(true),
    );
    assert_eq!((runs, ended(&entry).0), (0, CompletionStatus::Cancelled));
}

#[test]
fn fallback_modes_pin_one_handler() {
    let unavailable = |_ctx: ExecutionContext| async move {
        Err::<(), _>(ExecutionError::Unavailable("down".into()))
    };
    let (entry, runs) = with_fallback(unavailable, |f| f.mode(FallbackMode::PrimaryOnly));
    assert_eq!(runs, 0);
    assert_eq!(
        ended(&entry),
        (CompletionStatus::Error, "unavailable: down".into())
    );
    assert_eq!(describe(&entry.outputs), ["error:Unavailable:down"]);
    let (entry, runs) = with_fallback(unavailable, |f| f.mode(FallbackMode::SecondaryOnly));
    assert_eq!((runs, ended(&entry).0), (1, CompletionStatus::Success));
    assert_eq!(
        entry.metadata["fallback"],
        json!({"ran": "cli", "fellBack": false})
    );
    assert_eq!("primary-only".parse(), Ok(FallbackMode::PrimaryOnly));
    assert_eq!(
        "sdk".parse::<FallbackMode>().unwrap_err().to_string(),
        "expected one of auto, primary-only, secondary-only; got \"sdk\""
    );
}

#[test]
fn annotations_reach_the_completion_and_detail_joins_its_reason() {
    let entry = run_one(|ctx: ExecutionContext| async move {
        ctx.annotate("backend", "job");
        ctx.annotate("detail", "stopped by SIGTERM after 2 ms");
        Err::<(), _>(ExecutionError::msg("exit code 143"))
    });
    assert_eq!(
        ended(&entry),
        (
            CompletionStatus::Error,
            "Error: exit code 143; stopped by SIGTERM after 2 ms".into()
        )
    );
    assert_eq!(entry.metadata["backend"], "job");
}
