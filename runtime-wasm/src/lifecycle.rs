//! The page's lifecycle: leaving the page (`pagehide`, `beforeunload`) ends the session. A
//! merely hidden tab (`visibilitychange`) does not.

use wasm_bindgen::prelude::*;
use web_sys::{Event, Window};

const LEAVE_EVENTS: [&str; 2] = ["pagehide", "beforeunload"];

/// Listeners on the window; removed when dropped.
pub(crate) struct PageLifecycle {
    window: Window,
    listener: Closure<dyn FnMut(Event)>,
}

impl PageLifecycle {
    /// Calls `on_leave` (once) when the page is left; `None` outside a page (Node, workers).
    pub(crate) fn attach(on_leave: impl FnOnce() + 'static) -> Option<PageLifecycle> {
        let window = web_sys::window()?;
        let mut on_leave = Some(on_leave);
        let listener = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            if let Some(on_leave) = on_leave.take() {
                on_leave();
            }
        });
        for event in LEAVE_EVENTS {
            if let Err(error) =
                window.add_event_listener_with_callback(event, listener.as_ref().unchecked_ref())
            {
                tracing::warn!(
                    ?error,
                    event,
                    "cannot listen for page events; leaving the page will not end the session"
                );
            }
        }
        Some(PageLifecycle { window, listener })
    }
}

impl Drop for PageLifecycle {
    fn drop(&mut self) {
        for event in LEAVE_EVENTS {
            let _ = self
                .window
                .remove_event_listener_with_callback(event, self.listener.as_ref().unchecked_ref());
        }
    }
}
