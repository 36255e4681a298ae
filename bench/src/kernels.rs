//! B12 and B14: the Jupyter backend, against the same ipykernel driven directly with the
//! same client crate (jupyter-zmq-client), in the same run. B13: a whole notebook run
//! headless, against nbclient.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jupyter_protocol::{
    ConnectionInfo, ExecuteRequest, ExecutionState, JupyterMessage, JupyterMessageContent,
    KernelInfoRequest,
};
use jupyter_zmq_client::{ClientIoPubConnection, ClientShellConnection};
use runtime_core::{EntryState, MemoryStore, QueueEntry};
use runtime_native::jupyter::{Jupyter, KernelSpec};

use crate::scenarios::{self, Notebook};
use crate::stats::Summary;

/// B12: `samples` executions of `1` through an agent serving the Jupyter backend (request
/// committed → completion observed, in process on a MemoryStore), and on a second kernel
/// of the same spec driven directly with jupyter-zmq-client (`execute_request` → its reply
/// and `idle`), one of each in turn so that the machine's drift touches both alike.
/// Returns (through the agent, directly).
pub async fn round_trips(spec: &KernelSpec, dir: &Path, samples: usize) -> (Summary, Summary) {
    let mut direct = DirectKernel::start(spec, dir).await;
    let kernel = Arc::new(Jupyter::new(spec.clone()).startup_timeout(Duration::from_secs(120)));
    let store = MemoryStore::new();
    let mut notebook = Notebook::serving(store.clone(), &store, kernel.clone()).await;
    let (mut agent_took, mut direct_took) = (Vec::new(), Vec::new());
    for n in 0..samples + 20 {
        let started = Instant::now();
        let entry = notebook.run("1").await;
        let agent = started.elapsed();
        assert!(
            matches!(entry.state, EntryState::Completed { .. }) && !entry.outputs.is_empty(),
            "{entry:?}"
        );
        let started = Instant::now();
        direct.execute("1").await;
        let directly = started.elapsed();
        if n >= 20 {
            agent_took.push(agent);
            direct_took.push(directly);
        }
    }
    kernel.shutdown().await;
    notebook.stop().await;
    direct.stop().await;
    (Summary::of(&agent_took), Summary::of(&direct_took))
}

/// How many small cells B13's notebook has.
pub const NOTEBOOK_CELLS: usize = 50;

