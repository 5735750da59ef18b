// Blobs (docs/PROTOCOL.md §12) against the shared test vectors, byte for
// byte on the encrypting side (AES-GCM under a given key is deterministic),
// every source kind, progress, and a 10 MiB round trip.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as proto from "../app/js/proto/index.js";
import { b64, rejectsWith, vectors } from "./proto-helpers.mjs";

async function collect(it) {
  const parts = [];
  for await (const p of it) parts.push(p);
  return cat(...parts);
}

test("vectors: blobs", async (t) => {
  for (const bv of vectors.blobs) {
    await t.test(bv.name, async () => {
      const key = proto.fromHex(bv.key);
      const enc = b64(bv.encrypted);
      if (bv.error) {
        await rejectsWith(bv.error, () => proto.decryptBlob(enc, key), bv.name);
        await rejectsWith(bv.error, () => collect(proto.decryptBlobStream(new Blob([enc]), key)), `${bv.name} (stream)`);
        return;
      }
      const plain = b64(bv.plaintext);
      assert.deepEqual(await proto.decryptBlob(enc, key), plain);
      assert.deepEqual(await proto.decryptBlob(new Blob([enc]), key, { sha256: await sha(enc) }), plain);
      // The encrypting side is deterministic: byte for byte Go's blob.
      const got = await proto.encryptBlob(plain, key);
      assert.deepEqual(got.data, enc);
      assert.deepEqual(got.sha256, await sha(enc));
      assert.equal(got.size, plain.length);
      assert.equal(proto.encryptedBlobSize(plain.length), enc.length);
      assert.deepEqual(await collect(proto.encryptBlobStream(oddPieces(plain), key)), enc);
    });
  }
});

function cat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

async function sha(b) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", b));
}

// An async iterable that cuts b into pieces of awkward sizes.
async function* oddPieces(b) {
  const sizes = [1, 7, 65535, 3, 65537, 100000];
  for (let off = 0, i = 0; off < b.length; i++) {
    const n = sizes[i % sizes.length];
    yield b.slice(off, off + n);
    off += n;
  }
}

test("blobs: derived checks (§12.2)", async () => {
  const key = proto.newBlobKey();
  await rejectsWith("malformed", () => proto.decryptBlob(Uint8Array.of(1), key));
  await rejectsWith("decrypt", () => proto.decryptBlob(Uint8Array.of(1, 6), key), "nothing after the header");
  await rejectsWith("malformed", () => proto.decryptBlob(Uint8Array.of(1, 5, 0), key), "type");
  await rejectsWith("version", () => proto.decryptBlob(Uint8Array.of(2, 6), key));
  const { data } = await proto.encryptBlob(new Uint8Array(3 * 65536), key);
  await rejectsWith("decrypt", () => proto.decryptBlob(data.subarray(0, 2 + 2 * 65552), key), "truncated at a chunk boundary");
  await rejectsWith("decrypt", () => proto.decryptBlob(cat(data, Uint8Array.of(0)), key), "extended");
  const swapped = cat(data.subarray(0, 2), data.subarray(2 + 65552, 2 + 2 * 65552), data.subarray(2, 2 + 65552), data.subarray(2 + 2 * 65552));
  await rejectsWith("decrypt", () => proto.decryptBlob(swapped, key), "reordered");
  await rejectsWith("decrypt", () => proto.decryptBlob(data, key, { sha256: new Uint8Array(32) }), "SHA-256 differs");
  await rejectsWith("decrypt", () => proto.decryptBlob(data, proto.newBlobKey()), "another key");
  await rejectsWith("malformed", () => proto.encryptBlob(new Uint8Array(1), new Uint8Array(16)));
});

test("blobs: sources, streams and progress", async () => {
  const key = proto.newBlobKey();
  const plain = proto.randomBytes(3 * 65536);
  const { data } = await proto.encryptBlob(plain, key);
  assert.equal(data.length, proto.encryptedBlobSize(plain.length));
  const sources = {
    bytes: () => plain,
    arrayBuffer: () => plain.slice().buffer,
    blob: () => new Blob([plain]),
    stream: () => new Blob([plain]).stream(),
    syncIterable: () => [plain.subarray(0, 10), plain.subarray(10)],
    asyncIterable: () => oddPieces(plain),
  };
  for (const [name, make] of Object.entries(sources)) {
    const seen = [];
    const got = await proto.encryptBlob(make(), key, { onProgress: (done, total) => seen.push([done, total]) });
    assert.deepEqual(got.data, data, name);
    assert.equal(seen.length, 3, `${name}: one progress report per chunk`);
    assert.equal(seen.at(-1)[0], plain.length, name);
    if (["bytes", "arrayBuffer", "blob"].includes(name)) assert.equal(seen.at(-1)[1], plain.length, name);
  }
  const chunks = [];
  for await (const p of proto.decryptBlobStream(new Blob([data]).stream(), key)) chunks.push(p.length);
  assert.deepEqual(chunks, [65536, 65536, 65536], "a last chunk of exactly 64 KiB is flagged last, not followed by an empty one");
  await assert.rejects(proto.encryptBlobStream(42, key).next(), TypeError);
});

test("blobs: 10 MiB round trip", async () => {
  const key = proto.newBlobKey();
  const size = 10 * 1024 * 1024 + 12345;
  const plain = new Uint8Array(size);
  for (let off = 0; off < size; off += 65536) crypto.getRandomValues(plain.subarray(off, Math.min(size, off + 65536)));
  const started = performance.now();
  let reports = 0;
  const { data, sha256, size: n } = await proto.encryptBlob(new Blob([plain]), key, { onProgress: () => reports++ });
  assert.equal(n, size);
  assert.equal(reports, Math.ceil(size / 65536));
  const back = await proto.decryptBlob(data, key, { sha256 });
  assert.equal(back.length, size);
  assert.ok(back.every((x, i) => x === plain[i]));
  const ms = performance.now() - started;
  assert.ok(ms < 20000, `10 MiB took ${ms} ms`);
});
