//! What a [`HubStore`](super::HubStore) asks its connection task to do.

use futures::channel::{mpsc, oneshot};

use crate::state::{Seq, Snapshot, SnapshotKind};
use crate::store::{Batch, LogEntry, NotebookInfo, StoreError};
use crate::sync::ClientFrame;

pub(super) enum Command {
    Commit {
        notebook: String,
        batch: Batch,
        reply: oneshot::Sender<Result<Seq, StoreError>>,
    },
    Subscribe {
        sub: u64,
        notebook: String,
        from: Seq,
        pages: mpsc::Sender<Page>,
    },
    More {
        sub: u64,
        generation: u64,
    },
    Unsubscribe {
        sub: u64,
    },
    Query(Query),
}

/// A request answered once: list the notebooks, read a notebook's head or its latest
/// snapshot.
pub(super) enum Query {
    List(oneshot::Sender<Result<Vec<NotebookInfo>, StoreError>>),
    Create {
        notebook: Option<String>,
        title: String,
        reply: oneshot::Sender<Result<String, StoreError>>,
    },
    Head {
        notebook: String,
        reply: oneshot::Sender<Result<Seq, StoreError>>,
    },
    Snapshot {
        notebook: String,
        kind: SnapshotKind,
        reply: oneshot::Sender<Result<Option<Snapshot>, StoreError>>,
    },
}

impl Query {
    pub(super) fn frame(&self, req: u64) -> ClientFrame {
        match self {
            Query::List(_) => ClientFrame::List { req },
            Query::Create {
                notebook, title, ..
            } => ClientFrame::Create {
                req,
                notebook: notebook.clone(),
                title: title.clone(),
            },
            Query::Head { notebook, .. } => ClientFrame::Head {
                req,
                notebook: notebook.clone(),
            },
            Query::Snapshot { notebook, kind, .. } => ClientFrame::Snapshot {
                req,
                notebook: notebook.clone(),
                kind: *kind,
            },
        }
    }

    pub(super) fn fail(self, error: StoreError) {
        match self {
            Query::List(reply) => {
                let _ = reply.send(Err(error));
            }
            Query::Head { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Query::Create { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Query::Snapshot { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// A page of a subscription, tagged with the connection it came on.
pub(super) type Page = (u64, Result<Vec<LogEntry>, StoreError>);
