//! Named backends from a TOML file, and the handler they make: the chosen backend, its
//! fallback, limits and redaction.
//!
//! ```toml
//! use = "shell"             # the backend that serves the notebook
//! fallback = "python"       # optional: runs when `use` could not have done anything
//! mode = "auto"             # auto | primary-only | secondary-only
//! fall_back_after_silent_failure = false  # also after a failure with no output (may repeat effects)
//! empty_is_failure = false  # count a run without output as failed (may repeat effects)
//!
//! [redact]                  # the agent's own auth token is always masked
//! literals = ["hunter2"]
//! token_shapes = true
//!
//! [backends.shell]
//! kind = "job"              # job | session | adapter | http | codex | jupyter
//! program = "bash"
//! args = ["-c"]
//! input = "argument"        # stdin (default) | argument
//! max_runtime = "30s"
//! max_output_bytes = 1048576
//!
//! [backends.python]
//! kind = "session"
//! program = "python3"
//! args = ["-i", "-q", "-u", "-c", "import sys; sys.ps1 = sys.ps2 = ''"]
//! marker = "<<done>>"
//! send_after = "print('<<done>>')"
//!
//! [backends.kernel]
//! kind = "jupyter"          # a real Jupyter kernel, found as Jupyter finds kernelspecs
//! kernel = "python3"
//! startup_timeout = "60s"
//! ```
//!
//! Every backend takes `max_output_bytes`, `max_runtime`, `interrupt_grace` and
//! `terminate_grace` (the [`Ladder`]); process backends take `program`, `args`, `env`
//! and `cwd`. The backend guide (`docs/backends.md`) lists every key. A bad file is
//! reported with its path, the key, what was expected and what was found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runtime_core::handler::{Fallback, FallbackMode, HandlerExt, Redactor};
use runtime_core::{ExecutionContext, ExecutionError, ExecutionHandler, Outcome};
use toml::{Table, Value};

use crate::AuthToken;
use crate::TokioClock;
use crate::files::{MAX_CONFIG_FILE, SmallFileError, read_small_text, toml_error_without_values};
use crate::http::Http;
use crate::jupyter::{Jupyter, KernelSpec};
use crate::process::{Adapter, Codex, Input, Job, Ladder, Program, Session, TurnEnd};

/// Where a backends file is looked for by default:
/// `<config dir>/runtime-agents/backends.toml`.
pub fn default_backends_path() -> Option<PathBuf> {
    dirs::config_dir().map(|dir| dir.join("runtime-agents").join("backends.toml"))
}

/// Why a backends file is unusable: which file, which key, what was expected.
#[derive(Debug, thiserror::Error)]
pub enum BackendConfigError {
    /// The file could not be read: missing, not a regular file, larger than 1 MiB or not
    /// UTF-8.
    #[error("backends file: {0}")]
    Read(#[from] SmallFileError),
    /// The file is not TOML.
    #[error("{path}: not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column, never a value.
        message: String,
    },
    /// A key has a bad value, is missing, or is unknown.
    #[error("{path}: {key}: expected {expected}; {found}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The key, dotted: `backends.shell.max_runtime`.
        key: String,
        /// What it must be.
        expected: String,
        /// What is there instead.
        found: String,
    },
}

/// A parsed backends file.
#[derive(Debug)]
pub struct BackendsConfig {
    path: PathBuf,
    primary: String,
    fallback: Option<String>,
    mode: FallbackMode,
    after_silent_failure: bool,
    empty_is_failure: bool,
    redactor: Redactor,
    backends: BTreeMap<String, BackendSpec>,
}

/// One named backend as configured.
#[derive(Debug)]
struct BackendSpec {
    kind: Kind,
    ladder: Ladder,
    max_output_bytes: Option<u64>,
    max_runtime: Option<Duration>,
    /// The program it runs, for the check at start.
    program: Option<ProgramCheck>,
}

/// A backend's program as [`BackendsConfig::check_programs`] checks it.
#[derive(Debug, Clone)]
struct ProgramCheck {
    /// The key that names it (`backends.codex.program`).
    key: String,
    program: String,
    /// The `PATH` it is looked up on, if its `env` sets one.
    path_env: Option<String>,
    /// An agent CLI, which must answer `--version`.
    answers_version: bool,
}

