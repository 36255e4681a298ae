//! A subscription's reading end.

use std::collections::VecDeque;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

use super::command::{Command, Page};
use crate::store::{LogEntry, StoreError};

/// A subscription's reading end: asks for the next page once it took one.
pub(super) struct Reader {
    sub: u64,
    commands: mpsc::Sender<Command>,
    received: mpsc::Receiver<Page>,
    buffered: VecDeque<LogEntry>,
    subscribe: Option<Command>,
    ended: bool,
}

impl Reader {
    /// The reader of subscription `sub`, which sends `subscribe` when first polled.
    pub(super) fn new(
        sub: u64,
        commands: mpsc::Sender<Command>,
        received: mpsc::Receiver<Page>,
        subscribe: Command,
    ) -> Self {
        Reader {
            sub,
            commands,
            received,
            buffered: VecDeque::new(),
            subscribe: Some(subscribe),
            ended: false,
        }
    }

    pub(super) async fn next(mut self) -> Option<(Result<LogEntry, StoreError>, Reader)> {
        if let Some(subscribe) = self.subscribe.take()
            && self.commands.send(subscribe).await.is_err()
        {
            self.ended = true;
            return Some((Err(StoreError::Closed), self));
        }
        loop {
            if let Some(entry) = self.buffered.pop_front() {
                return Some((Ok(entry), self));
            }
            if self.ended {
                return None;
            }
            match self.received.next().await {
                Some((generation, Ok(entries))) => {
                    self.buffered.extend(entries);
                    let more = Command::More {
                        sub: self.sub,
                        generation,
                    };
                    let _ = self.commands.send(more).await;
                }
                Some((_, Err(error))) => {
                    self.ended = true;
                    return Some((Err(error), self));
                }
                None => {
                    self.ended = true;
                    return Some((Err(StoreError::Closed), self));
                }
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self
            .commands
            .try_send(Command::Unsubscribe { sub: self.sub });
    }
}
