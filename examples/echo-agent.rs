//! The echo runtime, end to end, in one process: an agent serves a notebook on the
//! embedded in-memory store while a client submits three cells and prints their outputs
//! as the agent writes them.
//!
//! ```text
//! cargo run --example echo-agent
//! ```
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::{SystemTime, UNIX_EPOCH};

use runtime_core::*;

fn main() -> Result<(), Box<dyn Error>> {
    let store = MemoryStore::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    // The demo is over long before a lease would need renewing; runtime-native brings a
    // real-time clock for long-running agents.
    let clock = ManualClock::new(Timestamp(u64::try_from(now)?));
    let capabilities = Capabilities {
        can_execute_ai: true,
        ..Capabilities::code()
    };
    let options = AgentOptions {
        runtime_type: "echo".into(),
        ..AgentOptions::new("demo-user")
    };
    let agent =
        RuntimeAgent::new(store.clone(), clock, capabilities, options)?.on_execution(handler::echo);
    let handle = agent.handle();
    println!(
        "echo agent: session {} on an in-memory notebook",
        handle.session_id()
    );

    let client = async {
        let notebook = NotebookClient::new(store.clone(), "demo-user");
        let mut watcher = NotebookWatcher::new(&store);
        let cells = [
            (CellType::Code, "print('hello, notebook')"),
            (CellType::Ai, "What does the echo runtime do with a prompt?"),
            (CellType::Code, "1 + 1"),
        ];
        for (cell_type, source) in cells {
            let (_, queue_id) = notebook.run_cell(cell_type, source).await?;
            println!("\n[{cell_type:?}] {source}");
            let entry = watcher.wait_for_completion(&queue_id).await?;
            for output in &entry.outputs {
                print_output(output);
            }
            let count = entry.execution_count.unwrap_or_default();
            println!(
                "  -> {:?} (execution {count})",
                entry.state.status().unwrap_or(CompletionStatus::Error)
            );
        }
        handle.shutdown();
        Ok::<(), StoreError>(())
    };
    let (ended, served) = futures::executor::block_on(futures::future::join(agent.run(), client));
    served?;
    println!("\nagent stopped: {:?}", ended?);
    Ok(())
}

fn print_output(output: &Output) {
    match &output.kind {
        OutputKind::Stream { name, text } => println!("  {name:?}: {}", text.trim_end()),
        OutputKind::Markdown { text } => println!("  markdown: {text}"),
        OutputKind::Result { data, .. } | OutputKind::Display { data, .. } => {
            println!(
                "  {}",
                data.clone().with_text_fallback().text().unwrap_or_default()
            );
        }
        OutputKind::Error { ename, evalue, .. } => println!("  {ename}: {evalue}"),
    }
}
