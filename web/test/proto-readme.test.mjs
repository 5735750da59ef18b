// The README of the protocol module is what the SDK author reads: every
// name index.js exports must be in it, and every module must say at its top
// which sections of docs/PROTOCOL.md it implements.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import * as proto from "../app/js/proto/index.js";

const dir = new URL("../app/js/proto/", import.meta.url);

test("README lists every export of index.js", () => {
  const readme = readFileSync(new URL("README.md", dir), "utf8");
  const missing = Object.keys(proto).filter((name) => !new RegExp(`\\b${name}\\b`).test(readme));
  assert.deepEqual(missing, [], `not in web/app/js/proto/README.md: ${missing.join(", ")}`);
});

test("every module names its sections of PROTOCOL.md", () => {
  const files = readdirSync(dir).filter((f) => f.endsWith(".js"));
  assert.ok(files.length >= 14);
  for (const f of files) {
    const head = readFileSync(new URL(f, dir), "utf8").split("\n").slice(0, 4).join("\n");
    assert.match(head, new RegExp(`^// ${f.replace(".", "\\.")}: `), `${f} starts with its comment`);
    assert.match(head, /PROTOCOL\.md/, `${f} names PROTOCOL.md`);
  }
});
