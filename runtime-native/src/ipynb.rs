//! `.ipynb` files: [`read`] one into the events that build it, [`write()`] a notebook's state
//! out as one, and [`run`] one headless on a Jupyter kernel, as `jupyter nbconvert
//! --execute` and papermill do. The format itself is `runtime_core::ipynb`'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runtime_core::handler::HandlerExt;
use runtime_core::ipynb::{self, IpynbError};
use runtime_core::{
    AgentOptions, Capabilities, CellCreated, CellId, CellMetadataChanged, CellMoved, CellType,
    CompletionStatus, EntryState, Event, ExecutionHandler, MemoryStore, NotebookClient,
    NotebookState, NotebookWatcher, RuntimeAgent, Store, StoreError,
};
use serde_json::{Map, Value};

use crate::TokioClock;
use crate::backends::STOP_MARGIN;
use crate::files::{SmallFileError, read_small_text};
use crate::jupyter::Jupyter;
use crate::process::Ladder;

/// How long an interrupted cell's kernel has to come back before it is stopped.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

/// The largest `.ipynb` read: notebooks with images are large, but not this large.
pub const MAX_NOTEBOOK_BYTES: u64 = 256 * 1024 * 1024;

/// Why a notebook file could not be read, written or run.
#[derive(Debug, thiserror::Error)]
pub enum IpynbFileError {
    /// The file could not be read (missing, not a regular file, too large, not UTF-8).
    #[error(transparent)]
    Read(#[from] SmallFileError),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not an nbformat 4 notebook.
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: IpynbError,
    },
    /// The notebook's store failed while it ran.
    #[error("running the notebook: {0}")]
    Store(#[from] StoreError),
}

/// The events that build the notebook in the file at `path` (see [`ipynb::import`]): a
/// regular file of at most [`MAX_NOTEBOOK_BYTES`].
pub fn read(path: impl AsRef<Path>) -> Result<Vec<Event>, IpynbFileError> {
    let path = path.as_ref();
    let text = read_small_text(path, MAX_NOTEBOOK_BYTES)?.ok_or_else(|| SmallFileError::Read {
        path: path.to_owned(),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    ipynb::import(&text).map_err(|source| IpynbFileError::Format {
        path: path.to_owned(),
        source,
    })
}

/// Writes `state` to `path` as Jupyter writes notebooks (see [`ipynb::to_string`]): into a
/// temporary file beside it, then renamed over it, so a reader never sees half a file.
pub fn write(path: impl AsRef<Path>, state: &NotebookState) -> Result<(), IpynbFileError> {
    let path = path.as_ref();
    let io = |source| IpynbFileError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut file, ipynb::to_string(state).as_bytes()).map_err(io)?;
    file.persist(path).map_err(|error| io(error.error))?;
    Ok(())
}

/// How [`run`] runs a notebook.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The kernel: this name, else the notebook's `metadata.kernelspec.name`, else
    /// `python3`.
    pub kernel: Option<String>,
    /// Each cell's time limit (none: no limit).
    pub timeout: Option<Duration>,
    /// Go on after a cell that fails (by default the run stops at the first).
    pub allow_errors: bool,
    /// Values for the notebook's parameters, papermill's way: a cell setting them is
    /// inserted after the cell tagged `parameters` (or first, without one), tagged
    /// `injected-parameters`. A value that reads as a Python number, `True`, `False` or
    /// `None` is that; any other is a string.
    pub parameters: Vec<(String, String)>,
    /// How long the kernel may take to start.
    pub startup_timeout: Duration,
    /// The kernel's working directory (the command line runs it in the notebook's own, as
    /// nbconvert does); none: this process's.
    pub cwd: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            kernel: None,
            timeout: None,
            allow_errors: false,
            parameters: Vec::new(),
            startup_timeout: Duration::from_secs(60),
            cwd: None,
        }
    }
}

/// One cell of a run, as it ends.
#[derive(Debug, Clone)]
pub struct CellRun {
    /// Its place among the cells that run (1-based).
    pub number: usize,
    /// How many cells the run has.
    pub of: usize,
    /// The cell.
    pub cell_id: CellId,
    /// How it ended.
    pub status: CompletionStatus,
    /// Why, for anything but success.
    pub error: Option<String>,
}

/// What a [`run`] did.
#[derive(Debug)]
pub struct RunReport {
    /// The notebook after the run: [`write()`] it, or export it with [`ipynb::export`].
    pub state: NotebookState,
    /// Every cell that ran, in order.
    pub cells: Vec<CellRun>,
}

impl RunReport {
    /// The first cell that did not succeed, if any.
    pub fn first_failure(&self) -> Option<&CellRun> {
        self.cells
            .iter()
            .find(|cell| cell.status != CompletionStatus::Success)
    }
}

