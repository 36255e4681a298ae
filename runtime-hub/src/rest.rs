//! REST for simple clients: the notebooks, a notebook's cells with their latest outputs
//! and status, its events from a sequence number, a commit, and a live event stream
//! (server-sent events). Every route wants `Authorization: Bearer <token>`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use runtime_core::sync::{BearerToken, ErrorCode};
use runtime_core::{
    BatchId, Event, LogEntry, NotebookWatcher, Seq, SnapshotKind, Store, StoreError,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Shared;
use crate::identity::Identity;

/// The most entries one `GET …/events` returns.
pub const MAX_EVENTS_PER_READ: usize = 1000;

/// A refused or failed request, as JSON with a status code.
pub(crate) struct Refused(StatusCode, ErrorCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let Refused(status, code, message) = self;
        (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    }
}

impl From<(ErrorCode, String)> for Refused {
    fn from((code, message): (ErrorCode, String)) -> Self {
        let status = match code {
            ErrorCode::Invalid | ErrorCode::BadFrame => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Backend | ErrorCode::Closed => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refused(status, code, message)
    }
}

impl From<StoreError> for Refused {
    fn from(error: StoreError) -> Self {
        (ErrorCode::of(&error), error.to_string()).into()
    }
}

/// The identity of the request's bearer token.
fn identify(shared: &Shared, headers: &HeaderMap) -> Result<Identity, Refused> {
    let unauthorized = || {
        Refused(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "send Authorization: Bearer <token> with a valid token".to_owned(),
        )
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    shared
        .authenticator
        .authenticate(&BearerToken::new(token.trim()))
        .ok_or_else(unauthorized)
}

/// The identity of the request's bearer token, if it may use `notebook` (403 if not).
fn identify_for(shared: &Shared, headers: &HeaderMap, notebook: &str) -> Result<Identity, Refused> {
    let identity = identify(shared, headers)?;
    identity
        .may_use(notebook)
        .map_err(|why| Refused(StatusCode::FORBIDDEN, ErrorCode::Forbidden, why))?;
    Ok(identity)
}

/// `GET /notebooks`
pub(crate) async fn notebooks(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refused> {
    let identity = identify(&shared, &headers)?;
    let mut notebooks = shared.catalog.notebooks().await?;
    notebooks.retain(|notebook| identity.notebooks.allows(&notebook.id));
    Ok(Json(json!({ "notebooks": notebooks })))
}

/// What `POST /notebooks` takes: both fields optional.
#[derive(Deserialize)]
pub(crate) struct CreateBody {
    #[serde(default)]
    notebook: Option<String>,
    #[serde(default)]
    title: String,
}

/// `POST /notebooks` with `{"notebook": "<id, optional>", "title": "<optional>"}`: creates
/// it; answers `201 {"notebook": "<id>"}`.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, Json<Value>), Refused> {
    let identity = identify(&shared, &headers)?;
    let notebook = shared.create(&identity, body.notebook, body.title).await?;
    Ok((StatusCode::CREATED, Json(json!({ "notebook": notebook }))))
}

#[derive(Deserialize)]
pub(crate) struct Range {
    #[serde(default)]
    from: Option<Seq>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Reads `notebook` from `from` up to its head as it was when asked, at most `limit`.
async fn read(
    store: &dyn Store,
    from: Seq,
    limit: usize,
) -> Result<(Vec<LogEntry>, Seq), StoreError> {
    let head = store.head().await?;
    let mut entries = Vec::new();
    if from > head {
        return Ok((entries, head));
    }
    let mut log = store.subscribe(from);
    while entries.len() < limit {
        match log.next().await {
            Some(entry) => {
                let entry = entry?;
                let last = entry.seq >= head;
                entries.push(entry);
                if last {
                    break;
                }
            }
            None => break,
        }
    }
    Ok((entries, head))
}

/// `GET /notebooks/{id}/events?from=1&limit=256`
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    Path(notebook): Path<String>,
    Query(range): Query<Range>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refused> {
    identify_for(&shared, &headers, &notebook)?;
    let store = shared.catalog.open(&notebook)?;
    let limit = range.limit.unwrap_or(256).clamp(1, MAX_EVENTS_PER_READ);
    let (entries, head) = read(&*store, range.from.unwrap_or(1).max(1), limit).await?;
    Ok(Json(json!({ "entries": entries, "head": head })))
}

/// `GET /notebooks/{id}/cells`: each cell with its source, the status and execution count
/// of the execution it shows, and that execution's outputs.
pub(crate) async fn cells(
    State(shared): State<Arc<Shared>>,
    Path(notebook): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refused> {
    identify_for(&shared, &headers, &notebook)?;
    let store = shared.catalog.open(&notebook)?;
    let snapshot =
        crate::snapshots::latest(&*store, &notebook, SnapshotKind::Full, &shared.making).await?;
    let head = store.head().await?;
    let mut watcher = NotebookWatcher::from_snapshot(&*store, snapshot.as_ref());
    let state = watcher.wait_until(|state| state.last_seq() >= head).await?;
    let cells: Vec<Value> = state
        .cells()
        .map(|cell| {
            let shown = cell.shown_execution.as_ref().and_then(|id| state.entry(id));
            let status = shown.map(|entry| match entry.state.status() {
                Some(status) => json!(status),
                None => json!(match entry.state {
                    runtime_core::EntryState::Pending => "pending",
                    runtime_core::EntryState::Assigned { .. } => "assigned",
                    _ => "running",
                }),
            });
            json!({
                "cellId": cell.id,
                "cellType": cell.cell_type,
                "source": cell.source,
                "status": status,
                "executionCount": shown.and_then(|entry| entry.execution_count),
                "outputs": state.cell_outputs(&cell.id),
            })
        })
        .collect();
    Ok(Json(json!({ "cells": cells, "head": head })))
}

#[derive(Deserialize)]
pub(crate) struct CommitBody {
    #[serde(default)]
    batch: Option<BatchId>,
    events: Vec<Arc<Event>>,
}

/// `POST /notebooks/{id}/events` with `{"batch": "<id, optional>", "events": [...]}`.
pub(crate) async fn commit(
    State(shared): State<Arc<Shared>>,
    Path(notebook): Path<String>,
    headers: HeaderMap,
    Json(body): Json<CommitBody>,
) -> Result<Json<Value>, Refused> {
    let identity = identify(&shared, &headers)?;
    let batch = body.batch.unwrap_or_else(BatchId::next);
    let seq = shared
        .commit(&identity, &notebook, batch.clone(), body.events)
        .await?;
    Ok(Json(json!({ "seq": seq, "batch": batch })))
}

/// `GET /notebooks/{id}/stream?from=1`: every entry from `from` (or after the
/// `Last-Event-ID` a reconnecting browser sends), then live ones, as server-sent events
/// whose id is the sequence number.
pub(crate) async fn stream(
    State(shared): State<Arc<Shared>>,
    Path(notebook): Path<String>,
    Query(range): Query<Range>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Refused> {
    identify_for(&shared, &headers, &notebook)?;
    let store = shared.catalog.open(&notebook)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<Seq>().ok())
        .map(|last| last + 1);
    let from = resume.or(range.from).unwrap_or(1).max(1);
    // Live entries from the notebook's shared feed, as WebSocket subscriptions get them.
    let follower = shared.feeds.follower(&notebook, store, from).await?;
    // The stream ends after an error (the client reconnects with Last-Event-ID).
    let entries = futures::stream::unfold(Some(follower), |follower| async move {
        let mut follower = follower?;
        let entry = follower.next().await;
        let next = entry.is_ok().then_some(follower);
        Some((entry, next))
    });
    let events = entries.map(|entry| {
        Ok(match entry {
            Ok(entry) => SseEvent::default()
                .id(entry.seq.to_string())
                .event("entry")
                .data(serde_json::to_string(&entry).unwrap_or_default()),
            Err(error) => SseEvent::default().event("error").data(error.to_string()),
        })
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
