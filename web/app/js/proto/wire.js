// wire.js: the encoding conventions of QRTalk protocol v1 (docs/PROTOCOL.md
// §3.1 and §3.3): big-endian integers, var8/var16/var32 byte strings, strict
// reading (no field past the end, no trailing bytes), labeled(), and the
// text encodings the protocol uses (hex, base64, base64url). It mirrors the
// Go package internal/wire and holds no cryptography.

import { fail } from "./errors.js";

/** The version byte of every v1 object (§1.2). */
export const VERSION = 1;

const utf8Encoder = new TextEncoder();
const strictUTF8 = new TextDecoder("utf-8", { fatal: true });

/** Checks that b is a Uint8Array; name says what, for the TypeError. */
export function checkBytes(b, name) {
  if (!(b instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
  return b;
}

/** The UTF-8 bytes of a string. */
export function utf8(s) {
  return utf8Encoder.encode(s);
}

/** Decodes strict UTF-8; returns null if b is not valid UTF-8. */
export function decodeUTF8(b) {
  try {
    return strictUTF8.decode(b);
  } catch {
    return null;
  }
}

/** Reports whether every byte of b is printable ASCII (0x20 to 0x7e). */
export function printableASCII(b) {
  for (const c of b) if (c < 0x20 || c > 0x7e) return false;
  return true;
}

export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Compares two byte strings in time that depends only on their lengths. */
export function constantTimeEqual(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** Compares byte strings as unsigned bytes: negative, zero or positive. */
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

export function isZero(b) {
  for (const x of b) if (x !== 0) return false;
  return true;
}

// ------------------------------------------------------------------ text

const HEX = "0123456789abcdef";

export function toHex(b) {
  let s = "";
  for (const x of b) s += HEX[x >> 4] + HEX[x & 15];
  return s;
}

/** Decodes lowercase hex; anything else (upper case included) is malformed. */
export function fromHex(s, what = "hex") {
  if (typeof s !== "string" || s.length % 2 !== 0 || !/^[0-9a-f]*$/.test(s)) fail("malformed", `${what} must be lowercase hexadecimal`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function encode64(b, alphabet, pad) {
  let s = "";
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const v = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    s += alphabet[v >> 18] + alphabet[(v >> 12) & 63] + alphabet[(v >> 6) & 63] + alphabet[v & 63];
  }
  const rest = b.length - i;
  if (rest === 1) {
    const v = b[i] << 16;
    s += alphabet[v >> 18] + alphabet[(v >> 12) & 63] + (pad ? "==" : "");
  } else if (rest === 2) {
    const v = (b[i] << 16) | (b[i + 1] << 8);
    s += alphabet[v >> 18] + alphabet[(v >> 12) & 63] + alphabet[(v >> 6) & 63] + (pad ? "=" : "");
  }
  return s;
}

// decode64 decodes base64, canonical (unused bits zero) unless loose; null
// if s is not base64.
function decode64(s, alphabet, pad, loose = false) {
  if (typeof s !== "string") return null;
  if (pad) {
    if (s.length % 4 !== 0) return null;
    if (s.endsWith("==")) s = s.slice(0, -2);
    else if (s.endsWith("=")) s = s.slice(0, -1);
  }
  if (s.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const v = alphabet.indexOf(s[i]);
    if (v < 0) return null;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  if (!loose && (acc & ((1 << bits) - 1)) !== 0) return null; // unused bits must be zero
  return out;
}

/** Standard base64 with padding (RFC 4648 §4). */
export const toBase64 = (b) => encode64(b, B64, true);
/** Decodes canonical padded standard base64; malformed otherwise. */
export function fromBase64(s, what = "base64") {
  const b = decode64(s, B64, true);
  if (b === null) fail("malformed", `${what} is not canonical base64`);
  return b;
}
/** Decodes padded standard base64 ignoring the unused bits, as PEM readers do; null if s is not base64. */
export const decodeBase64Loose = (s) => decode64(s, B64, true, true);
/** Unpadded base64url (RFC 4648 §5). */
export const toBase64URL = (b) => encode64(b, B64URL, false);
/** Decodes canonical unpadded base64url; malformed otherwise. */
export function fromBase64URL(s, what = "base64url") {
  const b = decode64(s, B64URL, false);
  if (b === null) fail("malformed", `${what} is not canonical base64url`);
  return b;
}

// ------------------------------------------------------------- integers

export const u8 = (v) => Uint8Array.of(v);
export const u16 = (v) => Uint8Array.of((v >>> 8) & 0xff, v & 0xff);
export function u32(v) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, v);
  return out;
}
/** u64 of a Number (a non-negative safe integer) or a BigInt. */
export function u64(v) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(v));
  return out;
}
/** i64 of a Number (a safe integer) or a BigInt. */
export function i64(v) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigInt64(0, BigInt(v));
  return out;
}

