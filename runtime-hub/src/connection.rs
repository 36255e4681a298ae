//! One client connection: hello, then subscriptions paced by the client, commits checked
//! against the connection's identity, lists and heartbeats.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use runtime_core::sync::{ClientFrame, ErrorCode, HubFrame, PAGE_ENTRIES, PROTOCOL};
use runtime_core::{BatchId, Event, RetryPolicy, Retrying, Seq, Store, StoreError};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::Shared;
use crate::identity::Identity;
use crate::snapshots;

/// How long a client has to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// Frames waiting for the socket; when full, the connection's reader waits (backpressure
/// on commits) and subscriptions wait for their turn.
const OUTBOX: usize = 16;
/// Pages a subscription may have on their way to the client before it asks for more.
const PAGES_IN_FLIGHT: usize = 2;
/// The most subscriptions one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 64;
/// Snapshot requests one connection may have in flight.
const SNAPSHOTS_AT_ONCE: usize = 2;
/// How long a subscription's reads are retried while the store fails retriably, before
/// the client is told.
const READS_RETRIED_FOR: Duration = Duration::from_secs(30);

/// Serves one WebSocket until the client goes.
pub(crate) async fn serve(shared: Arc<Shared>, socket: WebSocket) {
    let (mut sink, frames) = socket.split();
    let (outbox, mut outgoing) = mpsc::channel::<HubFrame>(OUTBOX);
    let write = async move {
        while let Some(frame) = outgoing.recv().await {
            let Ok(text) = serde_json::to_string(&frame) else {
                tracing::warn!("a hub frame could not be encoded");
                continue;
            };
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    };
    tokio::join!(read(shared, frames, outbox), write);
}

fn error(
    req: Option<u64>,
    sub: Option<u64>,
    code: ErrorCode,
    message: impl Into<String>,
) -> HubFrame {
    HubFrame::Error {
        req,
        sub,
        code,
        message: message.into(),
    }
}

/// The notebook a frame names, and the request or subscription an answer refers to.
fn names_notebook(frame: &ClientFrame) -> Option<(&str, Option<u64>, Option<u64>)> {
    match frame {
        ClientFrame::Subscribe { sub, notebook, .. } => Some((notebook, None, Some(*sub))),
        ClientFrame::Commit { req, notebook, .. }
        | ClientFrame::Head { req, notebook }
        | ClientFrame::Snapshot { req, notebook, .. } => Some((notebook, Some(*req), None)),
        ClientFrame::Hello { .. }
        | ClientFrame::More { .. }
        | ClientFrame::Unsubscribe { .. }
        | ClientFrame::List { .. }
        | ClientFrame::Create { .. }
        | ClientFrame::Ping { .. } => None,
    }
}

/// Decodes a client frame; a bad one is described by where it went wrong, never by what
/// it held (a hello's token, say).
fn decode(text: &str) -> Result<ClientFrame, String> {
    serde_json::from_str(text).map_err(|error| {
        format!(
            "not a client frame ({:?} error at column {})",
            error.classify(),
            error.column()
        )
    })
}

async fn hello(
    shared: &Shared,
    frames: &mut futures::stream::SplitStream<WebSocket>,
) -> Result<Identity, String> {
    let first = tokio::time::timeout(HELLO_WITHIN, frames.next()).await;
    let Ok(Some(Ok(Message::Text(text)))) = first else {
        return Err("the first frame must be hello, within 10 s".to_owned());
    };
    match decode(&text)? {
        ClientFrame::Hello { protocol, .. } if protocol != PROTOCOL => Err(format!(
            "protocol {protocol} is not spoken here; this hub speaks {PROTOCOL}"
        )),
        ClientFrame::Hello { token, .. } => shared
            .authenticator
            .authenticate(&token)
            .ok_or_else(|| "the token is not valid".to_owned()),
        _ => Err("the first frame must be hello".to_owned()),
    }
}

async fn read(
    shared: Arc<Shared>,
    mut frames: futures::stream::SplitStream<WebSocket>,
    outbox: mpsc::Sender<HubFrame>,
) {
    let identity = match hello(&shared, &mut frames).await {
        Ok(identity) => identity,
        Err(why) => {
            tracing::info!(%why, "refused a connection");
            let _ = outbox
                .send(error(None, None, ErrorCode::Unauthorized, why))
                .await;
            return;
        }
    };
    let span = tracing::info_span!("connection", identity = %identity.id, role = ?identity.role);
    tracing::Instrument::instrument(identified(shared, frames, outbox, identity), span).await;
}

/// Serves an authenticated connection.
async fn identified(
    shared: Arc<Shared>,
    mut frames: futures::stream::SplitStream<WebSocket>,
    outbox: mpsc::Sender<HubFrame>,
    identity: Identity,
) {
    tracing::info!("connected");
    let send = |frame: HubFrame| {
        let outbox = outbox.clone();
        async move { outbox.send(frame).await.is_ok() }
    };
    if !send(HubFrame::Welcome {
        identity: identity.id.clone(),
        role: identity.role,
        protocol: PROTOCOL,
    })
    .await
    {
        return;
    }
    let mut subscriptions: HashMap<u64, (JoinHandle<()>, Arc<Semaphore>)> = HashMap::new();
    let snapshot_permits = Arc::new(Semaphore::new(SNAPSHOTS_AT_ONCE));
    while let Some(message) = frames.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(Message::Binary(_)) => {
                send(error(
                    None,
                    None,
                    ErrorCode::BadFrame,
                    "frames are JSON text",
                ))
                .await;
                continue;
            }
            Ok(_) => continue,
        };
        let frame = match decode(&text) {
            Ok(frame) => frame,
            Err(why) => {
                if !send(error(None, None, ErrorCode::BadFrame, why)).await {
                    break;
                }
                continue;
            }
        };
        if let Some((notebook, req, sub)) = names_notebook(&frame)
            && let Err(why) = identity.may_use(notebook)
        {
            if !send(error(req, sub, ErrorCode::Forbidden, why)).await {
                break;
            }
            continue;
        }
        let reply = match frame {
            ClientFrame::Hello { .. } => Some(error(
                None,
                None,
                ErrorCode::BadFrame,
                "hello was said already",
            )),
            ClientFrame::Subscribe {
                sub,
                notebook,
                from,
            } => {
                if subscriptions.contains_key(&sub) {
                    Some(error(
                        None,
                        Some(sub),
                        ErrorCode::BadFrame,
                        "this subscription number is in use",
                    ))
                } else if subscriptions.len() >= MAX_SUBSCRIPTIONS {
                    Some(error(
                        None,
                        Some(sub),
                        ErrorCode::BadFrame,
                        format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
                    ))
                } else {
                    match shared.catalog.open(&notebook) {
                        Ok(store) => {
                            // Reads ride out a store that fails for a moment (a database
                            // restarting): the notebook's feed and this subscription's
                            // history resume where they were instead of ending.
                            let store: Arc<dyn Store> = Arc::new(Retrying::new(
                                store,
                                shared.clock.clone(),
                                RetryPolicy::giving_up_after(READS_RETRIED_FOR),
                            ));
                            let credit = Arc::new(Semaphore::new(PAGES_IN_FLIGHT));
                            let task = tokio::spawn(pump(
                                shared.clone(),
                                notebook,
                                store,
                                sub,
                                from,
                                outbox.clone(),
                                credit.clone(),
                            ));
                            subscriptions.insert(sub, (task, credit));
                            None
                        }
                        Err(why) => Some(store_failure(None, Some(sub), &why)),
                    }
                }
            }
            ClientFrame::More { sub } => {
                if let Some((_, credit)) = subscriptions.get(&sub) {
                    // A client cannot build up more credit than the window.
                    if credit.available_permits() < PAGES_IN_FLIGHT {
                        credit.add_permits(1);
                    }
                }
                None
            }
            ClientFrame::Unsubscribe { sub } => {
                if let Some((task, _)) = subscriptions.remove(&sub) {
                    task.abort();
                }
                None
            }
            ClientFrame::Commit {
                req,
                notebook,
                batch,
                events,
            } => Some(commit(&shared, &identity, req, &notebook, batch, events).await),
            ClientFrame::Head { req, notebook } => Some(
                match async { shared.catalog.open(&notebook)?.head().await }.await {
                    Ok(seq) => HubFrame::Head { req, seq },
                    Err(why) => store_failure(Some(req), None, &why),
                },
            ),
            // Making a snapshot may fold many entries: off this loop, so the connection's
            // other frames are not kept waiting; at most SNAPSHOTS_AT_ONCE per connection.
            ClientFrame::Snapshot {
                req,
                notebook,
                kind,
            } => match snapshot_permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (shared, outbox) = (shared.clone(), outbox.clone());
                    tokio::spawn(async move {
                        let latest = async {
                            let store = shared.catalog.open(&notebook)?;
                            snapshots::latest(&*store, &notebook, kind, &shared.making).await
                        };
                        let reply = match latest.await {
                            Ok(snapshot) => HubFrame::Snapshot { req, snapshot },
                            Err(why) => store_failure(Some(req), None, &why),
                        };
                        let _ = outbox.send(reply).await;
                        drop(permit);
                    });
                    None
                }
                Err(_) => Some(error(
                    Some(req),
                    None,
                    ErrorCode::Unavailable,
                    format!("at most {SNAPSHOTS_AT_ONCE} snapshot requests at once; try again"),
                )),
            },
            ClientFrame::Create {
                req,
                notebook,
                title,
            } => Some(match shared.create(&identity, notebook, title).await {
                Ok(notebook) => HubFrame::Created { req, notebook },
                Err((code, why)) => error(Some(req), None, code, why),
            }),
            ClientFrame::List { req } => Some(match shared.catalog.notebooks().await {
                Ok(mut notebooks) => {
                    notebooks.retain(|notebook| identity.notebooks.allows(&notebook.id));
                    HubFrame::Notebooks { req, notebooks }
                }
                Err(why) => store_failure(Some(req), None, &why),
            }),
            ClientFrame::Ping { req } => Some(HubFrame::Pong { req }),
        };
        if let Some(reply) = reply
            && !send(reply).await
        {
            break;
        }
    }
    for (task, _) in subscriptions.into_values() {
        task.abort();
    }
    tracing::info!("disconnected");
}

