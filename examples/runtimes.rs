//! The runtime manager's command line: installs, updates, lists and removes agent CLIs
//! (codex from npm, llm from a Python package index) in a directory of their own, each
//! download checked against its registry's digest before anything is unpacked.
//!
//! ```text
//! cargo run --example runtimes -- setup codex --version 0.169.0
//! cargo run --example runtimes -- --pypi-index https://INDEX/simple/ setup llm
//! cargo run --example runtimes -- list
//! cargo run --example runtimes -- update codex
//! cargo run --example runtimes -- remove codex
//! cargo run --example runtimes -- path codex      # the program, for scripts
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use runtime_native::runtimes::{Installed, RuntimeManager};

/// Installs and updates the agent CLIs that backends run (codex from npm, llm from a
/// Python package index).
#[derive(Parser)]
#[command(name = "runtimes", version)]
struct Cli {
    /// Where runtimes are installed (default: RUNTIME_AGENTS_RUNTIMES, else the user's data
    /// directory, runtime-agents/runtimes)
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The npm registry's URL (default: npm's own setting, `npm config get registry`)
    #[arg(long, env = "npm_config_registry")]
    registry: Option<String>,
    /// The Python package index llm comes from, pip's `--index-url` (default: pip's own
    /// setting, `pip3 config get global.index-url`)
    #[arg(long, env = "PIP_INDEX_URL")]
    pypi_index: Option<String>,
    /// Also trust the CA certificates of this PEM file (default: NODE_EXTRA_CA_CERTS, as
    /// npm does, else SSL_CERT_FILE)
    #[arg(long)]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Installs a runtime (the registry's latest version unless `--version` says)
    Setup {
        /// Its name: codex or llm
        name: String,
        /// The version to install
        #[arg(long)]
        version: Option<String>,
    },
    /// Lists what is installed, with versions, digests and programs
    List,
    /// Installs a runtime's latest version if it is not the one installed
    Update {
        /// Its name
        name: String,
    },
    /// Removes a runtime
    Remove {
        /// Its name
        name: String,
    },
    /// Prints the installed runtime's program, alone (for scripts)
    Path {
        /// Its name
        name: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match examples::parse_args::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let Some(dir) = cli.dir.or_else(runtime_native::runtimes::default_dir) else {
        eprintln!("error: no data directory here: pass --dir");
        return ExitCode::from(2);
    };
    // Only codex comes from npm.
    let from_npm = match &cli.command {
        Command::Setup { name, .. } | Command::Update { name } => name == "codex",
        _ => false,
    };
    let registry = match cli.registry {
        Some(registry) => Some(registry),
        None if !from_npm => Some(String::new()),
        None => npm_registry(),
    };
    let Some(registry) = registry else {
        eprintln!("error: no npm registry: pass --registry URL or set npm_config_registry");
        return ExitCode::from(2);
    };
    let mut manager = RuntimeManager::new(dir, registry);
    if let Some(index) = cli.pypi_index.or_else(pip_index) {
        manager = manager.pypi_index(index);
    }
    let ca_file = cli.ca_file.or_else(|| {
        ["NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE"]
            .iter()
            .find_map(|name| std::env::var_os(name).filter(|value| !value.is_empty()))
            .map(PathBuf::from)
    });
    if let Some(path) = ca_file {
        manager = match manager.ca_file(&path) {
            Ok(manager) => manager,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        };
    }
    let result = match cli.command {
        Command::Setup { name, version } => manager
            .setup(&name, version.as_deref())
            .await
            .map(|installed| vec![installed]),
        Command::Update { name } => manager.update(&name).await.map(|installed| vec![installed]),
        Command::List => manager.list(),
        Command::Remove { name } => manager.remove(&name).map(|removed| {
            println!("removed {} {}", removed.name, removed.version);
            Vec::new()
        }),
        Command::Path { name } => match manager.get(&name) {
            Ok(Some(installed)) => {
                println!("{}", installed.program.display());
                return ExitCode::SUCCESS;
            }
            Ok(None) => Err(runtime_native::runtimes::RuntimeError::NotInstalled(name)),
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(installed) => {
            for runtime in &installed {
                show(runtime);
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn show(runtime: &Installed) {
    println!(
        "{} {} ({}, {})\n  {}",
        runtime.name,
        runtime.version,
        runtime.package,
        runtime.integrity,
        runtime.program.display()
    );
}

/// npm's configured registry, as `npm config get registry` prints it.
fn npm_registry() -> Option<String> {
    let output = std::process::Command::new("npm")
        .args(["config", "get", "registry"])
        .output()
        .ok()?;
    let registry = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && registry.starts_with("http")).then_some(registry)
}

/// pip's configured index, as `pip3 config get global.index-url` prints it.
fn pip_index() -> Option<String> {
    let output = std::process::Command::new("pip3")
        .args(["config", "get", "global.index-url"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let index = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && index.starts_with("http")).then_some(index)
}
