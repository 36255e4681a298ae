// The browser demo: the page owns a store and renders from it; the wasm runtime agent
// plugs into the same store. By default the store is a TabStore (`&store=NAME`, default
// "browserEcho"): one log shared by every tab of this origin, kept in localStorage. With
// `?hub=ws://HOST:PORT` the store is a notebook on a hub (`&notebook=ID`, default "demo"),
// shared with every other tab and process on it; the token is asked for once per tab and
// kept in sessionStorage, never in the URL. Every tab starts an agent, and the newest one
// serves (the log displaces the others); when it goes, a remaining tab takes over. With
// `&agent=off` the tab only shows and runs cells, and another runtime serves them.
import init, { createBrowserRuntimeAgent, HubStore, NotebookView } from "./pkg/runtime_wasm.js";
import { TabStore } from "./pkg/tab-store.js";

/** What a status word looks like on the page (the CSS classes and the end-to-end test use these). */
const SHOWN_STATUS = { pending: "pending", assigned: "pending", executing: "running" };

/** One output as text. */
function outputText(output) {
  switch (output.outputType) {
    case "stream": case "markdown": return output.text;
    case "error": return `${output.ename}: ${output.evalue}`;
    default: return output.data["text/plain"] ?? JSON.stringify(output.data);
  }
}

/** Renders the notebook as the core's reducer folds it (a NotebookView's state). */
function render(notebook, who) {
  const { cells, runtime } = notebook;
  const status = document.getElementById("runtime-status");
  const shown = runtime ? (runtime.status === "ready" ? "idle" : runtime.status) : "none";
  status.textContent = shown;
  status.className = shown;
  document.getElementById("session").textContent = runtime ? `session ${runtime.sessionId.slice(0, 8)}` : "";
  const container = document.getElementById("cells");
  container.replaceChildren(...cells.map((cell) => {
    const run = cell.execution;
    const state = run ? SHOWN_STATUS[run.status] ?? run.status : "new";
    const element = document.createElement("div");
    element.className = `cell ${state}`;
    element.id = `cell-${cell.id}`;
    const head = document.createElement("div");
    head.className = "head";
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = state === "running" || state === "pending" ? "[*]" : `[${cell.executionCount ?? " "}]`;
    const source = document.createElement("pre");
    source.className = "source";
    source.textContent = cell.source;
    const badge = document.createElement("span");
    badge.className = `status ${state}`;
    // A reason that already starts with the status word ("cancelled: the runtime shut down") reads alone.
    badge.textContent = !run?.error || state === "success" ? state
      : run.error.startsWith(state) ? run.error : `${state}: ${run.error}`;
    head.append(count, source, badge);
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
    for (const output of cell.outputs) {
      const pre = document.createElement("pre");
      pre.className = output.outputType === "stream" ? output.name
        : output.outputType === "error" || output.outputType === "markdown" ? output.outputType : "result";
      pre.textContent = outputText(output);
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
const storeName = params.get("store") ?? "browserEcho";
const store = hub ? hubStore(hub, params.get("notebook") ?? "demo") : new TabStore(storeName);
if (store) {
  const who = hub ? await connected(store) : "demo-user";
  if (hub) {
    document.getElementById("about").textContent = "This notebook lives on a hub: every tab and process on it "
      + "sees the same cells live. Unless this tab was opened with &agent=off, a runtime agent compiled to "
      + "WebAssembly serves the notebook from here (the most recently started one wins).";
  }
  const notebook = new NotebookView(); // the agents' own reducer, folding what the store delivers
  const events = []; // the raw log, for the end-to-end tests to audit
  let agent = null;
  let leaving = false;
  addEventListener("pagehide", () => { leaving = true; });

  /** Starts this tab's agent: it displaces whichever runtime served the notebook. */
  async function startAgent() {
    // `?runtimeType=` names the runtime's kind (the agent reads its URL parameters itself).
    const runtimeType = params.get("runtimeType") ? {} : { runtimeType: "echo" };
    const starting = createBrowserRuntimeAgent(store, { canExecuteCode: true }, { clientId: who, ...runtimeType });
    starting.onExecution(echo);
    agent = starting;
    window.demo.agent = starting;
    await starting.start();
  }

  /** Says what this tab's agent does; takes over when no runtime serves the notebook any more. */
  function tendAgent(state) {
    const shown = document.getElementById("agent-state");
    if (!agent) {
      shown.textContent = "this tab runs no agent";
      return;
    }
    if (agent.status !== "stopped") {
      shown.textContent = state.runtime?.sessionId === agent.sessionId ? "this tab's agent serves the notebook" : "";
      return;
    }
    if (state.runtime) {
      shown.textContent = `this tab's agent was displaced by session ${state.runtime.sessionId.slice(0, 8)}`;
    } else if (!leaving) {
      shown.textContent = "no runtime serves the notebook: this tab's agent takes over";
      startAgent().catch((error) => console.warn("could not take over:", error));
    }
  }

  window.demo = { store, agent, notebook, events };
  store.subscribe(1, (batch, firstSeq) => {
    events.push(...batch);
    notebook.apply(batch, firstSeq);
    const state = notebook.state();
    render(state, who);
    tendAgent(state);
  });
  if (params.get("agent") !== "off") await startAgent();
  render(notebook.state(), who);
  tendAgent(notebook.state());
  // An agent stops a moment after the log displaced it: look again now and then.
  setInterval(() => tendAgent(notebook.state()), 500);

  // Shift+Enter runs the cell, as in Jupyter.
  document.getElementById("source").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.shiftKey) {
      event.preventDefault();
      document.getElementById("new-cell").requestSubmit();
    }
  });
  document.getElementById("new-cell").addEventListener("submit", (event) => {
    event.preventDefault();
    const source = document.getElementById("source").value;
    const cellId = crypto.randomUUID();
    store.commit([
      { type: "v1.CellCreated", cellId, cellType: "code", source },
      { type: "v1.ExecutionRequested", queueId: crypto.randomUUID(), cellId, cellType: "code", source, requestedBy: who },
    ]);
  });
  // Other tabs share this notebook, so nobody clears it for everyone: start another one.
  const fresh = document.getElementById("new-notebook");
  if (hub) fresh.hidden = true;
  fresh.addEventListener("click", () => {
    const next = new URL(location.href);
    next.searchParams.set("store", `notebook-${crypto.randomUUID().slice(0, 8)}`);
    location.href = next.href;
  });
  document.getElementById("raw-log").href = `log.html?store=${encodeURIComponent(storeName)}`;
}