/** A time given as Unix milliseconds (a Number) or a Date, as a whole Number of ms. */
export function toMillis(t, what = "time") {
  const ms = t instanceof Date ? t.getTime() : t;
  if (typeof ms !== "number" || !Number.isFinite(ms)) throw new TypeError(`${what} must be Unix milliseconds (a Number) or a Date`);
  return Math.floor(ms);
}

/** A time for an error message: ISO 8601 when a Date can hold it, else the number of ms. */
export function formatTime(ms) {
  const d = new Date(Number(ms));
  return Number.isNaN(d.getTime()) ? `${ms} ms since the epoch` : d.toISOString();
}

/** labeled(L, x1, x2, ...) = L || 0x00 || x1 || x2 || ... (§3.3). */
export function labeled(label, ...parts) {
  return concat(utf8(label), u8(0), ...parts);
}

// -------------------------------------------------------------- reading

/** A strict reader of the encodings of §3.1: every failure is malformed. */
export class Reader {
  constructor(bytes, what = "input") {
    this.b = bytes;
    this.off = 0;
    this.what = what;
  }
  get remaining() {
    return this.b.length - this.off;
  }
  fixed(n) {
    if (n > this.remaining) fail("malformed", `${this.what}: truncated`);
    const p = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return p;
  }
  u8() {
    return this.fixed(1)[0];
  }
  u16() {
    const p = this.fixed(2);
    return (p[0] << 8) | p[1];
  }
  u32() {
    const p = this.fixed(4);
    return new DataView(p.buffer, p.byteOffset, 4).getUint32(0);
  }
  /** A u64, as a BigInt. */
  u64() {
    const p = this.fixed(8);
    return new DataView(p.buffer, p.byteOffset, 8).getBigUint64(0);
  }
  /** An i64, as a BigInt. */
  i64() {
    const p = this.fixed(8);
    return new DataView(p.buffer, p.byteOffset, 8).getBigInt64(0);
  }
  #varN(n, max) {
    if (n > max) fail("malformed", `${this.what}: length ${n} above ${max}`);
    return this.fixed(n);
  }
  var8(max) {
    return this.#varN(this.u8(), max);
  }
  var16(max) {
    return this.#varN(this.u16(), max);
  }
  var32(max) {
    return this.#varN(this.u32(), max);
  }
  /** Fails unless every byte was read. */
  finish() {
    if (this.remaining !== 0) fail("malformed", `${this.what}: trailing data`);
  }
}

/** Reads and checks the version and type bytes of an object (§1.2). */
export function readHeader(r, type, what) {
  if (r.remaining < 2) fail("malformed", `${what}: truncated`);
  const version = r.u8();
  const t = r.u8();
  if (version !== VERSION) fail("version", `${what} version ${version}`);
  if (t !== type) fail("malformed", `not a ${what} (type ${t})`);
}

/** var8, var16 and var32: x preceded by its length. */
export const var8 = (b) => concat(u8(b.length), b);
export const var16 = (b) => concat(u16(b.length), b);
export const var32 = (b) => concat(u32(b.length), b);
