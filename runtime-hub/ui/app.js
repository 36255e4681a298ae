// The hub's web UI: sign in with a token (kept in sessionStorage, for this tab only), a
// dashboard of the hub's notebooks, and a notebook page. Every notebook is folded by the
// core's own reducer (the wasm package's NotebookView), never by JavaScript; the page
// only renders what it returns and commits what a person asks for.
import init, { HubStore, NotebookView } from "/ui/pkg/runtime_wasm.js";

const TOKEN_KEY = "runtime-hub-token";
const HUB_URL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
const $ = (id) => document.getElementById(id);
/** What a status word looks like (CSS classes and the end-to-end test use these). */
const SHOWN = { pending: "queued", assigned: "queued", executing: "running" };

/** The signed-in token, or null. */
const token = () => sessionStorage.getItem(TOKEN_KEY);

/** The signed-in tab's one connection to the hub (every notebook goes over it), and who it is. */
let hub = null;
let identity = null;

function connect() {
  if (hub) return hub;
  // The notebook named here is only a default: every frame names its own.
  hub = new HubStore(HUB_URL, token(), "home");
  hub.onConnectionState((state) => {
    const shown = $("hub-state");
    shown.hidden = false;
    shown.className = state.state;
    shown.textContent = state.state === "connected" ? "connected" : state.state === "reconnecting"
      ? `reconnecting (${state.error})` : state.state;
    if (state.state === "connected") {
      identity = state.identity;
      $("who").textContent = identity;
      if (page) renderNotebook();
    }
    if (state.state === "failed") signIn(`the hub refused: ${state.error}`);
  });
  return hub;
}

/** `GET`/`POST` the hub's REST API with the token; throws the hub's message on refusal. */
async function api(path, body) {
  const response = await fetch(path, {
    method: body ? "POST" : "GET",
    headers: { authorization: `Bearer ${token()}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json().catch(() => null);
  if (response.status === 401 || response.status === 403) {
    const error = new Error(answer?.error?.message ?? "the hub refused this token");
    error.refused = true;
    throw error;
  }
  if (!response.ok) throw new Error(answer?.error?.message ?? `the hub answered ${response.status}`);
  return answer;
}

/** Shows one of the page's sections. */
function show(section) {
  for (const id of ["sign-in", "dashboard", "notebook"]) $(id).hidden = id !== section;
  $("sign-out").hidden = section === "sign-in";
}

function signIn(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  watchOnly(new Set());
  hub = null;
  identity = null;
  page?.close();
  page = null;
  show("sign-in");
  $("sign-in-error").hidden = !message;
  $("sign-in-error").textContent = message ?? "";
}

/** Milliseconds ago, for people. */
function ago(at) {
  if (!at) return "";
  const seconds = Math.max(0, Math.round((Date.now() - at) / 1000));
  return seconds < 60 ? `${seconds} s ago` : seconds < 3600 ? `${Math.round(seconds / 60)} min ago`
    : `${Math.round(seconds / 3600)} h ago`;
}

function describeRequest(request) {
  if (!request) return "";
  const worktree = request.worktree
    ? ` in ${request.worktree.repository}${request.worktree.branch ? ` from ${request.worktree.branch}` : ""}` : "";
  return `${request.runtimeType}${worktree}`;
}

function runtimeWord(runtime) {
  return runtime ? (runtime.status === "ready" ? "idle" : runtime.status) : "none";
}

// ---- the dashboard ----

/**
 * Live folds of the most recently active notebooks, by id, for their runtime and queue.
 * Lean (no outputs, nothing of finished executions) and at most LIVE_SUMMARIES of them, so
 * a hub with many notebooks costs the page little; the others show what the catalog says.
 */
const summaries = new Map();
const LIVE_SUMMARIES = 50;
let dashboardTimer = null;

function summary(id) {
  let known = summaries.get(id);
  if (!known) {
    const view = new NotebookView({ lean: true });
    const stop = connect().notebook(id).subscribe(1, (events, firstSeq) => {
      view.apply(events, firstSeq);
      if (!$("dashboard").hidden) renderDashboard();
    });
    known = { view, stop };
    summaries.set(id, known);
  }
  return known.view.state();
}

/** Keeps live folds of `ids` only. */
function watchOnly(ids) {
  for (const [id, known] of summaries) {
    if (!ids.has(id)) {
      known.stop();
      known.view.free();
      summaries.delete(id);
    }
  }
}

let listed = [];

function renderDashboard() {
  const recent = [...listed].sort((a, b) => (b.lastActivity ?? 0) - (a.lastActivity ?? 0));
  const live = new Set(recent.slice(0, LIVE_SUMMARIES).map((info) => info.id));
  watchOnly(live);
  const rows = recent.map((info) => {
    // Beyond the live ones, only the catalog's columns: open the notebook for the rest.
    const state = live.has(info.id) ? summary(info.id) : null;
    const row = document.createElement("tr");
    row.dataset.notebook = info.id;
    const name = document.createElement("a");
    name.href = `#/notebook/${encodeURIComponent(info.id)}`;
    name.textContent = info.title ? `${info.title} (${info.id})` : info.id;
    const cells = [name, describeRequest(info.runtime), state ? runtimeWord(state.runtime) : "—",
      state ? String(state.queue.length) : "—", ago(info.lastActivity)];
    row.replaceChildren(...cells.map((content, index) => {
      const cell = document.createElement("td");
      if (index === 2) cell.className = `runtime ${state ? content : "unwatched"}`;
      cell.append(content);
      return cell;
    }));
    return row;
  });
  $("notebooks").tBodies[0].replaceChildren(...rows);
  $("no-notebooks").hidden = listed.length > 0;
}

async function dashboard() {
  show("dashboard");
  clearInterval(dashboardTimer);
  const refresh = async () => {
    try {
      listed = (await api("/notebooks")).notebooks;
      renderDashboard();
    } catch (error) {
      if (error.refused) signIn(error.message);
    }
  };
  await refresh();
  dashboardTimer = setInterval(refresh, 2000);
}

$("new-notebook").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("new-error");
  error.hidden = true;
  try {
    const { notebook } = await api("/notebooks", { title: $("new-title").value.trim() });
    const runtimeType = $("new-runtime").value.trim();
    if (runtimeType) {
      const repository = $("new-repository").value.trim();
      const branch = $("new-branch").value.trim();
      const request = { type: "v1.NotebookRuntimeRequested", runtimeType };
      if (repository) request.worktree = branch ? { repository, branch } : { repository };
      await connect().notebook(notebook).commit([request]);
    }
    location.hash = `#/notebook/${encodeURIComponent(notebook)}`;
  } catch (failure) {
    error.hidden = false;
    error.textContent = failure.message ?? String(failure);
  }
});

