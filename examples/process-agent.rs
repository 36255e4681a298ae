//! A runtime agent whose cells run in real programs: a shell job per cell, a long-lived
//! REPL, a JSON-lines adapter, a web service or `codex`, as a backends file declares.
//!
//! ```text
//! cargo run --example process-agent -- --backends examples/backends.toml --client-id alice
//! cargo run --example process-agent -- --backends examples/backends.toml --backend python --client-id alice
//! cargo run --example process-agent -- --kernel python3 --client-id alice   # a Jupyter kernel, no file
//! # a gateway: every notebook of the store that asks for a `shell` runtime, each its own backend
//! cargo run --example process-agent -- --backends examples/backends.toml --gateway --client-id alice
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use runtime_core::{Capabilities, RuntimeAgent};
use runtime_native::backends::{BackendsConfig, default_backends_path};
use runtime_native::config::{AgentArgs, ConfigError, init_logging};
use runtime_native::jupyter::kernelspec;
use runtime_native::{RunError, TokioClock, run_until_signal};

/// Serves a notebook with a process backend chosen in a backends file.
#[derive(Parser)]
#[command(
    name = "process-agent",
    version,
    after_help = "docs/backends.md describes the backends file; examples/backends.toml is a start."
)]
struct Cli {
    #[command(flatten)]
    agent: AgentArgs,
    /// The backends file (TOML) [default: runtime-agents/backends.toml in the user config directory]
    #[arg(long, env = "RUNTIME_BACKENDS", value_name = "PATH")]
    backends: Option<PathBuf>,
    /// Serve with this backend instead of the file's `use`
    #[arg(long, env = "RUNTIME_BACKEND", value_name = "NAME")]
    backend: Option<String>,
    /// Serve every cell on the installed Jupyter kernel NAME (python3, ir, julia-1.10, ...),
    /// with no backends file; an unknown name lists the kernels installed
    #[arg(long, value_name = "NAME", conflicts_with_all = ["backends", "backend"])]
    kernel: Option<String>,
    #[command(flatten)]
    gateway: GatewayArgs,
}

/// Gateway mode: serve every notebook of the store that asks for this runtime type.
#[derive(clap::Args)]
#[command(next_help_heading = "Gateway")]
struct GatewayArgs {
    /// Serve every notebook of the store (a SQLite file or a hub) that asks for this
    /// runtime type, each with backends of its own, instead of the one --notebook
    #[arg(long)]
    gateway: bool,
    /// Most notebooks served at once; others wait
    #[arg(long, value_name = "N", default_value_t = 8, requires = "gateway", value_parser = clap::value_parser!(u16).range(1..))]
    max_sessions: u16,
    /// Stop serving a notebook that had nothing to run for this long (30s, 10m, 1h)
    #[arg(long, value_name = "DURATION", default_value = "10m", requires = "gateway", value_parser = duration)]
    idle_timeout: std::time::Duration,
    /// Make worktrees for notebooks that ask for one under this directory
    #[arg(long, value_name = "DIR", requires = "gateway")]
    worktree_dir: Option<PathBuf>,
    /// Allow worktrees of repositories at or under DIR (repeatable)
    #[arg(
        long = "allow-repository",
        value_name = "DIR",
        requires = "worktree_dir"
    )]
    allow_repositories: Vec<PathBuf>,
    /// Name worktree branches PREFIX/<notebook>
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "notebook",
        requires = "worktree_dir"
    )]
    branch_prefix: String,
    /// What to do with a notebook's worktree when it is detached: when-dirty keeps it while it has uncommitted changes
    #[arg(
        long,
        value_name = "WHEN",
        default_value = "when-dirty",
        requires = "worktree_dir"
    )]
    keep_worktrees: runtime_native::worktree::KeepWorktree,
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    runtime_native::config::parse_duration(text)
        .ok_or_else(|| "a duration like 30s, 10m or 1h (more than zero)".to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match examples::parse_args::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let usage_error = |error: &dyn std::fmt::Display| {
        eprintln!("error: {error}");
        ExitCode::from(ConfigError::EXIT_CODE as u8)
    };
    let (backends, path) = match &cli.kernel {
        Some(name) => match kernelspec::find(name, &kernelspec::search_path()) {
            Ok(spec) => (BackendsConfig::kernel(spec), PathBuf::from("--kernel")),
            Err(error) => return usage_error(&error),
        },
        None => {
            let Some(path) = cli.backends.clone().or_else(default_backends_path) else {
                return usage_error(
                    &"no backends file: pass --backends <PATH> (examples/backends.toml is a start), or --kernel NAME",
                );
            };
            let backends = BackendsConfig::load(&path).and_then(|config| match &cli.backend {
                Some(name) => config.select(name),
                None => Ok(config),
            });
            match backends {
                Ok(backends) => (backends, path),
                Err(error) => return usage_error(&error),
            }
        }
    };
    // A missing program, or an agent CLI that does not answer `--version`, fails now, not
    // at the first cell.
    if let Err(error) = backends.check_programs().await {
        return usage_error(&error);
    }
    // The runtime type defaults to the backend's name.
    let runtime_type = backends.selected().to_owned();
    let (config, backends) = match cli.agent.resolve(&runtime_type) {
        Ok(config) => {
            let backends = backends.build(config.common.auth_token.as_ref());
            (config, backends)
        }
        Err(error) => return usage_error(&error),
    };
    if let Err(error) = init_logging(&config.common.log) {
        return usage_error(&error);
    }
    // Helpers that leave their job's process group (codex's shells) become this agent's
    // children when their parent dies, and are reaped instead of piling up as zombies.
    #[cfg(target_os = "linux")]
    if let Err(error) = runtime_native::process::adopt_orphans() {
        eprintln!("warning: cannot reap orphaned helpers ({error}); they may linger as zombies");
    }
    let mut options = config.options;
    // The agent waits for a cancelled execution at least as long as its backend's stop
    // ladder can take, so a stop is never cut short.
    options.cancel_grace = options.cancel_grace.max(backends.cancel_grace());
    let store = match examples::open_store(&config.common) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let capabilities = Capabilities {
        can_execute_ai: true,
        ..Capabilities::code()
    };
    if cli.gateway.gateway {
        let token = config.common.auth_token.clone();
        let (kernel, backend) = (cli.kernel.clone(), cli.backend.clone());
        let make = move |dir: Option<&std::path::Path>| {
            // Each notebook's backends are made afresh: from the file as it is now.
            let config = match &kernel {
                Some(name) => kernelspec::find(name, &kernelspec::search_path())
                    .map(BackendsConfig::kernel)
                    .map_err(|error| error.to_string()),
                None => BackendsConfig::load(&path)
                    .and_then(|config| match &backend {
                        Some(name) => config.select(name),
                        None => Ok(config),
                    })
                    .map_err(|error| error.to_string()),
            }?;
            let config = match dir {
                Some(dir) => config.working_dir(dir),
                None => config,
            };
            Ok(config.build(token.as_ref()))
        };
        drop(backends);
        return serve_as_gateway(&cli.gateway, store, options, capabilities, Arc::new(make)).await;
    }
    let agent = match RuntimeAgent::new(store.clone(), TokioClock, capabilities, options) {
        Ok(agent) => agent.on_execution(backends.handler()),
        Err(error) => return usage_error(&error),
    };
    println!(
        "process agent serving notebook `{}` from {} with backend `{}` ({})\nsession {}; Ctrl-C stops it",
        config.common.notebook,
        store.describe(),
        backends.name,
        path.display(),
        agent.handle().session_id(),
    );
    // Kernels start now, while the agent serves, not at the first cell.
    let ended = backends.warm_up_while(run_until_signal(agent)).await;
    if matches!(ended, Err(RunError::Forced)) {
        // No graceful goodbyes: dropping the backends kills their processes' groups.
        drop(backends);
    } else {
        backends.shutdown().await;
    }
    examples::exit_code(ended)
}

