// Drives the browser demo in real headless Chromium, as a person would: types a cell, runs
// it, reads the echo, cancels a slow cell, navigates away, and checks the page's store
// recorded the session's end. Usage: node e2e.mjs <demo URL> <screenshot path>
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
  page.on("pageerror", (error) => failures.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") failures.push(`console error: ${message.text()}`);
  });
  await page.goto(url);
  await page.locator("#runtime-status", { hasText: "idle" }).waitFor({ timeout: 20_000 });

  await page.fill("#source", 'print("hello from a browser")');
  await page.click("#run");
  await page.getByText('Echo: print("hello from a browser")', { exact: true }).waitFor({ timeout: 10_000 });

  await page.fill("#source", "%sleep 30");
  await page.click("#run");
  const slow = page.locator(".cell.running", { hasText: "%sleep 30" });
  await slow.locator("text=sleeping 30 s").waitFor({ timeout: 10_000 });
  await page.locator("#runtime-status", { hasText: "busy" }).waitFor({ timeout: 10_000 });
  await slow.locator("button.cancel").click();
  await page.locator(".cell.cancelled .status", { hasText: "cancelled" }).waitFor({ timeout: 10_000 });
  await page.locator("#runtime-status", { hasText: "idle" }).waitFor({ timeout: 10_000 });
  await page.screenshot({ path: screenshot, fullPage: true });

  const sessionId = await page.evaluate(() => window.demo.agent.sessionId);
  await page.goto(new URL("log.html", url).href); // leaving the page: pagehide
  const events = await page.evaluate(() => JSON.parse(localStorage.getItem("browserEcho.events")));
  const ended = events.find((e) => e.type === "v1.RuntimeSessionTerminated" && e.sessionId === sessionId);
  if (!ended) failures.push("the store did not record the session's end after navigating away");
  else if (ended.reason !== "shutdown") failures.push(`the session ended ${ended.reason}, not shutdown`);
  const statuses = events.filter((e) => e.type === "v1.ExecutionCompleted").map((e) => e.status);
  if (statuses.join(",") !== "success,cancelled") failures.push(`completions: ${statuses}`);
  console.log(JSON.stringify({ sessionId, events: events.length, completions: statuses, ended: ended?.reason, screenshot }));
} catch (error) {
  failures.push(error.stack ?? String(error));
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