// ---- the notebook page ----

let page = null;

/** Safe markdown: the text is escaped first; only headings, emphasis, code and http(s) links come back. */
function markdown(text) {
  const escape = (s) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const blocks = escape(text).split(/\n{2,}/);
  return blocks.map((block) => {
    if (block.startsWith("```")) return `<pre>${block.replace(/^```\w*\n?|```$/g, "")}</pre>`;
    const inline = block
      .replace(/`([^`]+)`/g, "<code>$1</code>")
      .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
      .replace(/\*([^*]+)\*/g, "<em>$1</em>")
      .replace(/\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g, '<a href="$2" rel="noopener noreferrer" target="_blank">$1</a>');
    const heading = inline.match(/^(#{1,6}) (.*)$/s);
    return heading ? `<h${heading[1].length + 2}>${heading[2]}</h${heading[1].length + 2}>`
      : `<p>${inline.replace(/\n/g, "<br>")}</p>`;
  }).join("");
}

/** One output, rendered by its richest safe representation. */
function renderOutput(output) {
  const box = document.createElement("div");
  box.className = `output ${output.outputType}`;
  const pre = (text, className) => {
    const element = document.createElement("pre");
    if (className) element.className = className;
    element.textContent = text;
    return element;
  };
  switch (output.outputType) {
    case "stream": box.append(pre(output.text, output.name)); return box;
    case "markdown": box.innerHTML = markdown(output.text); return box;
    case "error": box.append(pre([`${output.ename}: ${output.evalue}`, ...(output.traceback ?? [])].join("\n"), "error")); return box;
  }
  const data = output.data ?? {};
  for (const mime of ["image/png", "image/jpeg", "image/gif"]) {
    if (typeof data[mime] === "string") {
      const image = document.createElement("img");
      image.src = `data:${mime};base64,${data[mime].replace(/\s/g, "")}`;
      image.alt = data["text/plain"] ?? mime;
      box.append(image);
      return box;
    }
  }
  if (typeof data["image/svg+xml"] === "string") {
    // As an image: an SVG shown by <img> runs no scripts.
    const image = document.createElement("img");
    image.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(data["image/svg+xml"])}`;
    box.append(image);
    return box;
  }
  if (typeof data["text/html"] === "string") {
    // A frame with no permissions at all: no scripts, no forms, its own origin.
    const frame = document.createElement("iframe");
    frame.setAttribute("sandbox", "");
    frame.srcdoc = data["text/html"];
    frame.className = "html";
    box.append(frame);
    return box;
  }
  if (typeof data["text/markdown"] === "string") {
    box.innerHTML = markdown(data["text/markdown"]);
    return box;
  }
  box.append(pre(data["text/plain"] ?? JSON.stringify(data, null, 2), "result"));
  return box;
}