/// Runs every code cell of the notebook `events` build, in order, on a fresh kernel (an
/// agent on an in-memory store, as any notebook runs here), and returns the notebook
/// with its new outputs, as nbclient does: blank cells and cells tagged `skip-execution`
/// are skipped, a cell tagged `raises-exception` may fail without stopping the run, and
/// `input()` fails at once (nobody could answer). `progress` hears of each cell as it ends.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use runtime_native::ipynb;
///
/// let notebook = ipynb::read("report.ipynb")?;
/// let report = ipynb::run(notebook, ipynb::RunOptions::default(), |cell| {
///     eprintln!("cell {} of {}: {:?}", cell.number, cell.of, cell.status);
/// })
/// .await?;
/// ipynb::write("report.out.ipynb", &report.state)?;
/// # Ok(()) }
/// ```
pub async fn run(
    events: Vec<Event>,
    options: RunOptions,
    mut progress: impl FnMut(&CellRun),
) -> Result<RunReport, IpynbFileError> {
    let store = MemoryStore::new();
    store.commit(events).await?;
    let client = NotebookClient::new(store.clone(), "notebook-run");
    let mut watcher = NotebookWatcher::new(&store);
    let head = store.head().await?;
    watcher.wait_until(|state| state.last_seq() >= head).await?;
    if !options.parameters.is_empty() {
        store
            .commit(parameter_cell(watcher.state(), &options.parameters))
            .await?;
    }
    let head = store.head().await?;
    let state = watcher.wait_until(|state| state.last_seq() >= head).await?;
    let kernel = options
        .kernel
        .clone()
        .or_else(|| kernel_of(state))
        .unwrap_or_else(|| "python3".to_owned());
    let to_run: Vec<(CellId, String, bool)> = state
        .cells()
        .filter(|cell| cell.cell_type == CellType::Code && !cell.source.trim().is_empty())
        .filter(|cell| !tagged(cell, "skip-execution"))
        .map(|cell| {
            let may_fail = tagged(cell, "raises-exception");
            (cell.id.clone(), cell.source.clone(), may_fail)
        })
        .collect();

    let mut kernel = Jupyter::named(kernel)
        .startup_timeout(options.startup_timeout)
        .interrupt_grace(INTERRUPT_GRACE)
        .allow_stdin(false);
    if let Some(cwd) = &options.cwd {
        kernel = kernel.cwd(cwd);
    }
    let kernel = Arc::new(kernel);
    // A cell out of time is interrupted, and then stopped with the ladder: the grace covers
    // both, so a stop is never cut short.
    let stop = INTERRUPT_GRACE + Ladder::default().longest_stop() + STOP_MARGIN;
    let handler: Arc<dyn ExecutionHandler> = match options.timeout {
        Some(limit) => Arc::new(kernel.clone().timeout(limit, TokioClock).grace(stop)),
        None => kernel.clone(),
    };
    let agent_options = AgentOptions {
        stop_on_error: false,
        cancel_grace: stop,
        ..AgentOptions::new("notebook-run")
    };
    let agent = RuntimeAgent::new(
        store.clone(),
        TokioClock,
        Capabilities::code(),
        agent_options,
    )
    .map_err(|error| StoreError::Invalid(error.to_string()))?
    .on_execution(handler);
    let handle = agent.handle();
    let serving = tokio::spawn(agent.run());
    // The kernel starts while the first cell is queued.
    let warm = {
        let kernel = kernel.clone();
        tokio::spawn(async move { kernel.warm_up().await })
    };

    let mut cells = Vec::new();
    let of = to_run.len();
    for (number, (cell_id, source, may_fail)) in (1..).zip(to_run) {
        let queue_id = client.execute(&cell_id, CellType::Code, &source).await?;
        let entry = watcher.wait_for_completion(&queue_id).await?;
        let (status, error) = match &entry.state {
            EntryState::Completed { status, error } => (*status, error.clone()),
            _ => (CompletionStatus::Error, None),
        };
        let ran = CellRun {
            number,
            of,
            cell_id,
            status,
            error,
        };
        progress(&ran);
        cells.push(ran);
        if status != CompletionStatus::Success && !options.allow_errors && !may_fail {
            break;
        }
    }
    handle.shutdown();
    let _ = serving.await;
    warm.abort();
    kernel.shutdown().await;
    let head = store.head().await?;
    watcher.wait_until(|state| state.last_seq() >= head).await?;
    Ok(RunReport {
        state: watcher.into_state(),
        cells,
    })
}

/// Whether the cell's `metadata.tags` has `tag`.
fn tagged(cell: &runtime_core::Cell, tag: &str) -> bool {
    cell.metadata
        .get("tags")
        .and_then(Value::as_array)
        .is_some_and(|tags| tags.iter().any(|t| t == tag))
}

/// The kernel the notebook names in `metadata.kernelspec.name`.
fn kernel_of(state: &NotebookState) -> Option<String> {
    let metadata = &state.notebook_metadata()?.metadata;
    Some(
        metadata
            .get("kernelspec")?
            .get("name")?
            .as_str()?
            .to_owned(),
    )
}

/// The events inserting papermill's `injected-parameters` cell.
fn parameter_cell(state: &NotebookState, parameters: &[(String, String)]) -> Vec<Event> {
    let after = state
        .cells()
        .find(|cell| tagged(cell, "parameters"))
        .map(|cell| cell.id.clone());
    let source: String = parameters
        .iter()
        .map(|(name, value)| format!("{name} = {}\n", python_literal(value)))
        .collect();
    let cell_id = CellId::random();
    let mut metadata = Map::new();
    metadata.insert("tags".into(), Value::from(vec!["injected-parameters"]));
    vec![
        CellCreated {
            cell_id: cell_id.clone(),
            cell_type: CellType::Code,
            source,
        }
        .into(),
        CellMetadataChanged {
            cell_id: cell_id.clone(),
            metadata,
            attachments: None,
            other: Map::new(),
        }
        .into(),
        CellMoved { cell_id, after }.into(),
    ]
}

/// A value from the command line as Python source: a number, `True`, `False` or `None`
/// as they are, anything else a string.
fn python_literal(value: &str) -> String {
    let number = value.parse::<i64>().is_ok() || value.parse::<f64>().is_ok_and(f64::is_finite);
    if number || matches!(value, "True" | "False" | "None") {
        value.to_owned()
    } else {
        // A JSON string is a valid Python string literal.
        Value::from(value).to_string()
    }
}
