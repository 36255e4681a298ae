// Generated from runtime-core's schema by tests/tests/typescript.rs: do not edit.
// The wire format is docs/protocol.md's: one flat JSON object per event.

/** What kind of cell a request came from; handlers may treat kinds differently. */
export type CellType = "code" | "markdown" | "sql" | "ai" | "raw";

/**
 * A git worktree a notebook's runtime works in: a new branch of its own, started from
 * `branch` of `repository`.
 */
export interface WorktreeRequest {
    /** The repository: a path on the gateway's machine, under a directory it allows. */
    repository: string;
    /**
     * What the worktree's branch starts from (a branch, tag or commit); none: the
     * repository's `HEAD`.
     */
    branch?: string | null;
}

/** A point in time: milliseconds since the Unix epoch, as carried in event payloads. */
export type Timestamp = number;

/** How an execution ended. Each outcome is distinct: a cancel is not a failure. */
export type CompletionStatus = "success" | "error" | "cancelled" | "timed_out" | "runtime_lost";

/** Which executions a cancel request targets. */
export type CancelTarget = {
    scope: "entry";
    /** The entry to cancel. */
    queueId: string;
} | {
    scope: "all";
};

/** Which output stream a text belongs to. */
export type StreamName = "stdout" | "stderr";

/** One output in several representations, keyed by MIME type, in the order a frontend should prefer them. */
export interface MediaBundle {
    "text/plain"?: string;
    "text/markdown"?: string;
    "text/html"?: string;
    "image/svg+xml"?: string;
    /** base64 */
    "image/png"?: string;
    /** base64 */
    "image/jpeg"?: string;
    "application/json"?: unknown;
    [key: string]: unknown;
}

/** What a runtime can execute, announced when its session starts. */
export interface Capabilities {
    /** Runs code cells. */
    canExecuteCode?: boolean;
    /** Runs SQL cells. */
    canExecuteSql?: boolean;
    /** Runs AI cells. */
    canExecuteAi?: boolean;
    /** Renders markdown cells. Markdown cells are not executions unless a runtime says so. */
    canExecuteMarkdown?: boolean;
    /** Runs raw cells. Raw cells are not executions unless a runtime says so. */
    canExecuteRaw?: boolean;
    /** Models available to AI cells. */
    availableAiModels?: AiModel[];
}

/** An AI model a runtime offers. */
export interface AiModel {
    /** The model's name, e.g. `gpt-5-codex`. */
    name: string;
    /** Who serves it, e.g. `openai`. */
    provider: string;
    /** What it can do, e.g. `tools`, `vision`. */
    capabilities?: string[];
}

/** What a runtime session reports it is doing. */
export type SessionStatus = "ready" | "busy" | "idle";

/** Why a runtime session ended. */
export type TerminationReason = "shutdown" | "displaced" | "expired" | "error";

/**
 * The notebook asks to be served by a runtime of type `runtime_type`: a gateway serving
 * that type attaches an agent to it (and, with `worktree`, runs it in a git worktree of
 * its own). Replaced whole; an empty `runtime_type` withdraws the request. The catalog
 * lists notebooks with it.
 */
export interface NotebookRuntimeRequested {
    /** The runtime type wanted (`shell`, `codex`, `python3` ...; empty: none). */
    runtimeType: string;
    /** The git worktree its runtime works in, if any. */
    worktree?: WorktreeRequest | null;
}

/** One cell as a UI shows it. */
export interface CellView {
    /** Its id. */
    id: string;
    /** Its kind. */
    cellType: CellType;
    /** Its current source. */
    source: string;
    /** Its latest execution (the most recently requested), if it ever ran or is queued. */
    execution?: ExecutionView | null;
    /**
     * The outputs it shows: its most recently started execution's, until the next one
     * starts.
     */
    outputs: Output[];
    /** The execution count of the run whose outputs it shows, if any. */
    executionCount?: number | null;
    /**
     * Outputs it shows without having run here (an imported notebook's), as nbformat
     * JSON, until it runs.
     */
    importedOutputs?: unknown[] | null;
    /** Its metadata (tags, anything an editor keeps). */
    metadata: Record<string, unknown>;
}

