//! The browser adapter for runtime agents: a runtime agent inside a web page, plugged into
//! the store the page already owns.
//!
//! ```js
//! import init, { createBrowserRuntimeAgent, MemoryStore } from "./pkg/runtime_wasm.js";
//! await init();
//! const store = new MemoryStore();                       // or the app's own store
//! const agent = createBrowserRuntimeAgent(store, { canExecuteCode: true }, { clientId: user.sub });
//! agent.onExecution(async (ctx) => {
//!   ctx.stdout("working\n");
//!   return { result: { "text/plain": `Echo: ${ctx.source}` } };
//! });
//! await agent.start();
//! ```
//!
//! Everything here is thin: the store bridge (`JsStore`), the handler bridge, page
//! lifecycle, configuration from the page, console logging. The logic is `runtime-core`'s.
// docs.rs labels feature-gated items with the feature that enables them.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg(target_arch = "wasm32")]

mod agent;
mod clock;
mod config;
mod context;
mod error;
mod handler;
mod hub_store;
mod js_store;
mod lifecycle;
mod logging;
mod memory_store;
mod view;
mod websocket;

pub use agent::{BrowserRuntimeAgent, create_browser_runtime_agent};
pub use clock::BrowserClock;
pub use context::{JsExecutionContext, input_reply};
pub use hub_store::JsHubStore;
pub use js_store::{JsStore, RuntimeStore};
pub use memory_store::JsMemoryStore;
pub use view::JsNotebookView;
