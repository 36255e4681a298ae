//! The core's [`Transport`] over the page's own `WebSocket`.

use futures::StreamExt;
use futures::channel::mpsc;
use runtime_core::BoxFuture;
use runtime_core::sync::{Socket, Transport};
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use crate::error::js_message;

/// Opens hub connections with the page's `WebSocket`.
pub(crate) struct PageWebSocket;

/// What a socket's event handlers report, in order.
enum Happened {
    Opened,
    Text(String),
    Closed(String),
}

impl Transport for PageWebSocket {
    fn connect<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Box<dyn Socket>, String>> {
        Box::pin(async move {
            let mut socket = PageSocket::open(url)?;
            // Dropped here (a timeout) or refused: `PageSocket`'s drop closes it.
            match socket.events.next().await {
                Some(Happened::Opened) => Ok(Box::new(socket) as Box<dyn Socket>),
                Some(Happened::Closed(why)) => Err(why),
                Some(Happened::Text(_)) | None => Err("the connection closed".to_owned()),
            }
        })
    }
}

/// One connection and the handlers that feed it. The browser buffers what the hub sends
/// (a page cannot refuse it); the hub's paging keeps that to two pages a subscription.
struct PageSocket {
    socket: WebSocket,
    events: mpsc::UnboundedReceiver<Happened>,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl PageSocket {
    fn open(url: &str) -> Result<PageSocket, String> {
        let socket = WebSocket::new(url).map_err(|error| js_message(&error))?;
        let (sender, events) = mpsc::unbounded();
        let on_open = Closure::<dyn FnMut()>::new({
            let sender = sender.clone();
            move || {
                let _ = sender.unbounded_send(Happened::Opened);
            }
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
            let sender = sender.clone();
            move |event: MessageEvent| {
                // Binary frames are not part of the protocol.
                if let Some(text) = event.data().as_string() {
                    let _ = sender.unbounded_send(Happened::Text(text));
                }
            }
        });
        // An error event is always followed by a close event, which says more.
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let reason = event.reason();
            let why = match reason.is_empty() {
                true => format!("closed (code {})", event.code()),
                false => format!("closed (code {}: {reason})", event.code()),
            };
            let _ = sender.unbounded_send(Happened::Closed(why));
        });
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(PageSocket {
            socket,
            events,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }
}

impl Socket for PageSocket {
    fn send(&mut self, text: String) -> BoxFuture<'_, Result<(), String>> {
        let sent = self
            .socket
            .send_with_str(&text)
            .map_err(|error| js_message(&error));
        Box::pin(async move { sent })
    }

    fn receive(&mut self) -> BoxFuture<'_, Option<Result<String, String>>> {
        Box::pin(async move {
            loop {
                match self.events.next().await? {
                    Happened::Text(text) => return Some(Ok(text)),
                    Happened::Closed(why) => return Some(Err(why)),
                    Happened::Opened => {}
                }
            }
        })
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        let _ = self.socket.close();
        Box::pin(async {})
    }
}

impl Drop for PageSocket {
    fn drop(&mut self) {
        // The handlers go with this value: detach them before the browser calls them.
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close();
    }
}
