//! What a [`HubStore`](super::HubStore) needs from the platform: a way to open a WebSocket.
//! The native adapter gives it tokio-tungstenite; the browser adapter, the page's
//! `WebSocket`. Everything else (hello, resuming, retrying, heartbeats) is the core's.

use crate::maybe_send::{BoxFuture, MaybeSend, MaybeSync};

/// Opens WebSocket connections to a hub.
pub trait Transport: MaybeSend + MaybeSync + 'static {
    /// Connects to `url` (`ws://…` or `wss://…`). The error says why not, for people; it
    /// must not hold a secret.
    fn connect<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Box<dyn Socket>, String>>;
}

/// One open WebSocket connection, carrying text frames.
pub trait Socket: MaybeSend {
    /// Sends one text frame.
    fn send(&mut self, text: String) -> BoxFuture<'_, Result<(), String>>;

    /// The next text frame; `None` once the connection is closed, an error if it broke.
    /// Frames of other kinds are the transport's business (answering pings) and never
    /// returned. Dropping the future before it finishes loses no frame.
    fn receive(&mut self) -> BoxFuture<'_, Option<Result<String, String>>>;

    /// Closes the connection politely.
    fn close(&mut self) -> BoxFuture<'_, ()>;
}
