// The installed package in Node: `init()` with no argument, then one cell.
import assert from "node:assert/strict";
import * as lib from "runtime-agents-wasm";
import { expected, runACell } from "./run-a-cell.js";

await lib.default();
const seen = await runACell(lib);
assert.deepEqual(seen, expected);
console.log(JSON.stringify({ node: seen }));
