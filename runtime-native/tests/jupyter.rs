//! The Jupyter backend against a real ipykernel: every output kind, an exception's
//! traceback, `input()` and `getpass` answered and cancelled, interrupt that keeps the
//! kernel's state, a kernel killed mid-cell, two
//! backends with two kernels, and no kernel process left after shutdown.
//!
//! The kernel is the `python3` kernelspec found the way Jupyter finds it (scripts/check
//! puts its virtual environment's `share/jupyter` on `JUPYTER_PATH`). Without one the test
//! says so and does nothing, unless `RUNTIME_REQUIRE_JUPYTER` is set (scripts/check sets
//! it), when it fails.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use runtime_core::{CompletionStatus, OutputKind};
use runtime_native::jupyter::{Jupyter, KernelSpec, kernelspec};
use support::{describe, ended, group_gone, serve, text_of};

fn python_kernel() -> Option<KernelSpec> {
    match kernelspec::find("python3", &kernelspec::search_path()) {
        Ok(spec) => Some(spec),
        Err(error) => {
            assert!(
                std::env::var_os("RUNTIME_REQUIRE_JUPYTER").is_none(),
                "RUNTIME_REQUIRE_JUPYTER is set but: {error}"
            );
            eprintln!("skipped: {error} (scripts/check installs ipykernel)");
            None
        }
    }
}

/// Asserts that `entry` ended `success`, saying how it ended otherwise.
fn succeeded(entry: &runtime_core::QueueEntry) {
    assert_eq!(
        ended(entry).0,
        CompletionStatus::Success,
        "{:?}",
        ended(entry)
    );
}

