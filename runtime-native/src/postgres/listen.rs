//! Live wake-ups: one connection per open store listens for the notifications commits
//! send, and wakes the readers of the notebook each one names. A notification is only a
//! wake-up; the tables are the truth, so a reader always reads after it, and after a lost
//! connection comes back every reader reads again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// The channel commits notify, with the notebook's id as the payload.
pub(super) const CHANNEL: &str = "runtime_agents";

/// The first pause before listening again after the connection was lost; it doubles up
/// to [`RELISTEN_CAP`].
const RELISTEN_FIRST: Duration = Duration::from_millis(50);
const RELISTEN_CAP: Duration = Duration::from_secs(2);

/// What wakes the readers of each notebook.
#[derive(Default)]
pub(super) struct Wakes(Mutex<HashMap<Arc<str>, Arc<Notify>>>);

impl Wakes {
    /// The wake-up of `notebook`'s readers.
    pub(super) fn of(&self, notebook: &Arc<str>) -> Arc<Notify> {
        let mut wakes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(wake) = wakes.get(notebook) {
            return wake.clone();
        }
        // Forget the notebooks no reader waits on any more, now and then, so a long-lived
        // hub does not keep one entry for every notebook it ever served.
        if wakes.len() >= 64 && wakes.len().is_power_of_two() {
            wakes.retain(|_, wake| Arc::strong_count(wake) > 1);
        }
        wakes.entry(notebook.clone()).or_default().clone()
    }

    /// Wakes the readers of `notebook`, if any.
    pub(super) fn wake(&self, notebook: &str) {
        let wakes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(wake) = wakes.get(notebook) {
            wake.notify_waiters();
        }
    }

    /// Wakes every reader: notifications may have been missed.
    fn wake_all(&self) {
        let wakes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for wake in wakes.values() {
            wake.notify_waiters();
        }
    }
}

/// The listening connection, kept open (and opened again when lost) until dropped.
pub(super) struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Listens on [`CHANNEL`]; returns once the server has confirmed it, so a reader that
    /// reads after this misses no commit.
    pub(super) async fn start(
        config: tokio_postgres::Config,
        wakes: Arc<Wakes>,
    ) -> Result<Self, tokio_postgres::Error> {
        let listening = Listening::open(&config, &wakes).await?;
        let task = tokio::spawn(keep_listening(config, wakes, listening));
        Ok(Self { task })
    }
}

/// One connection that listens, and the task that reads its notifications.
struct Listening {
    _client: Client,
    reader: JoinHandle<()>,
}

impl Listening {
    async fn open(
        config: &tokio_postgres::Config,
        wakes: &Arc<Wakes>,
    ) -> Result<Self, tokio_postgres::Error> {
        let (client, mut connection) = config.connect(NoTls).await?;
        let wakes = wakes.clone();
        // The connection's messages, notifications among them, arrive only while it is
        // polled: this task polls it for as long as it lives.
        let reader = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        wakes.wake(notification.payload());
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "the PostgreSQL listening connection failed");
                        return;
                    }
                }
            }
        });
        if let Err(error) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            reader.abort();
            return Err(error);
        }
        Ok(Self {
            _client: client,
            reader,
        })
    }
}

/// Opens the listening connection again whenever it ends, then wakes every reader to read
/// what was committed meanwhile.
async fn keep_listening(
    config: tokio_postgres::Config,
    wakes: Arc<Wakes>,
    mut listening: Listening,
) {
    loop {
        let _ = (&mut listening.reader).await;
        tracing::warn!("lost the PostgreSQL listening connection; reconnecting");
        let mut pause = RELISTEN_FIRST;
        listening = loop {
            tokio::time::sleep(pause).await;
            match Listening::open(&config, &wakes).await {
                Ok(listening) => break listening,
                Err(error) => {
                    tracing::debug!(%error, "listening again failed");
                    pause = (pause * 2).min(RELISTEN_CAP);
                }
            }
        };
        tracing::info!("listening again");
        wakes.wake_all();
    }
}