/// How long a program may take to answer `--version`.
const VERSION_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
enum Kind {
    Job(Job),
    Session(Session),
    Adapter(Adapter),
    Http(Http),
    Codex(Codex),
    Jupyter(Jupyter),
}

/// A backend whose process outlives one execution: stopped when the agent stops.
enum LongLived {
    Adapter(Arc<Adapter>),
    Session(Arc<Session>),
    Kernel(Arc<Jupyter>),
}

impl LongLived {
    async fn shutdown(&self) {
        match self {
            LongLived::Adapter(adapter) => adapter.shutdown().await,
            LongLived::Session(session) => session.shutdown().await,
            LongLived::Kernel(kernel) => kernel.shutdown().await,
        }
    }
}

/// The handler a [`BackendsConfig`] makes, and what to shut down at exit.
pub struct Backends {
    handler: Arc<dyn ExecutionHandler>,
    long_lived: Vec<LongLived>,
    /// The backend serving the notebook.
    pub name: String,
    cancel_grace: Duration,
}

/// How much longer than a backend's [`Ladder::longest_stop`] whatever waits for the stop
/// waits: time for the handler to see the cancel and report, on a loaded machine.
pub const STOP_MARGIN: Duration = Duration::from_secs(1);

impl Backends {
    /// The handler to give the agent.
    pub fn handler(&self) -> Arc<dyn ExecutionHandler> {
        self.handler.clone()
    }

    /// The least cancel grace the agent needs so that these backends always finish their
    /// stop ladder before it gives up on them: the longest [`Ladder::longest_stop`] of the
    /// backends in use (for a Jupyter kernel, after its `interrupt_grace` of waiting for
    /// idle), plus [`STOP_MARGIN`]. An agent should use at least this as
    /// [`AgentOptions::cancel_grace`](runtime_core::AgentOptions::cancel_grace):
    ///
    /// ```
    /// # use runtime_native::backends::BackendsConfig;
    /// # let backends = BackendsConfig::parse("use = \"sh\"\n[backends.sh]\nkind = \"job\"\nprogram = \"sh\"\nterminate_grace = \"10s\"\n", "b.toml")?.build(None);
    /// let mut options = runtime_core::AgentOptions::new("alice");
    /// options.cancel_grace = options.cancel_grace.max(backends.cancel_grace());
    /// assert_eq!(options.cancel_grace.as_secs(), 14);
    /// # Ok::<(), runtime_native::backends::BackendConfigError>(())
    /// ```
    pub fn cancel_grace(&self) -> Duration {
        self.cancel_grace
    }

    /// Runs `serving` (the agent) and meanwhile starts the backends' Jupyter kernels, so
    /// that a notebook's first cell finds its kernel ready instead of waiting for it to
    /// start. A kernel that fails to start is logged here and tried again at the first
    /// cell, which then fails with the reason. Returns what `serving` returns, as soon as
    /// it does (a start still under way is dropped, and its kernel killed).
    ///
    /// ```no_run
    /// # async fn demo(backends: runtime_native::backends::Backends, agent: runtime_core::RuntimeAgent) {
    /// let ended = backends.warm_up_while(runtime_native::run_until_signal(agent)).await;
    /// backends.shutdown().await;
    /// # let _ = ended;
    /// # }
    /// ```
    pub async fn warm_up_while<F: std::future::Future>(&self, serving: F) -> F::Output {
        let kernels = self.long_lived.iter().filter_map(|backend| match backend {
            LongLived::Kernel(kernel) => Some(kernel),
            _ => None,
        });
        let warm_up = futures::future::join_all(kernels.map(|kernel| async move {
            if let Err(error) = kernel.warm_up().await {
                tracing::warn!(kernel = kernel.kernel_name(), %error, "the kernel did not start");
            }
        }));
        let (mut serving, mut warm_up) = (std::pin::pin!(serving), std::pin::pin!(warm_up));
        let mut warming = true;
        loop {
            tokio::select! {
                output = &mut serving => return output,
                _ = &mut warm_up, if warming => warming = false,
            }
        }
    }

