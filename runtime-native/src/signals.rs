//! Running an agent until a signal says stop.

use runtime_core::{AgentError, RuntimeAgent, TerminationReason};
use tokio::signal::unix::{SignalKind, signal};

/// The exit code for a second interrupt ([`RunError::Forced`]): 128 + SIGINT, as shells
/// report it.
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
    /// A second signal came while the agent was stopping: it was dropped at once, which
    /// kills every process its running execution had started (process groups are killed
    /// when dropped). The application should exit now, with [`FORCED_EXIT_CODE`].
    #[error("a second signal stopped the agent at once")]
    Forced,
}

/// Runs `agent` until it stops by itself or a signal asks it to.
///
/// - SIGINT or SIGTERM starts a graceful shutdown: the running execution is cancelled and
///   completed as cancelled within the agent's cancel grace, pending outputs are committed,
///   and the session ends with reason `shutdown`; then this returns.
/// - A second SIGINT or SIGTERM drops the agent at once (killing the process groups of what
///   it ran) and returns [`RunError::Forced`]; the application exits, with
///   [`FORCED_EXIT_CODE`] as shells expect. A library never exits the process itself.
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
            tracing::warn!("second signal: stopping at once");
            return Err(RunError::Forced);
        }
        stopping = true;
        tracing::info!(
            "stopping: finishing the running execution as cancelled (signal again to exit at once)"
        );
        handle.shutdown();
    }
}