/** One execution as a UI shows it. */
export interface ExecutionView {
    /** Its queue id (what a cancel names). */
    queueId: string;
    /** The cell it runs. */
    cellId: string;
    /**
     * `pending`, `assigned`, `executing`, or how it ended: `success`, `error`,
     * `cancelled`, `timed_out`, `runtime_lost`.
     */
    status: "pending" | "assigned" | "executing" | "success" | "error" | "cancelled" | "timed_out" | "runtime_lost";
    /** Its execution count, once it started. */
    executionCount?: number | null;
    /** Why it ended, for anything but success. */
    error?: string | null;
    /** Who asked for it. */
    requestedBy: string;
    /** A cancel was asked for while it ran. */
    cancelRequested: boolean;
    /** When it started (milliseconds since the epoch), while it runs. */
    startedAt?: Timestamp | null;
    /**
     * The question it waits on an answer to, while it does (answer it with the wasm
     * package's `inputReply`).
     */
    input?: InputRequest | null;
}

/**
 * An input request of a running execution (see
 * `InputRequested`).
 */
export interface InputRequest {
    /** The request, which a reply names. */
    inputId: string;
    /** The prompt to show. */
    prompt?: string;
    /** A password: UIs hide what is typed, and the reply is sealed to `seal_key`. */
    password?: boolean;
    /** The key a password reply is sealed to. */
    sealKey?: string | null;
    /** The reply, once one came (for a password, the sealed box). */
    reply?: string | null;
}

/**
 * One output of an execution. As JSON (for UIs and the hub's REST view):
 * `{"outputId": "...", "outputType": "stream", "name": "stdout", "text": "..."}`, with
 * `outputType` one of `stream`, `display_data`, `execute_result`, `error`, `markdown`.
 */
export type Output = {
    /** Its id. */
    outputId: string;
} & ({
    outputType: "stream";
    /** Which stream. */
    name: StreamName;
    /** All the text so far. */
    text: string;
} | {
    outputType: "display_data";
    /** The representations. */
    data: MediaBundle;
    /** Per-MIME metadata. */
    metadata: Record<string, unknown>;
    /** The id updates use. */
    displayId?: string | null;
} | {
    outputType: "execute_result";
    /** The representations. */
    data: MediaBundle;
    /** Per-MIME metadata. */
    metadata: Record<string, unknown>;
    /** The execution count. */
    executionCount: number;
    /** The id updates replace it by, if it has one. */
    displayId?: string | null;
} | {
    outputType: "error";
    /** Its name. */
    ename: string;
    /** Its message. */
    evalue: string;
    /** Its traceback. */
    traceback: string[];
} | {
    outputType: "markdown";
    /** All the markdown so far. */
    text: string;
});

/** The runtime session serving the notebook. */
export interface RuntimeView {
    /** The session. */
    sessionId: string;
    /** The runtime it belongs to. */
    runtimeId: string;
    /** Its kind, e.g. `echo`, `python`. */
    runtimeType: string;
    /** Who it runs for. */
    clientId: string;
    /** `ready`, `busy` or `idle`. */
    status: SessionStatus;
    /** Its lease runs out at this time (milliseconds since the epoch) unless renewed. */
    leaseUntil: Timestamp;
    /** What it can run. */
    capabilities: Capabilities;
}

/** A cell was added to the notebook. */
export interface CellCreatedEvent {
    type: "v1.CellCreated";
    /** The new cell. */
    cellId: string;
    /** Its kind. */
    cellType: CellType;
    /** Its initial source. */
    source?: string;
}

/** A cell's source was edited. */
export interface CellSourceChangedEvent {
    type: "v1.CellSourceChanged";
    /** The cell. */
    cellId: string;
    /** Its whole new source. */
    source: string;
}

/** A cell was removed; its outputs go and its queued (not running) executions are cancelled. */
export interface CellDeletedEvent {
    type: "v1.CellDeleted";
    /** The cell. */
    cellId: string;
}

/** The notebook's title changed: the catalog lists notebooks by it. */
export interface NotebookTitleChangedEvent {
    type: "v1.NotebookTitleChanged";
    /** The whole new title (empty: untitled). */
    title: string;
}

/**
 * The notebook's own metadata changed (as Jupyter keeps it: kernelspec, language_info,
 * anything an editor adds), replaced whole. An `.ipynb` import also records the file's
 * `nbformat_minor` and its top-level fields this version does not name, so an export
 * writes them back.
 */
export interface NotebookMetadataChangedEvent {
    type: "v1.NotebookMetadataChanged";
    /** The whole new metadata. */
    metadata?: Record<string, unknown>;
    /** The nbformat minor version of the file it came from. */
    nbformatMinor?: number | null;
    /** The file's other top-level fields, verbatim. */
    other?: Record<string, unknown>;
}

