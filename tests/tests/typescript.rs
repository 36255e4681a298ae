//! The npm package's event and view types (`runtime-wasm/src/schema.d.ts`) are generated
//! from the Rust schema (`runtime_core::event_schemas`, `runtime_core::NotebookView`) and
//! must not drift from it: this test
//! regenerates them and fails on any difference. After changing an event, run
//! `RUNTIME_UPDATE_TYPES=1 cargo test -p tests --test typescript` and commit the file.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value};

const GENERATED: &str = "runtime-wasm/src/schema.d.ts";

#[test]
fn the_packages_event_types_match_the_rust_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(GENERATED);
    let generated = typescript();
    if std::env::var_os("RUNTIME_UPDATE_TYPES").is_some() {
        std::fs::write(&path, &generated).expect("write the generated types");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{GENERATED} differs from the Rust schema; regenerate it with \
         `RUNTIME_UPDATE_TYPES=1 cargo test -p tests --test typescript`\n\
         --- generated ---\n{generated}"
    );
}

#[test]
fn an_executions_status_words_are_the_queue_states_and_every_completion_status() {
    // `ExecutionView::status` lists its words by hand for the schema; they must be the
    // three states before an end and every `CompletionStatus`, whatever is added to it.
    let mut generator = schemars::SchemaGenerator::default();
    let completion = Value::from(generator.root_schema_for::<runtime_core::CompletionStatus>());
    let mut expected = vec![
        "pending".to_owned(),
        "assigned".to_owned(),
        "executing".to_owned(),
    ];
    for variant in completion["oneOf"].as_array().expect("a union of words") {
        expected.push(variant["const"].as_str().expect("a word").to_owned());
    }
    let view = Value::from(generator.root_schema_for::<runtime_core::ExecutionView<'static>>());
    let listed: Vec<String> = view["properties"]["status"]["enum"]
        .as_array()
        .expect("the status words")
        .iter()
        .map(|word| word.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn the_generator_turns_each_schema_form_into_its_typescript() {
    let cases = [
        (serde_json::json!(true), "unknown"),
        (serde_json::json!({"type": "string"}), "string"),
        (
            serde_json::json!({"type": ["string", "null"]}),
            "string | null",
        ),
        (
            serde_json::json!({"type": "integer", "format": "uint64"}),
            "number",
        ),
        (serde_json::json!({"$ref": "#/$defs/CellType"}), "CellType"),
        (serde_json::json!({"const": "v1.X"}), "\"v1.X\""),
        (
            serde_json::json!({"type": "array", "items": {"type": ["string", "null"]}}),
            "(string | null)[]",
        ),
        (
            serde_json::json!({"type": "object", "additionalProperties": true}),
            "Record<string, unknown>",
        ),
        (
            serde_json::json!({"oneOf": [{"const": "a"}, {"const": "b"}]}),
            "\"a\" | \"b\"",
        ),
    ];
    assert_eq!(
        doc_comment(
            &serde_json::json!({"description": "Set by [`A::b`](crate::A::b)."}),
            0
        ),
        "/** Set by `A::b`. */\n"
    );
    for (schema, expected) in cases {
        assert_eq!(type_of(&schema, 0), expected, "{schema}");
    }
}

/// The whole generated file.
fn typescript() -> String {
    let mut generator = schemars::SchemaGenerator::default();
    let events = runtime_core::event_schemas(&mut generator);
    let mut view = Value::from(generator.root_schema_for::<runtime_core::NotebookView<'static>>());
    view["description"] =
        "A notebook as a UI shows it (what `NotebookView.state()` returns): its cells \
        in order, each with its latest execution and the outputs it shows, the queue, and the \
        runtime serving it, folded by the agents' own reducer."
            .into();
    let mut out = String::from(
        "// Generated from runtime-core's schema by tests/tests/typescript.rs: do not edit.\n\
         // The wire format is docs/protocol.md's: one flat JSON object per event.\n",
    );
    for (name, schema) in generator.definitions() {
        out.push('\n');
        out.push_str(&declaration(name, schema));
    }
    let mut names = Vec::new();
    for (wire, schema) in &events {
        let schema = Value::from(schema.clone());
        let title = schema["title"].as_str().expect("every payload has a title");
        let name = format!("{title}Event");
        out.push('\n');
        out.push_str(&doc_comment(&schema, 0));
        let _ = writeln!(
            out,
            "export interface {name} {}",
            object_body(&schema, Some(wire), 0)
        );
        names.push(name);
    }
    out.push_str(
        "\n/**\n * One event of a notebook's log, as docs/protocol.md shows it; switch on `type` to\n \
         * narrow it. A log may also hold events of types a newer version writes: they are not\n \
         * in this union, so give such a switch a `default` branch.\n */\n\
         export type RuntimeEvent =\n",
    );
    for (index, name) in names.iter().enumerate() {
        let end = if index + 1 == names.len() { ";" } else { "" };
        let _ = writeln!(out, "    | {name}{end}");
    }
    out.push('\n');
    out.push_str(&declaration("NotebookViewState", &view));
    out
}

/// `export interface …` for an object with named fields, `export type … = …` otherwise.
fn declaration(name: &str, schema: &Value) -> String {
    let mut text = doc_comment(schema, 0);
    if is_plain_object(schema) && schema.get("oneOf").is_none() {
        let _ = writeln!(
            text,
            "export interface {name} {}",
            object_body(schema, None, 0)
        );
    } else {
        let _ = writeln!(text, "export type {name} = {};", type_of(schema, 0));
    }
    text
}

/// An object with named properties (an interface), not a map or a union.
fn is_plain_object(schema: &Value) -> bool {
    schema["type"] == "object" && schema.get("properties").is_some()
}

/// `{ … }` with one line per property, `type` first when `wire` is given.
fn object_body(schema: &Value, wire: Option<&str>, depth: usize) -> String {
    let indent = "    ".repeat(depth + 1);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut body = String::from("{\n");
    if let Some(wire) = wire {
        let _ = writeln!(body, "{indent}type: {};", Value::from(wire));
    }
    let empty = Map::new();
    let properties = schema["properties"].as_object().unwrap_or(&empty);
    for (name, property) in properties {
        body.push_str(&doc_comment(property, depth + 1));
        let optional = if required.contains(&name.as_str()) {
            ""
        } else {
            "?"
        };
        let _ = writeln!(
            body,
            "{indent}{}{optional}: {};",
            property_name(name),
            type_of(property, depth + 1)
        );
    }
    if schema["additionalProperties"] == true {
        let _ = writeln!(body, "{indent}[key: string]: unknown;");
    }
    body.push_str(&"    ".repeat(depth));
    body.push('}');
    body
}

/// The TypeScript type a JSON Schema describes (the subset schemars writes for our types).
fn type_of(schema: &Value, depth: usize) -> String {
    if schema == &Value::Bool(true) {
        return "unknown".to_owned();
    }
    if let Some(reference) = schema["$ref"].as_str() {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    if let Some(constant) = schema.get("const") {
        return constant.to_string();
    }
    if let Some(variants) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        let variants = union(variants.iter().map(|variant| type_of(variant, depth)));
        // Fields every variant shares (serde's `flatten` of a tagged enum) and the variants.
        return if is_plain_object(schema) {
            format!("{} & ({variants})", object_body(schema, None, depth))
        } else {
            variants
        };
    }
    if let Some(values) = schema["enum"].as_array() {
        return union(values.iter().map(Value::to_string));
    }
    match &schema["type"] {
        Value::Array(types) => union(types.iter().map(|kind| {
            let mut single = schema.clone();
            single["type"] = kind.clone();
            type_of(&single, depth)
        })),
        Value::String(kind) => match kind.as_str() {
            "string" => "string".to_owned(),
            "integer" | "number" => "number".to_owned(),
            "boolean" => "boolean".to_owned(),
            "null" => "null".to_owned(),
            "array" => {
                let item = type_of(schema.get("items").unwrap_or(&Value::Bool(true)), depth);
                if item.contains(' ') {
                    format!("({item})[]")
                } else {
                    format!("{item}[]")
                }
            }
            "object" if is_plain_object(schema) => object_body(schema, None, depth),
            "object" => match schema.get("additionalProperties") {
                Some(Value::Bool(false)) => "Record<string, never>".to_owned(),
                Some(values @ Value::Object(_)) => {
                    format!("Record<string, {}>", type_of(values, depth))
                }
                _ => "Record<string, unknown>".to_owned(),
            },
            other => panic!("the generator has no TypeScript for JSON Schema type {other:?}"),
        },
        _ => "unknown".to_owned(),
    }
}

fn union(members: impl Iterator<Item = String>) -> String {
    members.collect::<Vec<_>>().join(" | ")
}

/// A name as a property key: bare when it is an identifier, quoted otherwise.
fn property_name(name: &str) -> String {
    let identifier = name.chars().enumerate().all(|(index, c)| {
        c == '_' || c == '$' || c.is_ascii_alphabetic() || (index > 0 && c.is_ascii_digit())
    });
    if identifier && !name.is_empty() {
        name.to_owned()
    } else {
        Value::from(name).to_string()
    }
}

/// Rustdoc's links (`` [`Name`](crate::path) ``) as their text alone: the paths mean
/// nothing in JavaScript.
fn without_link_targets(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(end) = rest.find("](") {
        let Some(start) = rest[..end].rfind('[') else {
            break;
        };
        let Some(close) = rest[end..].find(')') else {
            break;
        };
        plain.push_str(&rest[..start]);
        plain.push_str(&rest[start + 1..end]);
        rest = &rest[end + close + 1..];
    }
    plain.push_str(rest);
    plain
}

/// The schema's description as a JSDoc comment, or nothing.
fn doc_comment(schema: &Value, depth: usize) -> String {
    let Some(description) = schema["description"].as_str() else {
        return String::new();
    };
    let indent = "    ".repeat(depth);
    let description = without_link_targets(description).replace("*/", "*\\/");
    // Prose only: a Rust example means nothing to a TypeScript reader.
    let prose = description
        .split("\n```")
        .next()
        .unwrap_or_default()
        .trim_end();
    let lines: Vec<&str> = prose.lines().collect();
    if lines.len() == 1 {
        return format!("{indent}/** {} */\n", lines[0]);
    }
    let mut comment = format!("{indent}/**\n");
    for line in lines {
        let _ = writeln!(
            comment,
            "{indent} *{}{line}",
            if line.is_empty() { "" } else { " " }
        );
    }
    let _ = writeln!(comment, "{indent} */");
    comment
}
