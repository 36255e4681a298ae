//! Every JSON example in docs/sync-protocol.md decodes as a client or a hub frame, and
//! re-encodes to the same JSON.
#![allow(clippy::unwrap_used)]

use runtime_core::sync::{ClientFrame, HubFrame};

#[test]
fn every_example_in_the_protocol_doc_decodes() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/sync-protocol.md"
    ))
    .unwrap();
    let mut examples = Vec::new();
    let mut in_json = false;
    for line in doc.lines() {
        match line.trim() {
            "```json" => in_json = true,
            "```" => in_json = false,
            text if in_json && !text.is_empty() => examples.push(text.to_owned()),
            _ => {}
        }
    }
    assert!(examples.len() >= 17, "found {} examples", examples.len());
    let (mut clients, mut hubs) = (0, 0);
    for example in examples {
        let json: serde_json::Value = serde_json::from_str(&example).unwrap();
        let again = match (
            serde_json::from_str::<ClientFrame>(&example),
            serde_json::from_str::<HubFrame>(&example),
        ) {
            (Ok(frame), _) => {
                clients += 1;
                serde_json::to_value(frame).unwrap()
            }
            (_, Ok(frame)) => {
                hubs += 1;
                serde_json::to_value(frame).unwrap()
            }
            (Err(client), Err(hub)) => {
                panic!("{example}\nas a client frame: {client}\nas a hub frame: {hub}")
            }
        };
        assert_eq!(again, json, "{example} re-encodes unchanged");
    }
    assert!(
        clients >= 8 && hubs >= 8,
        "{clients} client and {hubs} hub frames"
    );
}