    /// Stops long-lived processes (adapters and kernels get a shutdown request first).
    pub async fn shutdown(&self) {
        for backend in &self.long_lived {
            backend.shutdown().await;
        }
    }
}

impl BackendsConfig {
    /// Reads and checks `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, BackendConfigError> {
        let path = path.as_ref().to_path_buf();
        let text =
            read_small_text(&path, MAX_CONFIG_FILE)?.ok_or_else(|| SmallFileError::Read {
                path: path.clone(),
                source: std::io::ErrorKind::NotFound.into(),
            })?;
        Self::parse(&text, path)
    }

    /// Parses `text` as if read from `path` (which errors name).
    pub fn parse(text: &str, path: impl Into<PathBuf>) -> Result<Self, BackendConfigError> {
        let path = path.into();
        let table: Table =
            text.parse()
                .map_err(|error: toml::de::Error| BackendConfigError::Syntax {
                    path: path.clone(),
                    message: toml_error_without_values(&error, text),
                })?;
        let mut top = Section::new(&path, "", &table);
        let backends_table = top.table("backends")?.ok_or_else(|| {
            top.error(
                "backends",
                "a [backends.<name>] table for each backend",
                "there is none".into(),
            )
        })?;
        let mut backends = BTreeMap::new();
        for (name, value) in backends_table {
            let key = format!("backends.{name}");
            let Value::Table(table) = value else {
                return Err(top.error(&key, "a table", found(value)));
            };
            backends.insert(
                name.clone(),
                BackendSpec::parse(Section::new(&path, &key, table), name)?,
            );
        }
        let names = || {
            backends
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let primary = match top.string("use")? {
            Some(name) => name,
            None if backends.len() == 1 => backends.keys().next().cloned().unwrap_or_default(),
            None => {
                return Err(top.error(
                    "use",
                    &format!("the backend to use, one of: {}", names()),
                    "it is missing".into(),
                ));
            }
        };
        let fallback = top.string("fallback")?;
        for (key, name) in [("use", Some(&primary)), ("fallback", fallback.as_ref())] {
            if let Some(name) = name.filter(|name| !backends.contains_key(*name)) {
                return Err(top.error(
                    key,
                    &format!("one of the backends: {}", names()),
                    found_text(name),
                ));
            }
        }
        let mode = match top.string("mode")? {
            Some(mode) => mode.parse().map_err(|_| {
                top.error(
                    "mode",
                    "auto, primary-only or secondary-only",
                    found_text(&mode),
                )
            })?,
            None => FallbackMode::Auto,
        };
        let after_silent_failure = top.bool("fall_back_after_silent_failure")?.unwrap_or(false);
        let empty_is_failure = top.bool("empty_is_failure")?.unwrap_or(false);
        let redactor = match top.table("redact")? {
            Some(redact) => {
                let mut section = Section::new(&path, "redact", redact);
                let mut redactor =
                    Redactor::new().token_shapes(section.bool("token_shapes")?.unwrap_or(true));
                for literal in section.strings("literals")?.unwrap_or_default() {
                    redactor = redactor.literal(literal);
                }
                section.finish()?;
                redactor
            }
            None => Redactor::new(),
        };
        top.finish()?;
        Ok(BackendsConfig {
            path,
            primary,
            fallback,
            mode,
            after_silent_failure,
            empty_is_failure,
            redactor,
            backends,
        })
    }

    /// Backends with one: the Jupyter kernel `spec`, as a backends file's `kind = "jupyter"`
    /// entry gives it by default (the process agent's `--kernel NAME`). It is named after
    /// the kernel.
    ///
    /// ```no_run
    /// use runtime_native::backends::BackendsConfig;
    /// use runtime_native::jupyter::kernelspec;
    ///
    /// let spec = kernelspec::find("python3", &kernelspec::search_path())?;
    /// let backends = BackendsConfig::kernel(spec).build(None);
    /// assert_eq!(backends.name, "python3");
    /// # Ok::<(), kernelspec::KernelSpecError>(())
    /// ```
    pub fn kernel(spec: KernelSpec) -> BackendsConfig {
        let name = spec.name.clone();
        let ladder = Ladder::default();
        let backend = BackendSpec {
            kind: Kind::Jupyter(
                Jupyter::new(spec)
                    .ladder(ladder)
                    .interrupt_grace(ladder.interrupt_grace),
            ),
            ladder,
            max_output_bytes: None,
            max_runtime: None,
            program: None,
        };
        BackendsConfig {
            path: PathBuf::from(format!("--kernel {name}")),
            primary: name.clone(),
            fallback: None,
            mode: FallbackMode::Auto,
            after_silent_failure: false,
            empty_is_failure: false,
            redactor: Redactor::new(),
            backends: BTreeMap::from([(name, backend)]),
        }
    }

    /// The names of the configured backends.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.backends.keys().map(String::as_str)
    }

    /// The backend that will serve: the file's `use`, or what [`select`](Self::select) chose.
    pub fn selected(&self) -> &str {
        &self.primary
    }

    /// Serve with backend `name` instead of the file's `use`.
    pub fn select(mut self, name: &str) -> Result<Self, BackendConfigError> {
        if !self.backends.contains_key(name) {
            let names = self.names().collect::<Vec<_>>().join(", ");
            return Err(BackendConfigError::Key {
                path: self.path,
                key: "use".to_owned(),
                expected: format!("one of the backends: {names}"),
                found: format!("--backend asked for {name:?}"),
            });
        }
        self.primary = name.to_owned();
        Ok(self)
    }

    /// Checks that the program of every backend in use (the chosen one and its fallback)
    /// exists, on `PATH` or at its path, and that an agent CLI (codex) answers `--version`:
    /// an agent calls it at start, so that a missing or broken program is a clear error
    /// then, not at the first cell. Kernels are found when they start.
    pub async fn check_programs(&self) -> Result<(), BackendConfigError> {
        let in_use = std::iter::once(&self.primary).chain(self.fallback.as_ref());
        for check in in_use.filter_map(|name| self.backends.get(name)?.program.as_ref()) {
            let fail = |found: String| BackendConfigError::Key {
                path: self.path.clone(),
                key: check.key.clone(),
                expected: "a program this machine has: a name on PATH or a path".to_owned(),
                found,
            };
            let Some(found) = find_program(&check.program, check.path_env.as_deref()) else {
                return Err(fail(format!(
                    "{:?} is not {}",
                    check.program,
                    if check.program.contains('/') {
                        "an executable file"
                    } else {
                        "on PATH"
                    }
                )));
            };
            if check.answers_version {
                answers_version(&found)
                    .await
                    .map_err(|why| fail(format!("`{} --version` {why}", check.program)))?;
            }
        }
        Ok(())
    }

    /// Runs every backend in `dir` (a notebook's worktree, as a gateway gives it): a
    /// backend without `cwd` works in `dir`, one with a relative `cwd` under it; an
    /// absolute `cwd` is kept as configured. HTTP backends run no program and are left.
    ///
    /// ```
    /// # use runtime_native::backends::BackendsConfig;
    /// let text = "[backends.sh]\nkind = \"job\"\nprogram = \"sh\"\n";
    /// let backends = BackendsConfig::parse(text, "b.toml")?.working_dir("/tmp".as_ref()).build(None);
    /// # Ok::<(), runtime_native::backends::BackendConfigError>(())
    /// ```
    pub fn working_dir(mut self, dir: &Path) -> Self {
        for spec in self.backends.values_mut() {
            let cwd = match &mut spec.kind {
                Kind::Job(job) => &mut job.program_mut().cwd,
                Kind::Session(session) => &mut session.program_mut().cwd,
                Kind::Adapter(adapter) => &mut adapter.program_mut().cwd,
                Kind::Codex(codex) => &mut codex.program_mut().cwd,
                Kind::Jupyter(kernel) => kernel.cwd_mut(),
                Kind::Http(_) => continue,
            };
            *cwd = Some(match cwd.take() {
                Some(own) if own.is_absolute() => own,
                Some(own) => dir.join(own),
                None => dir.to_path_buf(),
            });
        }
        self
    }

    /// Builds the handler: the chosen backend (and its fallback), each with its limits,
    /// all behind redaction of the configured literals, token shapes and `token`.
    pub fn build(mut self, token: Option<&AuthToken>) -> Backends {
        let mut long_lived = Vec::new();
        let mut longest_stop = Duration::ZERO;
        let mut take = |name: &str| {
            let spec = self.backends.remove(name)?;
            longest_stop = longest_stop.max(spec.longest_stop());
            Some(spec.into_handler(&mut long_lived))
        };
        let primary = take(&self.primary);
        let secondary = self.fallback.as_deref().and_then(&mut take);
        let handler: Arc<dyn ExecutionHandler> = match (primary, secondary) {
            (Some(primary), Some(secondary)) => Arc::new(
                Fallback::new(primary, secondary)
                    .mode(self.mode)
                    .names(
                        self.primary.clone(),
                        self.fallback.clone().unwrap_or_default(),
                    )
                    .after_silent_failure(self.after_silent_failure)
                    .empty_is_failure(self.empty_is_failure),
            ),
            (Some(primary), None) => primary,
            (None, _) => Arc::new(|_ctx: ExecutionContext| async {
                Err::<Outcome, _>(ExecutionError::Unavailable(
                    "no backend configured".to_owned(),
                ))
            }),
        };
        let mut redactor = self.redactor;
        if let Some(token) = token {
            redactor = redactor.literal(token.expose());
        }
        Backends {
            handler: Arc::new(handler.redact(redactor)),
            long_lived,
            name: self.primary,
            cancel_grace: longest_stop + STOP_MARGIN,
        }
    }
}

