//! The connection task behind a [`HubStore`](super::HubStore): connects, says hello,
//! serves commands and frames, and after a loss reconnects with backoff and redoes what
//! was unfinished. It owns no socket type and no timer: the [`Transport`] and the
//! [`Clock`] it was given do that.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either};
use futures::{FutureExt, StreamExt, select_biased};

use super::HubOptions;
use super::command::{Command, Page, Query};
use super::transport::{Socket, Transport};
use super::watch::{ConnectionState, StatePublisher};
use crate::clock::{Clock, format_duration};
use crate::state::Seq;
use crate::store::{Batch, LogEntry, StoreError};
use crate::sync::{BearerToken, ClientFrame, ErrorCode, HubFrame, PROTOCOL};

/// A subscription as the connection task keeps it.
struct Subscribed {
    notebook: String,
    /// The next sequence number to deliver.
    next: Seq,
    pages: mpsc::Sender<Page>,
}

/// A commit waiting for its answer.
struct Pending {
    notebook: String,
    batch: Batch,
    reply: oneshot::Sender<Result<Seq, StoreError>>,
}

/// The connection task's state: everything it must redo after a reconnect.
pub(super) struct Connection {
    url: String,
    transport: Box<dyn Transport>,
    clock: Arc<dyn Clock>,
    token: BearerToken,
    options: HubOptions,
    state: StatePublisher,
    /// Commits by request number, in the order they were made.
    commits: BTreeMap<u64, Pending>,
    subscriptions: HashMap<u64, Subscribed>,
    queries: HashMap<u64, Query>,
    next_req: u64,
    /// Counts connections, so a `more` for a page of an older one is not sent.
    generation: u64,
    /// Set once the hub refused the token: every call fails with it.
    failed: Option<String>,
    random: u64,
}

/// Why a connection ended.
enum Ended {
    /// Every `HubStore` is gone.
    Dropped,
    /// Lost or not made: try again.
    Lost(String),
    /// The hub refused the token.
    Refused(String),
}

impl Connection {
    /// The task for `url`, not yet connected.
    pub(super) fn new(
        url: String,
        transport: Box<dyn Transport>,
        clock: Arc<dyn Clock>,
        token: BearerToken,
        options: HubOptions,
        state: StatePublisher,
    ) -> Self {
        Connection {
            url,
            transport,
            clock,
            token,
            options,
            state,
            commits: BTreeMap::new(),
            subscriptions: HashMap::new(),
            queries: HashMap::new(),
            next_req: 1,
            generation: 0,
            failed: None,
            // Jitter needs no cryptographic randomness, only a different seed per client.
            random: uuid::Uuid::new_v4().as_u64_pair().0 | 1,
        }
    }

    pub(super) async fn run(mut self, mut inbox: mpsc::Receiver<Command>) {
        let mut attempt: u32 = 0;
        loop {
            let ended = match self.connect().await {
                Ok((socket, identity)) => {
                    attempt = 0;
                    self.generation += 1;
                    tracing::info!(url = %self.url, %identity, "connected to the hub");
                    self.state.set(ConnectionState::Connected { identity });
                    self.serve(socket, &mut inbox).await
                }
                Err(ended) => ended,
            };
            match ended {
                Ended::Dropped => return,
                Ended::Refused(why) => {
                    tracing::warn!(url = %self.url, %why, "the hub refused the connection");
                    self.fail(why.clone());
                    self.state.set(ConnectionState::Failed(why));
                    // Answer every later call with the refusal until the stores are gone.
                    while let Some(command) = inbox.next().await {
                        self.refuse(command);
                    }
                    return;
                }
                Ended::Lost(error) => {
                    attempt = attempt.saturating_add(1);
                    let retry_in = self.backoff(attempt);
                    tracing::info!(url = %self.url, %error, retry_in = %format_duration(retry_in), "the hub connection is down; retrying");
                    self.state.set(ConnectionState::Reconnecting {
                        attempt,
                        retry_in,
                        error,
                    });
                    // Calls keep coming while the connection is down: queue them.
                    let mut wake = self.clock.sleep(retry_in).fuse();
                    loop {
                        select_biased! {
                            () = wake => break,
                            command = inbox.next() => match command {
                                Some(command) => {
                                    // Recorded, to be sent once connected.
                                    let _ = self.queue_frame(command);
                                }
                                None => return,
                            },
                        }
                    }
                }
            }
        }
    }