/**
 * The notebook asks to be served by a runtime of type `runtime_type`: a gateway serving
 * that type attaches an agent to it (and, with `worktree`, runs it in a git worktree of
 * its own). Replaced whole; an empty `runtime_type` withdraws the request. The catalog
 * lists notebooks with it.
 */
export interface NotebookRuntimeRequestedEvent {
    type: "v1.NotebookRuntimeRequested";
    /** The runtime type wanted (`shell`, `codex`, `python3` ...; empty: none). */
    runtimeType: string;
    /** The git worktree its runtime works in, if any. */
    worktree?: WorktreeRequest | null;
}

/**
 * A cell's metadata changed (tags, `collapsed`, anything an editor keeps), replaced whole,
 * with its attachments (images a markdown cell shows by name) and the cell's fields this
 * version does not name, as an `.ipynb` had them.
 */
export interface CellMetadataChangedEvent {
    type: "v1.CellMetadataChanged";
    /** The cell. */
    cellId: string;
    /** The whole new metadata. */
    metadata?: Record<string, unknown>;
    /** Its attachments, if it has any. */
    attachments?: Record<string, unknown> | null;
    /** Its other fields, verbatim. */
    other?: Record<string, unknown>;
}

/** A cell moved: it now comes right after `after`, or first without one. */
export interface CellMovedEvent {
    type: "v1.CellMoved";
    /** The cell. */
    cellId: string;
    /** The cell it now follows; none: it is first. */
    after?: string | null;
}

/**
 * Outputs a cell shows without having run here: an imported notebook's, as nbformat
 * outputs, verbatim (of any `output_type`), with their execution count. The cell shows
 * them until it runs; they replace what it showed before.
 */
export interface CellOutputsImportedEvent {
    type: "v1.CellOutputsImported";
    /** The cell. */
    cellId: string;
    /** The execution count they came with. */
    executionCount?: number | null;
    /** The outputs, as nbformat JSON. */
    outputs?: unknown[];
}

/**
 * A client asked for a cell to run. The request carries a snapshot of the source, so it
 * runs what was asked even if the cell is edited meanwhile.
 */
export interface ExecutionRequestedEvent {
    type: "v1.ExecutionRequested";
    /** The new queue entry; a repeated id is ignored. */
    queueId: string;
    /** The cell to run. */
    cellId: string;
    /** The cell's kind. */
    cellType: CellType;
    /** The source to run. */
    source: string;
    /** Who asked (a user or client id). */
    requestedBy: string;
}

/**
 * A session claims a pending entry. Applies only if the entry is still pending and the
 * session is active at this point of the log.
 */
export interface ExecutionAssignedEvent {
    type: "v1.ExecutionAssigned";
    /** The entry. */
    queueId: string;
    /** The claiming session. */
    sessionId: string;
}

/**
 * The session that holds the claim starts running the entry; the execution count is
 * assigned here.
 */
export interface ExecutionStartedEvent {
    type: "v1.ExecutionStarted";
    /** The entry. */
    queueId: string;
    /** The session running it. */
    sessionId: string;
    /** When it started. */
    at: Timestamp;
}

/** An execution ended. Once applied, no later output for the entry is accepted. */
export interface ExecutionCompletedEvent {
    type: "v1.ExecutionCompleted";
    /** The entry. */
    queueId: string;
    /** The session that ran it. */
    sessionId: string;
    /** How it ended. */
    status: CompletionStatus;
    /** A one-line reason for anything but success. */
    error?: string | null;
    /** How long it ran. */
    durationMs?: number;
    /**
     * With `status: error`, also abort every entry still pending (Jupyter's
     * `stop_on_error`).
     */
    abortPending?: boolean;
    /**
     * Facts about the run for UIs and tools: which backend ran and whether it fell back,
     * how a process was stopped, token usage. Set by handlers through
     * `ExecutionContext::annotate`.
     */
    metadata?: Record<string, unknown>;
}

/**
 * A client asked to cancel executions. Pending entries are cancelled at once; a running
 * one is cancelled by the session running it.
 */
export interface ExecutionCancelRequestedEvent {
    type: "v1.ExecutionCancelRequested";
    /** What to cancel. */
    target: CancelTarget;
    /** Who asked. */
    requestedBy: string;
}

/** New text on stdout or stderr. */
export interface StreamOutputAddedEvent {
    type: "v1.StreamOutputAdded";
    /** The entry it belongs to. */
    queueId: string;
    /** The session that wrote it. */
    sessionId: string;
    /** The new output. */
    outputId: string;
    /** Which stream. */
    name: StreamName;
    /** The text. */
    text: string;
}

