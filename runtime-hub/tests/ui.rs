//! The web UI's routes over real HTTP: the page with its content security policy, its
//! script and style, and the wasm package's module (the real one when the binary carries
//! it, else one that says how to build the hub with it); nothing else is served.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use runtime_core::MemoryCatalog;
use runtime_hub::Hub;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn serve() -> String {
    let hub = Hub::new(Arc::new(MemoryCatalog::new()), Arc::new(support::Tokens));
    let app = hub.router().merge(runtime_hub::ui::router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// `GET path`: the status, the headers (lowercase) and the body.
async fn get(address: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        head.to_lowercase(),
        body.to_owned(),
    )
}

#[tokio::test]
async fn the_hub_serves_its_page_script_style_and_wasm_package() {
    let address = serve().await;
    let (status, head, page) = get(&address, "/").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        page.contains("script-src 'self' 'wasm-unsafe-eval'"),
        "the page allows its own scripts only"
    );
    assert!(page.contains(r#"src="/ui/app.js""#));
    let (status, head, script) = get(&address, "/ui/app.js").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(
        script.contains("NotebookView"),
        "the page folds with the core's view"
    );
    let (status, head, _) = get(&address, "/ui/style.css").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/css"), "{head}");
    let (status, _, module) = get(&address, "/ui/pkg/runtime_wasm.js").await;
    assert_eq!(status, 200);
    if runtime_hub::ui::has_package() {
        assert!(module.contains("class NotebookView"), "the real package");
        let (status, head, _) = get(&address, "/ui/pkg/runtime_wasm_bg.wasm").await;
        assert_eq!(status, 200);
        assert!(head.contains("content-type: application/wasm"), "{head}");
    } else {
        assert!(
            module.contains("scripts/hub"),
            "without its package, the page says how to get it: {module}"
        );
    }
    for missing in [
        "/ui/pkg/nothing.js",
        "/ui/index.html.bak",
        "/ui/pkg/..%2F..%2FCargo.toml",
        "/ui/../Cargo.toml",
    ] {
        assert_eq!(get(&address, missing).await.0, 404, "{missing}");
    }
}
