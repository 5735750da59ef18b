// Shared by the proto*.test.mjs files: the test vectors of
// protocol/testdata/vectors.json (docs/PROTOCOL.md §15), read from the
// repository relative to this file, and their keys, parsed once.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as proto from "../app/js/proto/index.js";

export const repo = fileURLToPath(new URL("../../", import.meta.url));
export const vectors = JSON.parse(readFileSync(new URL("../../protocol/testdata/vectors.json", import.meta.url), "utf8"));

// A vector file that lost a section would let every check pass.
for (const [section, min] of Object.entries({ keys: 5, certificates: 3, revocations: 2, envelopes: 10, channels: 3, uris: 5, blobs: 3 })) {
  if (!Array.isArray(vectors[section]) || vectors[section].length < min) throw new Error(`vectors.json: section ${section} is missing vectors`);
}

export const b64 = (s) => (s === undefined ? new Uint8Array(0) : proto.fromBase64(s));

let keysPromise;
/** The vector keys: {pubs: name -> PublicKey, privs: name -> PrivateKey (sign and decrypt, extractable)}. */
export function vectorKeys() {
  keysPromise ??= (async () => {
    const pubs = {};
    const privs = {};
    for (const kv of vectors.keys) {
      if (kv.error) continue;
      pubs[kv.name] = proto.parsePublicKey(b64(kv.public_spki));
      if (kv.private_pkcs8) privs[kv.name] = await proto.parsePrivateKey(b64(kv.private_pkcs8), { extractable: true });
    }
    return { pubs, privs };
  })();
  return keysPromise;
}

/** The fixed keys of internal/testkeys/test-keys.pem, as PKCS #8 DER. */
export function testKeysDER() {
  const pem = readFileSync(new URL("../../internal/testkeys/test-keys.pem", import.meta.url), "utf8");
  return [...pem.matchAll(/-----BEGIN PRIVATE KEY-----([^-]+)-----END PRIVATE KEY-----/g)].map((m) => proto.fromBase64(m[1].replace(/\s+/g, "")));
}

/** Asserts that fn (sync or async) throws a ProtocolError with this code. */
export async function rejectsWith(code, fn, what = "") {
  let err = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err, `${what}: succeeded, want error ${code}`);
  assert.ok(err instanceof proto.ProtocolError, `${what}: got ${err}, want a ProtocolError ${code}`);
  assert.equal(err.code, code, `${what}: got error ${err.code} (${err.message}), want ${code}`);
  return err;
}

export const hex = proto.toHex;
export const bytes = (s) => new TextEncoder().encode(s);
