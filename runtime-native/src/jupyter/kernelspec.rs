//! Finding kernelspecs the way Jupyter finds them.
//!
//! A kernelspec is `<dir>/kernels/<name>/kernel.json` under each Jupyter data directory,
//! searched in this order (the first spec of a name wins):
//!
//! 1. each entry of `JUPYTER_PATH` (separated as `PATH` is: `:` on Unix);
//! 2. the active environment's `share/jupyter` (`VIRTUAL_ENV`, then `CONDA_PREFIX`), as
//!    Jupyter prefers it inside an environment;
//! 3. the user's data directory (`JUPYTER_DATA_DIR`, else `~/.local/share/jupyter` on
//!    Linux, `~/Library/Application Support/jupyter` on macOS);
//! 4. `/usr/local/share/jupyter` and `/usr/share/jupyter`.
//!
//! A spec whose program is `python` or `python3` runs the interpreter of the environment it
//! was installed in (`<prefix>/bin/python` beside `<prefix>/share/jupyter`) when there is
//! one, not whichever `python` comes first on `PATH`: that is the environment that has the
//! kernel's packages.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How a kernel is interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptMode {
    /// SIGINT to the kernel's process group (the default).
    Signal,
    /// An `interrupt_request` on the control channel.
    Message,
}

/// One installed kernel: what `kernel.json` says, and where it was found.
///
/// Its `Debug` output names the environment variables it sets, never their values.
#[derive(Clone, PartialEq)]
pub struct KernelSpec {
    /// Its name (the directory's).
    pub name: String,
    /// The directory holding its `kernel.json`.
    pub dir: PathBuf,
    /// The command line, with `{connection_file}` where the connection file goes. Its
    /// program is already resolved to the spec's own environment where that applies.
    pub argv: Vec<String>,
    /// The name people see.
    pub display_name: String,
    /// The language it runs.
    pub language: String,
    /// How to interrupt it.
    pub interrupt_mode: InterruptMode,
    /// Environment variables it sets.
    pub env: BTreeMap<String, String>,
}

impl std::fmt::Debug for KernelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelSpec")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("argv", &self.argv)
            .field("display_name", &self.display_name)
            .field("language", &self.language)
            .field("interrupt_mode", &self.interrupt_mode)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why no kernel could be found or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelSpecError {
    /// No kernelspec of that name; the message lists the ones found.
    #[error("no Jupyter kernel named {name:?}; {}", found_names(.found))]
    NotFound {
        /// The name asked for.
        name: String,
        /// The names found, in search order.
        found: Vec<String>,
    },
    /// A `kernel.json` that is not a kernelspec.
    #[error("{path}: not a kernelspec: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

fn found_names(found: &[String]) -> String {
    if found.is_empty() {
        "none is installed (install one with `python -m ipykernel install --user`, or set \
         JUPYTER_PATH to a directory holding kernels/<name>/kernel.json)"
            .to_owned()
    } else {
        format!("installed: {}", found.join(", "))
    }
}

/// `kernel.json` as Jupyter writes it; other fields are ignored.
#[derive(Deserialize)]
struct KernelJson {
    argv: Vec<String>,
    display_name: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    interrupt_mode: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// The directories searched, in order, from this process's environment.
pub fn search_path() -> Vec<PathBuf> {
    search_path_from(|name| std::env::var_os(name), dirs::data_dir())
}

/// The search path given a way to read environment variables and the user data directory.
fn search_path_from(
    var: impl Fn(&str) -> Option<OsString>,
    user_data: Option<PathBuf>,
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(paths) = var("JUPYTER_PATH") {
        dirs.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
    }
    for prefix in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = var(prefix).filter(|p| !p.is_empty()) {
            dirs.push(PathBuf::from(prefix).join("share").join("jupyter"));
        }
    }
    match var("JUPYTER_DATA_DIR") {
        Some(dir) if !dir.is_empty() => dirs.push(dir.into()),
        _ => dirs.extend(user_data.map(|data| data.join("jupyter"))),
    }
    dirs.push("/usr/local/share/jupyter".into());
    dirs.push("/usr/share/jupyter".into());
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|dir| seen.insert(dir.clone()));
    dirs
}

