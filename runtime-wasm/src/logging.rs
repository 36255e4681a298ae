//! Panics and `tracing` events go to the browser console.
//!
//! A tiny subscriber instead of `tracing-subscriber`: it keeps the `.wasm` small. It prints
//! each event's level, target, message and fields; spans are not printed.

use std::fmt::Write as _;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

static INSTALL: Once = Once::new();

/// Installs the panic hook and the console subscriber at `level` (once per page).
pub(crate) fn install(level: Level) {
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            web_sys::console::error_1(&format!("runtime-wasm panicked: {info}").into());
        }));
        let _ = tracing::subscriber::set_global_default(ConsoleSubscriber {
            level,
            next_span: AtomicU64::new(1),
        });
    });
}

/// Parses a log level name (`error`, `warn`, `info`, `debug`, `trace`).
pub(crate) fn parse_level(name: &str) -> Option<Level> {
    name.trim().parse().ok()
}

struct ConsoleSubscriber {
    level: Level,
    next_span: AtomicU64,
}

impl Subscriber for ConsoleSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.level
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut line = format!("{} {}:", metadata.level(), metadata.target());
        event.record(&mut LineWriter(&mut line));
        let line = line.into();
        match *metadata.level() {
            Level::ERROR => web_sys::console::error_1(&line),
            Level::WARN => web_sys::console::warn_1(&line),
            _ => web_sys::console::log_1(&line),
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

struct LineWriter<'a>(&'a mut String);

impl Visit for LineWriter<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}
