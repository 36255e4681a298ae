// The browser demo: the page owns a store and renders from it; the wasm runtime agent
// plugs into the same store. With `?hub=ws://HOST:PORT` the store is a notebook on a hub
// (`&notebook=ID`, default "demo"), shared with every other tab and process on it; the
// token is asked for once per tab and kept in sessionStorage, never in the URL. With
// `&agent=off` the tab only shows and runs cells, and another runtime serves them.
import init, { createBrowserRuntimeAgent, HubStore } from "./pkg/runtime_wasm.js";

const STORAGE_KEY = "browserEcho.events";

/** The page's own store: an append-only log kept in localStorage, with the RuntimeStore interface. */
class PageStore {
  constructor() {
    this.events = JSON.parse(localStorage.getItem(STORAGE_KEY) || "[]");
    this.subscribers = new Set();
  }
  commit(batch) {
    const first = this.events.length + 1;
    this.events.push(...batch);
    localStorage.setItem(STORAGE_KEY, JSON.stringify(this.events)); // synchronous: survives unload
    for (const subscriber of this.subscribers) subscriber.deliver();
    return first;
  }
  subscribe(fromSeq, onEvents) {
    const events = this.events;
    const subscriber = {
      next: fromSeq,
      deliver() {
        if (this.next > events.length) return;
        const first = this.next;
        this.next = events.length + 1;
        onEvents(events.slice(first - 1), first);
      },
    };
    this.subscribers.add(subscriber);
    subscriber.deliver();
    return () => this.subscribers.delete(subscriber);
  }
}

/** Folds the log into what the page shows. */
function view(events) {
  const cells = new Map();
  const runs = new Map();
  let session = null;
  const output = (e) => runs.get(e.queueId)?.outputs;
  for (const e of events) {
    switch (e.type) {
      case "v1.CellCreated": cells.set(e.cellId, { id: e.cellId, source: e.source, run: null }); break;
      case "v1.ExecutionRequested": {
        runs.set(e.queueId, { queueId: e.queueId, state: "pending", outputs: [] });
        const cell = cells.get(e.cellId);
        if (cell) cell.run = e.queueId;
        break;
      }
      case "v1.ExecutionStarted": { const run = runs.get(e.queueId); if (run) { run.state = "running"; run.count = undefined; } break; }
      case "v1.ExecutionCompleted": {
        const run = runs.get(e.queueId);
        if (run) { run.state = e.status; run.error = e.error; }
        break;
      }
      case "v1.ExecutionCancelRequested": {
        const run = e.target.scope === "entry" ? runs.get(e.target.queueId) : null;
        if (run && run.state === "pending") run.state = "cancelled";
        break;
      }
      case "v1.StreamOutputAdded": output(e)?.push({ id: e.outputId, kind: e.name, text: e.text }); break;
      case "v1.StreamOutputAppended": case "v1.MarkdownOutputAppended": {
        const target = output(e)?.find((o) => o.id === e.outputId);
        if (target) target.text += e.text;
        break;
      }
      case "v1.MarkdownOutputAdded": output(e)?.push({ id: e.outputId, kind: "markdown", text: e.text }); break;
      case "v1.ExecuteResultAdded": case "v1.DisplayOutputAdded":
        output(e)?.push({ id: e.outputId, kind: "result", text: e.data["text/plain"] ?? JSON.stringify(e.data) });
        break;
      case "v1.ErrorOutputAdded": output(e)?.push({ id: e.outputId, kind: "error", text: `${e.ename}: ${e.evalue}` }); break;
      case "v1.OutputsCleared": { const outputs = output(e); if (outputs && !e.wait) outputs.length = 0; break; }
      case "v1.RuntimeSessionStarted": session = { id: e.sessionId, status: "ready" }; break;
      case "v1.RuntimeSessionStatusChanged": if (session?.id === e.sessionId) session.status = e.status; break;
      case "v1.RuntimeSessionTerminated": if (session?.id === e.sessionId) session.status = "stopped"; break;
    }
  }
  return { cells: [...cells.values()], runs, session };
}