/// Every kernelspec found under `search_path`, the first of each name, in search order.
/// Unreadable specs are left out (and logged); [`find`] reports them by name.
pub fn list(search_path: &[PathBuf]) -> Vec<KernelSpec> {
    let mut found: Vec<KernelSpec> = Vec::new();
    for (name, path) in candidates(search_path) {
        if found.iter().any(|spec| spec.name == name) {
            continue;
        }
        match read(&name, &path) {
            Ok(spec) => found.push(spec),
            Err(error) => tracing::warn!(%error, "skipping a kernelspec"),
        }
    }
    found
}

/// The kernelspec `name`: the first under `search_path` that has it.
pub fn find(name: &str, search_path: &[PathBuf]) -> Result<KernelSpec, KernelSpecError> {
    match candidates(search_path).find(|(found, _)| found == name) {
        Some((name, path)) => read(&name, &path),
        None => Err(KernelSpecError::NotFound {
            name: name.to_owned(),
            found: list(search_path)
                .into_iter()
                .map(|spec| spec.name)
                .collect(),
        }),
    }
}

/// `(name, kernel.json path)` of every spec directory, in search order (names sorted
/// within a directory).
fn candidates(search_path: &[PathBuf]) -> impl Iterator<Item = (String, PathBuf)> + '_ {
    search_path.iter().flat_map(|dir| {
        let mut specs: Vec<(String, PathBuf)> = std::fs::read_dir(dir.join("kernels"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let json = entry.path().join("kernel.json");
                json.is_file().then_some((name, json))
            })
            .collect();
        specs.sort();
        specs
    })
}

fn read(name: &str, path: &Path) -> Result<KernelSpec, KernelSpecError> {
    let invalid = |reason: String| KernelSpecError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|error| invalid(error.to_string()))?;
    let json: KernelJson =
        serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    if json.argv.is_empty() {
        return Err(invalid("`argv` is empty".to_owned()));
    }
    if !json
        .argv
        .iter()
        .any(|arg| arg.contains("{connection_file}"))
    {
        return Err(invalid("`argv` has no {connection_file}".to_owned()));
    }
    let interrupt_mode = match json.interrupt_mode.as_deref() {
        None | Some("signal") => InterruptMode::Signal,
        Some("message") => InterruptMode::Message,
        Some(other) => return Err(invalid(format!("unknown interrupt_mode {other:?}"))),
    };
    // Absolute, so the interpreter found beside it stays right in a kernel run from
    // another directory (a relative JUPYTER_PATH entry, for one).
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let mut argv = json.argv;
    if let Some(own) = own_interpreter(&argv[0], &dir) {
        argv[0] = own;
    }
    Ok(KernelSpec {
        name: name.to_owned(),
        dir,
        argv,
        display_name: json.display_name,
        language: json.language,
        interrupt_mode,
        env: json.env,
    })
}

