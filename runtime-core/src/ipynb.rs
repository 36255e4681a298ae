//! Jupyter's `.ipynb` files (nbformat 4.0 to 4.5, and later 4.x minors kept as they are):
//! [`import`] turns one into the events that build it in a notebook's log, [`export`]
//! writes a notebook's current state back as one. Format only: reading and writing files
//! is the native adapter's job.
//!
//! What comes back out of an imported notebook is what went in, but for these
//! normalisations (what Jupyter itself does when it saves a notebook):
//! - the file is nbformat 4.5 or later, and every cell has an `id`: a cell without one, or
//!   with one that is invalid or used before, gets a fresh one;
//! - `source` (and the text of outputs this library wrote) is a list of lines;
//! - keys are sorted, and the file is indented by one space, as Jupyter writes it.
//!
//! Metadata, attachments, outputs (of any type, even ones this version does not know) and
//! fields this version does not name are kept verbatim. A cell that ran here exports the
//! outputs of its latest run instead of the imported ones; SQL and AI cells, which Jupyter
//! does not have, are code cells with `metadata.runtime_agents.cell_type` saying what they
//! are, so they come back as they were.
//!
//! ```
//! use runtime_core::{NotebookState, ipynb};
//!
//! let file = r#"{"cells": [{"cell_type": "code", "execution_count": 1, "id": "a1",
//!   "metadata": {}, "outputs": [{"name": "stdout", "output_type": "stream", "text": ["hi\n"]}],
//!   "source": ["print('hi')"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
//! let events = ipynb::import(file)?;
//! let mut state = NotebookState::new();
//! for (seq, event) in (1..).zip(&events) {
//!     state.apply(seq, event);
//! }
//! let exported = ipynb::export(&state);
//! assert_eq!(exported["cells"][0]["outputs"][0]["text"][0], "hi\n");
//! assert_eq!(exported["cells"][0]["source"][0], "print('hi')");
//! # Ok::<(), ipynb::IpynbError>(())
//! ```

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::schema::{
    CellCreated, CellId, CellMetadataChanged, CellOutputsImported, CellType, Event,
    NotebookMetadataChanged, StreamName,
};
use crate::state::{NotebookState, Output, OutputKind};

/// The nbformat minor version this library writes at least (cell ids came in 4.5).
pub const NBFORMAT_MINOR: u64 = 5;

/// Where this library keeps its own facts in a cell's metadata.
const OWN_METADATA: &str = "runtime_agents";

/// Why a file could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpynbError {
    /// The file is not JSON.
    #[error("not a notebook: the file is not JSON ({0})")]
    NotJson(String),
    /// It is a notebook of another major version, or none is given.
    #[error(
        "nbformat {0} notebooks are not supported, only nbformat 4 \
         (`jupyter nbconvert --to notebook --nbformat 4` converts one)"
    )]
    Version(String),
    /// It is nbformat 4, but a part of it has the wrong shape.
    #[error("not a valid nbformat 4 notebook: {0}")]
    Invalid(String),
}

/// The events that build the notebook `text` describes, in order: its metadata, then each
/// cell (created, its metadata, its imported outputs). Commit them to an empty notebook
/// (cell ids come from the file, and a cell whose id a notebook already has is ignored).
pub fn import(text: &str) -> Result<Vec<Event>, IpynbError> {
    let value: Value =
        serde_json::from_str(text).map_err(|error| IpynbError::NotJson(error.to_string()))?;
    let Value::Object(mut notebook) = value else {
        return Err(IpynbError::Invalid("the file is not a JSON object".into()));
    };
    match notebook.remove("nbformat") {
        Some(Value::Number(major)) if major.as_u64() == Some(4) => {}
        Some(other) => return Err(IpynbError::Version(other.to_string())),
        None => return Err(IpynbError::Version("(none given)".into())),
    }
    let nbformat_minor = match notebook.remove("nbformat_minor") {
        None => None,
        Some(minor) => Some(
            minor
                .as_u64()
                .ok_or_else(|| invalid("`nbformat_minor`", "a whole number", &minor))?,
        ),
    };
    let metadata = object_field(&mut notebook, "metadata", "the notebook's")?;
    let cells = match notebook.remove("cells") {
        Some(Value::Array(cells)) => cells,
        Some(other) => return Err(invalid("`cells`", "a list", &other)),
        None => return Err(IpynbError::Invalid("it has no `cells`".into())),
    };
    let mut events = vec![Event::from(NotebookMetadataChanged {
        metadata,
        nbformat_minor,
        other: notebook,
    })];
    let mut ids = HashSet::new();
    for (index, cell) in cells.into_iter().enumerate() {
        import_cell(index, cell, &mut ids, &mut events)?;
    }
    Ok(events)
}