/** More text for an existing stream output. */
export interface StreamOutputAppendedEvent {
    type: "v1.StreamOutputAppended";
    /** The entry it belongs to. */
    queueId: string;
    /** The session that wrote it. */
    sessionId: string;
    /** The stream output to extend. */
    outputId: string;
    /** The text to append. */
    text: string;
}

/** A rich display (Jupyter's `display_data`). */
export interface DisplayOutputAddedEvent {
    type: "v1.DisplayOutputAdded";
    /** The entry it belongs to. */
    queueId: string;
    /** The session that wrote it. */
    sessionId: string;
    /** The new output. */
    outputId: string;
    /** The representations. */
    data: MediaBundle;
    /** Per-MIME metadata. */
    metadata?: Record<string, unknown>;
    /** Lets later updates replace it. */
    displayId?: string | null;
}

/** Replaces every display output with this display id, in any cell. */
export interface DisplayOutputUpdatedEvent {
    type: "v1.DisplayOutputUpdated";
    /** The entry whose execution sent the update. */
    queueId: string;
    /** The session that sent it. */
    sessionId: string;
    /** The display to replace. */
    displayId: string;
    /** The new representations. */
    data: MediaBundle;
    /** The new metadata. */
    metadata?: Record<string, unknown>;
}

/** The execution's result value (Jupyter's `execute_result`); at most one per execution. */
export interface ExecuteResultAddedEvent {
    type: "v1.ExecuteResultAdded";
    /** The entry it belongs to. */
    queueId: string;
    /** The session that wrote it. */
    sessionId: string;
    /** The new output. */
    outputId: string;
    /** The representations. */
    data: MediaBundle;
    /** Per-MIME metadata. */
    metadata?: Record<string, unknown>;
    /** The execution count of the execution that produced it. */
    executionCount: number;
    /**
     * A display id later `DisplayOutputUpdated` events replace it by (Jupyter's
     * `transient.display_id` on an `execute_result`).
     */
    displayId?: string | null;
}

/** An error shown as output (Jupyter's `error`). */
export interface ErrorOutputAddedEvent {
    type: "v1.ErrorOutputAdded";
    /** The entry it belongs to. */
    queueId: string;
    /** The session that wrote it. */
    sessionId: string;
    /** The new output. */
    outputId: string;
    /** The error's name, e.g. `ValueError`. */
    ename: string;
    /** The error's message. */
    evalue: string;
    /** Traceback lines. */
    traceback?: string[];
}

/** A markdown output (AI answers stream as markdown). */
export interface MarkdownOutputAddedEvent {
    type: "v1.MarkdownOutputAdded";
    /** The entry it belongs to. */
    queueId: string;
    /** The session that wrote it. */
    sessionId: string;
    /** The new output. */
    outputId: string;
    /** The markdown. */
    text: string;
}

/** More markdown for an existing markdown output. */
export interface MarkdownOutputAppendedEvent {
    type: "v1.MarkdownOutputAppended";
    /** The entry it belongs to. */
    queueId: string;
    /** The session that wrote it. */
    sessionId: string;
    /** The markdown output to extend. */
    outputId: string;
    /** The markdown to append. */
    text: string;
}

/**
 * Clears the execution's outputs: now, or with `wait`, just before its next output
 * arrives (Jupyter's `clear_output(wait=True)`, which avoids flicker).
 */
export interface OutputsClearedEvent {
    type: "v1.OutputsCleared";
    /** The entry whose outputs to clear. */
    queueId: string;
    /** The session that asked. */
    sessionId: string;
    /** Clear when the next output arrives instead of now. */
    wait?: boolean;
}

/**
 * A running execution asks for a line of input (Python's `input()`, `getpass`); UIs
 * show the prompt until a reply comes. Fenced like an output: only the session running
 * the entry may ask. A new request replaces an unanswered earlier one.
 */
export interface InputRequestedEvent {
    type: "v1.InputRequested";
    /** The entry asking. */
    queueId: string;
    /** The session running it. */
    sessionId: string;
    /** This request, which the reply names. */
    inputId: string;
    /** The prompt to show. */
    prompt?: string;
    /** A password: the reply must be sealed to `seal_key`, and UIs must not echo it. */
    password?: boolean;
    /**
     * With `password`: the asking agent's one-time public key (X25519, 64 hex digits) that
     * the reply is sealed to, as libsodium's `crypto_box_seal` does.
     */
    sealKey?: string | null;
}