/// `<prefix>/bin/<program>` for a spec in `<prefix>/share/jupyter/kernels/<name>` whose
/// program is a bare `python` or `python3`, if that interpreter exists.
fn own_interpreter(program: &str, spec_dir: &Path) -> Option<String> {
    if program != "python" && program != "python3" {
        return None;
    }
    let kernels = spec_dir.parent()?;
    let jupyter = kernels.parent()?;
    let share = jupyter.parent()?;
    if kernels.file_name()? != "kernels"
        || jupyter.file_name()? != "jupyter"
        || share.file_name()? != "share"
    {
        return None;
    }
    let interpreter = share.parent()?.join("bin").join(program);
    interpreter
        .is_file()
        .then(|| interpreter.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_path_splits_jupyter_path_and_keeps_jupyters_order() {
        let env = |name: &str| -> Option<OsString> {
            match name {
                "JUPYTER_PATH" => Some("/a:/b::/a".into()),
                "VIRTUAL_ENV" => Some("/venv".into()),
                _ => None,
            }
        };
        let path = search_path_from(env, Some("/home/u/.local/share".into()));
        let expected: Vec<PathBuf> = [
            "/a",
            "/b",
            "/venv/share/jupyter",
            "/home/u/.local/share/jupyter",
            "/usr/local/share/jupyter",
            "/usr/share/jupyter",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(path, expected);
    }

    fn write_spec(dir: &Path, name: &str, json: &str) -> PathBuf {
        let spec = dir.join("kernels").join(name);
        std::fs::create_dir_all(&spec).unwrap();
        std::fs::write(spec.join("kernel.json"), json).unwrap();
        spec
    }

    #[test]
    fn the_first_spec_of_a_name_wins_and_an_unknown_name_lists_what_was_found() {
        let root = tempfile::tempdir().unwrap();
        let (first, second) = (root.path().join("first"), root.path().join("second"));
        let spec =
            r#"{"argv": ["k", "-f", "{connection_file}"], "display_name": "K1", "language": "x"}"#;
        write_spec(&first, "k", spec);
        write_spec(&second, "k", &spec.replace("K1", "K2"));
        write_spec(&second, "other", &spec.replace("K1", "Other"));
        write_spec(&second, "broken", "{not json");
        let path = [first, second];
        assert_eq!(find("k", &path).unwrap().display_name, "K1");
        let names: Vec<String> = list(&path).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["k", "other"]);
        let missing = find("julia", &path).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "no Jupyter kernel named \"julia\"; installed: k, other"
        );
        let broken = find("broken", &path).unwrap_err();
        assert!(
            matches!(broken, KernelSpecError::Invalid { .. }),
            "{broken}"
        );
        let none = find("k", &[root.path().join("nowhere")]).unwrap_err();
        assert!(none.to_string().contains("none is installed"), "{none}");
    }

    #[test]
    fn a_python_spec_runs_its_own_environments_interpreter() {
        let prefix = tempfile::tempdir().unwrap();
        let data = prefix.path().join("share").join("jupyter");
        let spec = r#"{"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                       "display_name": "Python 3", "language": "python", "interrupt_mode": "message"}"#;
        write_spec(&data, "python3", spec);
        let found = find("python3", std::slice::from_ref(&data)).unwrap();
        assert_eq!(
            found.argv[0], "python",
            "no interpreter in the prefix: left as it is"
        );
        assert_eq!(found.interrupt_mode, InterruptMode::Message);
        std::fs::create_dir_all(prefix.path().join("bin")).unwrap();
        std::fs::write(prefix.path().join("bin").join("python"), "").unwrap();
        let found = find("python3", &[data]).unwrap();
        assert_eq!(
            PathBuf::from(&found.argv[0]),
            prefix.path().join("bin").join("python")
        );
    }

    #[test]
    fn a_spec_found_on_a_relative_path_names_its_interpreter_absolutely() {
        let prefix = tempfile::tempdir_in(".").unwrap();
        let name = prefix.path().file_name().unwrap();
        let relative = PathBuf::from(name).join("share").join("jupyter");
        let spec = r#"{"argv": ["python3", "-f", "{connection_file}"], "display_name": "P"}"#;
        write_spec(&relative, "python3", spec);
        std::fs::create_dir_all(prefix.path().join("bin")).unwrap();
        std::fs::write(prefix.path().join("bin").join("python3"), "").unwrap();
        let found = find("python3", &[relative]).unwrap();
        assert!(found.dir.is_absolute(), "{:?}", found.dir);
        let program = PathBuf::from(&found.argv[0]);
        assert!(program.is_absolute(), "{program:?}");
        assert!(program.ends_with(Path::new(name).join("bin").join("python3")));
    }

    #[test]
    fn specs_without_a_connection_file_or_with_a_strange_interrupt_mode_are_refused() {
        let root = tempfile::tempdir().unwrap();
        write_spec(root.path(), "a", r#"{"argv": ["k"], "display_name": "A"}"#);
        write_spec(
            root.path(),
            "b",
            r#"{"argv": ["k", "{connection_file}"], "display_name": "B", "interrupt_mode": "pigeon"}"#,
        );
        let path = [root.path().to_path_buf()];
        for (name, reason) in [("a", "no {connection_file}"), ("b", "pigeon")] {
            let error = find(name, &path).unwrap_err().to_string();
            assert!(error.contains(reason), "{error}");
        }
    }
}
