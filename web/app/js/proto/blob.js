// blob.js: encrypted attachments (blobs) of QRTalk protocol v1
// (docs/PROTOCOL.md §12): the STREAM construction, AES-256-GCM over 64 KiB
// chunks, each nonce holding the chunk index and a last-chunk flag, so that
// truncation, extension, reordering and modification are all detected.
//
// Sources: a Uint8Array, an ArrayBuffer, a Blob (a File), a ReadableStream,
// or an (async) iterable of Uint8Array/ArrayBuffer pieces of any size. The
// streaming forms (encryptBlobStream, decryptBlobStream) hold at most two
// chunks at a time; encryptBlob and decryptBlob collect one output buffer
// (WebCrypto has no incremental SHA-256, and the attachment reference needs
// the SHA-256 of the whole encrypted blob). onProgress(done, total) reports
// the bytes of the input consumed (total is undefined when unknown).

import { fail } from "./errors.js";
import { checkBytes, constantTimeEqual, u64, VERSION } from "./wire.js";
import { aesKey, gcmOpen, gcmSeal, NONCE_SIZE, randomBytes, sha256, TAG_SIZE } from "./primitives.js";

/** Plaintext bytes of every chunk but the last. */
export const BLOB_CHUNK_SIZE = 64 * 1024;
const TYPE_BLOB = 6;
const HEADER_SIZE = 2;
const PIECE = BLOB_CHUNK_SIZE + TAG_SIZE;

/** A fresh random 32-byte blob key. */
export const newBlobKey = () => randomBytes(32);

/** The size of the encryption of size plaintext bytes: 2 + s + 16 × max(1, ceil(s / 65536)). */
export function encryptedBlobSize(size) {
  return HEADER_SIZE + size + TAG_SIZE * Math.max(1, Math.ceil(size / BLOB_CHUNK_SIZE));
}

function blobNonce(ctr, last) {
  const n = new Uint8Array(NONCE_SIZE);
  n.set(u64(ctr), 3);
  n[11] = last ? 1 : 0;
  return n;
}

function toBytes(piece) {
  if (piece instanceof Uint8Array) return piece;
  if (piece instanceof ArrayBuffer) return new Uint8Array(piece);
  if (ArrayBuffer.isView(piece)) return new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength);
  throw new TypeError("blob source pieces must be Uint8Array or ArrayBuffer");
}

// A ByteSource reads exactly n bytes at a time from any source (fewer only
// at its end), without copying when it can.
class ByteSource {
  constructor(source) {
    this.total = undefined;
    this.done = 0;
    if (source instanceof Uint8Array || source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
      const b = toBytes(source);
      this.total = b.length;
      this.pull = async (n) => b.subarray(this.done, this.done + n);
    } else if (typeof Blob !== "undefined" && source instanceof Blob) {
      this.total = source.size;
      this.pull = async (n) => new Uint8Array(await source.slice(this.done, this.done + n).arrayBuffer());
    } else if (typeof source?.getReader === "function") {
      const reader = source.getReader();
      this.pull = this.#buffered(async () => {
        const { value, done } = await reader.read();
        return done ? null : value;
      });
    } else if (source && (Symbol.asyncIterator in source || Symbol.iterator in source)) {
      const it = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
      this.pull = this.#buffered(async () => {
        const { value, done } = await it.next();
        return done ? null : value;
      });
    } else {
      throw new TypeError("blob source must be bytes, a Blob, a ReadableStream or an iterable of bytes");
    }
  }

  #buffered(next) {
    const queue = [];
    let ended = false;
    return async (n) => {
      let have = queue.reduce((s, q) => s + q.length, 0);
      while (have < n && !ended) {
        const v = await next();
        if (v === null) ended = true;
        else {
          const b = toBytes(v);
          if (b.length) queue.push(b);
          have += b.length;
        }
      }
      if (queue.length && queue[0].length >= n) {
        const out = queue[0].subarray(0, n);
        queue[0] = queue[0].subarray(n);
        if (queue[0].length === 0) queue.shift();
        return out;
      }
      const out = new Uint8Array(Math.min(n, have));
      let off = 0;
      while (off < out.length) {
        const q = queue[0];
        const k = Math.min(q.length, out.length - off);
        out.set(q.subarray(0, k), off);
        off += k;
        if (k === q.length) queue.shift();
        else queue[0] = q.subarray(k);
      }
      return out;
    };
  }

  async read(n) {
    const b = await this.pull(n);
    this.done += b.length;
    return b;
  }
}

function checkKey(key) {
  checkBytes(key, "blob key");
  if (key.length !== 32) fail("malformed", "blob key must be 32 bytes");
}

function progress(onProgress, src) {
  if (onProgress) onProgress(src.done, src.total);
}

/**
 * Encrypts source under key and yields the blob piece by piece: the 2-byte
 * header, then each sealed chunk. A full chunk is sealed only once the next
 * byte is known, since the last chunk carries the last-chunk flag.
 */
export async function* encryptBlobStream(source, key, { onProgress } = {}) {
  checkKey(key);
  const aes = await aesKey(key);
  const src = new ByteSource(source);
  yield Uint8Array.of(VERSION, TYPE_BLOB);
  let chunk = await src.read(BLOB_CHUNK_SIZE);
  for (let ctr = 0; ; ctr++) {
    const next = chunk.length === BLOB_CHUNK_SIZE ? await src.read(BLOB_CHUNK_SIZE) : new Uint8Array(0);
    const last = next.length === 0;
    yield await gcmSeal(aes, blobNonce(ctr, last), chunk);
    progress(onProgress, src);
    if (last) return;
    chunk = next;
  }
}

