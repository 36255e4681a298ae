//! The HTTP backend against a real loopback server: the request it sends, streamed
//! chunked and sized bodies, errors with the body's first KiB, refused connections,
//! timeout and cancel.
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
            .header("Authorization", "Bearer t0ken"),
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
    assert!(head.contains(&format!("Host: {authority}\r\n")), "{head}");
    assert!(
        head.contains("Content-Type: application/json\r\n"),
        "{head}"
    );
    assert!(head.contains("Authorization: Bearer t0ken\r\n"), "{head}");
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
        (CompletionStatus::TimedOut, "timed out after 300ms".into())
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
