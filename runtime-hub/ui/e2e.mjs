// Drives the hub's web UI in headless Chromium against a real hub and a real gateway in
// other processes: a bad token is refused; signed in, a person creates a notebook asking
// for a `shell` runtime, the gateway attaches to it, cells run (Shift+Enter) and one is
// cancelled; a second browser sees the notebook live; markdown is rendered without
// letting HTML through; the dashboard lists the notebook with its runtime; and the page
// fits a phone's screen. Screenshots: desktop and phone.
// Usage: node e2e.mjs <runtime-hub binary (built with its UI)> <process-agent binary> <work dir> <screenshot prefix>
import { exitOnFailures, launchChromium, reportPageErrors } from "../../examples/browser-echo/chromium.mjs";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

const [hubBin, agentBin, work, screenshots] = process.argv.slice(2);
const USER_TOKEN = "alice-ui-token-0123456789abcdef";
const AGENT_TOKEN = "gateway-ui-token-0123456789abcdef";
const tokens = join(work, "tokens.toml");
writeFileSync(tokens, `[[tokens]]\ntoken = "${USER_TOKEN}"\nidentity = "alice"\nrole = "user"\n\n`
  + `[[tokens]]\ntoken = "${AGENT_TOKEN}"\nidentity = "gateway"\nrole = "agent"\n`, { mode: 0o600 });
const backends = join(work, "backends.toml");
writeFileSync(backends, 'use = "shell"\n[backends.shell]\nkind = "job"\nprogram = "bash"\nargs = ["-c"]\n'
  + 'input = "argument"\ninterrupt_grace = "300ms"\nterminate_grace = "300ms"\n');
const port = await new Promise((resolve) => {
  const server = createServer().listen(0, "127.0.0.1", () => { const { port } = server.address(); server.close(() => resolve(port)); });
});
const base = `http://127.0.0.1:${port}/`;
const failures = [];
const children = [];
const stopAll = () => children.forEach((child) => child.kill("SIGKILL"));
process.on("exit", stopAll);
// A step that times out says what the pages reported before it.
process.on("uncaughtException", (error) => {
  console.error(`${error.stack ?? error}\n${failures.join("\n")}`);
  process.exit(1);
});

const hub = spawn(hubBin, ["--listen", `127.0.0.1:${port}`, "--store", join(work, "hub.db"), "--tokens", tokens, "--log", "warn"],
  { stdio: ["ignore", "ignore", "inherit"] });
children.push(hub);
for (let i = 0; ; i++) {
  try { if ((await fetch(`${base}health`)).ok) break; } catch {}
  if (i > 600) throw new Error("the hub did not start");
  await new Promise((resolve) => setTimeout(resolve, 100));
}
let gatewayOutput = "";
const gateway = spawn(agentBin, ["--gateway", "--backends", backends, "--store", `ws://127.0.0.1:${port}`, "--client-id", "gateway"],
  { env: { ...process.env, RUNTIME_AUTH_TOKEN: AGENT_TOKEN }, stdio: ["ignore", "pipe", "inherit"] });
gateway.stdout.on("data", (chunk) => { gatewayOutput += chunk; });
children.push(gateway);

const browser = await launchChromium();
const WAIT = { timeout: 60_000 };

/** A new browser (its own sessionStorage) on the UI, signed in with `token`. */
async function signedIn(token, viewport, expected) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  reportPageErrors(page, failures, expected);
  await page.goto(base);
  await page.waitForSelector("#sign-in:not([hidden])", WAIT);
  await page.fill("#token", token);
  await page.click("#sign-in button");
  return page;
}

// A bad token is refused, and the page says so.
const refused = await signedIn("not-a-token", { width: 1280, height: 800 }, (text) => text.includes("401"));
await refused.waitForSelector("#sign-in-error:not([hidden])", WAIT);
const said = await refused.textContent("#sign-in-error");
if (!/refused/.test(said)) failures.push(`a bad token: ${said}`);
if (await refused.isVisible("#dashboard")) failures.push("a bad token reached the dashboard");
await refused.context().close();

// Signed in: a new notebook asking for a shell runtime.
// Its HTML outputs' scripts are blocked by the frame's sandbox, as they must be.
const sandboxed = (text) => text.includes("Blocked script execution in 'about:srcdoc'");
const page = await signedIn(USER_TOKEN, { width: 1280, height: 800 }, sandboxed);
await page.waitForSelector("#dashboard:not([hidden])", WAIT);
await page.fill("#new-title", "Build check");
await page.fill("#new-runtime", "shell");
await page.click("#new-notebook button");
await page.waitForSelector("#notebook:not([hidden])", WAIT);
const notebookUrl = page.url();
// The gateway attaches: the runtime panel shows who serves.
await page.waitForFunction(() => /runtime: (idle|busy)/.test(document.getElementById("runtime-panel").textContent), null, WAIT);
const panel = await page.textContent("#runtime-panel");
if (!/shell for gateway/.test(panel)) failures.push(`the runtime panel: ${panel}`);