/// `program` as a process would find it: a path, or a name on `path_env` (else this
/// process's `PATH`); an executable file either way.
fn find_program(program: &str, path_env: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &Path| {
        std::fs::metadata(path)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    let search = path_env
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"))?;
    std::env::split_paths(&search)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
}

/// Runs `program --version`: it must exit 0 within [`VERSION_TIMEOUT`]. The error says
/// what it did instead.
async fn answers_version(program: &Path) -> Result<(), String> {
    let child = tokio::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(VERSION_TIMEOUT, child).await {
        Err(_) => Err(format!("did not answer in {} s", VERSION_TIMEOUT.as_secs())),
        Ok(Err(error)) => Err(format!("could not run: {error}")),
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => {
            let said = String::from_utf8_lossy(&output.stderr);
            let first = said.lines().next().unwrap_or_default();
            Err(format!("failed ({}): {:.200}", output.status, first))
        }
    }
}

/// The program of the managed runtime `name` (see [`crate::runtimes`]), from the
/// runtime manager's directory.
fn managed_program(name: &str) -> Result<String, String> {
    let dir = crate::runtimes::default_dir()
        .ok_or_else(|| "no data directory here to find managed runtimes in".to_owned())?;
    let manager = crate::runtimes::RuntimeManager::new(&dir, "");
    match manager.get(name) {
        Ok(Some(installed)) => Ok(installed.program.display().to_string()),
        Ok(None) => Err(format!(
            "{name:?} is not installed in {}: run `runtimes setup {name}`",
            dir.display()
        )),
        Err(error) => Err(error.to_string()),
    }
}

impl BackendSpec {
    fn parse(mut s: Section<'_>, name: &str) -> Result<Self, BackendConfigError> {
        let kind_name = s.string("kind")?.ok_or_else(|| {
            s.error(
                "kind",
                "one of job, session, adapter, http, codex, jupyter",
                "it is missing".into(),
            )
        })?;
        let ladder = Ladder {
            interrupt_grace: s
                .duration("interrupt_grace")?
                .unwrap_or(Ladder::default().interrupt_grace),
            terminate_grace: s
                .duration("terminate_grace")?
                .unwrap_or(Ladder::default().terminate_grace),
        };
        let max_output_bytes = s.u64("max_output_bytes")?;
        let max_runtime = s.duration("max_runtime")?;
        let mut program_check = None;
        let mut checked = |program: &Program, answers_version: bool| {
            program_check = Some(ProgramCheck {
                key: format!("backends.{name}.program"),
                program: program.program.clone(),
                path_env: program.env.get("PATH").cloned(),
                answers_version,
            });
        };
        let kind = match kind_name.as_str() {
            "job" => {
                let input = match s.string("input")?.as_deref() {
                    None | Some("stdin") => Input::Stdin,
                    Some("argument") => Input::Argument,
                    Some(other) => {
                        return Err(s.error("input", "stdin or argument", found_text(other)));
                    }
                };
                let program = s.program()?;
                checked(&program, false);
                let mut job = Job::new(program).input(input).ladder(ladder).name(name);
                if let Some(max_runtime) = max_runtime {
                    job = job.max_runtime(max_runtime);
                }
                Kind::Job(job)
            }
            "session" => {
                let program = s.program()?;
                checked(&program, false);
                let marker = s.string("marker")?;
                let send = s.string("send_after")?;
                let error_marker = s.string("error_marker")?;
                let quiet = s.duration("quiet_period")?;
                let turn_end = match (marker, quiet) {
                    (Some(marker), None) => TurnEnd::Marker {
                        marker,
                        send,
                        error_marker,
                    },
                    (None, Some(quiet)) if send.is_none() && error_marker.is_none() => {
                        TurnEnd::Quiet(quiet)
                    }
                    (None, Some(_)) => {
                        let key = if send.is_some() {
                            "send_after"
                        } else {
                            "error_marker"
                        };
                        return Err(s.error(
                            key,
                            "no send_after or error_marker without a marker",
                            "it is set".into(),
                        ));
                    }
                    (Some(_), Some(_)) => {
                        return Err(s.error(
                            "quiet_period",
                            "either marker or quiet_period, not both",
                            "both are set".into(),
                        ));
                    }
                    (None, None) => {
                        return Err(s.error(
                            "marker",
                            "a marker line (preferred) or a quiet_period",
                            "neither is set".into(),
                        ));
                    }
                };
                let mut session = Session::new(program, turn_end).ladder(ladder).name(name);
                if let Some(timeout) = s.duration("inactivity_timeout")? {
                    session = session.inactivity_timeout(timeout);
                }
                Kind::Session(session)
            }
            "adapter" => {
                let program = s.program()?;
                checked(&program, false);
                Kind::Adapter(Adapter::new(program).ladder(ladder).name(name))
            }
            "http" => {
                let url = s.string("url")?.ok_or_else(|| {
                    s.error(
                        "url",
                        "the URL to POST to, http://host:port/path",
                        "it is missing".into(),
                    )
                })?;
                let mut http = Http::new(&url)
                    .map_err(|error| {
                        s.error("url", "an http:// or https:// URL", error.to_string())
                    })?
                    .name(name);
                if let Some(timeout) = s.duration("timeout")?.or(max_runtime) {
                    http = http.timeout(timeout);
                }
                if let Some(ca_file) = s.string("ca_file")? {
                    http = http.ca_file(Path::new(&ca_file)).map_err(|error| {
                        s.error("ca_file", "a PEM file of certificates", error.to_string())
                    })?;
                }
                for (header, value) in s.string_table("headers")?.unwrap_or_default() {
                    http = http.header(&header, value).map_err(|error| {
                        s.error("headers", "header names and values", error.to_string())
                    })?;
                }
                Kind::Http(http)
            }
            "codex" => {
                let mut program = s.program_or("codex")?;
                checked(&program, true);
                let args = std::mem::take(&mut program.args);
                let mut codex = Codex::new()
                    .program(program)
                    .args(args)
                    .exec_args(s.strings("exec_args")?.unwrap_or_default())
                    .ladder(ladder)
                    .name(name);
                if let Some(grace) = s.duration("exit_grace")? {
                    codex = codex.exit_grace(grace);
                }
                if let Some(max_runtime) = max_runtime {
                    codex = codex.max_runtime(max_runtime);
                }
                Kind::Codex(codex)
            }
            "jupyter" => {
                // Looked up when a kernel starts: a file may name kernels this machine
                // lacks for backends it does not use.
                let name_of_kernel = s.string("kernel")?.unwrap_or_else(|| "python3".to_owned());
                // Its interrupt waits `interrupt_grace` for idle before the ladder starts.
                let mut kernel = Jupyter::named(name_of_kernel)
                    .ladder(ladder)
                    .interrupt_grace(ladder.interrupt_grace);
                if let Some(cwd) = s.string("cwd")? {
                    kernel = kernel.cwd(cwd);
                }
                for (name, value) in s.string_table("env")?.unwrap_or_default() {
                    kernel = kernel.env(name, value);
                }
                if let Some(timeout) = s.duration("startup_timeout")? {
                    kernel = kernel.startup_timeout(timeout);
                }
                Kind::Jupyter(kernel)
            }
            other => {
                return Err(s.error(
                    "kind",
                    "one of job, session, adapter, http, codex, jupyter",
                    found_text(other),
                ));
            }
        };
        s.finish()?;
        Ok(BackendSpec {
            kind,
            ladder,
            max_output_bytes,
            max_runtime,
            program: program_check,
        })
    }

    /// The longest a cancelled execution of this backend may take to stop: the ladder, after
    /// a kernel's interrupt has had its grace.
    fn longest_stop(&self) -> Duration {
        match self.kind {
            Kind::Jupyter(_) => self.ladder.interrupt_grace + self.ladder.longest_stop(),
            _ => self.ladder.longest_stop(),
        }
    }

    fn into_handler(self, long_lived: &mut Vec<LongLived>) -> Arc<dyn ExecutionHandler> {
        let longest_stop = self.longest_stop();
        // Jobs, codex and http enforce their runtime themselves (with the ladder or by
        // closing the connection); long-lived backends get the Timeout combinator.
        let (handler, own_timeout): (Arc<dyn ExecutionHandler>, bool) = match self.kind {
            Kind::Job(job) => (Arc::new(job), true),
            Kind::Codex(codex) => (Arc::new(codex), true),
            Kind::Http(http) => (Arc::new(http), true),
            Kind::Session(session) => {
                let session = Arc::new(session);
                long_lived.push(LongLived::Session(session.clone()));
                (session, false)
            }
            Kind::Adapter(adapter) => {
                let adapter = Arc::new(adapter);
                long_lived.push(LongLived::Adapter(adapter.clone()));
                (adapter, false)
            }
            Kind::Jupyter(kernel) => {
                let kernel = Arc::new(kernel);
                long_lived.push(LongLived::Kernel(kernel.clone()));
                (kernel, false)
            }
        };
        let handler = match (self.max_runtime, own_timeout) {
            (Some(after), false) => {
                // The timeout's grace fits the whole ladder, so a stop is never cut short.
                let grace = longest_stop + STOP_MARGIN;
                Arc::new(handler.timeout(after, TokioClock).grace(grace))
                    as Arc<dyn ExecutionHandler>
            }
            _ => handler,
        };
        match self.max_output_bytes {
            Some(bytes) => Arc::new(handler.limit_output(bytes)),
            None => handler,
        }
    }
}

/// One table of the file, read key by key; unknown keys are an error at the end.
struct Section<'a> {
    path: &'a Path,
    prefix: String,
    table: &'a Table,
    read: Vec<&'static str>,
}

