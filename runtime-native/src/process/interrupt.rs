//! Programs stay interruptible when this process was started ignoring SIGINT.
//!
//! A process started in the background by a script (`cmd &`) or by some launchers ignores
//! SIGINT, and an ignored signal stays ignored across `exec`: every program the backends
//! started would then shrug off the stop ladder's first rung, and each cancel would go on
//! to SIGTERM. A handled signal, by contrast, is reset to its default in a new program. So
//! when this process ignores SIGINT, it handles it instead (with tokio's handler, which
//! does nothing with it, as ignoring did), and the programs it starts can be interrupted
//! again.

use std::sync::Once;

/// Makes sure programs started from now on receive SIGINT: see the module docs. Cheap
/// after the first call. Needs a tokio runtime.
pub(crate) fn let_programs_be_interrupted() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if !interrupt_ignored() {
            return;
        }
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
            // The handler stays installed for the life of the process.
            Ok(_) => tracing::info!(
                "this process ignored SIGINT (started in the background?); it now handles \
                 it, so the programs it runs can be interrupted"
            ),
            Err(error) => tracing::warn!(
                %error,
                "this process ignores SIGINT and could not handle it instead: programs it \
                 runs will ignore SIGINT, and cancels go on to SIGTERM"
            ),
        }
    });
}

/// Whether this process ignores SIGINT, from the `SigIgn` mask in `/proc/self/status`
/// (Linux). Elsewhere, `false`: nothing changes.
fn interrupt_ignored() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (nix::sys::signal::Signal::SIGINT as u64 - 1)) != 0)
}
