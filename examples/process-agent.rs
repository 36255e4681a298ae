//! A runtime agent whose cells run in real programs: a shell job per cell, a long-lived
//! REPL, a JSON-lines adapter, a web service or `codex`, as a backends file declares.
//!
//! ```text
//! cargo run --example process-agent -- --backends examples/backends.toml --client-id alice
//! cargo run --example process-agent -- --backends examples/backends.toml --backend python --client-id alice
//! cargo run --example process-agent -- --kernel python3 --client-id alice   # a Jupyter kernel, no file
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

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
