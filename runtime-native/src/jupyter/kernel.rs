//! One running kernel: its process group, its connection file and its channels.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jupyter_protocol::connection_info::Transport;
use jupyter_protocol::{
    ConnectionInfo, JupyterMessage, JupyterMessageContent, KernelInfoRequest, ShutdownRequest,
};
use jupyter_zmq_client::{
    ClientControlConnection, ClientIoPubConnection, ClientShellConnection, ClientStdinConnection,
};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::kernelspec::{InterruptMode, KernelSpec};
use crate::process::{Group, Ladder};

/// How many lines of the kernel's stderr are kept, to say why it died, and how much of each.
const LAST_WORDS: usize = 20;
const LONGEST_WORD_LINE: usize = 1000;

/// What starting a kernel needs besides its spec.
pub(crate) struct Launch<'a> {
    pub(crate) spec: &'a KernelSpec,
    pub(crate) cwd: Option<&'a Path>,
    pub(crate) env: &'a [(String, String)],
    pub(crate) startup_timeout: Duration,
}

/// A started kernel. Dropping it kills its process group and removes its connection file.
pub(crate) struct Kernel {
    pub(crate) group: Group,
    pub(crate) shell: ClientShellConnection,
    pub(crate) iopub: ClientIoPubConnection,
    pub(crate) control: ClientControlConnection,
    /// Where the kernel asks for input (`input()`), routed to us by the shell's identity.
    pub(crate) stdin: ClientStdinConnection,
    pub(crate) interrupt_mode: InterruptMode,
    /// Where its channels are (and its key: never logged).
    pub(crate) info: ConnectionInfo,
    /// The connection file (mode 0600: it holds the signing key); removed on drop.
    _connection_file: tempfile::TempPath,
    pub(crate) last_words: Arc<Mutex<VecDeque<String>>>,
}

