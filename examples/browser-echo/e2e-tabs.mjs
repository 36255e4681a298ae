// Two tabs of the demo on one notebook, in real headless Chromium (one browser profile, so
// they share localStorage, locks and channels, as two tabs of a person's browser do):
// the second tab sees the first's cells, its agent displaces the first's instead of
// twinning it, cells typed in both tabs at once are all kept and run once, and when the
// serving tab closes the other takes over.
// Usage: node e2e-tabs.mjs <demo URL> <screenshot path prefix>
import { exitOnFailures, launchChromium, reportPageErrors } from "./chromium.mjs";

const [base, screenshots] = process.argv.slice(2);
const url = `${base}?store=two-tabs-${Date.now()}`;
const browser = await launchChromium();
const failures = [];
const check = (ok, message) => { if (!ok) failures.push(message); };

async function open(context) {
  const page = await context.newPage({ viewport: { width: 760, height: 900 } });
  reportPageErrors(page, failures);
  await page.goto(url);
  await page.locator("#runtime-status", { hasText: "idle" }).waitFor({ timeout: 20_000 });
  return page;
}

async function run(page, source) {
  await page.fill("#source", source);
  await page.press("#source", "Shift+Enter");
}

const echoed = (page, source) =>
  page.getByText(`Echo: ${source}`, { exact: true }).waitFor({ timeout: 20_000 });

const sessionOf = (page) => page.evaluate(() => window.demo.agent.sessionId);
const servedBy = (page) => page.evaluate(() => window.demo.notebook.state().runtime?.sessionId);

try {
  const context = await browser.newContext();
  const a = await open(context);
  await run(a, "from the first tab");
  await echoed(a, "from the first tab");

  // A second tab: it sees the first's cell and output, and its agent displaces the first's.
  const b = await open(context);
  await echoed(b, "from the first tab");
  const bSession = await sessionOf(b);
  await a.waitForFunction((id) => window.demo.notebook.state().runtime?.sessionId === id, bSession, { timeout: 20_000 });
  check(await a.evaluate(() => window.demo.agent.status) === "stopped", "the first tab's agent still runs: a twin");
  await a.locator("#agent-state", { hasText: "displaced" }).waitFor({ timeout: 10_000 });

  // Cells typed in both tabs at once: all kept, all run once, both tabs see all of them.
  await Promise.all([run(a, "typed in A"), run(b, "typed in B")]);
  for (const page of [a, b]) {
    await echoed(page, "typed in A");
    await echoed(page, "typed in B");
  }
  await a.screenshot({ path: `${screenshots}-a.png`, fullPage: true });
  await b.screenshot({ path: `${screenshots}-b.png`, fullPage: true });

  // The serving tab closes: its session ends, the first tab's agent takes over.
  await b.close({ runBeforeUnload: true });
  const aSession = await a.waitForFunction(
    (old) => {
      const id = window.demo.notebook.state().runtime?.sessionId;
      return id && id !== old && id === window.demo.agent.sessionId ? id : false;
    },
    bSession,
    { timeout: 20_000 },
  );
  await run(a, "after the second tab left");
  await echoed(a, "after the second tab left");

  // The whole log: one order, each request started once and completed once, by the
  // session that was active.
  const events = await a.evaluate(() => window.demo.events);
  const requested = events.filter((e) => e.type === "v1.ExecutionRequested").map((e) => e.queueId);
  const started = events.filter((e) => e.type === "v1.ExecutionStarted").map((e) => e.queueId);
  check(requested.length === 4, `requests: ${requested.length}`);
  check(new Set(started).size === started.length, `an execution started twice: ${started}`);
  const view = await a.evaluate(() => window.demo.notebook.state());
  const statuses = view.cells.map((cell) => cell.execution?.status);
  check(statuses.every((status) => status === "success"), `statuses: ${statuses}`);
  console.log(JSON.stringify({
    cells: view.cells.length, events: events.length, statuses,
    servedAfterHandover: (await aSession.jsonValue()).slice(0, 8), screenshots: `${screenshots}-{a,b}.png`,
  }));
} catch (error) {
  failures.push(error.stack ?? String(error));
} finally {
  await browser.close();
}
exitOnFailures(failures);
