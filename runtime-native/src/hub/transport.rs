//! The core's [`Transport`] over tokio-tungstenite: plain TCP, or TLS with rustls.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use runtime_core::BoxFuture;
use runtime_core::sync::{Socket, Transport};
use tokio_tungstenite::tungstenite::Message;

/// Opens hub connections with tokio-tungstenite.
pub(super) struct Tungstenite {
    /// For `wss://`.
    pub(super) tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Transport for Tungstenite {
    fn connect<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Box<dyn Socket>, String>> {
        Box::pin(async move {
            let connector = match &self.tls {
                Some(config) => tokio_tungstenite::Connector::Rustls(config.clone()),
                None => tokio_tungstenite::Connector::Plain,
            };
            // `true`: no Nagle, which would hold small frames back for the peer's
            // delayed ack.
            let (stream, _) =
                tokio_tungstenite::connect_async_tls_with_config(url, None, true, Some(connector))
                    .await
                    .map_err(|error| error.to_string())?;
            Ok(Box::new(WebSocket(stream)) as Box<dyn Socket>)
        })
    }
}

struct WebSocket(Stream);

impl Socket for WebSocket {
    fn send(&mut self, text: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .send(Message::Text(text.into()))
                .await
                .map_err(|error| error.to_string())
        })
    }

    fn receive(&mut self) -> BoxFuture<'_, Option<Result<String, String>>> {
        Box::pin(async move {
            loop {
                match self.0.next().await? {
                    Ok(Message::Text(text)) => return Some(Ok(text.as_str().to_owned())),
                    Ok(Message::Close(_)) => return None,
                    // Pings are answered by tungstenite; binary frames are not ours.
                    Ok(_) => {}
                    Err(error) => return Some(Err(error.to_string())),
                }
            }
        })
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.0.close(None).await;
        })
    }
}
