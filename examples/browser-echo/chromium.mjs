// What the demo's end-to-end tests share: Debian's Chromium, launched quiet for a closed
// network, and the ending that reports what failed.
import { chromium } from "playwright-core";

/** Headless Chromium (`CHROMIUM` names another binary). */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Records the page's uncaught errors and console errors in `failures`, but those `expected` says are. */
export function reportPageErrors(page, failures, expected = () => false) {
  page.on("pageerror", (error) => failures.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !expected(message.text())) failures.push(`console error: ${message.text()}`);
  });
}

/** Prints the failures and exits 1, if there are any. */
export function exitOnFailures(failures) {
  if (failures.length) {
    console.error(failures.join("\n"));
    process.exit(1);
  }
}
