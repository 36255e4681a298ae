//! Running an agent until a signal says stop.

use runtime_core::{AgentError, RuntimeAgent, TerminationReason};
use tokio::signal::unix::{SignalKind, signal};

/// The exit code after a second interrupt: 128 + SIGINT, as shells report it.
pub const FORCED_EXIT_CODE: i32 = 130;

/// Why [`run_until_signal`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The agent stopped with an error.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The signal handlers could not be installed.
    #[error("cannot listen for signals: {0}")]
    Signals(#[from] std::io::Error),
}

/// Runs `agent` until it stops by itself or a signal asks it to.
///
/// - SIGINT or SIGTERM starts a graceful shutdown: the running execution is cancelled and
///   completed as cancelled within the agent's cancel grace, pending outputs are committed,
///   and the session ends with reason `shutdown`; then this returns.
/// - A second SIGINT or SIGTERM exits the process at once with code 130.
/// - SIGHUP is logged and ignored, so closing a terminal does not kill the agent.
pub async fn run_until_signal(agent: RuntimeAgent) -> Result<TerminationReason, RunError> {
    let handle = agent.handle();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let run = agent.run();
    tokio::pin!(run);
    let mut stopping = false;
    loop {
        tokio::select! {
            ended = &mut run => return Ok(ended?),
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup.recv() => {
                tracing::info!("SIGHUP ignored; send SIGTERM or SIGINT to stop");
                continue;
            }
        }
        if stopping {
            tracing::warn!("second signal: exiting at once");
            std::process::exit(FORCED_EXIT_CODE);
        }
        stopping = true;
        tracing::info!(
            "stopping: finishing the running execution as cancelled (signal again to exit at once)"
        );
        handle.shutdown();
    }
}