/// An error frame for a store's error ([`ErrorCode::split`]).
fn store_failure(req: Option<u64>, sub: Option<u64>, why: &StoreError) -> HubFrame {
    let (code, message) = ErrorCode::split(why);
    error(req, sub, code, message)
}

async fn commit(
    shared: &Shared,
    identity: &Identity,
    req: u64,
    notebook: &str,
    batch: BatchId,
    events: Vec<Arc<Event>>,
) -> HubFrame {
    match shared.commit(identity, notebook, batch, events).await {
        Ok(seq) => HubFrame::Committed { req, seq },
        Err((code, why)) => error(Some(req), None, code, why),
    }
}

/// Sends a subscription's entries a page at a time, at most [`PAGES_IN_FLIGHT`] pages
/// ahead of the client's `more`s: a slow client costs two pages, however far behind, and a
/// live one gets each new entry without waiting for a `more` to come back.
///
/// Live entries come from the notebook's shared feed (one store reader for all its
/// followers); history, and whatever a slow client fell behind by, from the store.
async fn pump(
    shared: Arc<Shared>,
    notebook: String,
    store: Arc<dyn Store>,
    sub: u64,
    from: Seq,
    outbox: mpsc::Sender<HubFrame>,
    credit: Arc<Semaphore>,
) {
    let mut entries = match shared.feeds.follower(&notebook, store, from).await {
        Ok(follower) => follower,
        Err(why) => {
            let _ = outbox.send(store_failure(None, Some(sub), &why)).await;
            return;
        }
    };
    loop {
        let mut page = Vec::new();
        let mut failed = None;
        match entries.next().await {
            Ok(entry) => page.push(entry),
            Err(why) => failed = Some(why),
        }
        while failed.is_none() && !page.is_empty() && page.len() < PAGE_ENTRIES {
            match entries.next_ready() {
                Some(Ok(entry)) => page.push(entry),
                Some(Err(why)) => failed = Some(why),
                None => break,
            }
        }
        if !page.is_empty() {
            match credit.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return,
            }
            if outbox
                .send(HubFrame::Entries { sub, entries: page })
                .await
                .is_err()
            {
                return;
            }
        }
        if let Some(why) = failed {
            let _ = outbox.send(store_failure(None, Some(sub), &why)).await;
            return;
        }
    }
}
