//! Answers to a cell's input requests, typed at the terminal (or piped in).

use std::io::{BufRead, IsTerminal};
use std::os::fd::AsFd;

use nix::sys::termios::{LocalFlags, SetArg, Termios, tcgetattr, tcsetattr};
use tokio::sync::oneshot;

/// The longest answer read, in bytes: an input line, not a file.
const MAX_ANSWER: u64 = 64 * 1024;

/// One line being read from stdin on a thread of its own (a read cannot be cancelled, and
/// a thread left reading ends with the process). With `hidden`, what is typed is not echoed
/// while stdin is a terminal; dropping the question turns echo back on.
pub struct Question {
    answer: oneshot::Receiver<std::io::Result<String>>,
    restore: Option<Termios>,
}

impl Question {
    /// Starts reading one line; `hidden` for a password.
    pub fn ask(hidden: bool) -> Question {
        let restore = if hidden { echo_off() } else { None };
        let (send, answer) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = send.send(read_line());
        });
        Question { answer, restore }
    }

    /// The line, without its line ending; an error if stdin ended or failed.
    pub async fn answer(&mut self) -> std::io::Result<String> {
        let answer = (&mut self.answer)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::BrokenPipe.into()));
        if self.restore.is_some() {
            // The typed line was not echoed: end it for the terminal.
            eprintln!();
        }
        answer
    }
}

impl Drop for Question {
    fn drop(&mut self) {
        if let Some(original) = self.restore.take() {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &original);
        }
    }
}

/// Turns the terminal's echo off; returns the settings to restore, or `None` when stdin
/// is not a terminal (a piped answer has nothing to hide).
fn echo_off() -> Option<Termios> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    let original = tcgetattr(stdin.as_fd()).ok()?;
    let mut quiet = original.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet).ok()?;
    Some(original)
}

fn read_line() -> std::io::Result<String> {
    let mut line = String::new();
    let read = std::io::Read::take(std::io::stdin().lock(), MAX_ANSWER).read_line(&mut line)?;
    if read == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "stdin ended before an answer",
        ));
    }
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}
