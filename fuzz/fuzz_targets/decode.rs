//! Any bytes decode to an event without panicking, and the event re-encodes losslessly:
//! decoding its JSON gives back the same JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime_core::Event;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let event = Event::from_json_str(text);
    let json = event.to_json();
    let again = Event::from_json_str(&json.to_string());
    assert_eq!(again.to_json(), json, "re-encoding changed the event");
    let _ = event.has_empty_id();
    let _ = event.queue_id();
    let _ = event.session_id();
});
