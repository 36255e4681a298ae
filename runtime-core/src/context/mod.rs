//! [`ExecutionContext`]: what a handler knows about its execution and how it writes
//! outputs.

mod cancel;
mod input;
mod layer;
pub(crate) use layer::rewrite_bundle;
mod outputs;

use std::sync::Arc;

use serde_json::{Map, Value};

pub(crate) use cancel::CancelSignal;
pub use cancel::{CancelReason, Cancelled};
pub use input::InputError;
pub(crate) use input::InputMailbox;
pub use layer::{OutputLayer, OutputType};
pub(crate) use outputs::OutputSink;
pub use outputs::{Display, OutputError};

use crate::schema::{
    CellId, CellType, DisplayId, InputId, MediaBundle, OutputId, QueueId, SessionId, StreamName,
};
use crate::sealed::OpeningKey;

/// One execution as its handler sees it. Cheap to clone; clones share everything.
///
/// Output methods enqueue and return at once; the agent commits them in order, in batches,
/// and commits all of them before the execution's completion.
///
/// # Example
///
/// ```
/// use runtime_core::{ExecutionContext, ExecutionError, MediaBundle};
///
/// async fn handle(ctx: ExecutionContext) -> Result<MediaBundle, ExecutionError> {
///     ctx.stdout("working...\n")?;
///     if ctx.is_cancelled() {
///         return Err(ExecutionError::Cancelled);
///     }
///     Ok(MediaBundle::plain(format!("Echo: {}", ctx.source())))
/// }
/// ```
#[derive(Clone)]
pub struct ExecutionContext {
    inner: Arc<ContextInner>,
    cancel: CancelSignal,
    /// The newest layer first; outputs pass through each in turn.
    layers: Option<Arc<LayerNode>>,
}

struct ContextInner {
    info: ExecutionInfo,
    sink: Arc<OutputSink>,
    inputs: Arc<InputMailbox>,
}

struct LayerNode {
    layer: Arc<dyn OutputLayer>,
    next: Option<Arc<LayerNode>>,
}

/// What the agent knows about an execution when it hands it to a handler.
pub(crate) struct ExecutionInfo {
    pub(crate) queue_id: QueueId,
    pub(crate) cell_id: CellId,
    pub(crate) cell_type: CellType,
    pub(crate) source: String,
    pub(crate) execution_count: u64,
    pub(crate) session_id: SessionId,
}

impl ExecutionContext {
    pub(crate) fn new(info: ExecutionInfo, sink: Arc<OutputSink>, cancel: CancelSignal) -> Self {
        Self {
            inner: Arc::new(ContextInner {
                info,
                sink,
                inputs: Arc::default(),
            }),
            cancel,
            layers: None,
        }
    }

    /// Where the agent delivers replies to this execution's input requests.
    pub(crate) fn inputs(&self) -> Arc<InputMailbox> {
        self.inner.inputs.clone()
    }

