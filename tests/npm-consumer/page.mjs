// The installed package in a page with no bundler (an import map names it), in headless
// Chromium, served from this directory over 127.0.0.1.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";
import { expected } from "./run-a-cell.js";

const root = new URL(".", import.meta.url).pathname;
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
const server = createServer(async (request, response) => {
  const path = normalize(join(root, new URL(request.url, "http://x").pathname));
  const file = path.endsWith("/") ? join(path, "page.html") : path;
  try {
    const body = await readFile(file);
    response.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    response.end(body);
  } catch {
    response.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (message) => message.type() === "error" && errors.push(message.text()));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForFunction(() => window.outcome !== undefined, null, { timeout: 30_000 });
  const seen = await page.evaluate(() => window.outcome);
  assert.deepEqual(seen, expected, JSON.stringify(seen));
  assert.deepEqual(errors, []);
  console.log(JSON.stringify({ page: seen }));
} finally {
  await browser.close();
  server.close();
}