const DURATION: &str =
    "a duration like \"30s\", \"500ms\", \"2m\" or \"1h\", more than zero and at most 365 days";

impl<'a> Section<'a> {
    fn new(path: &'a Path, prefix: &str, table: &'a Table) -> Self {
        Section {
            path,
            prefix: prefix.to_owned(),
            table,
            read: Vec::new(),
        }
    }

    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn error(&self, key: &str, expected: &str, found: String) -> BackendConfigError {
        BackendConfigError::Key {
            path: self.path.to_path_buf(),
            key: self.key(key),
            expected: expected.to_owned(),
            found,
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.read.push(key);
        self.table.get(key)
    }

    fn string(&mut self, key: &'static str) -> Result<Option<String>, BackendConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(self.error(key, "a string", found(other))),
        }
    }

    fn bool(&mut self, key: &'static str) -> Result<Option<bool>, BackendConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Boolean(value)) => Ok(Some(*value)),
            Some(other) => Err(self.error(key, "true or false", found(other))),
        }
    }

    fn u64(&mut self, key: &'static str) -> Result<Option<u64>, BackendConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Integer(value)) if *value > 0 => Ok(Some(*value as u64)),
            Some(other) => Err(self.error(key, "a positive whole number", found(other))),
        }
    }

    fn duration(&mut self, key: &'static str) -> Result<Option<Duration>, BackendConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => crate::config::parse_duration(text)
                .map(Some)
                .ok_or_else(|| self.error(key, DURATION, found_text(text))),
            Some(other) => Err(self.error(key, DURATION, found(other))),
        }
    }

    fn strings(&mut self, key: &'static str) -> Result<Option<Vec<String>>, BackendConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(self.error(
                        key,
                        "a list of strings",
                        format!("one item is {}", found(other)),
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(other) => Err(self.error(key, "a list of strings", found(other))),
        }
    }

    fn table(&mut self, key: &'static str) -> Result<Option<&'a Table>, BackendConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Table(table)) => Ok(Some(table)),
            Some(other) => Err(self.error(key, "a table", found(other))),
        }
    }

    fn string_table(
        &mut self,
        key: &'static str,
    ) -> Result<Option<BTreeMap<String, String>>, BackendConfigError> {
        let Some(table) = self.table(key)? else {
            return Ok(None);
        };
        table
            .iter()
            .map(|(name, value)| match value {
                Value::String(text) => Ok((name.clone(), text.clone())),
                other => Err(self.error(
                    key,
                    "a table of strings",
                    format!("{name} is {}", found(other)),
                )),
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    fn program(&mut self) -> Result<Program, BackendConfigError> {
        if !self.table.contains_key("program") && !self.table.contains_key("runtime") {
            return Err(self.error(
                "program",
                "the program to run: a name on PATH or a path (or `runtime`, a managed one)",
                "it is missing".into(),
            ));
        }
        self.program_or("")
    }

    /// The backend's program (`default` unless `program` names one), with its `args`,
    /// `env` and `cwd`; or, with `runtime = "NAME"`, the program of the runtime the runtime
    /// manager installed under that name.
    fn program_or(&mut self, default: &str) -> Result<Program, BackendConfigError> {
        let named = self.string("program")?;
        let program = match self.string("runtime")? {
            Some(_) if named.is_some() => {
                return Err(self.error(
                    "runtime",
                    "either `runtime` or `program`, not both",
                    "both are set".into(),
                ));
            }
            Some(runtime) => managed_program(&runtime)
                .map_err(|found| self.error("runtime", "an installed runtime", found))?,
            None => named.unwrap_or_else(|| default.to_owned()),
        };
        Ok(Program {
            program,
            args: self.strings("args")?.unwrap_or_default(),
            env: self.string_table("env")?.unwrap_or_default(),
            cwd: self.string("cwd")?.map(PathBuf::from),
        })
    }

    /// Refuses keys nobody read (typos).
    fn finish(&self) -> Result<(), BackendConfigError> {
        match self
            .table
            .keys()
            .find(|key| !self.read.contains(&key.as_str()))
        {
            None => Ok(()),
            Some(unknown) => {
                let mut known = self.read.clone();
                known.sort_unstable();
                known.dedup();
                Err(BackendConfigError::Key {
                    path: self.path.to_path_buf(),
                    key: self.key(unknown),
                    expected: format!("one of the known keys here: {}", known.join(", ")),
                    found: "this key is unknown".to_owned(),
                })
            }
        }
    }
}

/// How a TOML value is described in an error.
/// What was found, for a string: never the text itself, which could be a token pasted
/// under the wrong key and would be echoed to the terminal and the logs.
fn found_text(text: &str) -> String {
    format!("got a string of {} characters", text.chars().count())
}

fn found(value: &Value) -> String {
    match value {
        Value::String(text) => found_text(text),
        Value::Integer(number) => format!("got the number {number}"),
        Value::Float(number) => format!("got the number {number}"),
        Value::Boolean(value) => format!("got {value}"),
        Value::Datetime(_) => "got a date".to_owned(),
        Value::Array(_) => "got a list".to_owned(),
        Value::Table(_) => "got a table".to_owned(),
    }
}