/// B13: a notebook of [`NOTEBOOK_CELLS`] small cells run end to end, kernel start and
/// writing the result included, by `notebook run-file` and by nbclient (a Python process
/// that reads it, runs it with `NotebookClient` and writes it), one of each in turn, both
/// on the same kernelspec. Returns (ours, nbclient's).
pub fn notebook_runs(
    spec: &KernelSpec,
    notebook_cli: &Path,
    python: &Path,
    dir: &Path,
    samples: usize,
) -> (Summary, Summary) {
    let cells: Vec<serde_json::Value> = (0..NOTEBOOK_CELLS)
        .map(|n| {
            serde_json::json!({"cell_type": "code", "execution_count": null, "id": format!("cell-{n}"),
                               "metadata": {}, "outputs": [], "source": format!("x{n} = {n} * 2\nprint(x{n})")})
        })
        .collect();
    let notebook =
        serde_json::json!({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    let input = dir.join("b13.ipynb");
    std::fs::write(&input, notebook.to_string()).unwrap();
    // Both find the same kernelspec: the one this run measures.
    let jupyter_path = spec.dir.parent().and_then(Path::parent).unwrap();
    let script = "import sys, nbformat, nbclient\n\
                  nb = nbformat.read(sys.argv[1], as_version=4)\n\
                  nbclient.NotebookClient(nb, kernel_name='python3').execute()\n\
                  nbformat.write(nb, sys.argv[2])\n";
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let output = dir.join("b13.ours.ipynb");
        let started = Instant::now();
        let ran = std::process::Command::new(notebook_cli)
            .arg("run-file")
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .env("JUPYTER_PATH", jupyter_path)
            .output()
            .unwrap();
        ours.push(started.elapsed());
        assert!(
            ran.status.success(),
            "notebook run-file failed: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
        assert_ran_all(&output);

        let output = dir.join("b13.nbclient.ipynb");
        let started = Instant::now();
        let ran = std::process::Command::new(python)
            .args(["-c", script])
            .arg(&input)
            .arg(&output)
            .env("JUPYTER_PATH", jupyter_path)
            .output()
            .unwrap();
        theirs.push(started.elapsed());
        assert!(
            ran.status.success(),
            "nbclient failed: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
        assert_ran_all(&output);
    }
    (Summary::of(&ours), Summary::of(&theirs))
}

/// Checks that every cell of an executed B13 notebook printed its value.
fn assert_ran_all(path: &Path) {
    let notebook: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let cells = notebook["cells"].as_array().unwrap();
    assert_eq!(cells.len(), NOTEBOOK_CELLS);
    for (n, cell) in cells.iter().enumerate() {
        // nbclient keeps a print's text and its newline as two outputs when the kernel sent
        // them apart; the text is what must be there.
        let printed: String = cell["outputs"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|output| match &output["text"] {
                serde_json::Value::String(text) => vec![text.clone()],
                serde_json::Value::Array(parts) => parts
                    .iter()
                    .filter_map(|part| part.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(
            printed,
            format!("{}\n", n * 2),
            "{}: cell {n}",
            path.display()
        );
    }
}

/// B14: `time.sleep(30)` cancelled 50 ms after it shows it runs → `cancelled` observed.
pub async fn cancels(spec: &KernelSpec, samples: usize) -> Summary {
    let kernel = Arc::new(
        Jupyter::new(spec.clone())
            .startup_timeout(Duration::from_secs(120))
            .interrupt_grace(Duration::from_secs(10)),
    );
    let store = MemoryStore::new();
    let mut notebook = Notebook::serving(store.clone(), &store, kernel.clone()).await;
    notebook.run("import time").await;
    let printed = |entry: &QueueEntry| !entry.outputs.is_empty();
    let source = "print('sleeping', flush=True)\ntime.sleep(30)";
    // As the peer's harness does: 50 ms after the cell shows it runs, so the signal meets
    // the kernel in time.sleep, not in the middle of publishing the output.
    let settle = Duration::from_millis(50);
    let summary = scenarios::cancels_once(&mut notebook, source, printed, settle, samples).await;
    kernel.shutdown().await;
    notebook.stop().await;
    summary
}

/// B12's baseline: a kernel of the same spec, started and driven with jupyter-zmq-client
/// alone.
struct DirectKernel {
    process: tokio::process::Child,
    shell: ClientShellConnection,
    iopub: ClientIoPubConnection,
}

impl DirectKernel {
    async fn start(spec: &KernelSpec, dir: &Path) -> DirectKernel {
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let (ports, listeners) = jupyter_zmq_client::peek_ports_with_listeners(ip, 5)
            .await
            .expect("ports");
        let info = ConnectionInfo {
            transport: jupyter_protocol::Transport::TCP,
            ip: ip.to_string(),
            stdin_port: ports[0],
            control_port: ports[1],
            hb_port: ports[2],
            shell_port: ports[3],
            iopub_port: ports[4],
            signature_scheme: "hmac-sha256".into(),
            key: "bench-key".into(),
            kernel_name: Some(spec.name.clone()),
        };
        let file = dir.join("direct-kernel.json");
        std::fs::write(&file, serde_json::to_vec(&info).expect("json")).expect("write");
        let argv: Vec<String> = spec
            .argv
            .iter()
            .map(|arg| arg.replace("{connection_file}", &file.to_string_lossy()))
            .collect();
        let process = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the kernel starts");
        drop(listeners);
        let session = uuid::Uuid::new_v4().to_string();
        let mut tries = 0;
        let (shell, iopub) = loop {
            match connect(&info, &session).await {
                Some(channels) => break channels,
                None if tries < 1_200 => tries += 1,
                None => panic!("the kernel did not answer within two minutes"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        DirectKernel {
            process,
            shell,
            iopub,
        }
    }

    /// Runs `code`; returns once its reply and its `idle` have come.
    async fn execute(&mut self, code: &str) {
        let (shell, iopub) = (&mut self.shell, &mut self.iopub);
        let request: JupyterMessage = ExecuteRequest::new(code.to_owned()).into();
        let id = request.header.msg_id.clone();
        shell.send(request).await.expect("send");
        let (mut replied, mut idle) = (false, false);
        while !(replied && idle) {
            tokio::select! {
                message = iopub.read(), if !idle => {
                    let message = message.expect("iopub");
                    idle = answers(&message, &id) && matches!(
                        &message.content,
                        JupyterMessageContent::Status(status) if status.execution_state == ExecutionState::Idle
                    );
                }
                message = shell.read(), if !replied => {
                    let message = message.expect("shell");
                    replied = answers(&message, &id)
                        && matches!(message.content, JupyterMessageContent::ExecuteReply(_));
                }
            }
        }
    }

    async fn stop(mut self) {
        let _ = self.process.start_kill();
        let _ = self.process.wait().await;
    }
}

async fn connect(
    info: &ConnectionInfo,
    session: &str,
) -> Option<(ClientShellConnection, ClientIoPubConnection)> {
    let mut iopub = jupyter_zmq_client::create_client_iopub_connection(info, "", session)
        .await
        .ok()?;
    let identity = jupyter_zmq_client::peer_identity_for_session(session).ok()?;
    let mut shell =
        jupyter_zmq_client::create_client_shell_connection_with_identity(info, session, identity)
            .await
            .ok()?;
    let _ =
        jupyter_zmq_client::wait_for_iopub_welcome(&mut iopub, Duration::from_millis(500)).await;
    let request: JupyterMessage = KernelInfoRequest {}.into();
    let id = request.header.msg_id.clone();
    shell.send(request).await.ok()?;
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let message = iopub.read().await.ok()?;
            if answers(&message, &id) {
                return Some(());
            }
        }
    })
    .await
    .ok()??;
    Some((shell, iopub))
}

fn answers(message: &JupyterMessage, id: &str) -> bool {
    message
        .parent_header
        .as_ref()
        .is_some_and(|parent| parent.msg_id == id)
}