function render(events, who) {
  const { cells, runs, session } = view(events);
  const status = document.getElementById("runtime-status");
  const shown = session ? (session.status === "ready" ? "idle" : session.status) : "none";
  status.textContent = shown;
  status.className = shown;
  document.getElementById("session").textContent = session ? `session ${session.id.slice(0, 8)}` : "";
  const container = document.getElementById("cells");
  container.replaceChildren(...cells.map((cell) => {
    const run = cell.run ? runs.get(cell.run) : null;
    const state = run?.state ?? "new";
    const element = document.createElement("div");
    element.className = `cell ${state}`;
    element.id = `cell-${cell.id}`;
    const head = document.createElement("div");
    head.className = "head";
    const source = document.createElement("pre");
    source.className = "source";
    source.textContent = cell.source;
    const badge = document.createElement("span");
    badge.className = `status ${state}`;
    badge.textContent = run?.error && (state === "error" || state === "runtime_lost") ? `${state}: ${run.error}` : state;
    head.append(source, badge);
    if (state === "running" || state === "pending") {
      const cancel = document.createElement("button");
      cancel.className = "cancel";
      cancel.textContent = "Cancel";
      cancel.onclick = () => store.commit([{
        type: "v1.ExecutionCancelRequested", target: { scope: "entry", queueId: run.queueId }, requestedBy: who,
      }]);
      head.append(cancel);
    }
    const outputs = document.createElement("div");
    outputs.className = "outputs";
    for (const output of run?.outputs ?? []) {
      const pre = document.createElement("pre");
      pre.className = output.kind;
      pre.textContent = output.text;
      outputs.append(pre);
    }
    element.append(head, outputs);
    return element;
  }));
}

/** The echo runtime, as a JS handler: `%sleep <s>` waits (cancellably), then it echoes. */
async function echo(ctx) {
  const sleep = ctx.source.match(/^%sleep\s+([\d.]+)/);
  if (sleep) {
    ctx.stdout(`sleeping ${sleep[1]} s\n`);
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, Number(sleep[1]) * 1000);
      ctx.signal.addEventListener("abort", () => { clearTimeout(timer); reject(new DOMException("cancelled", "AbortError")); });
    });
  }
  return { result: { "text/plain": `Echo: ${ctx.source}` } };
}

/** The hub's store, once the tab has a token; null when it must sign in first. */
function hubStore(hub, notebook) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    const form = document.getElementById("sign-in");
    form.hidden = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
      location.reload();
    });
    return null;
  }
  return new HubStore(hub, token, notebook);
}

/** Shows the hub connection's state; resolves with the identity once connected. */
function connected(store) {
  const shown = document.getElementById("hub-state");
  return new Promise((resolve, reject) => {
    store.onConnectionState((state) => {
      shown.hidden = false;
      shown.className = state.state;
      shown.textContent = state.state === "connected" ? `hub: ${store.notebookId} as ${state.identity}`
        : state.state === "reconnecting" ? `hub: reconnecting (${state.error})`
        : `hub: ${state.state}${state.error ? ` (${state.error})` : ""}`;
      if (state.state === "connected") resolve(state.identity);
      if (state.state === "failed") reject(new Error(state.error));
    });
  });
}

const TOKEN_KEY = "browserEcho.hubToken";
const params = new URLSearchParams(location.search);
const hub = params.get("hub");
await init();
const store = hub ? hubStore(hub, params.get("notebook") ?? "demo") : new PageStore();
if (store) {
  const who = hub ? await connected(store) : "demo-user";
  if (hub) {
    document.getElementById("about").textContent = "This notebook lives on a hub: every tab and process on it "
      + "sees the same cells live. Unless this tab was opened with &agent=off, a runtime agent compiled to "
      + "WebAssembly serves the notebook from here (the most recently started one wins).";
  }
  const events = [];
  store.subscribe(1, (batch) => { events.push(...batch); render(events, who); });
  let agent = null;
  if (params.get("agent") !== "off") {
    agent = createBrowserRuntimeAgent(store, { canExecuteCode: true }, { clientId: who, runtimeType: "echo" });
    agent.onExecution(echo);
    await agent.start();
  }
  render(events, who);

  document.getElementById("new-cell").addEventListener("submit", (event) => {
    event.preventDefault();
    const source = document.getElementById("source").value;
    const cellId = crypto.randomUUID();
    store.commit([
      { type: "v1.CellCreated", cellId, cellType: "code", source },
      { type: "v1.ExecutionRequested", queueId: crypto.randomUUID(), cellId, cellType: "code", source, requestedBy: who },
    ]);
  });
  const reset = document.getElementById("reset");
  if (hub) reset.hidden = true; // a hub's notebook is shared: nobody clears it for everyone
  reset.addEventListener("click", async () => {
    await agent?.shutdown(); // first, so closing the page records nothing more
    localStorage.removeItem(STORAGE_KEY);
    location.reload();
  });
  window.demo = { store, agent, events };
}
