//! The web UI the hub carries: a sign-in page, a dashboard of notebooks and a notebook page,
//! served at `/` with its files under `/ui/`. The page folds notebooks with the core's
//! reducer through the wasm package (`runtime-agents-wasm`), which the binary embeds when
//! it is built with `RUNTIME_HUB_UI_PKG` naming the package's directory (`scripts/hub`
//! does this); without it, the page says how to get it.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page and its script and style, always carried.
const INDEX: &str = include_str!("../ui/index.html");
const APP: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");

// The wasm package's files (`.js` and `.wasm`), as `&[(&str, &[u8])]`, when embedded.
#[cfg(hub_ui_package)]
include!(concat!(env!("OUT_DIR"), "/ui_package.rs"));
#[cfg(not(hub_ui_package))]
const PACKAGE: &[(&str, &[u8])] = &[];

/// What a page gets for the package's module when the binary carries none: the names the
/// page imports, and an `init` that fails saying how to build the hub with its UI.
const NO_PACKAGE: &str = "\
const why = 'this hub was built without its UI package: start it with scripts/hub, or build \
it with RUNTIME_HUB_UI_PKG=<dir of scripts/build-wasm>';
export default async function init() { throw new Error(why); }
export class HubStore {}
export class NotebookView {}
";

/// Whether this binary carries the UI's wasm package.
pub fn has_package() -> bool {
    !PACKAGE.is_empty()
}

/// The UI's routes: `GET /` and `GET /ui/{file}`, `GET /ui/pkg/{file}`. Mount them beside
/// [`Hub::router`](crate::Hub::router) at the root: the page talks to the hub's REST and
/// WebSocket routes there.
///
/// ```
/// # fn app(hub: runtime_hub::Hub) -> axum::Router {
/// hub.router().merge(runtime_hub::ui::router())
/// # }
/// ```
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX.as_bytes()) }),
        )
        .route("/ui/{file}", get(asset))
        .route("/ui/pkg/{file}", get(package))
}

async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => file("text/javascript; charset=utf-8", APP.as_bytes()),
        "style.css" => file("text/css; charset=utf-8", STYLE.as_bytes()),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn package(Path(name): Path<String>) -> Response {
    if let Some((_, bytes)) = PACKAGE.iter().find(|(file, _)| *file == name) {
        let kind = if name.ends_with(".wasm") {
            "application/wasm"
        } else {
            "text/javascript; charset=utf-8"
        };
        return file(kind, bytes);
    }
    if name == "runtime_wasm.js" {
        return file("text/javascript; charset=utf-8", NO_PACKAGE.as_bytes());
    }
    StatusCode::NOT_FOUND.into_response()
}

/// A file, never cached stale: the browser asks again (a new hub build serves new files).
fn file(kind: &'static str, bytes: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response()
}