impl Kernel {
    /// Starts the kernel of `launch.spec` in its own process group and waits until it
    /// answers on its shell channel and publishes on iopub.
    pub(crate) async fn start(launch: Launch<'_>) -> Result<Kernel, String> {
        let spec = launch.spec;
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // The ports stay bound here until the kernel is spawned, so nothing else takes them.
        let (ports, listeners) = jupyter_zmq_client::peek_ports_with_listeners(ip, 5)
            .await
            .map_err(|error| format!("no free ports on 127.0.0.1: {error}"))?;
        let info = ConnectionInfo {
            transport: Transport::TCP,
            ip: ip.to_string(),
            stdin_port: ports[0],
            control_port: ports[1],
            hb_port: ports[2],
            shell_port: ports[3],
            iopub_port: ports[4],
            signature_scheme: "hmac-sha256".to_owned(),
            key: format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
            kernel_name: Some(spec.name.clone()),
        };
        let connection_file = write_connection_file(&info)?;
        let mut command = command_for(spec, &connection_file, launch.cwd, launch.env);
        let mut group = Group::spawn(&mut command)
            .map_err(|error| format!("cannot start kernel {:?}: {error}", spec.name))?;
        drop(listeners);
        let last_words = keep_last_words(&mut group);
        let session_id = uuid::Uuid::new_v4().to_string();
        // A kernel binds its ports a moment after it starts; until then a channel may fail
        // (refused, or reset as the kernel binds): connect again until it answers.
        let last_error = Mutex::new(String::new());
        let connected = tokio::time::timeout(launch.startup_timeout, async {
            loop {
                match connect(&info, &session_id).await {
                    Ok(channels) => return channels,
                    Err(error) => {
                        tracing::debug!(%error, "the kernel is not answering yet");
                        *last_error.lock().unwrap_or_else(PoisonError::into_inner) = error;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        let outcome = tokio::select! {
            connected = connected => connected.map(Ok),
            exited = group.wait() => Ok(Err(format!(
                "the kernel exited while starting ({})",
                exited.map_or_else(|e| e.to_string(), |status| status.to_string())
            ))),
        };
        let Channels {
            shell,
            iopub,
            control,
            stdin,
        } = match outcome {
            Ok(Ok(channels)) => channels,
            Ok(Err(why)) => {
                let said = said(&last_words);
                return Err(format!("kernel {:?} did not start: {why}{said}", spec.name));
            }
            Err(_) => {
                let said = said(&last_words);
                let last_error = last_error.lock().unwrap_or_else(PoisonError::into_inner);
                let why = match last_error.is_empty() {
                    true => String::new(),
                    false => format!(" (last: {last_error})"),
                };
                return Err(format!(
                    "kernel {:?} was not ready within {:?}{why}{said}",
                    spec.name, launch.startup_timeout
                ));
            }
        };
        Ok(Kernel {
            group,
            shell,
            iopub,
            control,
            stdin,
            interrupt_mode: spec.interrupt_mode,
            info,
            _connection_file: connection_file,
            last_words,
        })
    }

    /// Asks the kernel to shut down; stops its group with `ladder` if it has not exited
    /// within the ladder's first grace.
    pub(crate) async fn shutdown(mut self, ladder: Ladder) {
        let request: JupyterMessage = ShutdownRequest { restart: false }.into();
        let asked = tokio::time::timeout(ladder.interrupt_grace, async {
            self.control.send(request).await.ok()?;
            self.group.wait().await.ok()
        })
        .await;
        match asked {
            Ok(Some(_)) => self.group.finish().await,
            _ => {
                let _ = self.group.stop(ladder).await;
            }
        }
    }
}

/// A kernel's channels, as [`connect`] opens them.
struct Channels {
    shell: ClientShellConnection,
    iopub: ClientIoPubConnection,
    control: ClientControlConnection,
    stdin: ClientStdinConnection,
}

/// Connects the shell, iopub, control and stdin channels and waits until the kernel
/// answers on shell and publishes to us on iopub.
async fn connect(info: &ConnectionInfo, session_id: &str) -> Result<Channels, String> {
    let mut iopub = jupyter_zmq_client::create_client_iopub_connection(info, "", session_id)
        .await
        .map_err(|error| format!("iopub: {error}"))?;
    let identity = jupyter_zmq_client::peer_identity_for_session(session_id)
        .map_err(|error| format!("identity: {error}"))?;
    let mut shell = jupyter_zmq_client::create_client_shell_connection_with_identity(
        info,
        session_id,
        identity.clone(),
    )
    .await
    .map_err(|error| format!("shell: {error}"))?;
    // The kernel routes input requests to the client whose stdin identity is its shell's.
    let stdin = jupyter_zmq_client::create_client_stdin_connection_with_identity(
        info, session_id, identity,
    )
    .await
    .map_err(|error| format!("stdin: {error}"))?;
    let control = jupyter_zmq_client::create_client_control_connection(info, session_id)
        .await
        .map_err(|error| format!("control: {error}"))?;
    ready(&mut shell, &mut iopub).await?;
    Ok(Channels {
        shell,
        iopub,
        control,
        stdin,
    })
}

/// Writes the connection file, readable by this user only (it holds the key).
fn write_connection_file(info: &ConnectionInfo) -> Result<tempfile::TempPath, String> {
    use std::io::Write;
    let mut file = tempfile::Builder::new()
        .prefix("runtime-kernel-")
        .suffix(".json")
        .tempfile()
        .map_err(|error| format!("cannot write the kernel's connection file: {error}"))?;
    let text = serde_json::to_vec(info).map_err(|error| error.to_string())?;
    file.write_all(&text)
        .and_then(|()| file.flush())
        .map_err(|error| format!("cannot write the kernel's connection file: {error}"))?;
    Ok(file.into_temp_path())
}

fn command_for(
    spec: &KernelSpec,
    connection_file: &Path,
    cwd: Option<&Path>,
    env: &[(String, String)],
) -> Command {
    let file = connection_file.to_string_lossy();
    let argv: Vec<String> = spec
        .argv
        .iter()
        .map(|arg| {
            arg.replace("{connection_file}", &file)
                .replace("{resource_dir}", &spec.dir.to_string_lossy())
        })
        .collect();
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .envs(&spec.env)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command
}

/// Keeps the last [`LAST_WORDS`] lines of the kernel's stderr, each cut at
/// [`LONGEST_WORD_LINE`] bytes, and drains the rest, so a chatty kernel never blocks on a
/// full pipe and one that never ends a line costs no memory.
fn keep_last_words(group: &mut Group) -> Arc<Mutex<VecDeque<String>>> {
    let kept = Arc::new(Mutex::new(VecDeque::with_capacity(LAST_WORDS)));
    if let Some(mut stderr) = group.child().stderr.take() {
        let lines = kept.clone();
        tokio::spawn(async move {
            let keep = |line: &[u8]| {
                let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
                if lines.len() == LAST_WORDS {
                    lines.pop_front();
                }
                lines.push_back(String::from_utf8_lossy(line).trim_end().to_owned());
            };
            let (mut chunk, mut line) = ([0_u8; 8192], Vec::new());
            while let Ok(read @ 1..) = stderr.read(&mut chunk).await {
                for &byte in &chunk[..read] {
                    if byte == b'\n' {
                        keep(&line);
                        line.clear();
                    } else if line.len() < LONGEST_WORD_LINE {
                        line.push(byte);
                    }
                }
            }
            if !line.is_empty() {
                keep(&line);
            }
        });
    }
    kept
}

/// The last lines a kernel wrote to stderr, as a sentence's end (empty if none).
pub(crate) fn said(last_words: &Mutex<VecDeque<String>>) -> String {
    let lines = last_words.lock().unwrap_or_else(PoisonError::into_inner);
    if lines.is_empty() {
        String::new()
    } else {
        let text: Vec<&str> = lines.iter().map(String::as_str).collect();
        format!("; it said:\n{}", text.join("\n"))
    }
}

/// Waits until the kernel answers `kernel_info` on shell and iopub delivers to us.
async fn ready(
    shell: &mut ClientShellConnection,
    iopub: &mut ClientIoPubConnection,
) -> Result<(), String> {
    // The iopub subscription may not have reached the kernel yet; with XPUB kernels
    // (ipykernel 7) it says so with a welcome, and otherwise a kernel_info request's status
    // messages prove it.
    let _ = jupyter_zmq_client::wait_for_iopub_welcome(iopub, Duration::from_millis(500)).await;
    loop {
        let request: JupyterMessage = KernelInfoRequest {}.into();
        let id = request.header.msg_id.clone();
        shell
            .send(request)
            .await
            .map_err(|error| format!("shell: {error}"))?;
        loop {
            let reply = shell
                .read()
                .await
                .map_err(|error| format!("shell: {error}"))?;
            if parent_id(&reply) == Some(id.as_str())
                && matches!(reply.content, JupyterMessageContent::KernelInfoReply(_))
            {
                break;
            }
        }
        let seen = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                match iopub.read().await {
                    Ok(message) if parent_id(&message) == Some(id.as_str()) => return Ok(()),
                    Ok(_) => continue,
                    Err(error) => return Err(format!("iopub: {error}")),
                }
            }
        })
        .await;
        match seen {
            Ok(result) => return result,
            Err(_) => continue, // not subscribed yet: ask again
        }
    }
}

/// Resolves once the kernel has not answered its heartbeat for `timeout`, checking every
/// `every`: a frozen kernel (stopped, or stuck where its heartbeat thread cannot run). A
/// busy kernel still answers: ipykernel's heartbeat echoes from a thread of its own.
pub(crate) async fn heartbeat_lost(info: &ConnectionInfo, every: Duration, timeout: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let answered = tokio::time::timeout(timeout, async {
            loop {
                if let Ok(mut heartbeat) =
                    jupyter_zmq_client::create_client_heartbeat_connection(info).await
                    && heartbeat.single_heartbeat().await.is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if answered.is_err() {
            return;
        }
    }
}

/// The id of the request a message answers.
pub(crate) fn parent_id(message: &JupyterMessage) -> Option<&str> {
    message
        .parent_header
        .as_ref()
        .map(|parent| parent.msg_id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flood_on_stderr_is_drained_and_only_short_last_lines_are_kept() {
        // 10 MB with no line end, then 30 lines: a pipe nobody drained would stop the
        // program at 64 KiB, and one long line must not be kept whole.
        let script = "head -c 10000000 /dev/zero | tr '\\0' x >&2; \
                      for n in $(seq 1 30); do echo \"line $n\" >&2; done";
        let mut command = Command::new("sh");
        command.args(["-c", script]).stderr(Stdio::piped());
        let mut group = Group::spawn(&mut command).unwrap();
        let kept = keep_last_words(&mut group);
        let exited = tokio::time::timeout(Duration::from_secs(60), group.wait()).await;
        assert!(exited.is_ok(), "the program was blocked on its stderr");
        let last_line_read = async {
            loop {
                let said = said(&kept);
                if said.ends_with("line 30") {
                    return said;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let said = tokio::time::timeout(Duration::from_secs(60), last_line_read)
            .await
            .expect("the last line is read");
        let lines: Vec<&str> = said.lines().skip(1).collect();
        assert_eq!(lines.len(), LAST_WORDS);
        assert_eq!(lines[0], "line 11");
        assert!(
            said.len() < 2 * LONGEST_WORD_LINE,
            "{} bytes kept",
            said.len()
        );
    }
}
