// One cell through the package's agent, as a user's first program does; shared by the Node
// run (node.mjs) and the bundler-free page (page.html). Resolves to what the log shows.
export async function runACell(lib) {
  const store = new lib.MemoryStore();
  const agent = lib.createBrowserRuntimeAgent(store, { canExecuteCode: true }, { clientId: "consumer" });
  agent.onExecution(async (ctx) => {
    ctx.stdout(`running ${ctx.cellType}\n`);
    return { result: { "text/plain": `Echo: ${ctx.source}` } };
  });
  await agent.start();
  const done = new Promise((resolve) => {
    const seen = [];
    store.subscribe(1, (events) => {
      seen.push(...events);
      if (events.some((event) => event.type === "v1.ExecutionCompleted")) resolve(seen);
    });
  });
  store.commit([
    { type: "v1.CellCreated", cellId: "c1", cellType: "code", source: "1 + 1" },
    { type: "v1.ExecutionRequested", queueId: "q1", cellId: "c1", cellType: "code", source: "1 + 1", requestedBy: "consumer" },
  ]);
  const events = await Promise.race([
    done,
    new Promise((_, reject) => setTimeout(() => reject(new Error("no completion in 30 s")), 30_000)),
  ]);
  await agent.shutdown();
  return {
    status: events.find((event) => event.type === "v1.ExecutionCompleted").status,
    stdout: events.filter((event) => event.type === "v1.StreamOutputAdded").map((event) => event.text).join(""),
    result: events.find((event) => event.type === "v1.ExecuteResultAdded")?.data["text/plain"],
  };
}

export const expected = { status: "success", stdout: "running code\n", result: "Echo: 1 + 1" };
