// What a TypeScript user writes against the package, compiled with `tsc --strict --noEmit`.
// Every `@ts-expect-error` line is a mistake the types must refuse: tsc fails if one of
// them compiles, so the types cannot quietly loosen to `any`.
import init, {
  type CellType,
  type ExecutionContext,
  type HubConnectionState,
  type MediaBundle,
  type RuntimeEvent,
  type RuntimeStore,
  createBrowserRuntimeAgent,
  HubStore,
  inputReply,
  MemoryStore,
  NotebookView,
  type NotebookViewState,
  type Output,
} from "runtime-agents-wasm";
import { TabStore } from "runtime-agents-wasm/tab-store.js";

export function describe(event: RuntimeEvent): string {
  switch (event.type) {
    case "v1.CellCreated": {
      const kind: CellType = event.cellType;
      return `${event.cellId} (${kind}): ${event.source ?? ""}`;
    }
    case "v1.StreamOutputAdded":
      return `${event.name === "stderr" ? "!" : ""}${event.text}`;
    case "v1.ExecutionCompleted":
      return `${event.queueId}: ${event.status} in ${event.durationMs ?? 0} ms`;
    case "v1.ExecutionCancelRequested":
      return event.target.scope === "entry" ? event.target.queueId : "everything";
    case "v1.DisplayOutputAdded": {
      const html: string | undefined = event.data["text/html"];
      return html ?? String(event.data["text/plain"]);
    }
    case "v1.InputRequested":
      return event.password ? "(password)" : event.prompt ?? "";
    default:
      // @ts-expect-error: a stream output's text exists only after narrowing.
      return event.text;
  }
}

// @ts-expect-error: "python" is not a cell type.
export const notACellType: CellType = "python";

export const created: RuntimeEvent = {
  type: "v1.CellCreated",
  cellId: "c1",
  cellType: "code",
  source: "1 + 1",
};

export const misspelt: RuntimeEvent = {
  type: "v1.CellCreated",
  cellId: "c1",
  cellType: "code",
  // @ts-expect-error: events have exact fields (a typo is not silently another field).
  sorce: "1 + 1",
};

// @ts-expect-error: an ExecutionRequested without its source and requester.
export const incomplete: RuntimeEvent = { type: "v1.ExecutionRequested", queueId: "q", cellId: "c", cellType: "code" };

export const bundle: MediaBundle = { "text/plain": "hi", "text/html": "<b>hi</b>", "application/vnd.custom": 1 };
// @ts-expect-error: text/plain is text.
export const badBundle: MediaBundle = { "text/plain": 42 };

export async function handler(ctx: ExecutionContext): Promise<{ result: MediaBundle }> {
  ctx.stdout(`running ${ctx.cellType} cell ${ctx.cellId} (#${ctx.executionCount})\n`);
  const id: string = ctx.display({ "text/plain": "working" });
  ctx.display({ "text/plain": "with metadata" }, { note: 1 });
  ctx.display({ "text/plain": "updatable" }, undefined, "progress");
  ctx.updateDisplay("progress", { "text/plain": "done" });
  ctx.error("ValueError", "bad", ["line 1"]);
  ctx.clear();
  ctx.clear(true);
  const name: string = await ctx.input("name? ");
  const secret: string = await ctx.password("token? ");
  // @ts-expect-error: a display needs its data.
  ctx.display();
  // @ts-expect-error: updateDisplay takes a display id, then data.
  ctx.updateDisplay({ "text/plain": "x" });
  ctx.signal.addEventListener("abort", () => undefined);
  return { result: { "text/plain": `${id} ${name} ${secret.length}` } };
}

export async function main(): Promise<void> {
  await init();
  const store = new MemoryStore();
  const first: number = store.commit([created], "batch-1");
  const unsubscribe: () => void = store.subscribe(first, (events, firstSeq: number) => {
    for (const event of events) describe(event);
    void firstSeq;
  });
  unsubscribe();

  const agent = createBrowserRuntimeAgent(store, { canExecuteCode: true, canExecuteAi: false }, { clientId: "me" });
  agent.onExecution(handler);
  agent.onExecution(async () => undefined);
  // @ts-expect-error: a result is a media bundle, not a string.
  agent.onExecution(async () => ({ result: "text" }));
  // @ts-expect-error: clientId is required.
  createBrowserRuntimeAgent(store, {}, {});
  await agent.start();
  const status: "created" | "starting" | "idle" | "busy" | "stopping" | "stopped" = agent.status;
  void status;
  await agent.shutdown();

  // Any object with commit and subscribe is a store.
  const own: RuntimeStore = {
    commit: (events: RuntimeEvent[]) => events.length,
    subscribe: () => () => undefined,
  };
  createBrowserRuntimeAgent(own, { canExecuteCode: true }, { clientId: "me", logLevel: "warn" });

  const tabs: RuntimeStore = new TabStore("my-notebook");
  createBrowserRuntimeAgent(tabs, { canExecuteCode: true }, { clientId: "me" });
  const shared = new TabStore();
  const writing: boolean = shared.isWriter;
  void writing;
  shared.close();
  // @ts-expect-error: a TabStore's name is a string.
  new TabStore(42);

  const hub = new HubStore("ws://127.0.0.1:1", "token", "notebook");
  const withOptions = new HubStore("ws://127.0.0.1:1", "token", "notebook", { heartbeatMs: 5000 });
  const state: HubConnectionState = hub.connectionState;
  if (state.state === "reconnecting") void state.retryInMs;
  const notebooks = await withOptions.notebooks();
  for (const notebook of notebooks) void notebook.head;

  const request = store.events().find((event) => event.type === "v1.InputRequested");
  if (request?.type === "v1.InputRequested") {
    const reply = inputReply(request, "Ada", "me");
    const replied: "v1.InputReplied" = reply.type;
    store.commit([reply]);
    void replied;
  }
  // @ts-expect-error: inputReply answers an input request, not any event.
  inputReply(created, "Ada", "me");
}

export function views(): NotebookView[] {
  // @ts-expect-error: lean is a boolean.
  new NotebookView({ lean: "yes" });
  return [new NotebookView(), new NotebookView({}), new NotebookView({ lean: true })];
}

export function render(view: NotebookView): string[] {
  const state: NotebookViewState = view.state();
  const lines: string[] = [];
  for (const cell of state.cells) {
    const status = cell.execution?.status ?? "new";
    if (status === "timed_out" || status === "runtime_lost") lines.push(cell.execution?.error ?? "");
    // @ts-expect-error: "running" is not an execution status ("executing" is).
    if (status === "running") lines.push("never");
    for (const output of cell.outputs) lines.push(text(output));
  }
  if (state.runtime) lines.push(`${state.runtime.runtimeType}: ${state.runtime.status}`);
  const waiting = state.queue.find((execution) => execution.input);
  if (waiting?.input) view.answer(waiting.queueId, waiting.input.password ? "secret" : "Ada", "me");
  return lines;
}

function text(output: Output): string {
  switch (output.outputType) {
    case "stream":
      return `${output.name}: ${output.text}`;
    case "execute_result":
      return `[${output.executionCount}] ${String(output.data["text/plain"])}`;
    case "error":
      return `${output.ename}: ${output.evalue}`;
    default:
      return output.outputId;
  }
}
