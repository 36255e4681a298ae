//! `.ipynb` import and export against real notebooks nobody here wrote: the test files that
//! ship in the source distributions of nbformat, nbclient and nbconvert (scripts/bench-venv
//! downloads them into `target/ipynb-corpus`). Every nbformat 4 notebook imports, exports
//! back to what it was (up to the normalisations `runtime_core::ipynb` documents), and the
//! export passes the reference validator, `nbformat.validate`, whenever the file did.
//!
//! Without the corpus or Python's nbformat the test says so and does nothing, unless
//! `RUNTIME_REQUIRE_JUPYTER` is set (scripts/check sets it), when it fails.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

use runtime_core::{NotebookState, ipynb};
use runtime_native::jupyter::kernelspec;
use serde_json::Value;

fn required() -> bool {
    std::env::var_os("RUNTIME_REQUIRE_JUPYTER").is_some()
}

/// The corpus directory, if it is there.
fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("RUNTIME_IPYNB_CORPUS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ipynb-corpus"),
        PathBuf::from,
    );
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        !required(),
        "RUNTIME_REQUIRE_JUPYTER is set but {} is missing",
        dir.display()
    );
    eprintln!(
        "skipped: no notebook corpus at {} (scripts/bench-venv makes it)",
        dir.display()
    );
    None
}

/// The Python of the python3 kernelspec's environment (which has nbformat).
fn python() -> Option<PathBuf> {
    match kernelspec::find("python3", &kernelspec::search_path()) {
        Ok(spec) => Some(PathBuf::from(&spec.argv[0])),
        Err(error) => {
            assert!(!required(), "RUNTIME_REQUIRE_JUPYTER is set but: {error}");
            eprintln!("skipped: {error}");
            None
        }
    }
}

fn notebooks(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            notebooks(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "ipynb") {
            found.push(path);
        }
    }
    found.sort();
}

/// What must survive a round trip: the file with its sources joined, its minor version
/// at least 4.5, and cell ids only where the file had valid, unique ones.
fn comparable(notebook: &Value, ids_from: &Value) -> Value {
    let mut notebook = notebook.clone();
    let minor = notebook["nbformat_minor"].as_u64().unwrap_or(0);
    notebook["nbformat_minor"] = Value::from(minor.max(ipynb::NBFORMAT_MINOR));
    let kept_ids = kept_ids(ids_from);
    if let Some(Value::Array(cells)) = notebook.get_mut("cells") {
        for (index, cell) in cells.iter_mut().enumerate() {
            let Value::Object(cell) = cell else { continue };
            // A cell without a source (an invalid file) gets an empty one.
            let source = cell.get("source").map_or_else(String::new, joined);
            cell.insert("source".into(), Value::from(source));
            if !kept_ids.get(index).copied().unwrap_or(false) {
                cell.remove("id");
            }
        }
    }
    notebook
}

