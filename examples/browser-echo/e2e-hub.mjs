// Drives the browser demo against a real hub in headless Chromium: tab A runs the browser
// agent; a native `notebook` client in another process runs a cell that tab A's agent
// serves; tab B (no agent, another identity) runs a cell, and both tabs see both cells live.
// Then the hub is killed (SIGKILL) and started again on the same file and port: both tabs
// reconnect on their own, and a cell tab B sends while the hub is down runs once.
// Usage: node e2e-hub.mjs <demo URL> <runtime-hub binary> <notebook binary> <work dir> <screenshot path>
import { exitOnFailures, launchChromium, reportPageErrors } from "./chromium.mjs";
import { execFile, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";

const [url, hubBin, notebookBin, work, screenshot] = process.argv.slice(2);
const AGENT_TOKEN = "browser-agent-token-0123456789";
const USER_TOKEN = "alice-token-0123456789abcdef";
const tokens = join(work, "hub-tokens.toml");
writeFileSync(tokens, `[[tokens]]\ntoken = "${AGENT_TOKEN}"\nidentity = "tab-agent"\nrole = "agent"\n\n`
  + `[[tokens]]\ntoken = "${USER_TOKEN}"\nidentity = "alice"\nrole = "user"\n`, { mode: 0o600 });
const port = await new Promise((resolve) => {
  const server = createServer().listen(0, "127.0.0.1", () => { const { port } = server.address(); server.close(() => resolve(port)); });
});
const hub = `ws://127.0.0.1:${port}`;
const notebook = "two-tabs";

/** Starts the hub and waits until it answers. */
async function startHub() {
  const child = spawn(hubBin, ["--listen", `127.0.0.1:${port}`, "--store", join(work, "hub.db"), "--tokens", tokens, "--log", "warn"],
    { stdio: ["ignore", "ignore", "inherit"] });
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return child; } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("the hub did not start");
}
let hubProcess = await startHub();
const browser = await launchChromium();
const failures = [];

/** A tab signed in with `token` (kept in that tab's sessionStorage, as the sign-in form does). */
async function tab(token, query) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  await context.addInitScript((token) => sessionStorage.setItem("browserEcho.hubToken", token), token);
  const page = await context.newPage();
  // Chromium reports each refused WebSocket as a console error: expected while the hub is down.
  reportPageErrors(page, failures, (text) => text.startsWith("WebSocket connection to"));
  await page.goto(`${url}?hub=${encodeURIComponent(hub)}&notebook=${notebook}${query}`);
  await page.locator("#hub-state.connected").waitFor({ timeout: 20_000 });
  return page;
}

const echoed = (page, source) =>
  page.locator(".cell.success", { hasText: source }).getByText(`Echo: ${source}`, { exact: true })
    .waitFor({ timeout: 20_000 });

try {
  const a = await tab(AGENT_TOKEN, "");
  await a.locator("#runtime-status", { hasText: "idle" }).waitFor({ timeout: 20_000 });
  const b = await tab(USER_TOKEN, "&agent=off");
  if (!(await b.locator("#hub-state").textContent()).includes("as alice")) failures.push("tab B is not alice");

  // A native client in another process, served by the agent in tab A.
  const { stdout } = await promisify(execFile)(notebookBin,
    ["--store", hub, "--notebook", notebook, "--client-id", "alice", "run", "from the terminal"],
    { env: { ...process.env, RUNTIME_AUTH_TOKEN: USER_TOKEN }, timeout: 60_000 });
  if (!stdout.includes("Echo: from the terminal")) failures.push(`the native client printed: ${stdout}`);

  // Tab B runs a cell; tab A's agent serves it; both tabs see both cells.
  await b.fill("#source", "from tab B");
  await b.click("#run");
  for (const page of [a, b]) {
    await echoed(page, "from the terminal");
    await echoed(page, "from tab B");
  }

  // The catalog from a tab: create a titled notebook, find it listed with its title.
  const made = await b.evaluate(async () => {
    const id = await window.demo.store.create("Made in a tab");
    const listed = await window.demo.store.notebooks();
    return { id, title: listed.find((n) => n.id === id)?.title, ours: listed.find((n) => n.id === "two-tabs") };
  });
  if (made.title !== "Made in a tab") failures.push(`created ${JSON.stringify(made)}`);
  if (!(made.ours?.head > 0)) failures.push(`the shared notebook is not listed: ${JSON.stringify(made)}`);

  // The hub dies; tab B sends a cell while it is down; the hub comes back; tab A's agent
  // (same session: its lease outlives the outage) serves the cell once.
  hubProcess.kill("SIGKILL");
  await new Promise((resolve) => hubProcess.once("exit", resolve));
  for (const page of [a, b]) await page.locator("#hub-state.reconnecting").waitFor({ timeout: 20_000 });
  await b.fill("#source", "while the hub was down");
  await b.click("#run");
  hubProcess = await startHub();
  for (const page of [a, b]) {
    await page.locator("#hub-state.connected").waitFor({ timeout: 30_000 });
    await echoed(page, "while the hub was down");
  }
  await a.screenshot({ path: screenshot, fullPage: true });

  // Over the whole log: every request ran once, and each completed once, successfully.
  const events = await b.evaluate(() => window.demo.events);
  const requested = events.filter((e) => e.type === "v1.ExecutionRequested").map((e) => e.queueId);
  const started = events.filter((e) => e.type === "v1.ExecutionStarted").map((e) => e.queueId);
  const completed = events.filter((e) => e.type === "v1.ExecutionCompleted");
  const once = (ids) => ids.length === new Set(ids).size;
  if (!once(started)) failures.push(`an execution started twice: ${started}`);
  if (started.length !== requested.length || completed.length !== requested.length) {
    failures.push(`requested ${requested.length}, started ${started.length}, completed ${completed.length}`);
  }
  if (completed.some((e) => e.status !== "success")) failures.push(`completions: ${completed.map((e) => e.status)}`);
  // The agent kept its session through the outage (its lease outlived it).
  const sessions = events.filter((e) => e.type.startsWith("v1.RuntimeSession") && e.type !== "v1.RuntimeSessionRenewed"
    && e.type !== "v1.RuntimeSessionStatusChanged");
  if (sessions.length !== 1) failures.push(`session events: ${sessions.map((e) => e.type)}`);
  console.log(JSON.stringify({ notebook, events: events.length, requested: requested.length, screenshot }));
} catch (error) {
  failures.push(error.stack ?? String(error));
} finally {
  await browser.close();
  hubProcess.kill("SIGKILL");
}
exitOnFailures(failures);