/** Types `source` into the new-cell box and runs it with Shift+Enter. */
async function run(on, source) {
  await on.fill("#source", source);
  await on.press("#source", "Shift+Enter");
}
const cellWith = (on, text, state) => on.waitForFunction(([text, state]) => [...document.querySelectorAll(".cell")]
  .some((cell) => cell.querySelector(".source").textContent === text && cell.classList.contains(state)), [text, state], WAIT);

await run(page, "echo hello from the gateway");
await cellWith(page, "echo hello from the gateway", "success");
const first = await page.textContent(".cell:nth-child(1) .outputs");
if (!first.includes("hello from the gateway")) failures.push(`the first cell's output: ${first}`);
const count = await page.textContent(".cell:nth-child(1) .count");
if (count !== "[1]") failures.push(`the first cell's count: ${count}`);

// A long cell, cancelled from the page: it ends `cancelled`, truthfully.
await run(page, "echo started; sleep 60");
await page.waitForFunction(() => [...document.querySelectorAll(".cell.running")]
  .some((cell) => cell.textContent.includes("started")), null, WAIT);
await page.click(".cell.running button.cancel");
await cellWith(page, "echo started; sleep 60", "cancelled");

// A second browser sees the notebook, and what happens next, live.
const other = await signedIn(USER_TOKEN, { width: 1280, height: 800 }, sandboxed);
await other.waitForSelector("#dashboard:not([hidden])", WAIT);
await other.goto(notebookUrl);
await cellWith(other, "echo hello from the gateway", "success");
await cellWith(other, "echo started; sleep 60", "cancelled");
await run(page, "echo seen live");
await cellWith(other, "echo seen live", "success");

// Markdown renders, and HTML in it stays text.
await page.selectOption("#cell-type", "markdown");
await run(page, "# Notes\n\n**bold** <img src=x onerror=\"window.pwned=1\">");
await page.waitForSelector(".cell .outputs h3", WAIT);
if (await page.$(".cell .outputs img")) failures.push("markdown let an <img> through");
if (await page.evaluate(() => window.pwned)) failures.push("markdown ran a script");
await page.screenshot({ path: `${screenshots}-desktop.png`, fullPage: true });

// The dashboard lists it with its runtime and status.
await page.goto(base);
await page.waitForFunction(() => [...document.querySelectorAll("#notebooks tbody tr")]
  .some((row) => row.textContent.includes("Build check") && row.textContent.includes("shell")
    && /idle|busy/.test(row.querySelector(".runtime")?.textContent ?? "")), null, WAIT)
  .catch(async (error) => { failures.push(`the dashboard: ${await page.textContent("#dashboard")}`); throw error; });

// A Jupyter kernel behind a second gateway: rich outputs and a question the page answers.
let kernelOutput = "";
const kernelGateway = spawn(agentBin, ["--gateway", "--kernel", "python3", "--store", `ws://127.0.0.1:${port}`, "--client-id", "gateway"],
  { env: { ...process.env, RUNTIME_AUTH_TOKEN: AGENT_TOKEN }, stdio: ["ignore", "pipe", "inherit"] });
kernelGateway.stdout.on("data", (chunk) => { kernelOutput += chunk; });
children.push(kernelGateway);
await page.waitForSelector("#dashboard:not([hidden])", WAIT);
await page.fill("#new-title", "Kernel outputs");
await page.fill("#new-runtime", "python3");
await page.click("#new-notebook button");
await page.waitForSelector("#notebook:not([hidden])", WAIT);
await page.waitForFunction(() => /python3 for gateway/.test(document.getElementById("runtime-panel").textContent), null, WAIT)
  .catch((error) => { failures.push(`the kernel gateway said:\n${kernelOutput}`); throw error; });
