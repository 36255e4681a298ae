// NotebookView in Node, from the installed package: a page's fold is the agents' reducer,
// fencing and all.
import assert from "node:assert/strict";
import init, { createBrowserRuntimeAgent, MemoryStore, NotebookView } from "runtime-agents-wasm";

await init();
const store = new MemoryStore();
const view = new NotebookView();
// A lean view, as a dashboard keeps one per notebook: the runtime and the queue, no outputs.
const lean = new NotebookView({ lean: true });
store.subscribe(1, (events, firstSeq) => lean.apply(events, firstSeq));
let deliveries = 0;
store.subscribe(1, (events, firstSeq) => {
  view.apply(events, firstSeq);
  view.apply(events, firstSeq); // a repeated delivery changes nothing
  deliveries += 1;
});
const agent = createBrowserRuntimeAgent(store, { canExecuteCode: true }, { clientId: "viewer" });
let answered;
agent.onExecution(async (ctx) => {
  ctx.stdout("thinking\n");
  if (ctx.source === "ask") answered = await ctx.input("Name? ");
  return { result: { "text/plain": `Echo: ${ctx.source}` } };
});
await agent.start();

const until = async (what, check) => {
  for (let i = 0; i < 3000; i++) {
    const state = view.state();
    if (check(state)) return state;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(view.state())}`);
};

store.commit([
  { type: "v1.CellCreated", cellId: "c1", cellType: "code", source: "1 + 1" },
  { type: "v1.ExecutionRequested", queueId: "q1", cellId: "c1", cellType: "code", source: "1 + 1", requestedBy: "viewer" },
]);
let state = await until("q1 to finish", (s) => s.cells[0]?.execution?.status === "success");
assert.equal(state.runtime.sessionId, agent.sessionId);
assert.equal(state.cells[0].executionCount, 1);
const leanState = lean.state();
assert.equal(leanState.runtime.sessionId, agent.sessionId);
assert.deepEqual(leanState.cells.map((c) => c.outputs.length), [0], "a lean view keeps no outputs");
assert.deepEqual(
  state.cells[0].outputs.map((o) => [o.outputType, o.text ?? o.data?.["text/plain"]]),
  [["stream", "thinking\n"], ["execute_result", "Echo: 1 + 1"]],
);

// An output written in the name of a session that does not run the cell is fenced out.
store.commit([{
  type: "v1.StreamOutputAdded", queueId: "q1", sessionId: "forger", outputId: "forged", name: "stdout", text: "forged\n",
}]);
state = view.state();
assert.equal(state.cells[0].outputs.length, 2, "a forged output must not show");

// A question waits in the view until answered through it.
store.commit([
  { type: "v1.CellCreated", cellId: "c2", cellType: "code", source: "ask" },
  { type: "v1.ExecutionRequested", queueId: "q2", cellId: "c2", cellType: "code", source: "ask", requestedBy: "viewer" },
]);
state = await until("the question", (s) => s.cells[1]?.execution?.input);
assert.equal(state.cells[1].execution.input.prompt, "Name? ");
assert.deepEqual(state.queue.map((e) => [e.queueId, e.status]), [["q2", "executing"]]);
store.commit([view.answer("q2", "Ada", "viewer")]);
state = await until("q2 to finish", (s) => s.cells[1]?.execution?.status === "success");
assert.equal(answered, "Ada");
assert.throws(() => view.answer("q2", "again", "viewer"), /not waiting/);

// A gap is refused, not folded.
const last = view.lastSeq;
assert.throws(() => view.apply([{ type: "v1.CellDeleted", cellId: "c1" }], last + 2), /missing/);
assert.equal(view.lastSeq, last);
assert.throws(() => view.apply("not events", 1), /array/);

await agent.shutdown();
state = await until("the session's end", (s) => !s.runtime);
console.log(JSON.stringify({ view: { cells: state.cells.length, lastSeq: view.lastSeq, deliveries } }));
