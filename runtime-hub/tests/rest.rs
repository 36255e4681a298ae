//! The hub's REST routes over real HTTP on 127.0.0.1: tokens, commits with identity checks
//! and batch ids, the cells view with an agent's outputs, events from a sequence number,
//! and the live event stream with `Last-Event-ID` resume.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use runtime_core::sync::BearerToken;
use runtime_core::*;
use serde_json::{Value, json};
use support::{AGENT, ALICE, BOB};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn hub() -> String {
    support::hub(Arc::new(MemoryCatalog::new())).await
}

/// One request; the status and the JSON body.
async fn call(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let body = body.map(|body| body.to_string()).unwrap_or_default();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let json = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| serde_json::from_str(body).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (status, json)
}

fn cell_created(id: &str, source: &str) -> Value {
    json!({"type": "v1.CellCreated", "cellId": id, "cellType": "code", "source": source})
}

fn requested(cell: &str, queue: &str, by: &str) -> Value {
    json!({"type": "v1.ExecutionRequested", "queueId": queue, "cellId": cell, "cellType": "code",
           "source": "1 + 1", "requestedBy": by})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_reads_writes_and_streams_with_identities_checked() {
    let address = hub().await;
    let (status, body) = call(&address, "GET", "/notebooks", None, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = call(
        &address,
        "GET",
        "/notebooks",
        Some("wrong-token-0123456789"),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // A commit, and the same batch again: one copy, the same sequence number.
    let batch = json!({"batch": "batch-1", "events": [cell_created("c1", "1 + 1")]});
    let (status, first) = call(
        &address,
        "POST",
        "/notebooks/nb/events",
        Some(ALICE),
        Some(batch.clone()),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = call(
        &address,
        "POST",
        "/notebooks/nb/events",
        Some(ALICE),
        Some(batch),
    )
    .await;
    assert_eq!(first["seq"], 1);
    assert_eq!(again["seq"], 1);

    // A request in someone else's name is refused.
    let forged = json!({"events": [requested("c1", "q0", "mallory")]});
    let (status, body) = call(
        &address,
        "POST",
        "/notebooks/nb/events",
        Some(ALICE),
        Some(forged),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.to_string().contains(ALICE));

    // An agent on the hub serves the request; the cells view shows the outcome.
    let agent_store = runtime_native::hub::connect(
        &format!("ws://{address}"),
        BearerToken::new(AGENT),
        "nb",
        runtime_native::hub::HubOptions::default(),
    )
    .unwrap();
    let handle = support::echo_agent(agent_store, "agent-1");
    let request = json!({"events": [requested("c1", "q1", "alice")]});
    let (status, _) = call(
        &address,
        "POST",
        "/notebooks/nb/events",
        Some(ALICE),
        Some(request),
    )
    .await;
    assert_eq!(status, 200);
    let mut cells = Value::Null;
    for _ in 0..3000 {
        cells = call(&address, "GET", "/notebooks/nb/cells", Some(ALICE), None)
            .await
            .1;
        if cells["cells"][0]["status"] == "success" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cell = &cells["cells"][0];
    assert_eq!(cell["status"], "success", "{cells}");
    assert_eq!(cell["executionCount"], 1);
    assert_eq!(
        cell["outputs"][0]["outputType"], "execute_result",
        "{cells}"
    );
    assert_eq!(
        cell["outputs"][0]["data"]["text/plain"], "Echo: 1 + 1",
        "{cells}"
    );

    // Events from a sequence number, a page at a time.
    let (_, page) = call(
        &address,
        "GET",
        "/notebooks/nb/events?from=2&limit=2",
        Some(ALICE),
        None,
    )
    .await;
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{page}");
    assert_eq!(
        (entries[0]["seq"].clone(), entries[1]["seq"].clone()),
        (json!(2), json!(3))
    );
    assert!(page["head"].as_u64().unwrap() >= 4);
    let (_, listed) = call(&address, "GET", "/notebooks", Some(ALICE), None).await;
    assert_eq!(listed["notebooks"][0]["id"], "nb");

    // The live stream, resumed after the last id a browser saw.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET /notebooks/nb/stream HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ALICE}\r\nLast-Event-ID: 2\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(id) = line
            .strip_prefix("id: ")
            .or_else(|| line.strip_prefix("id:"))
        {
            ids.push(id.trim().parse::<u64>().unwrap());
        }
    }
    assert_eq!(ids, [3, 4], "resumed after Last-Event-ID 2");
    handle.shutdown();
}

/// The cells view of a long notebook starts from the hub's full snapshot (made and kept on
/// the first request) and folds only what follows: it shows what folding it all shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cells_view_of_a_long_notebook_starts_from_a_snapshot() {
    use runtime_core::{CellCreated, CellDeleted, CellType, SNAPSHOT_EVERY, SnapshotKind};
    let catalog = MemoryCatalog::new();
    let address = support::hub(Arc::new(catalog.clone())).await;
    let backing = catalog.store("long");
    let cell = |id: &str| -> runtime_core::Event {
        CellCreated {
            cell_id: id.into(),
            cell_type: CellType::Code,
            source: format!("source of {id}"),
        }
        .into()
    };
    backing.commit(vec![cell("first")]).await.unwrap();
    for chunk in 0..=SNAPSHOT_EVERY / 1_000 {
        let events = (0..1_000)
            .map(|n| {
                CellDeleted {
                    cell_id: format!("gone-{chunk}-{n}").into(),
                }
                .into()
            })
            .collect();
        backing.commit(events).await.unwrap();
    }
    let ids = |cells: &Value| -> Vec<String> {
        cells["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|cell| cell["cellId"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, cells) = call(&address, "GET", "/notebooks/long/cells", Some(ALICE), None).await;
    assert_eq!(status, 200, "{cells}");
    assert_eq!(ids(&cells), ["first"]);
    assert_eq!(cells["cells"][0]["source"], "source of first");
    let snapshot = backing.latest_snapshot(SnapshotKind::Full).await.unwrap();
    assert_eq!(snapshot.map(|s| s.seq), Some(backing.len() as u64));

    backing.commit(vec![cell("second")]).await.unwrap();
    let (_, cells) = call(&address, "GET", "/notebooks/long/cells", Some(ALICE), None).await;
    assert_eq!(
        ids(&cells),
        ["first", "second"],
        "the tail after the snapshot"
    );
    assert_eq!(cells["head"], backing.len() as u64);
}

/// Over REST too, an identity sees and uses only the notebooks on its access list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_keeps_to_the_access_list() {
    let address = hub().await;
    let created = json!({"events": [cell_created("c1", "x")]});
    for notebook in ["shared", "bob-1"] {
        let path = format!("/notebooks/{notebook}/events");
        let (status, _) = call(&address, "POST", &path, Some(ALICE), Some(created.clone())).await;
        assert_eq!(status, 200);
    }
    for (method, path) in [
        ("GET", "/notebooks/shared/cells"),
        ("GET", "/notebooks/shared/events?from=1"),
        ("GET", "/notebooks/shared/stream"),
        ("POST", "/notebooks/shared/events"),
    ] {
        let body = (method == "POST").then(|| created.clone());
        let (status, refused) = call(&address, method, path, Some(BOB), body).await;
        assert_eq!(status, 403, "{method} {path}: {refused}");
        assert_eq!(refused["error"]["code"], "forbidden");
    }
    let (status, cells) = call(&address, "GET", "/notebooks/bob-1/cells", Some(BOB), None).await;
    assert_eq!(status, 200, "{cells}");
    let (_, listed) = call(&address, "GET", "/notebooks", Some(BOB), None).await;
    let ids: Vec<&str> = listed["notebooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|notebook| notebook["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bob-1"]);

    // Creating: only on the list (so not under a made-up id), and titled as asked.
    for body in [json!({"notebook": "shared-2"}), json!({"title": "Mine"})] {
        let (status, refused) = call(&address, "POST", "/notebooks", Some(BOB), Some(body)).await;
        assert_eq!(status, 403, "{refused}");
    }
    let mine = json!({"notebook": "bob-2", "title": "Bob's plan"});
    let (status, made) = call(&address, "POST", "/notebooks", Some(BOB), Some(mine)).await;
    assert_eq!(
        (status, &made["notebook"]),
        (201, &json!("bob-2")),
        "{made}"
    );
    let taken = json!({"notebook": "bob-1", "title": "Bob's plan"});
    let (status, refused) = call(&address, "POST", "/notebooks", Some(BOB), Some(taken)).await;
    assert_eq!(status, 400, "{refused}");
    let (status, made) = call(&address, "POST", "/notebooks", Some(ALICE), Some(json!({}))).await;
    assert_eq!(status, 201, "{made}");
    let (_, listed) = call(&address, "GET", "/notebooks", Some(BOB), None).await;
    let titled: Vec<(&str, Option<&str>)> = listed["notebooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|notebook| (notebook["id"].as_str().unwrap(), notebook["title"].as_str()))
        .collect();
    assert_eq!(titled, [("bob-1", None), ("bob-2", Some("Bob's plan"))]);
}