/**
 * Encrypts source under key into one buffer. Returns { data, sha256, size }:
 * the encrypted blob to upload, its SHA-256 and the plaintext size, as the
 * attachment reference (§9.1) needs them.
 */
export async function encryptBlob(source, key, { onProgress } = {}) {
  const src = source instanceof ArrayBuffer || ArrayBuffer.isView(source) ? toBytes(source) : source;
  const known = src instanceof Uint8Array ? src.length : typeof Blob !== "undefined" && src instanceof Blob ? src.size : undefined;
  let data;
  if (known !== undefined) {
    data = new Uint8Array(encryptedBlobSize(known));
    let off = 0;
    for await (const piece of encryptBlobStream(src, key, { onProgress })) {
      if (off + piece.length > data.length) throw new Error("blob source grew while it was encrypted");
      data.set(piece, off);
      off += piece.length;
    }
    if (off !== data.length) throw new Error("blob source shrank while it was encrypted");
  } else {
    const pieces = [];
    let n = 0;
    for await (const piece of encryptBlobStream(src, key, { onProgress })) {
      pieces.push(piece);
      n += piece.length;
    }
    data = new Uint8Array(n);
    let off = 0;
    for (const p of pieces.splice(0)) {
      data.set(p, off);
      off += p.length;
    }
  }
  const chunks = Math.max(1, Math.ceil((data.length - HEADER_SIZE) / PIECE));
  return { data, sha256: await sha256(data), size: data.length - HEADER_SIZE - TAG_SIZE * chunks };
}

/**
 * Decrypts a blob read from source and yields its plaintext chunk by
 * chunk (§12.2); each chunk is authenticated before it is yielded. A
 * truncated, extended, reordered or modified blob throws decrypt.
 */
export async function* decryptBlobStream(source, key, { onProgress } = {}) {
  checkKey(key);
  const aes = await aesKey(key);
  const src = new ByteSource(source);
  const h = await src.read(HEADER_SIZE);
  if (h.length < HEADER_SIZE) fail("malformed", "blob header is truncated");
  if (h[0] !== VERSION) fail("version", `blob version ${h[0]}`);
  if (h[1] !== TYPE_BLOB) fail("malformed", `not a blob (type ${h[1]})`);
  let piece = await src.read(PIECE);
  for (let ctr = 0; ; ctr++) {
    // A full piece is the last only if nothing follows it: read one ahead.
    const next = piece.length === PIECE ? await src.read(PIECE) : new Uint8Array(0);
    const last = next.length === 0;
    // Only an empty blob ends with an empty chunk.
    if (last && (piece.length < TAG_SIZE || (piece.length === TAG_SIZE && ctr > 0))) fail("decrypt", "blob is truncated");
    let plain;
    try {
      plain = await gcmOpen(aes, blobNonce(ctr, last), piece);
    } catch {
      fail("decrypt", `blob chunk ${ctr}`);
    }
    progress(onProgress, src);
    yield plain;
    if (last) return;
    piece = next;
  }
}

/**
 * Decrypts a whole blob into one Uint8Array. If sha256 (the attachment's)
 * is given, the encrypted blob's SHA-256 is checked first, as §9.1 requires
 * before using it: decrypt if it differs.
 */
export async function decryptBlob(source, key, { onProgress, sha256: want } = {}) {
  let src = source instanceof ArrayBuffer || ArrayBuffer.isView(source) ? toBytes(source) : source;
  if (want !== undefined) {
    checkBytes(want, "sha256");
    if (!(src instanceof Uint8Array)) {
      src = typeof Blob !== "undefined" && src instanceof Blob ? new Uint8Array(await src.arrayBuffer()) : await collect(new ByteSource(src));
    }
    if (!constantTimeEqual(await sha256(src), want)) fail("decrypt", "blob does not match its SHA-256");
  }
  const total = src instanceof Uint8Array ? src.length : typeof Blob !== "undefined" && src instanceof Blob ? src.size : undefined;
  if (total === undefined || total <= HEADER_SIZE) return collectPieces(decryptBlobStream(src, key, { onProgress }));
  // The plaintext size follows from the encrypted size: one buffer, no copies of it.
  const n = total - HEADER_SIZE;
  const out = new Uint8Array(Math.max(0, n - TAG_SIZE * Math.ceil(n / PIECE)));
  let off = 0;
  for await (const p of decryptBlobStream(src, key, { onProgress })) {
    if (off + p.length > out.length) fail("decrypt", "blob is longer than its size");
    out.set(p, off);
    off += p.length;
  }
  if (off !== out.length) fail("decrypt", "blob is shorter than its size");
  return out;
}

async function collectPieces(it) {
  const pieces = [];
  let n = 0;
  for await (const p of it) {
    pieces.push(p);
    n += p.length;
  }
  if (pieces.length === 1) return pieces[0];
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of pieces.splice(0)) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

async function collect(src) {
  const pieces = [];
  let n = 0;
  for (;;) {
    const p = await src.read(1 << 20);
    if (p.length === 0) break;
    pieces.push(p.slice());
    n += p.length;
  }
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of pieces) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
