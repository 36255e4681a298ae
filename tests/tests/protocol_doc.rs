//! Every JSON example in docs/protocol.md decodes to a known event and round-trips, and
//! every event type has an example.

use std::collections::BTreeSet;

use runtime_core::{EVENT_TYPES, Event};

fn json_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim()) {
            (None, "```json") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_example_in_the_protocol_doc_decodes_and_every_event_has_one() {
    let doc = include_str!("../../docs/protocol.md");
    let mut documented = BTreeSet::new();
    for block in json_blocks(doc) {
        let raw: serde_json::Value = serde_json::from_str(&block)
            .unwrap_or_else(|error| panic!("not JSON: {error}\n{block}"));
        let event = Event::from_json(raw.clone());
        assert!(
            !matches!(event, Event::Malformed(_) | Event::Unknown(_)),
            "does not decode as a known event: {event:?}"
        );
        assert_eq!(event.to_json(), raw, "does not round-trip unchanged");
        documented.insert(event.type_name().to_owned());
    }
    let all: BTreeSet<String> = EVENT_TYPES.iter().map(|t| (*t).to_owned()).collect();
    let missing: Vec<&String> = all.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "event types without an example: {missing:?}"
    );
}
