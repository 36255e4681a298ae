// Drives the browser demo in real headless Chromium, as a person would: types a cell, runs
// it, reads the echo, cancels a slow cell, navigates away, and checks the page's store
// recorded the session's end. Usage: node e2e.mjs <demo URL> <screenshot path>
import { exitOnFailures, launchChromium, reportPageErrors } from "./chromium.mjs";

const [url, screenshot] = process.argv.slice(2);
const browser = await launchChromium();
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
  reportPageErrors(page, failures);
  await page.goto(url);
  await page.locator("#runtime-status", { hasText: "idle" }).waitFor({ timeout: 20_000 });

  await page.fill("#source", 'print("hello from a browser")');
  await page.click("#run");
  await page.getByText('Echo: print("hello from a browser")', { exact: true }).waitFor({ timeout: 10_000 });
  // Shift+Enter runs a cell too; each shows its execution count.
  await page.fill("#source", "second");
  await page.press("#source", "Shift+Enter");
  await page.getByText("Echo: second", { exact: true }).waitFor({ timeout: 10_000 });
  const counts = await page.locator(".cell .count").allTextContents();
  if (counts.join(",") !== "[1],[2]") failures.push(`execution counts shown: ${counts}`);

  await page.fill("#source", "%sleep 30");
  await page.click("#run");
  const slow = page.locator(".cell.running", { hasText: "%sleep 30" });
  await slow.locator("text=sleeping 30 s").waitFor({ timeout: 10_000 });
  await page.locator("#runtime-status", { hasText: "busy" }).waitFor({ timeout: 10_000 });
  await slow.locator("button.cancel").click();
  await page.locator(".cell.cancelled .status", { hasText: "cancelled" }).waitFor({ timeout: 10_000 });
  await page.locator("#runtime-status", { hasText: "idle" }).waitFor({ timeout: 10_000 });
  await page.screenshot({ path: screenshot, fullPage: true });

  // A reload ends the page's agent: the cell it was running says it was cancelled, and why.
  await page.fill("#source", "%sleep 30");
  await page.press("#source", "Shift+Enter");
  await page.locator(".cell.running", { hasText: "%sleep 30" }).locator("text=sleeping 30 s").waitFor({ timeout: 10_000 });
  await page.reload();
  await page.locator("#runtime-status", { hasText: "idle" }).waitFor({ timeout: 20_000 });
  await page.locator(".cell.cancelled .status", { hasText: "cancelled: the page was closed" }).waitFor({ timeout: 10_000 });

  // ?runtimeType= names the runtime's kind.
  await page.goto(`${url}?runtimeType=echo-tab`);
  await page.locator("#runtime-status", { hasText: "idle" }).waitFor({ timeout: 20_000 });
  const runtimeType = await page.evaluate(() => window.demo.notebook.state().runtime?.runtimeType);
  if (runtimeType !== "echo-tab") failures.push(`?runtimeType=echo-tab gave a ${runtimeType} runtime`);

  const sessionId = await page.evaluate(() => window.demo.agent.sessionId);
  await page.goto(new URL("log.html", url).href); // leaving the page: pagehide
  const events = await page.evaluate(() => JSON.parse(localStorage.getItem("browserEcho.log")).events);
  const ended = events.find((e) => e.type === "v1.RuntimeSessionTerminated" && e.sessionId === sessionId);
  if (!ended) failures.push("the store did not record the session's end after navigating away");
  else if (ended.reason !== "shutdown") failures.push(`the session ended ${ended.reason}, not shutdown`);
  // The first completion of each execution is the one the log applies (a closing page
  // records its own; the agent's later one is ignored).
  const firstCompletions = new Map();
  for (const e of events) {
    if (e.type === "v1.ExecutionCompleted" && !firstCompletions.has(e.queueId)) firstCompletions.set(e.queueId, e.status);
  }
  const statuses = [...firstCompletions.values()];
  if (statuses.join(",") !== "success,success,cancelled,cancelled") failures.push(`completions: ${statuses}`);
  console.log(JSON.stringify({ sessionId, events: events.length, completions: statuses, ended: ended?.reason, screenshot }));
} catch (error) {
  failures.push(error.stack ?? String(error));
} finally {
  await browser.close();
}
exitOnFailures(failures);