/**
 * A client answers an input request. Applies only while the entry runs and the request
 * is its open one; the first reply wins.
 */
export interface InputRepliedEvent {
    type: "v1.InputReplied";
    /** The entry that asked. */
    queueId: string;
    /** The request answered. */
    inputId: string;
    /**
     * The line typed (without its newline); for a password request, the sealed box as
     * hex, which only the asking agent can open.
     */
    value: string;
    /** Who answered. */
    repliedBy: string;
}

/**
 * A runtime announces itself; it becomes the active session and the previous active
 * session is displaced (or expired, if its lease had run out by `at`).
 */
export interface RuntimeSessionStartedEvent {
    type: "v1.RuntimeSessionStarted";
    /** The new session; an id seen before is refused. */
    sessionId: string;
    /** The runtime (stable across restarts of the same runtime). */
    runtimeId: string;
    /** Its kind, e.g. `echo`, `python`. */
    runtimeType: string;
    /** The authenticated user or client it runs for. */
    clientId: string;
    /** What it can run. */
    capabilities: Capabilities;
    /** When it started. */
    at: Timestamp;
    /** How long its lease lasts without renewal. */
    validForMs: number;
}

/** A session reports what it is doing. */
export interface RuntimeSessionStatusChangedEvent {
    type: "v1.RuntimeSessionStatusChanged";
    /** The session. */
    sessionId: string;
    /** Its status. */
    status: SessionStatus;
}

/** A session extends its lease to `at + valid_for_ms`. */
export interface RuntimeSessionRenewedEvent {
    type: "v1.RuntimeSessionRenewed";
    /** The session. */
    sessionId: string;
    /** When it renewed. */
    at: Timestamp;
    /** How long the lease lasts from `at`. */
    validForMs: number;
}

/**
 * A session ended. With reason `expired`, applies only if the lease had really run out at
 * `at`, going by the last renewal in the log.
 */
export interface RuntimeSessionTerminatedEvent {
    type: "v1.RuntimeSessionTerminated";
    /** The session. */
    sessionId: string;
    /** Why. */
    reason: TerminationReason;
    /** Who ended it (its own session id, or an observer's id). */
    by: string;
    /** When, by the clock of whoever ended it. */
    at: Timestamp;
    /** More about why, for people. */
    detail?: string | null;
}

/**
 * One event of a notebook's log, as docs/protocol.md shows it; switch on `type` to
 * narrow it. A log may also hold events of types a newer version writes: they are not
 * in this union, so give such a switch a `default` branch.
 */
export type RuntimeEvent =
    | CellCreatedEvent
    | CellSourceChangedEvent
    | CellDeletedEvent
    | NotebookTitleChangedEvent
    | NotebookMetadataChangedEvent
    | NotebookRuntimeRequestedEvent
    | CellMetadataChangedEvent
    | CellMovedEvent
    | CellOutputsImportedEvent
    | ExecutionRequestedEvent
    | ExecutionAssignedEvent
    | ExecutionStartedEvent
    | ExecutionCompletedEvent
    | ExecutionCancelRequestedEvent
    | StreamOutputAddedEvent
    | StreamOutputAppendedEvent
    | DisplayOutputAddedEvent
    | DisplayOutputUpdatedEvent
    | ExecuteResultAddedEvent
    | ErrorOutputAddedEvent
    | MarkdownOutputAddedEvent
    | MarkdownOutputAppendedEvent
    | OutputsClearedEvent
    | InputRequestedEvent
    | InputRepliedEvent
    | RuntimeSessionStartedEvent
    | RuntimeSessionStatusChangedEvent
    | RuntimeSessionRenewedEvent
    | RuntimeSessionTerminatedEvent;

/** A notebook as a UI shows it (what `NotebookView.state()` returns): its cells in order, each with its latest execution and the outputs it shows, the queue, and the runtime serving it, folded by the agents' own reducer. */
export interface NotebookViewState {
    /** The notebook's title, if it has one. */
    title?: string | null;
    /** The runtime the notebook asks for, if any. */
    runtimeRequest?: NotebookRuntimeRequested | null;
    /** The last sequence number folded in. */
    lastSeq: number;
    /** The cells, in notebook order. */
    cells: CellView[];
    /** Executions not finished yet, in the order they will run. */
    queue: ExecutionView[];
    /** The active runtime session, if one serves the notebook. */
    runtime?: RuntimeView | null;
}