    /// The delay before attempt `attempt`: uniform below `base * 2^attempt`, capped.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let cap = self
            .options
            .backoff_base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.options.backoff_cap);
        // xorshift64*.
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        let fraction =
            (self.random.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        cap.mul_f64(fraction)
    }

    /// `work`, or `Err(Ended::Lost(why))` if it takes longer than three heartbeats.
    async fn within_heartbeats<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, Ended>>,
        why: &str,
    ) -> Result<T, Ended> {
        let limit = self.clock.sleep(self.options.heartbeat * 3);
        match future::select(std::pin::pin!(work), limit).await {
            Either::Left((done, _)) => done,
            Either::Right(((), _)) => Err(Ended::Lost(why.to_owned())),
        }
    }

    async fn connect(&mut self) -> Result<(Box<dyn Socket>, String), Ended> {
        let connecting = async {
            self.transport
                .connect(&self.url)
                .await
                .map_err(|error| Ended::Lost(format!("cannot connect: {error}")))
        };
        let mut socket = self
            .within_heartbeats(connecting, "connecting timed out")
            .await?;
        let hello = ClientFrame::Hello {
            token: self.token.clone(),
            protocol: PROTOCOL,
        };
        send(socket.as_mut(), &hello).await.map_err(Ended::Lost)?;
        let answer = async { next_frame(socket.as_mut()).await.map_err(Ended::Lost) };
        let answer = self
            .within_heartbeats(answer, "the hub did not answer hello")
            .await?;
        match answer {
            HubFrame::Welcome { identity, .. } => Ok((socket, identity)),
            HubFrame::Error {
                code: ErrorCode::Unauthorized,
                message,
                ..
            } => Err(Ended::Refused(message)),
            HubFrame::Error { message, .. } => {
                Err(Ended::Lost(format!("the hub refused hello: {message}")))
            }
            _ => Err(Ended::Lost(
                "the hub answered hello with another frame than welcome".to_owned(),
            )),
        }
    }

    /// Redoes what the last connection left unfinished, then serves until it is lost.
    async fn serve(
        &mut self,
        mut socket: Box<dyn Socket>,
        inbox: &mut mpsc::Receiver<Command>,
    ) -> Ended {
        let mut resend = Vec::new();
        for (&sub, subscribed) in &self.subscriptions {
            resend.push(ClientFrame::Subscribe {
                sub,
                notebook: subscribed.notebook.clone(),
                from: subscribed.next,
            });
        }
        for (&req, pending) in &self.commits {
            resend.push(commit_frame(req, pending));
        }
        for (&req, query) in &self.queries {
            resend.push(query.frame(req));
        }
        for frame in resend {
            if let Err(error) = send(socket.as_mut(), &frame).await {
                return Ended::Lost(error);
            }
        }
        let heartbeat = self.options.heartbeat;
        let mut tick = self.clock.sleep(heartbeat).fuse();
        let mut heard = self.clock.now();
        loop {
            select_biased! {
                command = inbox.next() => {
                    let Some(command) = command else {
                        socket.close().await;
                        return Ended::Dropped;
                    };
                    if let Some(frame) = self.queue_frame(command)
                        && let Err(error) = send(socket.as_mut(), &frame).await {
                            return Ended::Lost(error);
                        }
                }
                frame = next_frame(socket.as_mut()).fuse() => {
                    heard = self.clock.now();
                    match frame {
                        Ok(frame) => self.receive(frame),
                        Err(error) => return Ended::Lost(error),
                    }
                }
                () = tick => {
                    if self.clock.now().saturating_since(heard) > heartbeat * 3 {
                        return Ended::Lost("no frame from the hub for three heartbeats".to_owned());
                    }
                    let ping = ClientFrame::Ping { req: self.req() };
                    if let Err(error) = send(socket.as_mut(), &ping).await {
                        return Ended::Lost(error);
                    }
                    tick = self.clock.sleep(heartbeat).fuse();
                }
            }
        }
    }

    fn req(&mut self) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        req
    }

    /// Records a call; returns the frame to send now, if connected.
    fn queue_frame(&mut self, command: Command) -> Option<ClientFrame> {
        if self.failed.is_some() {
            self.refuse(command);
            return None;
        }
        match command {
            Command::Commit {
                notebook,
                batch,
                reply,
            } => {
                if self.commits.len() >= self.options.commit_buffer {
                    let _ = reply.send(Err(StoreError::Unavailable(format!(
                        "{} batches already wait for the hub (the commit buffer is full)",
                        self.commits.len()
                    ))));
                    return None;
                }
                let req = self.req();
                let pending = Pending {
                    notebook,
                    batch,
                    reply,
                };
                let frame = commit_frame(req, &pending);
                self.commits.insert(req, pending);
                Some(frame)
            }
            Command::Subscribe {
                sub,
                notebook,
                from,
                pages,
            } => {
                self.subscriptions.insert(
                    sub,
                    Subscribed {
                        notebook: notebook.clone(),
                        next: from,
                        pages,
                    },
                );
                Some(ClientFrame::Subscribe {
                    sub,
                    notebook,
                    from,
                })
            }
            Command::More { sub, generation } => (generation == self.generation
                && self.subscriptions.contains_key(&sub))
            .then_some(ClientFrame::More { sub }),
            Command::Unsubscribe { sub } => self
                .subscriptions
                .remove(&sub)
                .map(|_| ClientFrame::Unsubscribe { sub }),
            Command::Query(query) => {
                let req = self.req();
                let frame = query.frame(req);
                self.queries.insert(req, query);
                Some(frame)
            }
        }
    }

    fn receive(&mut self, frame: HubFrame) {
        match frame {
            HubFrame::Entries { sub, entries } => {
                let Some(subscribed) = self.subscriptions.get_mut(&sub) else {
                    return;
                };
                // Never deliver an entry twice, whatever the hub sends.
                let entries: Vec<LogEntry> = entries
                    .into_iter()
                    .filter(|entry| entry.seq >= subscribed.next)
                    .collect();
                if let Some(last) = entries.last() {
                    subscribed.next = last.seq + 1;
                }
                if subscribed
                    .pages
                    .try_send((self.generation, Ok(entries)))
                    .is_err()
                {
                    tracing::warn!(sub, "a subscription's reader is gone or behind; ending it");
                    self.subscriptions.remove(&sub);
                }
            }
            HubFrame::Committed { req, seq } => {
                if let Some(pending) = self.commits.remove(&req) {
                    let _ = pending.reply.send(Ok(seq));
                }
            }
            HubFrame::Created { req, notebook } => {
                if let Some(Query::Create { reply, .. }) = self.queries.remove(&req) {
                    let _ = reply.send(Ok(notebook));
                }
            }
            HubFrame::Notebooks { req, notebooks } => {
                if let Some(Query::List(reply)) = self.queries.remove(&req) {
                    let _ = reply.send(Ok(notebooks));
                }
            }
            HubFrame::Head { req, seq } => {
                if let Some(Query::Head { reply, .. }) = self.queries.remove(&req) {
                    let _ = reply.send(Ok(seq));
                }
            }
            HubFrame::Snapshot { req, snapshot } => {
                if let Some(Query::Snapshot { reply, .. }) = self.queries.remove(&req) {
                    let _ = reply.send(Ok(snapshot));
                }
            }
            HubFrame::Error {
                req,
                sub,
                code,
                message,
            } => {
                let error = || code.into_store_error(message.clone());
                if let Some(req) = req {
                    if let Some(pending) = self.commits.remove(&req) {
                        let _ = pending.reply.send(Err(error()));
                    } else if let Some(query) = self.queries.remove(&req) {
                        query.fail(error());
                    }
                }
                if let Some(mut subscribed) = sub.and_then(|sub| self.subscriptions.remove(&sub)) {
                    let _ = subscribed.pages.try_send((self.generation, Err(error())));
                }
                if req.is_none() && sub.is_none() {
                    tracing::warn!(?code, %message, "the hub reported an error");
                }
            }
            HubFrame::Pong { .. } | HubFrame::Welcome { .. } => {}
        }
    }

    /// Fails everything waiting with the hub's refusal.
    fn fail(&mut self, why: String) {
        self.failed = Some(why.clone());
        let error = || StoreError::Backend(format!("the hub refused the connection: {why}"));
        for (_, pending) in std::mem::take(&mut self.commits) {
            let _ = pending.reply.send(Err(error()));
        }
        for (_, query) in std::mem::take(&mut self.queries) {
            query.fail(error());
        }
        for (_, mut subscribed) in std::mem::take(&mut self.subscriptions) {
            let _ = subscribed.pages.try_send((self.generation, Err(error())));
        }
    }

    fn refuse(&mut self, command: Command) {
        let why = self.failed.clone().unwrap_or_default();
        let error = StoreError::Backend(format!("the hub refused the connection: {why}"));
        match command {
            Command::Commit { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::Query(query) => query.fail(error),
            Command::Subscribe { mut pages, .. } => {
                let _ = pages.try_send((self.generation, Err(error)));
            }
            Command::More { .. } | Command::Unsubscribe { .. } => {}
        }
    }
}

fn commit_frame(req: u64, pending: &Pending) -> ClientFrame {
    ClientFrame::Commit {
        req,
        notebook: pending.notebook.clone(),
        batch: pending.batch.id.clone(),
        events: pending.batch.events.clone(),
    }
}

async fn send(socket: &mut dyn Socket, frame: &ClientFrame) -> Result<(), String> {
    let text = serde_json::to_string(frame).map_err(|error| error.to_string())?;
    socket
        .send(text)
        .await
        .map_err(|error| format!("the connection broke: {error}"))
}

/// The next hub frame; a frame that does not decode is logged and skipped.
async fn next_frame(socket: &mut dyn Socket) -> Result<HubFrame, String> {
    loop {
        match socket.receive().await {
            Some(Ok(text)) => match serde_json::from_str::<HubFrame>(&text) {
                Ok(frame) => return Ok(frame),
                Err(error) => {
                    tracing::warn!(kind = ?error.classify(), column = error.column(), "skipped a frame from the hub that does not decode");
                }
            },
            None => return Err("the hub closed the connection".to_owned()),
            Some(Err(error)) => return Err(format!("the connection broke: {error}")),
        }
    }
}
