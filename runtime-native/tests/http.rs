//! The HTTP backend against a real loopback server: the request it sends, streamed
//! chunked and sized bodies, errors with the body's first KiB, refused connections,
//! timeout and cancel; hostile servers (endless heads, chunk lines and error bodies, a
//! `100 Continue`, short bodies, junk framing) and https with a private CA.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use runtime_core::CompletionStatus;
use runtime_native::http::Http;
use support::{describe, ended, serve, text_of};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A loopback server that answers every request with `respond`, and reports each
/// request it received: its head and its JSON body.
async fn server<F, Fut>(
    respond: F,
) -> (String, mpsc::UnboundedReceiver<(String, serde_json::Value)>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/run", listener.local_addr().unwrap());
    let (bodies, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (respond, bodies) = (respond.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                let mut head = String::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    reader.read_line(&mut line).await.unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).await.unwrap();
                let _ = bodies.send((head, serde_json::from_slice(&body).unwrap()));
                respond(reader.into_inner()).await;
            });
        }
    });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_streams_into_the_cell_as_it_arrives() {
    let (url, mut received) = server(|mut stream: tokio::net::TcpStream| async move {
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\none\n\r\n")
            .await
            .unwrap();
        // The second chunk waits until the first was seen in the cell.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = stream.write_all(b"4\r\ntwo\n\r\n0\r\n\r\n").await;
    })
    .await;
    let served = serve(
        Http::new(&url)
            .unwrap()
            .header("Authorization", "Bearer t0ken")
            .unwrap(),
    );
    let queue_id = served.request("print('hi')").await;
    served
        .wait_for_output(&queue_id, |text| text == "one\n")
        .await;
    let entry = served.completion(&queue_id).await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert_eq!(text_of(&entry.outputs), "one\ntwo\n");
    assert_eq!(entry.metadata["httpStatus"], 200);
    assert_eq!(entry.metadata["backend"], "http");
    let (head, request) = received.recv().await.unwrap();
    let authority = url.trim_start_matches("http://").trim_end_matches("/run");
    assert!(head.starts_with("POST /run HTTP/1.1\r\n"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains(&format!("host: {authority}\r\n")), "{head}");
    assert!(
        head.contains("content-type: application/json\r\n"),
        "{head}"
    );
    assert!(head.contains("authorization: bearer t0ken\r\n"), "{head}");
    assert_eq!(request["source"], "print('hi')");
    assert_eq!(request["queueId"], queue_id.as_str());
    assert_eq!(request["cellType"], "code");
    assert_eq!(request["executionCount"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sized_body_and_a_body_until_close_both_arrive_whole() {
    let (url, _) = server(|mut stream: tokio::net::TcpStream| async move {
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsized\nIGNORED")
            .await
            .unwrap();
    })
    .await;
    let entry = serve(Http::new(&url).unwrap()).run("x").await;
    assert_eq!(text_of(&entry.outputs), "sized\n");

    let (url, _) = server(|mut stream: tokio::net::TcpStream| async move {
        stream
            .write_all("HTTP/1.0 200 OK\r\n\r\nuntil close: é".as_bytes())
            .await
            .unwrap();
    })
    .await;
    let entry = serve(Http::new(&url).unwrap()).run("x").await;
    assert_eq!(text_of(&entry.outputs), "until close: é");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_status_is_an_error_with_the_first_kib_of_the_body() {
    let (url, _) = server(|mut stream: tokio::net::TcpStream| async move {
        let body = format!("model not loaded {}", "z".repeat(3000));
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
    })
    .await;
    let entry = serve(Http::new(&url).unwrap()).run("x").await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    let expected_body = format!("model not loaded {}", "z".repeat(1024 - 17));
    assert_eq!(
        reason,
        format!("HttpError: HTTP 503 Service Unavailable: {expected_body}")
    );
    assert_eq!(entry.metadata["httpStatus"], 503);
    assert_eq!(describe(&entry.outputs).len(), 1, "only the error output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let entry = serve(Http::new(&format!("http://127.0.0.1:{port}/")).unwrap())
        .run("x")
        .await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    assert!(
        reason.starts_with("unavailable: could not connect to"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_cancel_end_a_request_that_never_answers() {
    let (url, _) = server(|stream: tokio::net::TcpStream| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(stream);
    })
    .await;
    let entry = serve(Http::new(&url).unwrap().timeout(Duration::from_millis(300)))
        .run("x")
        .await;
    assert_eq!(
        ended(&entry),
        (CompletionStatus::TimedOut, "timed out after 300 ms".into())
    );

    let served = serve(Http::new(&url).unwrap());
    let queue_id = served.request("x").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    served.cancel(&queue_id).await;
    assert_eq!(
        ended(&served.completion(&queue_id).await).0,
        CompletionStatus::Cancelled
    );
}

/// A server that writes `prefix`, then `filler` over and over until the client hangs up.
fn endless(
    prefix: &'static str,
    filler: &'static [u8],
) -> impl Fn(tokio::net::TcpStream) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
+ Send
+ Sync
+ Clone
+ 'static {
    move |mut stream: tokio::net::TcpStream| {
        Box::pin(async move {
            if stream.write_all(prefix.as_bytes()).await.is_err() {
                return;
            }
            let filler = filler.repeat(64 * 1024 / filler.len());
            while stream.write_all(&filler).await.is_ok() {}
        })
    }
}

/// The agent ends an execution against each endless response with an error, promptly: the
/// client never reads more than its bounds. (The hand-written client it replaced grew by
/// hundreds of MB/s on the first two.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_heads_chunk_lines_and_error_bodies_are_cut_off() {
    let cases: [(&'static str, &'static [u8], &str); 3] = [
        (
            "HTTP/1.1 200 OK\r\nX-Huge: ",
            b"a",
            "message head is too large",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"f",
            "invalid chunk size",
        ),
        (
            "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n",
            b"z",
            "HTTP 500 Internal Server Error: zzzz",
        ),
    ];
    for (prefix, filler, expected) in cases {
        let (url, _) = server(endless(prefix, filler)).await;
        let entry = serve(Http::new(&url).unwrap()).run("x").await;
        let (status, reason) = ended(&entry);
        assert_eq!(status, CompletionStatus::Error, "{prefix:?}: {reason}");
        assert!(reason.contains(expected), "{prefix:?}: {reason}");
        assert!(reason.len() < 1200, "{prefix:?}: {} bytes", reason.len());
    }
}

/// Responses that lie about their framing: a `100 Continue` is not the answer, a body
/// shorter than its length or with junk after a chunk is an error, never a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continue_a_short_body_and_junk_framing_never_end_in_success() {
    let cases: [(&'static str, CompletionStatus, &str); 3] = [
        (
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
            CompletionStatus::Error,
            "HttpError: HTTP 503 Service Unavailable: busy",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial\n",
            CompletionStatus::Error,
            "the response body broke off",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcdJUNK\r\n0\r\n\r\n",
            CompletionStatus::Error,
            "the response body broke off",
        ),
    ];
    for (response, expected_status, expected) in cases {
        let (url, _) = server(move |mut stream: tokio::net::TcpStream| async move {
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
        let entry = serve(Http::new(&url).unwrap()).run("x").await;
        let (status, reason) = ended(&entry);
        assert_eq!(status, expected_status, "{response:?}: {reason}");
        assert!(reason.contains(expected), "{response:?}: {reason}");
    }
}

/// An https server on 127.0.0.1 with a certificate of its own: trusted through
/// `ca_file`, refused (as unavailable: nothing was sent) without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_works_with_a_private_ca_and_is_refused_without_it() {
    use tokio_rustls::rustls;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, certified.cert.pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![certified.cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).await.unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let mut stream = reader.into_inner();
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nover tls, ok.\n")
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let url = format!("https://localhost:{port}/run");
    let entry = serve(Http::new(&url).unwrap().ca_file(&ca_file).unwrap())
        .run("x")
        .await;
    assert_eq!(
        ended(&entry).0,
        CompletionStatus::Success,
        "{:?}",
        ended(&entry)
    );
    assert_eq!(text_of(&entry.outputs), "over tls, ok.\n");

    let entry = serve(Http::new(&url).unwrap()).run("x").await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    assert!(
        reason.starts_with("unavailable: the TLS handshake with localhost:"),
        "{reason}"
    );
    assert!(reason.contains("certificate"), "{reason}");
}