fn import_cell(
    index: usize,
    cell: Value,
    ids: &mut HashSet<String>,
    events: &mut Vec<Event>,
) -> Result<(), IpynbError> {
    let what = format!("cell {}", index + 1);
    let Value::Object(mut cell) = cell else {
        return Err(invalid(&what, "an object", &cell));
    };
    let cell_id = match cell.remove("id") {
        Some(Value::String(id)) if is_valid_id(&id) && !ids.contains(&id) => CellId::from(id),
        _ => CellId::random(),
    };
    ids.insert(cell_id.to_string());
    let source = match cell.remove("source") {
        None => String::new(),
        Some(source) => multiline(&source).ok_or_else(|| {
            invalid(
                &format!("{what}'s `source`"),
                "a string or a list of strings",
                &source,
            )
        })?,
    };
    let metadata = object_field(&mut cell, "metadata", &format!("{what}'s"))?;
    let attachments = match cell.remove("attachments") {
        None => None,
        Some(Value::Object(attachments)) => Some(attachments),
        Some(other) => {
            return Err(invalid(
                &format!("{what}'s `attachments`"),
                "an object",
                &other,
            ));
        }
    };
    let cell_type = match cell.get("cell_type").and_then(Value::as_str) {
        Some("code") => own_cell_type(&metadata).unwrap_or(CellType::Code),
        Some("markdown") => CellType::Markdown,
        Some("raw") => CellType::Raw,
        // A kind this version does not know stays in `other`, and comes back out as it was.
        Some(_) => CellType::Raw,
        None => return Err(IpynbError::Invalid(format!("{what} has no `cell_type`"))),
    };
    let known_type = matches!(
        cell.get("cell_type").and_then(Value::as_str),
        Some("code" | "markdown" | "raw")
    );
    if known_type {
        cell.remove("cell_type");
    }
    let code = known_type && matches!(cell_type, CellType::Code | CellType::Sql | CellType::Ai);
    let outputs = if code {
        let execution_count = match cell.remove("execution_count") {
            None | Some(Value::Null) => None,
            Some(count) => Some(count.as_u64().ok_or_else(|| {
                invalid(
                    &format!("{what}'s `execution_count`"),
                    "a whole number or null",
                    &count,
                )
            })?),
        };
        let outputs = match cell.remove("outputs") {
            None => Vec::new(),
            Some(Value::Array(outputs)) => outputs,
            Some(other) => return Err(invalid(&format!("{what}'s `outputs`"), "a list", &other)),
        };
        (execution_count.is_some() || !outputs.is_empty()).then(|| CellOutputsImported {
            cell_id: cell_id.clone(),
            execution_count,
            outputs,
        })
    } else {
        None
    };
    events.push(
        CellCreated {
            cell_id: cell_id.clone(),
            cell_type,
            source,
        }
        .into(),
    );
    if !metadata.is_empty() || attachments.is_some() || !cell.is_empty() {
        events.push(
            CellMetadataChanged {
                cell_id,
                metadata,
                attachments,
                other: cell,
            }
            .into(),
        );
    }
    if let Some(outputs) = outputs {
        events.push(outputs.into());
    }
    Ok(())
}

/// The notebook as an nbformat 4 document (see the module's notes on what it normalises).
pub fn export(state: &NotebookState) -> Value {
    let file = state.notebook_metadata();
    let mut notebook = file.map(|file| file.other.clone()).unwrap_or_default();
    let mut ids = HashSet::new();
    let cells = state
        .cells()
        .map(|cell| Value::Object(export_cell(state, cell, &mut ids)))
        .collect();
    notebook.insert("cells".into(), Value::Array(cells));
    notebook.insert(
        "metadata".into(),
        Value::Object(file.map(|file| file.metadata.clone()).unwrap_or_default()),
    );
    notebook.insert("nbformat".into(), Value::from(4));
    let minor = file
        .and_then(|file| file.nbformat_minor)
        .map_or(NBFORMAT_MINOR, |minor| minor.max(NBFORMAT_MINOR));
    notebook.insert("nbformat_minor".into(), Value::from(minor));
    sorted(Value::Object(notebook))
}

/// The notebook as Jupyter writes it: keys sorted, one space of indent, a final newline.
pub fn to_string(state: &NotebookState) -> String {
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut writer = serde_json::Serializer::with_formatter(&mut text, formatter);
    // A JSON value always serializes.
    let _ = serde::Serialize::serialize(&export(state), &mut writer);
    let mut text = String::from_utf8(text).unwrap_or_default();
    text.push('\n');
    text
}

