//! The echo runtime: serves a notebook from the shared SQLite store. Code cells answer
//! `Echo: <source>`; AI cells answer in streamed markdown; `%sleep <seconds>` makes a slow
//! cell to cancel.
//!
//! ```text
//! cargo run --example echo-agent -- --demo      # a notebook end to end, then exit
//! cargo run --example echo-agent -- --client-id alice   # serve until Ctrl-C
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use examples::{follow, output_text, status_word};
use runtime_core::{
    AgentHandle, Capabilities, CellType, NotebookClient, NotebookWatcher, RuntimeAgent, StoreError,
    handler::Echo,
};
use runtime_native::config::{AgentArgs, ConfigError, init_logging};
use runtime_native::{TokioClock, run_until_signal};

/// The echo runtime agent: serves a notebook from a SQLite store shared with clients.
#[derive(Parser)]
#[command(
    name = "echo-agent",
    version,
    after_help = "Clients in other processes share the notebook through the same store file: \
                  try `cargo run --example notebook -- --client-id alice run 'print(1)'` while this runs."
)]
struct Cli {
    #[command(flatten)]
    agent: AgentArgs,
    /// Submit a few cells as a client would, print their outputs as they arrive, then exit
    /// (the client id defaults to demo-user)
    #[arg(long)]
    demo: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut cli = match examples::parse_args::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if cli.demo && cli.agent.common.log.is_none() && std::env::var_os("RUST_LOG").is_none() {
        // Keep the demo's output to the notebook itself.
        cli.agent.common.log = Some("warn".into());
    }
    let config = match cli.agent.clone().resolve("echo") {
        Err(ConfigError::MissingClientId { .. }) if cli.demo => {
            cli.agent.common.client_id = Some("demo-user".into());
            cli.agent.resolve("echo")
        }
        other => other,
    };
    let config = match config.and_then(|config| init_logging(&config.common.log).map(|()| config)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(ConfigError::EXIT_CODE as u8);
        }
    };
    let store = match examples::open_store(&config.common) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let capabilities = Capabilities {
        can_execute_ai: true,
        ..Capabilities::code()
    };
    let client_id = config.common.client_id.clone();
    let agent = match RuntimeAgent::new(store.clone(), TokioClock, capabilities, config.options) {
        Ok(agent) => agent.on_execution(Echo::new(TokioClock)),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(ConfigError::EXIT_CODE as u8);
        }
    };
    let handle = agent.handle();
    println!(
        "echo agent serving notebook `{}` from {}\nsession {} for {client_id}; Ctrl-C stops it",
        config.common.notebook,
        store.describe(),
        handle.session_id(),
    );
    if cli.demo {
        let (store, handle) = (store.clone(), handle.clone());
        tokio::spawn(async move {
            if let Err(error) = demo(store, client_id, &handle).await {
                eprintln!("demo client failed: {error}");
            }
            handle.shutdown();
        });
    }
    examples::exit_code(run_until_signal(agent).await)
}

/// Runs a few cells as an ordinary client would, printing outputs as they arrive.
async fn demo(
    store: examples::AnyStore,
    client_id: String,
    agent: &AgentHandle,
) -> Result<(), StoreError> {
    let client = NotebookClient::new(store.clone(), client_id);
    let mut watcher = NotebookWatcher::new(&store);
    let cells = [
        (CellType::Code, "print('hello, notebook')"),
        (CellType::Ai, "What does a runtime agent do with my prompt?"),
        (CellType::Code, "%sleep 0.5\n2 + 2"),
    ];
    for (cell_type, source) in cells {
        let (_, queue_id) = client.run_cell(cell_type, source).await?;
        println!("\n[{cell_type:?} cell] {}", source.replace('\n', " | "));
        let mut line_open = false;
        let entry = follow(&mut watcher, &queue_id, |event| {
            if let Some(text) = output_text(event) {
                print!("{text}");
                line_open = !text.ends_with('\n');
                let _ = std::io::stdout().flush();
            }
        })
        .await?;
        let newline = if line_open { "\n" } else { "" };
        println!(
            "{newline}  -> {} (execution {})",
            status_word(&entry),
            entry.execution_count.unwrap_or(0)
        );
    }
    println!("\ndemo done; session {} shutting down", agent.session_id());
    Ok(())
}