await page.selectOption("#cell-type", "code");
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
const cells = [
  'from IPython.display import display, HTML, Image, Markdown, clear_output\nimport base64\n'
    + 'display(HTML("<b>bold html</b><script>parent.document.title = \'pwned\'</script>"))',
  `display(Image(data=base64.b64decode("${PNG}")))`,
  'h = display("first", display_id=True)\nh.update("second")',
  'print("gone")\nclear_output()\nprint("kept")',
  'display(Markdown("**from markdown**"))',
  'name = input("your name? ")\nprint("hello", name)',
];
for (const source of cells.slice(0, 5)) {
  await run(page, source);
  await cellWith(page, source, "success");
}
const outputsOf = (index) => page.locator(".cell").nth(index).locator(".outputs");
const frame = outputsOf(0).locator("iframe.html");
if (await frame.getAttribute("sandbox") !== "") failures.push("HTML output is not in a frame without permissions");
if (!(await frame.getAttribute("srcdoc") ?? "").includes("bold html")) failures.push("the HTML output is missing");
if ((await page.title()) === "pwned") failures.push("an HTML output's script ran");
const image = await outputsOf(1).locator("img").getAttribute("src");
if (!image?.startsWith("data:image/png;base64,")) failures.push(`the image output: ${image}`);
const updated = await outputsOf(2).textContent();
if (!updated.includes("second") || updated.includes("first")) failures.push(`the display update: ${updated}`);
const cleared = await outputsOf(3).textContent();
if (!cleared.includes("kept") || cleared.includes("gone")) failures.push(`clear_output: ${cleared}`);
if (await outputsOf(4).locator("strong").textContent() !== "from markdown") failures.push("markdown output not rendered");
// input(): the page shows the question; the answer typed there reaches the kernel.
await run(page, cells[5]);
await page.waitForSelector(".cell form.input-request", WAIT);
const prompt = await page.textContent(".cell form.input-request label");
if (prompt !== "your name? ") failures.push(`the prompt: ${prompt}`);
// Typed slowly, over the page's re-renders, the answer is kept.
await page.type(".cell form.input-request input", "Ada", { delay: 400 });
await page.click(".cell form.input-request button");
await cellWith(page, cells[5], "success");
const greeted = await outputsOf(5).textContent();
if (!greeted.includes("hello Ada")) failures.push(`the answered cell: ${greeted}`);
await page.screenshot({ path: `${screenshots}-kernel.png`, fullPage: true });
kernelGateway.kill("SIGINT");
await new Promise((resolve) => kernelGateway.on("exit", resolve));

// A phone-sized screen: the notebook fits its width.
const phone = await signedIn(USER_TOKEN, { width: 390, height: 844 }, sandboxed);
await phone.waitForSelector("#dashboard:not([hidden])", WAIT);
await phone.goto(notebookUrl);
await cellWith(phone, "echo seen live", "success");
const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
if (overflow > 0) failures.push(`the phone page is ${overflow} px wider than the screen`);
await phone.screenshot({ path: `${screenshots}-phone.png`, fullPage: true });

// Many notebooks: the dashboard lists them all, most recent first, and folds only the 50
// most recently active live (the others show the catalog's columns and a dash).
for (let i = 0; i < 52; i++) {
  const created = await fetch(`${base}notebooks`, {
    method: "POST",
    headers: { authorization: `Bearer ${USER_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ title: `Many ${i}` }),
  });
  if (!created.ok) failures.push(`creating notebook ${i}: ${created.status}`);
}
const total = (await (await fetch(`${base}notebooks`, { headers: { authorization: `Bearer ${USER_TOKEN}` } })).json()).notebooks.length;
await page.goto(base);
await page.waitForFunction((total) => document.querySelectorAll("#notebooks tbody tr").length === total
  && document.querySelectorAll("#notebooks tbody td.runtime:not(.unwatched)").length === 50, total, WAIT)
  .catch(async (error) => {
    const runtimes = await page.$$eval("#notebooks tbody td.runtime", (cells) => cells.map((cell) => cell.textContent));
    failures.push(`the dashboard of ${total} notebooks: ${JSON.stringify(runtimes)}`);
    throw error;
  });
// The last created is first, or second behind a notebook its gateway's renewals keep active.
const topRows = await page.$$eval("#notebooks tbody tr", (rows) => rows.slice(0, 2)
  .map((row) => [row.cells[0].textContent, row.cells[2].className]));
const newest = topRows.find(([name]) => name.startsWith("Many 51"));
if (!newest || newest[1].includes("unwatched")) failures.push(`the newest notebook, live, first: ${JSON.stringify(topRows)}`);

await browser.close();
gateway.kill("SIGINT");
await new Promise((resolve) => gateway.on("exit", resolve));
if (!/: serving \(session /.test(gatewayOutput)) failures.push(`the gateway said:\n${gatewayOutput}`);
exitOnFailures(failures);
console.log("hub UI end-to-end: ok");
process.exit(0);