/// The kernel's process id, as the kernel tells it (it leads its own process group).
async fn kernel_pid(served: &support::Served) -> i32 {
    let entry = served.run("import os\nprint(os.getpid())").await;
    text_of(&entry.outputs).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_run_on_a_real_kernel_with_every_output_kind() {
    let Some(spec) = python_kernel() else { return };
    let python = Arc::new(Jupyter::new(spec).startup_timeout(Duration::from_secs(120)));
    let served = serve(python.clone());

    let entry = served.run("x = 6 * 7\nprint('hello')\nx").await;
    succeeded(&entry);
    assert_eq!(describe(&entry.outputs), ["Stdout:hello\n", "result:42"]);
    let OutputKind::Result { metadata, .. } = &entry.outputs[1].kind else {
        panic!("not a result")
    };
    assert!(
        metadata.contains_key("kernel_execution_count"),
        "{metadata:?}"
    );

    // State is kept between cells; stderr, displays, updates and clear_output map over.
    let source = "import sys\n\
                  from IPython.display import display, update_display, HTML, clear_output\n\
                  print(x + 1)\n\
                  print('to stderr', file=sys.stderr)\n\
                  display(HTML('<b>bold</b>'), display_id='d1')\n\
                  update_display(HTML('<i>updated</i>'), display_id='d1')\n";
    let entry = served.run(source).await;
    succeeded(&entry);
    let shown = describe(&entry.outputs);
    assert!(shown.contains(&"Stdout:43\n".to_owned()), "{shown:?}");
    assert!(
        shown.contains(&"Stderr:to stderr\n".to_owned()),
        "{shown:?}"
    );
    let html: Vec<&str> = entry
        .outputs
        .iter()
        .filter_map(|output| match &output.kind {
            OutputKind::Display { data, .. } => data.get("text/html")?.as_str(),
            _ => None,
        })
        .collect();
    assert_eq!(html, ["<i>updated</i>"], "the update replaced the display");

    let entry = served
        .run("from IPython.display import clear_output\nprint('gone')\nclear_output()\nprint('kept')")
        .await;
    assert_eq!(describe(&entry.outputs), ["Stdout:kept\n"]);

    // An exception ends `error`, with the kernel's traceback and the reply's reason.
    let entry = served.run("def f():\n    return 1 / 0\nf()").await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    assert!(reason.contains("ZeroDivisionError"), "{reason}");
    let errors: Vec<&Vec<String>> = entry
        .outputs
        .iter()
        .filter_map(|output| match &output.kind {
            OutputKind::Error { traceback, .. } => Some(traceback),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one error output: {:?}",
        describe(&entry.outputs)
    );
    assert!(
        errors[0].iter().any(|line| line.contains("f()")),
        "{errors:?}"
    );

    let pid = kernel_pid(&served).await;
    python.shutdown().await;
    assert!(group_gone(pid).await, "the kernel is gone after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_keeps_the_kernel_and_a_killed_kernel_is_replaced() {
    let Some(spec) = python_kernel() else { return };
    let python = Arc::new(
        Jupyter::new(spec)
            .startup_timeout(Duration::from_secs(120))
            .interrupt_grace(Duration::from_secs(10)),
    );
    let served = serve(python.clone());
    served.run("kept = 'still here'").await;
    let first = kernel_pid(&served).await;

    // Cancel interrupts the kernel; its state survives.
    let sleeping = served
        .request("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
        .await;
    served
        .wait_for_output(&sleeping, |text| text.contains("sleeping"))
        .await;
    served.cancel(&sleeping).await;
    let entry = served.completion(&sleeping).await;
    assert_eq!(
        ended(&entry).0,
        CompletionStatus::Cancelled,
        "{:?}",
        ended(&entry)
    );
    let entry = served.run("print(kept)").await;
    assert_eq!(text_of(&entry.outputs), "still here\n");

    // A kernel killed mid-cell ends the cell `error`; the next cell gets a new kernel and
    // is told its state is gone.
    let dying = served
        .request(
            "import os, signal\nprint('dying', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)",
        )
        .await;
    let entry = served.completion(&dying).await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    assert!(reason.contains("KernelDied"), "{reason}");
    let entry = served.run("print('kept' in globals())").await;
    succeeded(&entry);
    let text = text_of(&entry.outputs);
    assert!(text.contains("a new python3 kernel was started"), "{text}");
    assert!(text.ends_with("False\n"), "{text}");

    assert!(
        group_gone(first).await,
        "the killed kernel's group was reaped"
    );
    let second = kernel_pid(&served).await;
    assert_ne!(first, second);
    python.shutdown().await;
    assert!(group_gone(second).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_get_two_kernels_and_the_connection_file_is_private() {
    let Some(spec) = python_kernel() else { return };
    let (a, b) = (
        Arc::new(Jupyter::new(spec.clone()).startup_timeout(Duration::from_secs(120))),
        Arc::new(Jupyter::new(spec).startup_timeout(Duration::from_secs(120))),
    );
    let (served_a, served_b) = (serve(a.clone()), serve(b.clone()));
    // The kernel reads its connection file: its mode is checked from inside.
    let check = "import os, sys, stat\n\
                 f = [a for a in sys.argv if a.endswith('.json')][0]\n\
                 print(oct(stat.S_IMODE(os.stat(f).st_mode)))\n\
                 me = 'a'";
    let entry = served_a.run(check).await;
    assert_eq!(
        text_of(&entry.outputs),
        "0o600\n",
        "{:?}",
        describe(&entry.outputs)
    );
    served_b.run("me = 'b'").await;
    assert_eq!(text_of(&served_a.run("print(me)").await.outputs), "a\n");
    assert_eq!(text_of(&served_b.run("print(me)").await.outputs), "b\n");
    let (pid_a, pid_b) = (kernel_pid(&served_a).await, kernel_pid(&served_b).await);
    assert_ne!(pid_a, pid_b);
    a.shutdown().await;
    b.shutdown().await;
    assert!(group_gone(pid_a).await && group_gone(pid_b).await);
}

/// The process id of this process's child whose environment holds `marker`, if any.
fn child_with_env(marker: &str) -> Option<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|dir| {
        let pid: i32 = dir.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(dir.path().join("stat")).ok()?;
        // The parent is the second field after the command, which is in parentheses.
        let parent = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
        let environ = std::fs::read(dir.path().join("environ")).ok()?;
        let has_marker = environ
            .split(|&byte| byte == 0)
            .any(|entry| entry == marker.as_bytes());
        (parent == me && has_marker).then_some(pid)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_file_names_a_kernel_started_when_serving_and_shutdown_stops_it() {
    let Some(_) = python_kernel() else { return };
    let marker = format!("WARM_UP_MARK={}", uuid::Uuid::new_v4());
    let (name, value) = marker.split_once('=').unwrap();
    let file = format!(
        "use = \"kernel\"\n\
         [backends.kernel]\n\
         kind = \"jupyter\"\n\
         kernel = \"python3\"\n\
         startup_timeout = \"120s\"\n\
         env = {{ GREETING = \"hello from the file\", {name} = \"{value}\" }}\n\
         [backends.missing]\n\
         kind = \"jupyter\"\n\
         kernel = \"no-such-kernel\"\n"
    );
    let backends = runtime_native::backends::BackendsConfig::parse(&file, "agents.toml")
        .unwrap()
        .build(None);
    let served = serve(backends.handler());
    // Serving starts the kernel before any cell asks for it, and the first cell runs on it.
    let pid = backends
        .warm_up_while(async {
            let started = async {
                loop {
                    if let Some(pid) = child_with_env(&marker) {
                        return pid;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            let warmed = tokio::time::timeout(Duration::from_secs(120), started)
                .await
                .expect("the kernel starts while the agent serves, before any cell");
            let entry = served.run("import os\nprint(os.environ['GREETING'])").await;
            assert_eq!(text_of(&entry.outputs), "hello from the file\n");
            let pid = kernel_pid(&served).await;
            assert_eq!(
                pid, warmed,
                "the first cell runs on the kernel started when serving"
            );
            pid
        })
        .await;
    backends.shutdown().await;
    assert!(
        group_gone(pid).await,
        "the agent's shutdown stops the kernel"
    );

    // A kernel that is not installed fails the cell, listing those that are.
    let missing = runtime_native::backends::BackendsConfig::parse(&file, "agents.toml")
        .unwrap()
        .select("missing")
        .unwrap()
        .build(None);
    let entry = serve(missing.handler()).run("1").await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    assert!(
        reason.contains("no Jupyter kernel named \"no-such-kernel\"") && reason.contains("python3"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_kernel_is_killed_by_its_heartbeat_and_a_busy_one_is_not() {
    let Some(spec) = python_kernel() else { return };
    // The busy cell outlasts the timeout; the timeout is long enough that a loaded machine
    // delaying one heartbeat's answer does not pass for a frozen kernel.
    let python = Arc::new(
        Jupyter::new(spec)
            .startup_timeout(Duration::from_secs(120))
            .heartbeat(Duration::from_millis(250), Duration::from_secs(4)),
    );
    let served = serve(python.clone());

    // Busy in pure Python for longer than the heartbeat's timeout: it still answers.
    let busy = "import time\nstarted = time.time()\nwhile time.time() - started < 5:\n    pass\nprint('done')";
    let entry = served.run(busy).await;
    succeeded(&entry);
    assert_eq!(text_of(&entry.outputs), "done\n");

    // Stopped (SIGSTOP): it answers nothing, is killed, and the next cell gets a new kernel.
    let frozen = kernel_pid(&served).await;
    let entry = served
        .run("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)")
        .await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    assert!(
        reason.contains("stopped answering its heartbeat"),
        "{reason}"
    );
    assert!(
        group_gone(frozen).await,
        "the frozen kernel was killed and reaped"
    );
    let entry = served.run("print('alive')").await;
    assert!(
        text_of(&entry.outputs).ends_with("alive\n"),
        "{:?}",
        describe(&entry.outputs)
    );
    python.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_and_getpass_are_answered_and_a_cancel_while_waiting_keeps_the_kernel() {
    let Some(spec) = python_kernel() else { return };
    let python = Arc::new(Jupyter::new(spec).startup_timeout(Duration::from_secs(120)));
    let served = serve(python.clone());

    let source = "name = input('Name? ')\n\
                  import getpass\n\
                  secret = getpass.getpass('Password: ')\n\
                  print(f'{name} has a secret of {len(secret)} characters')";
    let queue_id = served.request(source).await;
    let name = served.asked(&queue_id, None).await;
    assert_eq!((name.prompt.as_str(), name.password), ("Name? ", false));
    served.reply(&queue_id, &name, "Ada").await;
    let password = served.asked(&queue_id, Some(&name.input_id)).await;
    assert!(password.password, "getpass asks for a password");
    assert_eq!(password.prompt, "Password: ");
    served.reply(&queue_id, &password, "correct horse").await;
    let entry = served.completion(&queue_id).await;
    succeeded(&entry);
    assert_eq!(
        text_of(&entry.outputs),
        "Name? Ada\nPassword: \nAda has a secret of 13 characters\n"
    );
    assert!(
        !served.log_text().contains("correct horse"),
        "the password never reaches the log in clear"
    );

    // Cancel while the kernel waits for input: it is interrupted and keeps its state.
    let pid = kernel_pid(&served).await;
    let queue_id = served.request("answer = input('Continue? ')").await;
    served.asked(&queue_id, None).await;
    served.cancel(&queue_id).await;
    let entry = served.completion(&queue_id).await;
    assert_eq!(
        ended(&entry).0,
        CompletionStatus::Cancelled,
        "{:?}",
        ended(&entry)
    );
    let entry = served.run("print(name)").await;
    succeeded(&entry);
    assert_eq!(
        text_of(&entry.outputs),
        "Ada\n",
        "state survives the cancel"
    );
    assert_eq!(kernel_pid(&served).await, pid, "the same kernel");
    python.shutdown().await;
}
