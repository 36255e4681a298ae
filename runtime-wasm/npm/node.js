// The package's entry in Node: the same API as in a browser, where `init()` with no
// argument reads the module from this package (Node's `fetch` cannot read a file).
import { readFile } from "node:fs/promises";
import init from "./runtime_wasm.js";

export * from "./runtime_wasm.js";

export default async function initInNode(moduleOrPath) {
  if (moduleOrPath !== undefined) return init(moduleOrPath);
  const bytes = await readFile(new URL("./runtime_wasm_bg.wasm", import.meta.url));
  return init({ module_or_path: bytes });
}