fn export_cell(
    state: &NotebookState,
    cell: &crate::state::Cell,
    ids: &mut HashSet<String>,
) -> Map<String, Value> {
    let mut out = cell.other.clone();
    let id = if is_valid_id(cell.id.as_str()) && !ids.contains(cell.id.as_str()) {
        cell.id.to_string()
    } else {
        fresh_id(cell.id.as_str(), ids)
    };
    ids.insert(id.clone());
    out.insert("id".into(), Value::String(id));
    let mut metadata = cell.metadata.clone();
    let jupyter_type = match cell.cell_type {
        CellType::Markdown => "markdown",
        CellType::Raw => "raw",
        CellType::Code => "code",
        CellType::Sql | CellType::Ai => {
            let own = metadata
                .entry(OWN_METADATA)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(own) = own {
                own.insert("cell_type".into(), Value::from(cell.cell_type.as_str()));
            }
            "code"
        }
    };
    // An imported cell of a kind this version does not know keeps its own `cell_type`.
    out.entry("cell_type")
        .or_insert_with(|| Value::from(jupyter_type));
    out.insert("metadata".into(), Value::Object(metadata));
    out.insert("source".into(), lines(&cell.source));
    if let Some(attachments) = &cell.attachments {
        out.insert("attachments".into(), Value::Object(attachments.clone()));
    }
    if out.get("cell_type").and_then(Value::as_str) == Some("code") {
        let ran = cell.shown_execution.as_ref().and_then(|id| state.entry(id));
        let (count, outputs) = match (ran, &cell.imported) {
            (Some(entry), _) => (
                entry.execution_count,
                entry.outputs.iter().map(export_output).collect(),
            ),
            (None, Some(imported)) => (imported.execution_count, imported.outputs.clone()),
            (None, None) => (None, Vec::new()),
        };
        out.insert(
            "execution_count".into(),
            count.map_or(Value::Null, Value::from),
        );
        out.insert("outputs".into(), Value::Array(outputs));
    }
    out
}

/// One output of a run here, as nbformat has it.
fn export_output(output: &Output) -> Value {
    let mut out = Map::new();
    match &output.kind {
        OutputKind::Stream { name, text } => {
            out.insert("output_type".into(), "stream".into());
            out.insert(
                "name".into(),
                Value::from(match name {
                    StreamName::Stdout => "stdout",
                    StreamName::Stderr => "stderr",
                }),
            );
            out.insert("text".into(), lines(text));
        }
        OutputKind::Display { data, metadata, .. } => {
            out.insert("output_type".into(), "display_data".into());
            out.insert("data".into(), bundle(data));
            out.insert("metadata".into(), Value::Object(metadata.clone()));
        }
        OutputKind::Result {
            data,
            metadata,
            execution_count,
            ..
        } => {
            let mut metadata = metadata.clone();
            // The kernel's own count is ours to show, not the file's.
            metadata.remove("kernel_execution_count");
            out.insert("output_type".into(), "execute_result".into());
            out.insert("data".into(), bundle(data));
            out.insert("metadata".into(), Value::Object(metadata));
            out.insert("execution_count".into(), Value::from(*execution_count));
        }
        OutputKind::Error {
            ename,
            evalue,
            traceback,
        } => {
            out.insert("output_type".into(), "error".into());
            out.insert("ename".into(), Value::from(ename.as_str()));
            out.insert("evalue".into(), Value::from(evalue.as_str()));
            out.insert("traceback".into(), Value::from(traceback.clone()));
        }
        OutputKind::Markdown { text } => {
            let mut data = Map::new();
            data.insert("text/markdown".into(), lines(text));
            out.insert("output_type".into(), "display_data".into());
            out.insert("data".into(), Value::Object(data));
            out.insert("metadata".into(), Value::Object(Map::new()));
        }
    }
    Value::Object(out)
}

/// A media bundle as nbformat writes it: text as a list of lines, JSON as it is.
fn bundle(data: &crate::MediaBundle) -> Value {
    let mut out = Map::new();
    for (mime, value) in data.iter() {
        let value = match value {
            Value::String(text) if !crate::is_json_mime(mime) => lines(text),
            other => other.clone(),
        };
        out.insert(mime.to_owned(), value);
    }
    Value::Object(out)
}

/// Text as nbformat's "multiline string": its lines, each with its line ending.
fn lines(text: &str) -> Value {
    Value::Array(text.split_inclusive('\n').map(Value::from).collect())
}

/// A multiline string: a string, or a list of strings joined.
fn multiline(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => parts.iter().map(|part| part.as_str()).collect(),
        _ => None,
    }
}

/// nbformat's cell id: 1 to 64 of `a-z A-Z 0-9 - _`.
fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// A valid id for a cell whose own is not, as close to it as can be, unused so far.
fn fresh_id(id: &str, used: &HashSet<String>) -> String {
    let mut base: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(56)
        .collect();
    if base.is_empty() {
        base.push_str("cell");
    }
    if !used.contains(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !used.contains(candidate))
        .unwrap_or(base)
}

/// The kind this library's own metadata gives a code cell (SQL and AI cells).
fn own_cell_type(metadata: &Map<String, Value>) -> Option<CellType> {
    let kind = metadata.get(OWN_METADATA)?.get("cell_type")?.clone();
    serde_json::from_value(kind)
        .ok()
        .filter(|kind| matches!(kind, CellType::Sql | CellType::Ai))
}

fn object_field(
    object: &mut Map<String, Value>,
    key: &str,
    whose: &str,
) -> Result<Map<String, Value>, IpynbError> {
    match object.remove(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(other) => Err(invalid(&format!("{whose} `{key}`"), "an object", &other)),
    }
}

fn invalid(what: &str, expected: &str, found: &Value) -> IpynbError {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    IpynbError::Invalid(format!("{what} must be {expected}, not {found}"))
}

/// `value` with the keys of every object sorted, as Jupyter writes files.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key, sorted(value)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