/// Which cells of a file have ids an import keeps.
fn kept_ids(notebook: &Value) -> Vec<bool> {
    let mut seen = std::collections::HashSet::new();
    notebook["cells"]
        .as_array()
        .map(|cells| {
            cells
                .iter()
                .map(|cell| match cell.get("id").and_then(Value::as_str) {
                    Some(id) => {
                        let valid = (1..=64).contains(&id.len())
                            && id
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                        valid && seen.insert(id.to_owned())
                    }
                    None => false,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Where two JSON values first differ, briefly.
fn difference(expected: &Value, found: &Value, at: &str) -> Option<String> {
    let brief = |value: &Value| {
        let text = value.to_string();
        match text.char_indices().nth(120) {
            Some((end, _)) => format!("{}...", &text[..end]),
            None => text,
        }
    };
    match (expected, found) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()) {
                let here = format!("{at}/{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => {
                        if let Some(found) = difference(x, y, &here) {
                            return Some(found);
                        }
                    }
                    (x, y) => return Some(format!("{here}: {x:?} became {y:?}")),
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(n, (x, y))| difference(x, y, &format!("{at}/{n}"))),
        (a, b) if a == b => None,
        (a, b) => Some(format!("{at}: {} became {}", brief(a), brief(b))),
    }
}

fn joined(source: &Value) -> String {
    match source {
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        Value::String(text) => text.clone(),
        _ => String::new(),
    }
}

fn fold(events: &[runtime_core::Event]) -> NotebookState {
    let mut state = NotebookState::new();
    for (seq, event) in (1..).zip(events) {
        state.apply(seq, event);
    }
    state
}

/// Validates each file with `nbformat.validate`; the error of each that fails.
fn validate(python: &Path, files: &[PathBuf]) -> Vec<Option<String>> {
    let script = "import json, sys, nbformat\n\
                  for path in sys.argv[1:]:\n\
                  \x20   try:\n\
                  \x20       nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)\n\
                  \x20       nbformat.validate(nb)\n\
                  \x20       print(json.dumps(None))\n\
                  \x20   except Exception as e:\n\
                  \x20       print(json.dumps(type(e).__name__ + ': ' + str(e).splitlines()[0]))\n";
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(files)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdicts: Vec<Option<String>> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(verdicts.len(), files.len());
    verdicts
}

#[test]
fn real_notebooks_round_trip_and_their_exports_pass_nbformat_validate() {
    let (Some(dir), Some(python)) = (corpus(), python()) else {
        return;
    };
    let mut files = Vec::new();
    notebooks(&dir, &mut files);
    assert!(
        files.len() >= 50,
        "a corpus of {} notebooks is too small",
        files.len()
    );
    let exports = tempfile::tempdir().unwrap();
    let (mut originals, mut exported) = (Vec::new(), Vec::new());
    let mut refused = Vec::new();
    let mut identical = 0;
    for (n, path) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap();
        let original: Value = serde_json::from_str(&text).unwrap();
        let events = match ipynb::import(&text) {
            Ok(events) => events,
            Err(error) => {
                assert_ne!(original["nbformat"], 4, "{}: {error}", path.display());
                assert!(error.to_string().contains("only nbformat 4"), "{error}");
                refused.push(path);
                continue;
            }
        };
        let state = fold(&events);
        let written = ipynb::to_string(&state);
        let export: Value = serde_json::from_str(&written).unwrap();
        if let Some(difference) = difference(
            &comparable(&original, &original),
            &comparable(&export, &original),
            "",
        ) {
            panic!("{} does not round-trip: {difference}", path.display());
        }
        // Importing the export gives the same export: nothing drifts on a second trip.
        let again = ipynb::to_string(&fold(&ipynb::import(&written).unwrap()));
        assert_eq!(again, written, "{}", path.display());
        identical += usize::from(written == text);
        let out = exports.path().join(format!("{n}.ipynb"));
        std::fs::write(&out, written).unwrap();
        originals.push(path.clone());
        exported.push(out);
    }
    let before = validate(&python, &originals);
    let after = validate(&python, &exported);
    let (mut fixed, mut still_invalid) = (0, Vec::new());
    for ((path, before), after) in originals.iter().zip(&before).zip(&after) {
        match (before, after) {
            (None, Some(error)) => {
                panic!("{}: the export fails validation: {error}", path.display())
            }
            (Some(_), None) => fixed += 1,
            (Some(_), Some(error)) => still_invalid.push(format!("{}: {error}", path.display())),
            (None, None) => {}
        }
    }
    eprintln!(
        "{} notebooks: {} round-tripped ({identical} byte for byte; {fixed} the validator \
         refused before and accepts after export; still invalid as given: {still_invalid:?}), \
         {} refused as not nbformat 4",
        files.len(),
        originals.len(),
        refused.len()
    );
    assert!(refused.len() < files.len() / 4);
}

#[test]
fn bad_files_are_clear_errors() {
    for (text, expected) in [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        (
            "{\"nbformat\": 3, \"nbformat_minor\": 0, \"worksheets\": []}",
            "nbformat 3 notebooks are not supported",
        ),
        (
            "{\"nbformat\": 4, \"nbformat_minor\": 5, \"metadata\": {}}",
            "no `cells`",
        ),
        (
            "{\"nbformat\": 4, \"nbformat_minor\": 5, \"cells\": [1]}",
            "cell 1 must be an object, not a number",
        ),
        (
            "{\"nbformat\": 4, \"cells\": [{\"cell_type\": \"code\", \"source\": 5}]}",
            "cell 1's `source` must be",
        ),
        (
            "{\"nbformat\": 4, \"cells\": [{\"source\": \"\"}]}",
            "cell 1 has no `cell_type`",
        ),
        (
            "{\"nbformat\": 4, \"cells\": [{\"cell_type\": \"code\", \"execution_count\": -1}]}",
            "`execution_count` must be a whole number or null",
        ),
    ] {
        let error = ipynb::import(text).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}: {error}");
    }
}

/// nbclient's own test notebooks that need nothing but ipykernel and nbclient's defaults.
const RUN_BY_BOTH: &[&str] = &[
    "HelloWorld",
    "Factorials",
    "Empty Cell",
    "Error",
    "Clear Output",
    "update-display-id",
    "Unicode",
    "UnicodePy3",
    "SVG",
    "Inline Image",
    "Disable Stdin",
    "Skip Exceptions",
    "Skip Exceptions with Cell Tags",
    "Skip Execution with Cell Tag",
];

/// What must match between two runs of a notebook: each code cell's execution count and
/// outputs, without what depends on timing: a traceback's file names, the timing metadata
/// nbclient adds, text that is a list of lines in one and a string in the other, and the
/// order of stdout against stderr (ipykernel flushes the two streams from a thread of its
/// own), so each stream's text is compared whole, and the other outputs in order.
fn run_outcome(notebook: &Value) -> Vec<Value> {
    let text = |value: &Value| Value::from(joined(value));
    notebook["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|cell| cell["cell_type"] == "code")
        .map(|cell| {
            let (mut stdout, mut stderr, mut others) = (String::new(), String::new(), Vec::new());
            for output in cell["outputs"].as_array().unwrap() {
                let mut output = output.as_object().unwrap().clone();
                if output["output_type"] == "stream" {
                    let stream = if output["name"] == "stderr" {
                        &mut stderr
                    } else {
                        &mut stdout
                    };
                    stream.push_str(&joined(&output["text"]));
                    continue;
                }
                if let Some(Value::Object(data)) = output.get_mut("data") {
                    for value in data.values_mut() {
                        if value.is_array() {
                            *value = text(value);
                        }
                    }
                }
                if output.contains_key("traceback") {
                    output.insert("traceback".into(), Value::from("(a traceback)"));
                }
                others.push(Value::Object(output));
            }
            serde_json::json!({"execution_count": cell["execution_count"], "stdout": stdout,
                               "stderr": stderr, "outputs": others})
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_run_gives_what_nbclient_gives() {
    let (Some(dir), Some(python)) = (corpus(), python()) else {
        return;
    };
    let files = dir.join("nbclient-0.11.0/tests/files");
    // nbclient runs each notebook in its directory, stops at the first error, and writes the
    // notebook as far as it got.
    let script = "import sys, nbformat, nbclient\n\
                  path, out = sys.argv[1], sys.argv[2]\n\
                  nb = nbformat.read(path, as_version=4)\n\
                  client = nbclient.NotebookClient(nb, kernel_name='python3', timeout=60,\n\
                  \x20   resources={'metadata': {'path': sys.argv[3]}})\n\
                  try:\n\
                  \x20   client.execute()\n\
                  except nbclient.exceptions.CellExecutionError:\n\
                  \x20   pass\n\
                  nbformat.write(nb, out)\n";
    let scratch = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    for name in RUN_BY_BOTH {
        let path = files.join(format!("{name}.ipynb"));
        let theirs_path = scratch.path().join(format!("{name}.nbclient.ipynb"));
        let ran = Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(&path)
            .arg(&theirs_path)
            .arg(&files)
            .output()
            .unwrap();
        assert!(
            ran.status.success(),
            "nbclient on {name}: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
        let theirs: Value = serde_json::from_slice(&std::fs::read(&theirs_path).unwrap()).unwrap();

        let options = runtime_native::ipynb::RunOptions {
            cwd: Some(files.clone()),
            timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        let events = runtime_native::ipynb::read(&path).unwrap();
        let report = runtime_native::ipynb::run(events, options, |_| {})
            .await
            .unwrap();
        let ours = ipynb::export(&report.state);
        let ours_path = scratch.path().join(format!("{name}.ours.ipynb"));
        runtime_native::ipynb::write(&ours_path, &report.state).unwrap();
        written.push(ours_path);
        if let Some(difference) = difference(
            &Value::from(run_outcome(&theirs)),
            &Value::from(run_outcome(&ours)),
            "",
        ) {
            panic!("{name}: our run differs from nbclient's at {difference}");
        }
    }
    // What a run writes is a valid notebook.
    for (path, verdict) in written.iter().zip(validate(&python, &written)) {
        assert_eq!(verdict, None, "{}", path.display());
    }
}