function cancelEvent(queueId) {
  return { type: "v1.ExecutionCancelRequested", target: { scope: "entry", queueId }, requestedBy: identity };
}

function renderNotebook() {
  const state = page.view.state();
  $("title").textContent = state.title ?? page.id;
  const runtime = state.runtime;
  const panel = $("runtime-panel");
  const word = runtimeWord(runtime);
  panel.className = `runtime ${word}`;
  panel.replaceChildren();
  const line = (text, className) => {
    const element = document.createElement("div");
    if (className) element.className = className;
    element.textContent = text;
    panel.append(element);
  };
  line(`runtime: ${word}`, "runtime-status");
  if (state.runtimeRequest) line(`asks for: ${describeRequest(state.runtimeRequest)}`);
  if (runtime) {
    const can = Object.entries(runtime.capabilities)
      .filter(([key, value]) => key.startsWith("canExecute") && value === true)
      .map(([key]) => key.slice("canExecute".length).toLowerCase());
    line(`${runtime.runtimeType} for ${runtime.clientId}, session ${runtime.sessionId.slice(0, 8)}`);
    line(`lease until ${new Date(runtime.leaseUntil).toLocaleTimeString()}; runs ${can.join(", ")}`);
  } else if (state.runtimeRequest) {
    line("waiting for a gateway serving this runtime type");
  }
  // A cell whose view did not change keeps its element: a frame is not reloaded, and an
  // answer being typed is not wiped, when another cell changes.
  const container = $("cells");
  const elements = state.cells.map((cell) => {
    const key = JSON.stringify(cell);
    const known = page.rendered.get(cell.id);
    if (known?.key === key) return known.element;
    const element = cellElement(cell);
    page.rendered.set(cell.id, { key, element });
    return element;
  });
  elements.forEach((element, index) => {
    if (container.children[index] !== element) container.insertBefore(element, container.children[index] ?? null);
  });
  while (container.children.length > elements.length) container.lastElementChild.remove();
  $("queue").replaceChildren(...state.queue.map((entry) => {
    const item = document.createElement("li");
    item.textContent = `${SHOWN[entry.status] ?? entry.status}: ${entry.queueId.slice(0, 8)} by ${entry.requestedBy}`;
    return item;
  }));
}