/// Serves every notebook of `store` that asks for `options.runtime_type` until a signal.
async fn serve_as_gateway(
    args: &GatewayArgs,
    store: examples::AnyStore,
    options: runtime_core::AgentOptions,
    capabilities: Capabilities,
    backends: runtime_native::gateway::BackendsFactory,
) -> ExitCode {
    use runtime_native::gateway::{Gateway, GatewayOptions};
    let runtime_type = options.runtime_type.clone();
    let gateway_options = GatewayOptions {
        max_sessions: usize::from(args.max_sessions),
        idle_timeout: args.idle_timeout,
        ..GatewayOptions::new(runtime_type.clone())
    };
    let described = store.describe_catalog();
    let mut gateway = Gateway::new(
        Arc::new(store),
        gateway_options,
        options,
        capabilities,
        backends,
    );
    if let Some(dir) = &args.worktree_dir {
        let mut worktrees = runtime_native::worktree::Worktrees::new(dir)
            .branch_prefix(args.branch_prefix.clone())
            .keep(args.keep_worktrees);
        for root in &args.allow_repositories {
            worktrees = worktrees.allow(root);
        }
        gateway = gateway.worktrees(worktrees);
    }
    println!(
        "gateway serving the notebooks of {described} that ask for a `{runtime_type}` runtime \
         (at most {} at once, idle timeout {}); Ctrl-C stops it",
        args.max_sessions,
        runtime_native::config::format_duration(args.idle_timeout)
    );
    let status = gateway.status();
    let said = std::cell::RefCell::new(std::collections::BTreeMap::new());
    let print_changes = || {
        for notebook in status.notebooks() {
            let line = describe_status(&notebook);
            if said.borrow().get(&notebook.notebook) != Some(&line) {
                println!("{line}");
                said.borrow_mut().insert(notebook.notebook, line);
            }
        }
    };
    let report = async {
        loop {
            status.changed().await;
            print_changes();
        }
    };
    // SIGINT or SIGTERM: stop gracefully; a second one: at once (backends are killed).
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("error: cannot watch for signals");
        return ExitCode::FAILURE;
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut stop = Some(stop);
    let run = gateway.run(async {
        let _ = stopped.await;
    });
    tokio::pin!(run, report);
    loop {
        tokio::select! {
            () = &mut run => break,
            () = &mut report => {}
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        match stop.take() {
            Some(stop) => {
                println!("stopping: running cells end cancelled (signal again to stop at once)");
                let _ = stop.send(());
            }
            None => {
                eprintln!("stopped at once by a second signal");
                return ExitCode::from(runtime_native::FORCED_EXIT_CODE as u8);
            }
        }
    }
    print_changes();
    println!("gateway stopped");
    ExitCode::SUCCESS
}

/// One line about one notebook, for the terminal.
fn describe_status(status: &runtime_native::gateway::NotebookStatus) -> String {
    use runtime_native::gateway::ServingState;
    let worktree = status
        .worktree
        .as_ref()
        .map(|path| format!(" in {}", path.display()))
        .unwrap_or_default();
    match &status.state {
        ServingState::Waiting => format!("{}: waiting for a free session", status.notebook),
        ServingState::Attaching => format!("{}: attaching", status.notebook),
        ServingState::Serving(session) => {
            format!("{}: serving (session {session}){worktree}", status.notebook)
        }
        ServingState::Detached(why) => format!("{}: detached ({why})", status.notebook),
    }
}