    /// A context for a wrapped handler whose outputs pass through `layer` first, then
    /// through this context's layers.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use runtime_core::{ExecutionContext, ExecutionError, ExecutionHandler, Outcome, OutputLayer};
    ///
    /// struct Upper;
    /// impl OutputLayer for Upper {
    ///     fn rewrite(&self, text: &mut String) {
    ///         *text = text.to_uppercase();
    ///     }
    /// }
    ///
    /// async fn shouting(inner: &dyn ExecutionHandler, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
    ///     inner.execute(ctx.with_layer(Arc::new(Upper))).await
    /// }
    /// ```
    // On wasm32 layers need not be Send; the Arc only shares them between clones.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn with_layer(&self, layer: Arc<dyn OutputLayer>) -> ExecutionContext {
        ExecutionContext {
            inner: self.inner.clone(),
            cancel: self.cancel.clone(),
            layers: Some(Arc::new(LayerNode {
                layer,
                next: self.layers.clone(),
            })),
        }
    }

    /// A context whose cancellation can also be raised on its own (by the returned
    /// signal), for combinators that stop their inner handler.
    pub(crate) fn with_cancel_scope(&self) -> (ExecutionContext, CancelSignal) {
        let cancel = self.cancel.child();
        let context = ExecutionContext {
            inner: self.inner.clone(),
            cancel: cancel.clone(),
            layers: self.layers.clone(),
        };
        (context, cancel)
    }

    /// Caps this execution's outputs at `bytes` more than it has written so far (or the
    /// agent's limit, if lower), with the same visible truncation marker.
    pub(crate) fn limit_output(&self, bytes: u64) {
        self.inner.sink.tighten_limit(bytes);
    }

    /// Records `key: value` in the metadata of the execution's completion event, where
    /// UIs and tools read it (which backend ran, token usage, how a process was stopped).
    /// A later value for a key replaces the earlier one. The key `detail`, when a string,
    /// is also appended to the completion's one-line reason.
    ///
    /// ```
    /// # fn f(ctx: runtime_core::ExecutionContext) {
    /// ctx.annotate("backend", "job");
    /// ctx.annotate("usage", serde_json::json!({"outputTokens": 12}));
    /// # }
    /// ```
    pub fn annotate(&self, key: impl Into<String>, value: impl Into<Value>) {
        let (mut key, mut value) = (key.into(), value.into());
        if self.layers.is_some() {
            // Not an output, but it reaches the store: the layers' rewrites apply.
            self.rewrite(&mut key);
            layer::rewrite_json(&mut value, &|text| self.rewrite(text));
        }
        self.inner.sink.annotate(key, value);
    }

    /// Tells each layer about an output of `kind`; `true` if there are layers. Before an
    /// output that is not stream text, the stream text layers held back is written, so
    /// the order holds. (Between stdout and stderr there is no order to keep: a process's
    /// two pipes are read side by side, and a token cut by a write to the other stream
    /// stays whole.)
    fn observe(&self, kind: OutputType) -> bool {
        let mut node = self.layers.as_deref();
        let layered = node.is_some();
        if layered && !matches!(kind, OutputType::Stdout | OutputType::Stderr) {
            self.release_held();
        }
        while let Some(current) = node {
            current.layer.on_output(kind);
            node = current.next.as_deref();
        }
        layered
    }

    /// Passes `text` through every layer's rewrite.
    fn rewrite(&self, text: &mut String) {
        let mut node = self.layers.as_deref();
        while let Some(current) = node {
            current.layer.rewrite(text);
            node = current.next.as_deref();
        }
    }

    fn rewritten(&self, text: &str) -> String {
        let mut text = text.to_owned();
        self.rewrite(&mut text);
        text
    }

    fn rewritten_bundle(&self, bundle: MediaBundle) -> MediaBundle {
        layer::rewrite_bundle(bundle, &|text| self.rewrite(text))
    }

    fn stream(&self, name: StreamName, kind: OutputType, text: &str) -> Result<(), OutputError> {
        if !self.observe(kind) {
            return self.inner.sink.stream(name, text);
        }
        let mut text = text.to_owned();
        let mut node = self.layers.as_deref();
        while let Some(current) = node {
            current.layer.rewrite_stream(name, &mut text);
            node = current.next.as_deref();
        }
        if text.is_empty() {
            return Ok(());
        }
        self.inner.sink.stream(name, &text)
    }

    /// Writes out the stream text that layers held back (a tail that could have been the
    /// start of a secret). A combinator whose layer holds text calls it when its inner
    /// handler returns, as [`Redact`](crate::handler::Redact) does.
    ///
    /// Released text goes through the layers after the one that held it.
    pub fn release_held(&self) {
        let mut node = self.layers.as_deref();
        while let Some(current) = node {
            for stream in [StreamName::Stdout, StreamName::Stderr] {
                let Some(mut text) = current.layer.release(stream) else {
                    continue;
                };
                let mut later = current.next.as_deref();
                while let Some(layer) = later {
                    layer.layer.rewrite_stream(stream, &mut text);
                    later = layer.next.as_deref();
                }
                if !text.is_empty() {
                    // A failed write (over the output limit) is the sink's to report.
                    let _ = self.inner.sink.stream(stream, &text);
                }
            }
            node = current.next.as_deref();
        }
    }

    /// Waits until every output written so far is in the log.
    ///
    /// Outputs are committed without it: writes return at once and the agent commits
    /// them in batches, holding a batch while the handler keeps adding to it. Call this
    /// where a reader should see what was written before the handler goes on, such as
    /// between the chunks of a streamed answer. Text an [`OutputLayer`] holds back (the
    /// start of what may be a secret) is not written yet, so it is not flushed.
    ///
    /// Fails when the store failed (its retries given up); the execution then ends
    /// `error` whatever the handler does.
    ///
    /// ```
    /// use runtime_core::{ExecutionContext, ExecutionError, Outcome};
    ///
    /// async fn stream_answer(ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
    ///     let answer = ctx.markdown("Thinking")?;
    ///     for chunk in ["...", " done."] {
    ///         ctx.append_markdown(&answer, chunk)?;
    ///         ctx.flush().await?;
    ///     }
    ///     Ok(Outcome::default())
    /// }
    /// ```
    pub async fn flush(&self) -> Result<(), OutputError> {
        self.inner.sink.flush().await
    }

    /// The queue entry being executed.
    pub fn queue_id(&self) -> &QueueId {
        &self.inner.info.queue_id
    }

    /// The cell it came from.
    pub fn cell_id(&self) -> &CellId {
        &self.inner.info.cell_id
    }

    /// The cell's kind.
    pub fn cell_type(&self) -> CellType {
        self.inner.info.cell_type
    }

    /// The source to run (a snapshot taken when it was requested).
    pub fn source(&self) -> &str {
        &self.inner.info.source
    }

    /// The execution count the log assigned when it started.
    pub fn execution_count(&self) -> u64 {
        self.inner.info.execution_count
    }

    /// The runtime session running it.
    pub fn session_id(&self) -> &SessionId {
        &self.inner.info.session_id
    }

    /// Writes text to stdout. Consecutive writes coalesce into one output.
    pub fn stdout(&self, text: impl AsRef<str>) -> Result<(), OutputError> {
        self.stream(StreamName::Stdout, OutputType::Stdout, text.as_ref())
    }

    /// Writes text to stderr. Consecutive writes coalesce into one output.
    pub fn stderr(&self, text: impl AsRef<str>) -> Result<(), OutputError> {
        self.stream(StreamName::Stderr, OutputType::Stderr, text.as_ref())
    }

    /// Shows a rich display; give it an id ([`Display::id`]) to update it later.
    /// The bundle is validated (see [`MediaBundle::validated`]).
    pub fn display(&self, display: impl Into<Display>) -> Result<OutputId, OutputError> {
        let mut display = display.into();
        if self.observe(OutputType::Display) {
            display.data = self.rewritten_bundle(display.data);
            display.metadata = layer::rewrite_map(display.metadata, &|text| self.rewrite(text));
            display.display_id = display
                .display_id
                .map(|id| DisplayId::from(self.rewritten(id.as_str())));
        }
        self.inner.sink.display(display)
    }

    /// Replaces every display shown with `display_id`, in any cell.
    pub fn update_display(
        &self,
        display_id: impl Into<DisplayId>,
        data: MediaBundle,
    ) -> Result<(), OutputError> {
        self.update_display_with(display_id, data, Map::new())
    }

    /// [`update_display`](Self::update_display) with per-MIME metadata.
    pub fn update_display_with(
        &self,
        display_id: impl Into<DisplayId>,
        data: MediaBundle,
        metadata: Map<String, Value>,
    ) -> Result<(), OutputError> {
        let (mut display_id, mut data, mut metadata) = (display_id.into(), data, metadata);
        if self.observe(OutputType::UpdateDisplay) {
            display_id = DisplayId::from(self.rewritten(display_id.as_str()));
            data = self.rewritten_bundle(data);
            metadata = layer::rewrite_map(metadata, &|text| self.rewrite(text));
        }
        self.inner.sink.update_display(display_id, data, metadata)
    }

    /// Sets the execution's result value. An execution has at most one result: a second
    /// one is refused with [`OutputError::DuplicateResult`].
    pub fn result(&self, data: MediaBundle) -> Result<(), OutputError> {
        self.result_with(Display::new(data))
    }

    /// [`result`](Self::result) with metadata (per-MIME, or what the backend that made it
    /// wants to keep, such as a kernel's own execution count) and a display id that
    /// [`update_display`](Self::update_display) replaces it by, as Jupyter allows.
    ///
    /// ```
    /// # fn f(ctx: runtime_core::ExecutionContext) -> Result<(), runtime_core::OutputError> {
    /// use runtime_core::{Display, MediaBundle};
    ///
    /// ctx.result_with(Display::new(MediaBundle::plain("0%")).id("progress"))?;
    /// ctx.update_display("progress", MediaBundle::plain("100%"))?;
    /// # Ok(()) }
    /// ```
    pub fn result_with(&self, result: impl Into<Display>) -> Result<(), OutputError> {
        let mut result = result.into();
        if self.observe(OutputType::Result) {
            result.data = self.rewritten_bundle(result.data);
            result.metadata = layer::rewrite_map(result.metadata, &|text| self.rewrite(text));
        }
        self.inner.sink.result(result)
    }

    /// Shows an error (name, message, traceback). Returning an error from the handler
    /// shows one too, unless the handler already showed one.
    pub fn error(
        &self,
        ename: impl AsRef<str>,
        evalue: impl AsRef<str>,
        traceback: Vec<String>,
    ) -> Result<(), OutputError> {
        let (ename, evalue) = (ename.as_ref(), evalue.as_ref());
        if !self.observe(OutputType::Error) {
            return self.inner.sink.error(ename, evalue, traceback);
        }
        let traceback = traceback
            .into_iter()
            .map(|line| self.rewritten(&line))
            .collect();
        self.inner
            .sink
            .error(&self.rewritten(ename), &self.rewritten(evalue), traceback)
    }

    /// Starts a markdown output; returns its id for [`append_markdown`](Self::append_markdown).
    pub fn markdown(&self, text: impl AsRef<str>) -> Result<OutputId, OutputError> {
        if self.observe(OutputType::Markdown) {
            self.inner.sink.markdown(&self.rewritten(text.as_ref()))
        } else {
            self.inner.sink.markdown(text.as_ref())
        }
    }

    /// Appends to a markdown output this execution started (AI answers stream this way).
    pub fn append_markdown(
        &self,
        output_id: &OutputId,
        text: impl AsRef<str>,
    ) -> Result<(), OutputError> {
        if self.observe(OutputType::AppendMarkdown) {
            let text = self.rewritten(text.as_ref());
            self.inner.sink.append_markdown(output_id, &text)
        } else {
            self.inner.sink.append_markdown(output_id, text.as_ref())
        }
    }

    /// Clears this execution's outputs: now, or with `wait`, when the next output arrives
    /// (Jupyter's `clear_output(wait=True)`).
    pub fn clear(&self, wait: bool) -> Result<(), OutputError> {
        self.observe(OutputType::Clear);
        self.inner.sink.clear(wait)
    }

    /// Asks whoever watches the notebook for a line of input (Python's `input()`), and
    /// waits for it: UIs show `prompt` until a client answers (`notebook input`, or a
    /// page's `inputReply`). The prompt passes through the context's layers (redaction) like
    /// any output. The answer is echoed after the prompt on stdout, as a terminal shows it.
    /// One request at a time: a new one replaces an unanswered earlier one.
    ///
    /// Fails with [`InputError::Cancelled`] when the execution is cancelled meanwhile.
    ///
    /// ```
    /// use runtime_core::{ExecutionContext, ExecutionError, Outcome};
    ///
    /// async fn greet(ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
    ///     let name = ctx.input("Your name? ").await?;
    ///     ctx.stdout(format!("Hello, {name}!\n"))?;
    ///     Ok(Outcome::default())
    /// }
    /// ```
    pub async fn input(&self, prompt: &str) -> Result<String, InputError> {
        self.ask(prompt, false).await
    }

    /// Asks for a password: like [`input`](Self::input), but UIs hide what is typed, the
    /// reply is sealed to a one-time key of this execution (so the log holds only a
    /// ciphertext that nobody can open once the answer is read), and the echo shows the
    /// prompt alone. A reply that was not sealed to the key is not taken: the question is
    /// asked again.
    pub async fn password(&self, prompt: &str) -> Result<String, InputError> {
        self.ask(prompt, true).await
    }

    async fn ask(&self, prompt: &str, password: bool) -> Result<String, InputError> {
        // The prompt reaches the store like an output: a secret in it is masked too.
        let mut prompt = prompt.to_owned();
        self.rewrite(&mut prompt);
        loop {
            let key = password.then(OpeningKey::generate).transpose()?;
            let input_id = InputId::random();
            self.inner.inputs.expect(input_id.clone());
            self.inner.sink.request_input(
                input_id.clone(),
                &prompt,
                key.as_ref().map(OpeningKey::public_hex),
            )?;
            self.flush().await?;
            let reply = std::pin::pin!(self.inner.inputs.reply(&input_id));
            let value = match futures::future::select(reply, self.cancelled()).await {
                futures::future::Either::Left((reply, _)) => reply,
                futures::future::Either::Right(_) => return Err(InputError::Cancelled),
            };
            let value = match &key {
                None => value,
                Some(key) => match key.open(&value) {
                    Ok(value) => value,
                    Err(error) => {
                        tracing::warn!(%error, "a password reply was refused; asking again");
                        continue;
                    }
                },
            };
            let echo = if password { "" } else { value.as_str() };
            // The echo is a courtesy: an output limit reached does not lose the answer.
            let _ = self.stdout(format!("{prompt}{echo}\n"));
            return Ok(value);
        }
    }

    /// `true` once the execution is being cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.reason().is_some()
    }

    /// Why the execution is being cancelled, once it is.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.cancel.reason()
    }

    /// Completes when the execution is cancelled. A handler that does not stop within the
    /// agent's cancel grace period is dropped, and the execution ends cancelled.
    pub fn cancelled(&self) -> Cancelled {
        self.cancel.cancelled()
    }
}

impl std::fmt::Debug for ExecutionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionContext")
            .field("queue_id", &self.inner.info.queue_id)
            .field("cell_id", &self.inner.info.cell_id)
            .field("execution_count", &self.inner.info.execution_count)
            .field("session_id", &self.inner.info.session_id)
            .finish_non_exhaustive()
    }
}