/** A cell's element, from its view. */
function cellElement(cell) {
  const run = cell.execution;
  const shown = run ? SHOWN[run.status] ?? run.status : "new";
  const element = document.createElement("div");
  element.className = `cell ${shown}`;
  element.dataset.cell = cell.id;
  const head = document.createElement("div");
  head.className = "head";
  const count = document.createElement("span");
  count.className = "count";
  count.textContent = shown === "running" || shown === "queued" ? "[*]" : `[${cell.executionCount ?? " "}]`;
  const source = document.createElement("pre");
  source.className = "source";
  source.textContent = cell.source;
  const badge = document.createElement("span");
  badge.className = `status ${shown}`;
  badge.textContent = !run?.error || shown === "success" ? shown
    : run.error.startsWith(shown) ? run.error : `${shown}: ${run.error}`;
  // A markdown cell is text, not a run: no count, no status.
  if (cell.cellType === "markdown") head.append(source);
  else head.append(count, source, badge);
  if (shown === "running" || shown === "queued") {
    const cancel = document.createElement("button");
    cancel.className = "cancel";
    cancel.textContent = "Cancel";
    cancel.onclick = () => page.store.commit([cancelEvent(run.queueId)]);
    head.append(cancel);
  } else if (cell.cellType !== "markdown") {
    const again = document.createElement("button");
    again.className = "again";
    again.textContent = "Run again";
    again.onclick = () => page.store.commit([request(cell.id, cell.cellType, cell.source)]);
    head.append(again);
  }
  const outputs = document.createElement("div");
  outputs.className = "outputs";
  if (cell.cellType === "markdown") outputs.innerHTML = markdown(cell.source);
  outputs.append(...cell.outputs.map(renderOutput));
  const asked = run?.input;
  if (asked && !asked.reply) outputs.append(inputForm(run.queueId, asked));
  if (shown === "running" && run.startedAt) {
    const elapsed = document.createElement("div");
    elapsed.className = "elapsed";
    elapsed.dataset.startedAt = String(run.startedAt);
    tick(elapsed);
    outputs.append(elapsed);
  }
  element.append(head, outputs);
  return element;
}

/** Updates a running cell's elapsed time. */
function tick(elapsed) {
  const seconds = Math.max(0, Math.round((Date.now() - Number(elapsed.dataset.startedAt)) / 1000));
  elapsed.textContent = `running for ${seconds} s`;
}

function inputForm(queueId, asked) {
  const form = document.createElement("form");
  form.className = "input-request";
  const label = document.createElement("label");
  label.textContent = asked.prompt || "input:";
  const field = document.createElement("input");
  field.type = asked.password ? "password" : "text";
  field.autocomplete = "off";
  const send = document.createElement("button");
  send.textContent = "Send";
  form.append(label, field, send);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    page.store.commit([page.view.answer(queueId, field.value, identity)]);
  });
  return form;
}

function request(cellId, cellType, source) {
  return { type: "v1.ExecutionRequested", queueId: crypto.randomUUID(), cellId, cellType, source, requestedBy: identity };
}

async function notebook(id) {
  show("notebook");
  clearInterval(dashboardTimer);
  if (page?.id === id) return renderNotebook();
  page?.close();
  const store = connect().notebook(id);
  const view = new NotebookView();
  page = { id, store, view, rendered: new Map(), close() { clearInterval(this.ticker); } };
  const mine = page;
  $("cells").replaceChildren();
  $("title").textContent = id;
  store.subscribe(1, (events, firstSeq) => {
    view.apply(events, firstSeq);
    if (page === mine) renderNotebook();
  });
  // Elapsed times move on without new events.
  page.ticker = setInterval(() => document.querySelectorAll(".elapsed").forEach(tick), 1000);
}

function submitCell() {
  const source = $("source").value;
  if (!source.trim() || !page || !identity) return;
  const cellId = crypto.randomUUID();
  const cellType = $("cell-type").value;
  const events = [{ type: "v1.CellCreated", cellId, cellType, source }];
  if (cellType !== "markdown") events.push(request(cellId, cellType, source));
  page.store.commit(events);
  $("source").value = "";
}

$("new-cell").addEventListener("submit", (event) => { event.preventDefault(); submitCell(); });
$("source").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.shiftKey) { event.preventDefault(); submitCell(); }
});

// ---- routing ----

async function route() {
  if (!token()) return signIn();
  const match = location.hash.match(/^#\/notebook\/(.+)$/);
  connect();
  if (match) return notebook(decodeURIComponent(match[1]));
  return dashboard();
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  try {
    await api("/notebooks");
    route();
  } catch (error) {
    signIn(error.refused ? `the hub refused this token: ${error.message}` : error.message);
  }
});
$("sign-out").addEventListener("click", () => { signIn(); location.hash = ""; });
window.addEventListener("hashchange", route);

try {
  await init();
} catch (error) {
  const why = document.createElement("p");
  why.className = "error";
  why.textContent = error.message;
  document.querySelector("main").replaceChildren(why);
  throw error;
}
route();
