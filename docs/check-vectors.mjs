// check-vectors.mjs: a second, independent implementation of the opening and
// verifying side of QRTalk protocol v1, written from docs/PROTOCOL.md alone,
// with WebCrypto (globalThis.crypto.subtle) and nothing else.
//
//	node docs/check-vectors.mjs protocol/testdata/vectors.json
//
// prints one line per vector and a final "N passed, M failed", and exits
// non-zero if any vector failed. Everything above the vector runner uses only
// WebCrypto and standard JavaScript, so that it can become the web client's
// crypto module; section numbers (§) refer to docs/PROTOCOL.md.

const subtle = globalThis.crypto?.subtle;

// ---------------------------------------------------------------- errors (§13)

/** A protocol failure; code is one of the error names of §13. */
export class ProtocolError extends Error {
  constructor(code, detail) {
    super(detail ? `${code}: ${detail}` : code);
    this.code = code;
  }
}

function fail(code, detail) {
  throw new ProtocolError(code, detail);
}

// ------------------------------------------------------------ constants (§14)

export const KEY_BITS = 3072;
export const KEY_EXPONENT = 65537n;
export const KEY_SIZE = 384;
const MAX_PUBLIC_KEY_DER = 1024;
const USER_ID_SIZE = 16;
const DEVICE_ID_SIZE = 8;
const MESSAGE_ID_SIZE = 16;
const SESSION_ID_SIZE = 16;
const GROUP_ID_SIZE = 16;
const NONCE_SIZE = 12;
const TAG_SIZE = 16;
const COMMITMENT_SIZE = 32;
const MAX_URI_SIZE = 2048;
const MAX_CERT_SIZE = 2470;
const REVOCATION_SIZE = 418;
const MAX_BODY_SIZE = 262144;
const MAX_ATTACHMENTS = 32;
const MAX_CONTENT_TYPE_LEN = 127;
const MAX_NAME_LEN = 255;
const PAD_BLOCK = 256;
const MAX_PLAINTEXT_SIZE = 277687;
const MAX_TTL_SECONDS = 604800;
// Envelope header flags (§10): bit 0 says the envelope is signed.
const FLAG_SIGNED = 1;
const MAX_RECIPIENT_USERS = 2048;
const MAX_RECIPIENT_DEVICES = 2048;
const MAX_CIPHERTEXT_SIZE = 277959;
const MAX_ENVELOPE_SIZE = 1146804;
const WRAPPED_ENTRY_SIZE = USER_ID_SIZE + DEVICE_ID_SIZE + KEY_SIZE;
export const MAX_CLOCK_SKEW_MS = 300000n;
export const MAX_SESSION_LIFETIME_MS = 3600000n;
const CHANNEL_SETUP_SIZE = 850;
const SETUP_SIGNED_SIZE = 466;
const FRAME_HEADER_SIZE = 26;
const MAX_FRAME_SIZE = 1147828;
export const REPLAY_WINDOW = 1024n;
const BLOB_CHUNK_SIZE = 65536;
const MAX_METHOD_PATH = 1024;
const MAX_PRIVATE_KEY_DER = 4096;

const VERSION = 1;
const TYPE = { cert: 1, revocation: 2, envelope: 3, setup: 4, frame: 5, blob: 6 };
const DIR_C2S = 1;
const DIR_S2C = 2;
// Frame kinds (§11.6), bound into every frame's associated data.
const KIND = { confirmation: 1, request: 2, response: 3, push: 4 };

// Labels (§3.3).
const LABEL = {
  cert: "qrtalk/v1/device-certificate",
  revoke: "qrtalk/v1/device-revocation",
  envSig: "qrtalk/v1/envelope-signature",
  envAAD: "qrtalk/v1/envelope",
  keyWrap: "qrtalk/v1/key-wrap",
  commit: "qrtalk/v1/key-commitment",
  idFP: "qrtalk/v1/identity-fingerprint",
  serverFP: "qrtalk/v1/server-fingerprint",
  chSetup: "qrtalk/v1/channel-setup",
  chWrap: "qrtalk/v1/channel-key-wrap",
  chKeys: "qrtalk/v1/channel-keys",
  chFrame: "qrtalk/v1/channel-frame",
  sessionID: "qrtalk/v1/session-id",
};

// --------------------------------------------------------------- bytes (§3.1)

const utf8 = new TextEncoder();
const strictUTF8 = new TextDecoder("utf-8", { fatal: true });

function ascii(s) {
  return utf8.encode(s);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

function isZero(b) {
  return b.every((x) => x === 0);
}

function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

export function toHex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function fromHex(s) {
  if (s.length % 2 !== 0 || !/^[0-9a-f]*$/.test(s)) fail("malformed", "not lowercase hex");
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function fromBase64(s) {
  const bin = atob(s);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function fromBase64URL(s) {
  return fromBase64(s.replace(/-/g, "+").replace(/_/g, "/") + "==".slice(0, (4 - (s.length % 4)) % 4));
}

function toBase64URL(b) {
  return btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function u8(v) {
  return Uint8Array.of(v);
}

function u16(v) {
  return Uint8Array.of(v >> 8, v & 0xff);
}

function u64(v) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(v));
  return out;
}

function var16(b) {
  return concat(u16(b.length), b);
}

// labeled(L, x1, x2, ...) = L || 0x00 || x1 || x2 || ... (§3.3)
function labeled(label, ...parts) {
  return concat(ascii(label), u8(0), ...parts);
}

/** A strict reader of the encodings of §3.1: every failure is malformed. */
class Reader {
  constructor(bytes) {
    this.b = bytes;
    this.off = 0;
  }
  get remaining() {
    return this.b.length - this.off;
  }
  fixed(n) {
    if (n > this.remaining) fail("malformed", "truncated");
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
  u64() {
    const p = this.fixed(8);
    return new DataView(p.buffer, p.byteOffset, 8).getBigUint64(0);
  }
  i64() {
    const p = this.fixed(8);
    return new DataView(p.buffer, p.byteOffset, 8).getBigInt64(0);
  }
  varN(n, max) {
    if (n > max) fail("malformed", `length ${n} above ${max}`);
    return this.fixed(n);
  }
  var8(max) {
    return this.varN(this.u8(), max);
  }
  var16(max) {
    return this.varN(this.u16(), max);
  }
  var32(max) {
    return this.varN(this.u32(), max);
  }
  finish() {
    if (this.remaining !== 0) fail("malformed", "trailing data");
  }
}

// readHeader checks the version and type bytes of an object (§1.2).
function readHeader(r, type, what) {
  if (r.remaining < 2) fail("malformed", `${what}: truncated`);
  const version = r.u8();
  const t = r.u8();
  if (version !== VERSION) fail("version", `${what} version ${version}`);
  if (t !== type) fail("malformed", `not a ${what} (type ${t})`);
}

// ---------------------------------------------------------- primitives (§3.4)

export async function sha256(data) {
  return new Uint8Array(await subtle.digest("SHA-256", data));
}

// Verify(key, M, sig): RSA-PSS, SHA-256, salt length 32.
async function verifySignature(publicKey, message, sig) {
  if (sig.length !== KEY_SIZE) fail("bad_signature", `signature is ${sig.length} bytes`);
  const ok = await subtle.verify({ name: "RSA-PSS", saltLength: 32 }, await publicKey.verifyKey(), sig, message);
  if (!ok) fail("bad_signature");
}

// Unwrap(key, L, C): RSA-OAEP, SHA-256, label L, a 32-byte result.
async function unwrapKey(privateKey, label, wrapped) {
  if (wrapped.length !== KEY_SIZE) fail("malformed", `wrapped key is ${wrapped.length} bytes`);
  let key;
  try {
    key = new Uint8Array(await subtle.decrypt({ name: "RSA-OAEP", label }, privateKey, wrapped));
  } catch {
    fail("decrypt");
  }
  if (key.length !== 32) fail("decrypt");
  return key;
}

async function aesKey(key) {
  return subtle.importKey("raw", key, "AES-GCM", false, ["encrypt", "decrypt"]);
}

// Open(K, N, C, A): AES-256-GCM with a 16-byte tag after the ciphertext.
async function gcmOpen(key, nonce, ciphertext, aad) {
  try {
    const k = key instanceof Uint8Array ? await aesKey(key) : key;
    return new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, k, ciphertext));
  } catch {
    fail("decrypt");
  }
}

async function gcmSeal(key, nonce, plaintext, aad) {
  const k = key instanceof Uint8Array ? await aesKey(key) : key;
  return new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, k, plaintext));
}

async function hkdf32(ikm, salt, info) {
  const k = await subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info: ascii(info) }, k, 256));
}

// --------------------------------------------------------- identifiers (§4)

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

export function formatUserID(id) {
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const b of id) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(acc << (5 - bits)) & 31];
  return out;
}

export function parseUserID(s) {
  const t = s.replace(/[- ]/g, "").replace(/[A-Z]/g, (c) => c.toLowerCase());
  if (t.length !== 26 || ![...t].every((c) => BASE32.includes(c))) fail("malformed", "user ID must be 26 base32 characters");
  const id = new Uint8Array(USER_ID_SIZE);
  let acc = 0;
  let bits = 0;
  let n = 0;
  for (const c of t) {
    acc = (acc << 5) | BASE32.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      id[n++] = (acc >> (bits - 8)) & 0xff;
      bits -= 8;
      acc &= (1 << bits) - 1;
    }
  }
  if (acc !== 0) fail("malformed", "user ID is not canonical base32");
  if (isZero(id)) fail("malformed", "user ID is zero");
  return id;
}

function parseHexID(s, size, what) {
  if (s.length !== 2 * size || !/^[0-9a-f]*$/.test(s)) fail("malformed", `${what} must be ${2 * size} lowercase hex characters`);
  const id = fromHex(s);
  if (isZero(id)) fail("malformed", `${what} is zero`);
  return id;
}

export const parseDeviceID = (s) => parseHexID(s, DEVICE_ID_SIZE, "device ID");

// --------------------------------------------------------------- keys (§5)

// The canonical DER of a v1 public key: prefix || modulus || suffix (§5.1).
const SPKI_PREFIX = fromHex("308201a2300d06092a864886f70d01010105000382018f003082018a0282018100");
const SPKI_SUFFIX = fromHex("0203010001");
const RSA_ENCRYPTION_OID = fromHex("2a864886f70d010101");

// derElement reads one DER element of the given tag at r, with a minimal
// definite length, and returns its contents.
function derElement(r, tag) {
  if (r.u8() !== tag) fail("malformed", `DER: expected tag ${tag}`);
  let len = r.u8();
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 2) fail("malformed", "DER: bad length");
    const p = r.fixed(n);
    len = n === 1 ? p[0] : (p[0] << 8) | p[1];
    if (p[0] === 0 || len < 0x80) fail("malformed", "DER: non-minimal length");
  }
  return r.fixed(len);
}

// derPositiveInteger returns the magnitude of a positive, minimally encoded INTEGER.
function derPositiveInteger(r) {
  const p = derElement(r, 0x02);
  if (p.length === 0 || p[0] & 0x80) fail("malformed", "DER: integer is not positive");
  if (p.length > 1 && p[0] === 0 && !(p[1] & 0x80)) fail("malformed", "DER: non-minimal integer");
  const mag = p[0] === 0 ? p.subarray(1) : p;
  if (mag.length === 0) fail("malformed", "DER: integer is zero");
  return mag;
}

function bitLength(mag) {
  return 8 * mag.length - Math.clz32(mag[0]) + 24;
}

function bigIntOf(mag) {
  return mag.reduce((v, b) => (v << 8n) | BigInt(b), 0n);
}

/** A validated v1 public key: its canonical DER and modulus. */
export class PublicKey {
  constructor(der, modulus) {
    this.der = der;
    this.modulus = modulus;
    this._verify = null;
  }
  verifyKey() {
    this._verify ??= subtle.importKey("spki", this.der, { name: "RSA-PSS", hash: "SHA-256" }, false, ["verify"]);
    return this._verify;
  }
  equals(other) {
    return other instanceof PublicKey && bytesEqual(this.der, other.der);
  }
}

// parsePublicKey parses a DER SubjectPublicKeyInfo, in the order of §5.1.
export function parsePublicKey(der) {
  if (der.length > MAX_PUBLIC_KEY_DER) fail("too_large", `public key is ${der.length} bytes`);
  const r = new Reader(der);
  const spki = new Reader(derElement(r, 0x30));
  r.finish();
  const alg = new Reader(derElement(spki, 0x30));
  if (!bytesEqual(derElement(alg, 0x06), RSA_ENCRYPTION_OID)) fail("malformed", "not an RSA key");
  if (derElement(alg, 0x05).length !== 0) fail("malformed", "RSA parameters are not NULL");
  alg.finish();
  const bits = new Reader(derElement(spki, 0x03));
  spki.finish();
  if (bits.u8() !== 0) fail("malformed", "BIT STRING has unused bits");
  const rsa = new Reader(derElement(bits, 0x30));
  bits.finish();
  const n = derPositiveInteger(rsa);
  const e = derPositiveInteger(rsa);
  rsa.finish();
  if (e.length > 8 || (e.length === 8 && e[0] & 0x80)) fail("malformed", "exponent too large");
  if (bitLength(n) !== KEY_BITS) fail("key_size", `got ${bitLength(n)} bits`);
  if (bigIntOf(e) !== KEY_EXPONENT) fail("key_exponent", `got ${bigIntOf(e)}`);
  if (!bytesEqual(der, concat(SPKI_PREFIX, n, SPKI_SUFFIX))) fail("malformed", "public key encoding is not canonical DER");
  return new PublicKey(der, n);
}

const PKCS8_VERSION_AND_ALGORITHM = fromHex("020100300d06092a864886f70d0101010500");

// derHeader returns the DER header of an element of the given tag and length.
function derHeader(tag, length) {
  if (length < 0x80) return Uint8Array.of(tag, length);
  if (length < 0x100) return Uint8Array.of(tag, 0x81, length);
  return Uint8Array.of(tag, 0x82, length >> 8, length & 0xff);
}

function derInteger(mag) {
  const body = mag[0] & 0x80 ? concat(u8(0), mag) : mag;
  return concat(derHeader(0x02, body.length), body);
}

// parsePrivateKey checks that der is a v1 private key in canonical PKCS #8
// (§5.2): exactly the DER encoding of version 0, rsaEncryption with NULL
// parameters and a two-prime RSAPrivateKey of version 0, nothing more, with a
// v1 public half and consistent CRT values.
export function parsePrivateKey(der) {
  if (der.length > MAX_PRIVATE_KEY_DER) fail("too_large", `private key is ${der.length} bytes`);
  const r = new Reader(der);
  const info = new Reader(derElement(r, 0x30));
  r.finish();
  if (!bytesEqual(info.fixed(PKCS8_VERSION_AND_ALGORITHM.length), PKCS8_VERSION_AND_ALGORITHM)) fail("malformed", "not a version 0 PKCS #8 RSA key");
  const rsa = new Reader(derElement(new Reader(derElement(info, 0x04)), 0x30));
  info.finish();
  if (!bytesEqual(rsa.fixed(3), fromHex("020100"))) fail("malformed", "RSAPrivateKey version is not 0");
  const [n, e, d, p, q, dP, dQ, qInv] = Array.from({ length: 8 }, () => derPositiveInteger(rsa));
  rsa.finish();
  if (bitLength(n) !== KEY_BITS) fail("key_size", `got ${bitLength(n)} bits`);
  if (bigIntOf(e) !== KEY_EXPONENT) fail("key_exponent", `got ${bigIntOf(e)}`);
  const [N, E, P, Q, DP, DQ, QI] = [n, e, p, q, dP, dQ, qInv].map(bigIntOf);
  const ok = P * Q === N && DP < P - 1n && DQ < Q - 1n && QI < P && (E * DP) % (P - 1n) === 1n && (E * DQ) % (Q - 1n) === 1n && (QI * Q) % P === 1n;
  if (!ok) fail("malformed", "inconsistent RSA private key");
  // Canonical: the encoding of these values, and nothing else, byte for byte.
  const key = concat(u8(0x02), u8(0x01), u8(0x00), ...[n, e, d, p, q, dP, dQ, qInv].map(derInteger));
  const seq = concat(derHeader(0x30, key.length), key);
  const body = concat(PKCS8_VERSION_AND_ALGORITHM, derHeader(0x04, seq.length), seq);
  if (!bytesEqual(der, concat(derHeader(0x30, body.length), body))) fail("malformed", "private key encoding is not canonical PKCS #8");
  return { der, modulus: n };
}

/** Imports a PKCS #8 encryption private key for RSA-OAEP unwrapping. */
export async function importDecryptionKey(pkcs8) {
  return subtle.importKey("pkcs8", pkcs8, { name: "RSA-OAEP", hash: "SHA-256" }, true, ["decrypt"]);
}

// modulusOf returns the modulus of a private CryptoKey, for comparing it with
// its public half.
async function modulusOf(privateKey) {
  const jwk = await subtle.exportKey("jwk", privateKey);
  return fromBase64URL(jwk.n);
}

// -------------------------------------------------------- fingerprints (§6)

export async function identityFingerprint(pub) {
  return sha256(labeled(LABEL.idFP, pub.der));
}

export async function serverFingerprint(pub) {
  return sha256(labeled(LABEL.serverFP, pub.der));
}

export const fingerprintString = toBase64URL;

export function numericFingerprint(fp) {
  const view = new DataView(fp.buffer, fp.byteOffset, fp.length);
  const groups = [];
  for (let i = 0; i < 8; i++) groups.push(String(view.getUint32(4 * i) % 100000).padStart(5, "0"));
  return groups.join(" ");
}

export function matchesNumeric(fp, typed) {
  if (/[^0-9 \t\n-]/.test(typed)) return false;
  const digits = ascii(typed.replace(/[^0-9]/g, ""));
  return bytesEqual(digits, ascii(numericFingerprint(fp).replace(/ /g, "")));
}

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

export function parseFingerprint(s) {
  if (!/^[A-Za-z0-9_-]{43}$/.test(s)) fail("malformed", "fingerprint must be 43 base64url characters");
  if (BASE64URL.indexOf(s[42]) & 3) fail("malformed", "fingerprint is not canonical base64url");
  return fromBase64URL(s);
}

// ---------------------------------------------------------------- URIs (§7)

// URIs are handled as byte strings: one character (0 to 255) per byte, as
// the reference implementation handles them, so that a %XX escape is the
// byte XX whatever it is (§7, step 4).
function byteString(s) {
  return String.fromCharCode(...utf8.encode(s));
}

// The white space trimmed from both ends of a URI (§7, step 2): Unicode's
// White_Space characters.
const WHITE_SPACE = "\t\n\v\f\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";

function trimWhiteSpace(s) {
  let i = 0;
  let j = s.length;
  while (i < j && WHITE_SPACE.includes(s[i])) i++;
  while (j > i && WHITE_SPACE.includes(s[j - 1])) j--;
  return s.slice(i, j);
}

// percentDecode decodes %XX escapes in a byte string; plus is what "+"
// becomes. An invalid escape is malformed.
function percentDecode(s, plus) {
  if (/%(?![0-9A-Fa-f]{2})/.test(s)) fail("malformed", "invalid % escape");
  return s.replace(/%([0-9A-Fa-f]{2})|\+/g, (m, hex) => (hex ? String.fromCharCode(parseInt(hex, 16)) : plus));
}

// parseQuery splits and decodes a URI query (§7, step 4).
function parseQuery(q) {
  if (q.includes(";")) fail("malformed", "semicolon in query");
  const params = new Map();
  for (const piece of q.split("&")) {
    if (piece === "") continue;
    const eq = piece.indexOf("=");
    const key = percentDecode(eq < 0 ? piece : piece.slice(0, eq), " ");
    const value = eq < 0 ? "" : percentDecode(piece.slice(eq + 1), " ");
    params.set(key, [...(params.get(key) ?? []), value]);
  }
  return params;
}

function parseURI(uri, kind, keys) {
  if (utf8.encode(uri).length > MAX_URI_SIZE) fail("too_large", "URI is too long");
  const s = byteString(trimWhiteSpace(uri));
  const prefix = `qrtalk:${kind}?`;
  if (!s.startsWith(prefix)) fail("malformed", `not a qrtalk:${kind} URI`);
  const params = parseQuery(s.slice(prefix.length));
  const v = params.get("v") ?? [];
  if (v.length !== 1 || v[0] !== "1") fail("version", `qrtalk:${kind} version ${v.join(",")}`);
  const out = {};
  for (const k of keys) {
    const vals = params.get(k) ?? [];
    if (vals.length !== 1) fail("malformed", `URI must have exactly one ${k}`);
    out[k] = vals[0];
  }
  if (params.size !== keys.length + 1) fail("malformed", "URI has unknown parameters");
  return out;
}

// isIPv6 reports whether s is an RFC 3986 IPv6address (no zone): eight
// groups of 1 to 4 hex digits, the last two of which may be written as a
// dotted IPv4 address, with at most one "::" standing for one or more zero
// groups.
function isIPv6(s) {
  const octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
  const v4 = new RegExp(`:(?:${octet}\\.){3}${octet}$`).exec(s);
  const text = v4 ? `${s.slice(0, v4.index + 1)}0:0` : s;
  const parts = text.split("::");
  if (parts.length > 2) return false;
  const groups = parts.flatMap((p) => (p === "" ? [] : p.split(":")));
  if (!groups.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  return parts.length === 2 ? groups.length <= 7 : groups.length === 8;
}

const asciiLower = (s) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

// checkServerURL checks https://host[:port][/path] and returns its
// canonical form (§7, Server URL). s is a byte string.
export function checkServerURL(s) {
  const bad = (why) => fail("malformed", `server URL must be https://host[:port][/path]: ${why}`);
  if (s.length > MAX_URI_SIZE) bad("too long");
  if (/[?#@\\ \t\r\n]/.test(s)) bad("a character of ?#@\\, space, tab, CR or LF");
  const m = /^[Hh][Tt][Tt][Pp][Ss]:\/\/([^/]*)(.*)$/s.exec(s);
  if (!m) bad("not https://");
  const [, authority, path] = m;
  let host;
  let port;
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0 || !isIPv6(authority.slice(1, close))) bad("IPv6 literal");
    host = authority.slice(0, close + 1);
    port = authority.slice(close + 1);
  } else {
    const colon = authority.indexOf(":");
    host = colon < 0 ? authority : authority.slice(0, colon);
    port = colon < 0 ? "" : authority.slice(colon);
    if (!/^[A-Za-z0-9\-._~!$&'()*+,;=]+$/.test(host)) bad("host");
  }
  if (port !== "" && !(/^:[1-9][0-9]{0,4}$/.test(port) && Number(port.slice(1)) <= 65535)) bad("port");
  if (!/^[A-Za-z0-9\-._~!$&'()*+,;=:/[\]%]*$/.test(path)) bad("path");
  if (/%(?![0-9A-Fa-f]{2})/.test(path)) bad("invalid % escape in the path");
  return "https://" + asciiLower(host) + port + path.replace(/\/+$/, "");
}

export function checkToken(t) {
  if (!/^[A-Za-z0-9_-]{16,128}$/.test(t)) fail("malformed", "token must be 16 to 128 characters [A-Za-z0-9_-]");
  return t;
}

export function parseContactCard(uri) {
  const q = parseURI(uri, "contact", ["s", "sfp", "u", "fp"]);
  return { server: checkServerURL(q.s), serverFP: parseFingerprint(q.sfp), user: parseUserID(q.u), identity: parseFingerprint(q.fp) };
}

export function parseInvite(uri) {
  const q = parseURI(uri, "invite", ["s", "sfp", "t"]);
  return { server: checkServerURL(q.s), serverFP: parseFingerprint(q.sfp), token: checkToken(q.t) };
}

// ----------------------------------------- certificates and revocations (§8)

export function parseDeviceCert(data) {
  if (data.length > MAX_CERT_SIZE) fail("too_large", `device certificate is ${data.length} bytes`);
  const r = new Reader(data);
  readHeader(r, TYPE.cert, "device certificate");
  const user = r.fixed(USER_ID_SIZE);
  const device = r.fixed(DEVICE_ID_SIZE);
  const created = r.i64();
  const encDER = r.var16(MAX_PUBLIC_KEY_DER);
  const authDER = r.var16(MAX_PUBLIC_KEY_DER);
  const signed = data.subarray(0, r.off);
  const signature = r.fixed(KEY_SIZE);
  r.finish();
  if (isZero(user) || isZero(device)) fail("malformed", "device certificate has a zero ID");
  return { user, device, created, encryptionKey: parsePublicKey(encDER), authKey: parsePublicKey(authDER), signed, signature };
}

export async function verifyDeviceCert(cert, identity) {
  await verifySignature(identity, labeled(LABEL.cert, cert.signed), cert.signature);
}

// parseRevocation parses a revocation in the order of §8.2: the version
// byte before the size, so that a v2 of any size is a version error.
export function parseRevocation(data) {
  if (data.length > 0 && data[0] !== VERSION) fail("version", `revocation version ${data[0]}`);
  if (data.length !== REVOCATION_SIZE) fail("malformed", `revocation must be ${REVOCATION_SIZE} bytes`);
  const r = new Reader(data);
  readHeader(r, TYPE.revocation, "revocation");
  const user = r.fixed(USER_ID_SIZE);
  const device = r.fixed(DEVICE_ID_SIZE);
  const revoked = r.i64();
  const signed = data.subarray(0, r.off);
  const signature = r.fixed(KEY_SIZE);
  r.finish();
  if (isZero(user) || isZero(device)) fail("malformed", "revocation has a zero ID");
  return { user, device, revoked, signed, signature };
}

export async function verifyRevocation(rev, identity) {
  await verifySignature(identity, labeled(LABEL.revoke, rev.signed), rev.signature);
}

// verifyDeviceList returns the verified, unrevoked certificates (§8.3).
export async function verifyDeviceList(identity, user, certs, revocations) {
  const revoked = new Set();
  for (const data of revocations) {
    const rev = parseRevocation(data);
    if (!bytesEqual(rev.user, user)) fail("mismatch", "revocation for another user");
    await verifyRevocation(rev, identity);
    revoked.add(toHex(rev.device));
  }
  const seen = new Set();
  const out = [];
  for (const data of certs) {
    const cert = parseDeviceCert(data);
    if (!bytesEqual(cert.user, user)) fail("mismatch", "certificate for another user");
    await verifyDeviceCert(cert, identity);
    const dev = toHex(cert.device);
    if (seen.has(dev)) fail("malformed", `device ${dev} listed twice`);
    seen.add(dev);
    if (!revoked.has(dev)) out.push(cert);
  }
  return out;
}

// --------------------------------------------------- message plaintext (§9)

function printableASCII(b) {
  return b.every((c) => c >= 0x20 && c <= 0x7e);
}

function validUTF8(b) {
  try {
    strictUTF8.decode(b);
    return true;
  } catch {
    return false;
  }
}

export function decodeMessage(p) {
  if (p.length > MAX_PLAINTEXT_SIZE) fail("too_large", `plaintext is ${p.length} bytes`);
  const r = new Reader(p);
  const contentType = r.var8(MAX_CONTENT_TYPE_LEN);
  const groupID = r.var8(GROUP_ID_SIZE);
  const body = r.var32(MAX_BODY_SIZE);
  const count = r.u16();
  if (count > MAX_ATTACHMENTS) fail("malformed", `${count} attachments`);
  const attachments = [];
  for (let i = 0; i < count; i++) {
    attachments.push({
      blobID: r.fixed(16),
      key: r.fixed(32),
      sha256: r.fixed(32),
      size: r.u64(),
      name: r.var16(MAX_NAME_LEN),
      mediaType: r.var8(MAX_CONTENT_TYPE_LEN),
    });
  }
  const used = r.off;
  if (!isZero(r.fixed(r.remaining))) fail("malformed", "message padding is not zero");
  if (Math.ceil(used / PAD_BLOCK) * PAD_BLOCK !== p.length) fail("malformed", "message padding has the wrong length");
  if (contentType.length === 0 || !printableASCII(contentType)) fail("malformed", "content type");
  if (groupID.length !== 0 && groupID.length !== GROUP_ID_SIZE) fail("malformed", "group ID");
  for (const a of attachments) {
    if (!validUTF8(a.name)) fail("malformed", "attachment name is not UTF-8");
    if (!printableASCII(a.mediaType)) fail("malformed", "attachment media type");
  }
  const text = (b) => strictUTF8.decode(b);
  return {
    contentType: text(contentType),
    groupID,
    body,
    attachments: attachments.map((a) => ({ ...a, name: text(a.name), mediaType: text(a.mediaType) })),
  };
}

// ----------------------------------------------------------- envelopes (§10)

export function parseEnvelope(data) {
  if (data.length > MAX_ENVELOPE_SIZE) fail("too_large", `envelope is ${data.length} bytes`);
  const r = new Reader(data);
  readHeader(r, TYPE.envelope, "envelope");
  const id = r.fixed(MESSAGE_ID_SIZE);
  const sender = r.fixed(USER_ID_SIZE);
  const senderDevice = r.fixed(DEVICE_ID_SIZE);
  const sent = r.i64();
  const ttl = r.u32();
  const flags = r.u8();
  const nu = r.u16();
  if (nu === 0 || nu > MAX_RECIPIENT_USERS) fail("malformed", `${nu} recipient users`);
  const users = r.fixed(nu * USER_ID_SIZE);
  const header = data.subarray(0, r.off);
  const nd = r.u16();
  if (nd === 0 || nd > MAX_RECIPIENT_DEVICES) fail("malformed", `${nd} recipient devices`);
  const keys = r.fixed(nd * WRAPPED_ENTRY_SIZE);
  const tail = data.subarray(r.off);
  const nonce = r.fixed(NONCE_SIZE);
  const commitment = r.fixed(COMMITMENT_SIZE);
  const ciphertext = r.var32(MAX_CIPHERTEXT_SIZE);
  const signature = r.var16(KEY_SIZE);
  r.finish();
  if (isZero(id) || isZero(sender) || isZero(senderDevice)) fail("malformed", "envelope has a zero ID");
  if (ttl === 0 || ttl > MAX_TTL_SECONDS) fail("malformed", `TTL ${ttl}s`);
  if (ciphertext.length < TAG_SIZE) fail("malformed", "ciphertext is too short");
  if (signature.length !== 0 && signature.length !== KEY_SIZE) fail("malformed", "signature length");
  if ((flags & ~FLAG_SIGNED) !== 0) fail("malformed", `envelope flags ${flags}`);
  if ((flags === FLAG_SIGNED) !== (signature.length === KEY_SIZE)) fail("malformed", "flags and signature disagree");
  const recipients = [];
  for (let i = 0; i < nu; i++) {
    const u = users.subarray(i * USER_ID_SIZE, (i + 1) * USER_ID_SIZE);
    if (isZero(u) || (i > 0 && compareBytes(recipients[i - 1], u) >= 0)) fail("malformed", "recipient users are not strictly ascending");
    recipients.push(u);
  }
  const entries = [];
  for (let i = 0; i < nd; i++) {
    const raw = keys.subarray(i * WRAPPED_ENTRY_SIZE, (i + 1) * WRAPPED_ENTRY_SIZE);
    const entry = { raw, user: raw.subarray(0, 16), device: raw.subarray(16, 24), wrapped: raw.subarray(24) };
    if (isZero(entry.device) || (i > 0 && compareEntries(entries[i - 1], entry) >= 0)) fail("malformed", "devices are not strictly ascending");
    if (!recipients.some((u) => bytesEqual(u, entry.user))) fail("malformed", "key entry for a user who is not a recipient");
    entries.push(entry);
  }
  return { id, sender, senderDevice, sent, ttl, recipients, entries, header, tail, nonce, commitment, ciphertext, signature };
}

function compareEntries(a, b) {
  return compareBytes(a.user, b.user) || compareBytes(a.device, b.device);
}

// deliveredForm is the envelope as the server delivers it to entry i (§10.6).
export function deliveredForm(env, i) {
  return concat(env.header, u16(1), env.entries[i].raw, env.tail);
}

function keyCommitment(id, key) {
  return sha256(labeled(LABEL.commit, id, key));
}

async function envelopeSignedData(env) {
  return labeled(LABEL.envSig, env.header, env.nonce, env.commitment, await sha256(env.ciphertext));
}

// openEnvelope runs the checks of §10.5 in their order. me = {user, device,
// key}: IDs as bytes and the RSA-OAEP private CryptoKey; senderIdentity is
// the PublicKey pinned for env.sender, or null; nowMs is a BigInt.
export async function openEnvelope(env, me, senderIdentity, nowMs) {
  if (nowMs >= env.sent + BigInt(env.ttl) * 1000n) fail("expired");
  if (env.sent > nowMs + MAX_CLOCK_SKEW_MS) fail("clock_skew", "sent in the future");
  if (!env.recipients.some((u) => bytesEqual(u, me.user))) fail("not_recipient", "user is not in the signed recipient set");
  const entry = env.entries.find((e) => bytesEqual(e.user, me.user) && bytesEqual(e.device, me.device));
  if (!entry) fail("not_recipient", "no key for this device");
  let status = "unsigned";
  if (env.signature.length !== 0) {
    status = "unchecked";
    if (senderIdentity) {
      await verifySignature(senderIdentity, await envelopeSignedData(env), env.signature);
      status = "verified";
    }
  }
  const key = await unwrapKey(me.key, labeled(LABEL.keyWrap, env.id), entry.wrapped);
  if (!bytesEqual(await keyCommitment(env.id, key), env.commitment)) fail("decrypt", "key commitment does not match");
  const plaintext = await gcmOpen(key, env.nonce, env.ciphertext, labeled(LABEL.envAAD, env.header));
  key.fill(0);
  return { message: decodeMessage(plaintext), status };
}

// ------------------------------------------------------ secure channel (§11)

// parseChannelSetup parses a setup in the order of §11.4: the version byte
// before the size.
export function parseChannelSetup(data) {
  if (data.length > 0 && data[0] !== VERSION) fail("version", `channel setup version ${data[0]}`);
  if (data.length !== CHANNEL_SETUP_SIZE) fail("malformed", `channel setup must be ${CHANNEL_SETUP_SIZE} bytes`);
  const r = new Reader(data);
  readHeader(r, TYPE.setup, "channel setup");
  return {
    raw: data,
    user: r.fixed(USER_ID_SIZE),
    device: r.fixed(DEVICE_ID_SIZE),
    serverFP: r.fixed(32),
    time: r.i64(),
    nonce: r.fixed(16),
    wrapped: r.fixed(KEY_SIZE),
    signature: r.fixed(KEY_SIZE),
  };
}

export async function sessionID(setupBytes) {
  return (await sha256(labeled(LABEL.sessionID, setupBytes))).subarray(0, SESSION_ID_SIZE);
}

export async function channelKeys(secret, id) {
  return {
    c2s: await hkdf32(secret, id, `${LABEL.chKeys} client-to-server`),
    s2c: await hkdf32(secret, id, `${LABEL.chKeys} server-to-client`),
  };
}

function frameNonce(direction, counter) {
  return concat(u8(direction), new Uint8Array(3), u64(counter));
}

// frameAAD: the associated data of a frame (§11.5), with the kind right after
// the direction. method and path are byte arrays.
function frameAAD(id, direction, kind, counter, requestCounter, method, path) {
  return labeled(LABEL.chFrame, id, u8(direction), u8(kind), u64(counter), u64(requestCounter), var16(method), var16(path));
}

// kindBytes returns the method and path a frame of this kind is bound to, as
// bytes, after checking their length (§11.5).
function kindBytes(kind) {
  const method = utf8.encode(kind.method);
  const path = utf8.encode(kind.path);
  if (method.length > MAX_METHOD_PATH || path.length > MAX_METHOD_PATH) fail("too_large", `method or path longer than ${MAX_METHOD_PATH} bytes`);
  return { method, path };
}

/** The replay window of §11.8: each counter once, none 1024 below the top. */
export class ReplayWindow {
  constructor() {
    this.top = null;
    this.seen = new Set();
  }
  fresh(c) {
    if (this.top === null || c > this.top) return true;
    return this.top - c < REPLAY_WINDOW && !this.seen.has(c);
  }
  accept(c) {
    if (!this.fresh(c)) return false;
    this.seen.add(c);
    if (this.top === null || c > this.top) {
      this.top = c;
      for (const old of this.seen) if (this.top - old >= REPLAY_WINDOW) this.seen.delete(old);
    }
    return true;
  }
}

// Frame kinds (§11.6): what the associated data binds besides the counter.
export const CONFIRMATION = { kind: KIND.confirmation, requestCounter: 0n, method: "SETUP", path: "/" };
export const PUSH = { kind: KIND.push, requestCounter: 0n, method: "PUSH", path: "/" };
export const request = (method, path) => ({ kind: KIND.request, requestCounter: 0n, method, path });
export const response = (requestCounter, method, path) => ({ kind: KIND.response, requestCounter, method, path });

/** One end of a channel session: the key it receives with and its window. */
export class ChannelEnd {
  constructor(id, keys, isClient, expiresMs) {
    this.id = id;
    this.expiresMs = expiresMs;
    this.sendDir = isClient ? DIR_C2S : DIR_S2C;
    this.recvDir = isClient ? DIR_S2C : DIR_C2S;
    this.sendKey = isClient ? keys.c2s : keys.s2c;
    this.recvKey = isClient ? keys.s2c : keys.c2s;
    this.sendCounter = 0n;
    this.window = new ReplayWindow();
    // A client sends, and opens responses and pushes, only once confirmed
    // (§11.6); a server end needs no confirmation.
    this.confirmed = !isClient;
  }

  async seal(kind, body) {
    if (!this.confirmed) fail("malformed", "channel session is not confirmed");
    const { method, path } = kindBytes(kind);
    const counter = this.sendCounter++;
    const aad = frameAAD(this.id, this.sendDir, kind.kind, counter, kind.requestCounter, method, path);
    const sealed = await gcmSeal(this.sendKey, frameNonce(this.sendDir, counter), body, aad);
    return concat(u8(VERSION), u8(TYPE.frame), this.id, u64(counter), sealed);
  }

  // open runs the checks of §11.7 in their order; it returns {body, counter}.
  async open(kind, frame, nowMs) {
    if (!this.confirmed && kind.kind !== KIND.confirmation) fail("malformed", "channel session is not confirmed");
    const { method, path } = kindBytes(kind);
    if (nowMs >= this.expiresMs) fail("expired", "channel session ended");
    if (frame.length > MAX_FRAME_SIZE) fail("too_large", `frame is ${frame.length} bytes`);
    if (frame.length < FRAME_HEADER_SIZE + TAG_SIZE) fail("malformed", "frame is too short");
    const r = new Reader(frame);
    readHeader(r, TYPE.frame, "channel frame");
    const id = r.fixed(SESSION_ID_SIZE);
    const counter = r.u64();
    if (!bytesEqual(id, this.id)) fail("mismatch", "frame is for another session");
    if (!this.window.fresh(counter)) fail("replay", `frame ${counter}`);
    const aad = frameAAD(this.id, this.recvDir, kind.kind, counter, kind.requestCounter, method, path);
    const body = await gcmOpen(this.recvKey, frameNonce(this.recvDir, counter), frame.subarray(FRAME_HEADER_SIZE), aad);
    if (!this.window.accept(counter)) fail("replay", `frame ${counter}`);
    return { body, counter };
  }
}

/** A replay memory of setups (§11.4 step 4), for one process. */
export class SetupReplayMemory {
  constructor() {
    this.ids = new Map();
  }
  seen(id, untilMs) {
    const k = toHex(id);
    if (this.ids.has(k)) return true;
    this.ids.set(k, untilMs);
    return false;
  }
}

// acceptSession is the server's side of §11.4. server = {privateKey (RSA-OAEP
// CryptoKey), publicKey (PublicKey)}; deviceAuth is the device's PublicKey.
export async function acceptSession(setup, server, deviceAuth, memory, lifetimeMs, nowMs) {
  if (!bytesEqual(setup.serverFP, await serverFingerprint(server.publicKey))) fail("mismatch", "setup is for another server key");
  const skew = nowMs - setup.time;
  if (skew > MAX_CLOCK_SKEW_MS || skew < -MAX_CLOCK_SKEW_MS) fail("clock_skew", "setup time");
  await verifySignature(deviceAuth, labeled(LABEL.chSetup, setup.raw.subarray(0, SETUP_SIGNED_SIZE)), setup.signature);
  const id = await sessionID(setup.raw);
  if (memory.seen(id, setup.time + MAX_CLOCK_SKEW_MS)) fail("replay", "channel setup");
  const secret = await unwrapKey(server.privateKey, labeled(LABEL.chWrap, setup.nonce), setup.wrapped);
  const keys = await channelKeys(secret, id);
  if (lifetimeMs <= 0n || lifetimeMs > MAX_SESSION_LIFETIME_MS) lifetimeMs = MAX_SESSION_LIFETIME_MS;
  const end = new ChannelEnd(id, keys, false, nowMs + lifetimeMs);
  const confirm = await end.seal(CONFIRMATION, u64(end.expiresMs));
  return { end, confirm, secret, keys };
}

// clientEnd builds the device's end from the secret it wrapped in the setup;
// until confirmed, the session ends one hour after the setup time.
export async function clientEnd(secret, id, setupTimeMs) {
  return new ChannelEnd(id, await channelKeys(secret, id), true, setupTimeMs + MAX_SESSION_LIFETIME_MS);
}

// confirmSession checks the server's confirmation frame (§11.6).
export async function confirmSession(end, confirm, nowMs) {
  if (end.confirmed) fail("replay", "channel session is already confirmed");
  const { body, counter } = await end.open(CONFIRMATION, confirm, nowMs);
  if (counter !== 0n || body.length !== 8) fail("malformed", "channel confirmation");
  const expires = new DataView(body.buffer, body.byteOffset, 8).getBigUint64(0);
  if (expires < end.expiresMs) end.expiresMs = expires;
  end.confirmed = true;
}

// ---------------------------------------------------------- resumption (§18)

const TICKET_SIZE = 122;
const RESUME_SIZE = 252;
const RESUME_MACED_SIZE = 220;
const RESUME_ANSWER_SIZE = 84;
const TICKET_HEADER_SIZE = 42;
export const TICKET_LIFETIME_MS = 86400000n;
export const TICKET_KEY_PERIOD_MS = 86400000n;
const RTYPE = { resume: 9, answer: 10, ticket: 11 };
const RLABEL = {
  ticketKey: "qrtalk/v1/ticket-key",
  ticket: "qrtalk/v1/ticket",
  resume: "qrtalk/v1/resume",
  binder: "qrtalk/v1/resume-binder",
  secret: "qrtalk/v1/resume-secret",
  sessionID: "qrtalk/v1/resumed-session-id",
};

function u32(v) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, v);
  return out;
}

async function hkdfBytes(ikm, salt, info) {
  const k = await subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, k, 256));
}

// HMAC(K, M): HMAC-SHA-256 (§18.1).
async function hmac(key, data) {
  const k = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, data));
}

// RS = HKDF(secret, session ID, "qrtalk/v1/channel-keys resumption") (§18.2).
export async function resumptionSecret(secret, id) {
  return hkdf32(secret, id, `${LABEL.chKeys} resumption`);
}

export function ticketPeriod(nowMs) {
  return Number(BigInt(nowMs) / TICKET_KEY_PERIOD_MS);
}

// K_ticket(e) from the server key's PKCS #8 bytes and fingerprint (§18.3).
export async function ticketKey(serverPKCS8, serverFP, period) {
  return hkdfBytes(serverPKCS8, serverFP, labeled(RLABEL.ticketKey, u32(period)));
}

// parseTicketHeader: what a device can check of a ticket (§18.4).
export function parseTicketHeader(t) {
  if (t.length > 0 && t[0] !== VERSION) fail("version", `ticket version ${t[0]}`);
  if (t.length !== TICKET_SIZE) fail("malformed", `ticket must be ${TICKET_SIZE} bytes`);
  if (t[1] !== RTYPE.ticket) fail("malformed", `not a ticket (type ${t[1]})`);
  const dv = new DataView(t.buffer, t.byteOffset, t.length);
  return { period: dv.getUint32(2), id: t.subarray(6, 22), expiresMs: dv.getBigInt64(22), nonce: t.subarray(30, 42) };
}

// openTicket opens a ticket with a ticket key: {user, device, authTimeMs, rs}.
export async function openTicket(t, key) {
  const h = parseTicketHeader(t);
  const plain = await gcmOpen(key, h.nonce, t.subarray(TICKET_HEADER_SIZE), labeled(RLABEL.ticket, t.subarray(0, TICKET_HEADER_SIZE)));
  if (plain.length !== 64) fail("malformed", "ticket plaintext");
  return {
    ...h,
    user: plain.subarray(0, 16),
    device: plain.subarray(16, 24),
    authTimeMs: new DataView(plain.buffer, plain.byteOffset + 24, 8).getBigInt64(0),
    rs: plain.subarray(32, 64),
  };
}

// parseResume parses a resume message in the order of §18.6.
export function parseResume(data) {
  if (data.length > 0 && data[0] !== VERSION) fail("version", `resume version ${data[0]}`);
  if (data.length !== RESUME_SIZE) fail("malformed", `resume must be ${RESUME_SIZE} bytes`);
  const r = new Reader(data);
  readHeader(r, RTYPE.resume, "resume");
  const q = {
    raw: data,
    user: r.fixed(USER_ID_SIZE),
    device: r.fixed(DEVICE_ID_SIZE),
    serverFP: r.fixed(32),
    time: r.i64(),
    random: r.fixed(32),
    ticket: r.fixed(TICKET_SIZE),
    binder: r.fixed(32),
  };
  r.finish();
  return q;
}

async function resumeBinder(rs, ticketID, maced) {
  const kBind = await hkdf32(rs, ticketID, RLABEL.binder);
  return hmac(kBind, labeled(RLABEL.resume, maced));
}

// checkResume is §18.6 steps 1 to 8. server = {pkcs8, fp}.
export async function checkResume(q, server, nowMs) {
  if (!bytesEqual(q.serverFP, server.fp)) fail("mismatch", "resume is for another server key");
  const skew = nowMs - q.time;
  if (skew > MAX_CLOCK_SKEW_MS || skew < -MAX_CLOCK_SKEW_MS) fail("clock_skew", "resume time");
  const h = parseTicketHeader(q.ticket);
  const cur = ticketPeriod(nowMs);
  if (h.period + 1 < cur || h.period > cur + 1) fail("expired", `ticket key period ${h.period}`);
  const t = await openTicket(q.ticket, await ticketKey(server.pkcs8, server.fp, h.period));
  if (!bytesEqual(t.user, q.user) || !bytesEqual(t.device, q.device)) fail("mismatch", "ticket is for another device");
  if (nowMs >= t.expiresMs) fail("expired", "ticket ended");
  if (t.expiresMs > t.authTimeMs + TICKET_LIFETIME_MS) fail("malformed", "ticket outlives its chain");
  const want = await resumeBinder(t.rs, t.id, q.raw.subarray(0, RESUME_MACED_SIZE));
  if (!bytesEqual(want, q.binder)) fail("bad_signature", "binder");
  return t;
}

async function resumedSession(resumeBytes, serverRandom, rs) {
  const id = (await sha256(labeled(RLABEL.sessionID, resumeBytes, serverRandom))).subarray(0, SESSION_ID_SIZE);
  const secret = await hkdf32(rs, id, RLABEL.secret);
  return { id, secret, keys: await channelKeys(secret, id), nextRS: await resumptionSecret(secret, id) };
}

/** A replay memory of ticket IDs (§18.6 step 10). */
export class TicketReplayMemory extends SetupReplayMemory {}

// acceptResume is §18.6 steps 10 to 12 for a checked resume (device found).
export async function acceptResume(q, ticket, memory, lifetimeMs, nowMs, serverRandom) {
  if (memory.seen(ticket.id, ticket.expiresMs)) fail("replay", "ticket already used");
  const s = await resumedSession(q.raw, serverRandom, ticket.rs);
  if (lifetimeMs <= 0n || lifetimeMs > MAX_SESSION_LIFETIME_MS) lifetimeMs = MAX_SESSION_LIFETIME_MS;
  const end = new ChannelEnd(s.id, s.keys, false, nowMs + lifetimeMs);
  const confirm = await end.seal(CONFIRMATION, u64(end.expiresMs));
  return { ...s, end, answer: concat(u8(VERSION), u8(RTYPE.answer), serverRandom, confirm) };
}

// finishResume is §18.7: the device checks the answer to its resume.
export async function finishResume(resumeBytes, rs, answer, nowMs) {
  if (answer.length > 0 && answer[0] !== VERSION) fail("version", `resume answer version ${answer[0]}`);
  if (answer.length !== RESUME_ANSWER_SIZE) fail("malformed", `resume answer must be ${RESUME_ANSWER_SIZE} bytes`);
  if (answer[1] !== RTYPE.answer) fail("malformed", `not a resume answer (type ${answer[1]})`);
  const q = parseResume(resumeBytes);
  const s = await resumedSession(resumeBytes, answer.subarray(2, 34), rs);
  const end = new ChannelEnd(s.id, s.keys, true, q.time + MAX_SESSION_LIFETIME_MS);
  await confirmSession(end, answer.subarray(34), nowMs);
  return { ...s, end };
}

// --------------------------------------------------------------- blobs (§12)

function blobNonce(index, last) {
  return concat(new Uint8Array(3), u64(index), u8(last ? 1 : 0));
}

export async function decryptBlob(data, keyBytes) {
  const r = new Reader(data);
  readHeader(r, TYPE.blob, "blob");
  const rest = data.subarray(2);
  const piece = BLOB_CHUNK_SIZE + TAG_SIZE;
  const count = Math.max(1, Math.ceil(rest.length / piece));
  const lastSize = rest.length - (count - 1) * piece;
  if (lastSize < TAG_SIZE || (lastSize === TAG_SIZE && count > 1)) fail("decrypt", "blob is truncated");
  const key = await aesKey(keyBytes);
  const out = [];
  for (let i = 0; i < count; i++) {
    const chunk = rest.subarray(i * piece, Math.min((i + 1) * piece, rest.length));
    out.push(await gcmOpen(key, blobNonce(i, i === count - 1), chunk, new Uint8Array(0)));
  }
  return concat(...out);
}

// =============================================================================
// The vector runner (§15). Everything below is test code.

class Runner {
  constructor() {
    this.passed = 0;
    this.failed = 0;
  }
  // check runs fn, which returns a list of differences (empty when the
  // vector passes); want is the expected error name, or "".
  async check(name, want, fn) {
    let diffs;
    let got = "";
    try {
      diffs = await fn();
    } catch (e) {
      got = e instanceof ProtocolError ? e.code : `other: ${e.stack ?? e}`;
      diffs = [];
    }
    if (got !== want) diffs = [`got error ${JSON.stringify(got)}, want ${JSON.stringify(want)}`];
    if (diffs.length === 0) {
      this.passed++;
      console.log(`ok    ${name}${want ? ` (${want})` : ""}`);
    } else {
      this.failed++;
      console.log(`FAIL  ${name}: ${diffs.join("; ")}`);
    }
  }
}

function differ(diffs, what, got, want) {
  const show = (v) => (v instanceof Uint8Array ? toHex(v) : String(v));
  const short = (s) => (s.length > 72 ? `${s.slice(0, 64)}... (${s.length} chars)` : s);
  if (show(got) !== show(want)) diffs.push(`${what}: got ${short(show(got))}, want ${short(show(want))}`);
}

const b64 = (s) => (s === undefined ? new Uint8Array(0) : fromBase64(s));

async function checkKeys(run, v, keys) {
  for (const kv of v.keys) {
    await run.check(`keys/${kv.name}`, kv.error ?? "", async () => {
      const pub = parsePublicKey(b64(kv.public_spki));
      const idFP = await identityFingerprint(pub);
      const diffs = [];
      differ(diffs, "identity fingerprint", fingerprintString(idFP), kv.identity_fingerprint);
      differ(diffs, "numeric", numericFingerprint(idFP), kv.identity_fingerprint_numeric);
      differ(diffs, "server fingerprint", fingerprintString(await serverFingerprint(pub)), kv.server_fingerprint);
      if (!matchesNumeric(idFP, kv.identity_fingerprint_numeric)) diffs.push("numeric form does not match itself");
      if (!bytesEqual(parseFingerprint(kv.identity_fingerprint), idFP)) diffs.push("fingerprint does not parse back");
      const entry = { pub };
      if (kv.private_pkcs8) {
        differ(diffs, "private key's public half", parsePrivateKey(b64(kv.private_pkcs8)).modulus, pub.modulus);
        entry.priv = await importDecryptionKey(b64(kv.private_pkcs8));
        differ(diffs, "private key modulus", await modulusOf(entry.priv), pub.modulus);
      }
      keys.set(kv.name, entry);
      return diffs;
    });
  }
}

async function checkCertificates(run, v, keys) {
  for (const cv of v.certificates) {
    await run.check(`certificates/${cv.name}`, cv.error ?? "", async () => {
      const cert = parseDeviceCert(b64(cv.data));
      await verifyDeviceCert(cert, keys.get(cv.identity_key).pub);
      const diffs = [];
      differ(diffs, "user", formatUserID(cert.user), cv.user);
      differ(diffs, "device", toHex(cert.device), cv.device);
      differ(diffs, "time", cert.created, cv.time);
      if (!cert.encryptionKey.equals(keys.get(cv.encryption_key)?.pub)) diffs.push("encryption key differs");
      if (!cert.authKey.equals(keys.get(cv.auth_key)?.pub)) diffs.push("authentication key differs");
      return diffs;
    });
  }
  for (const rv of v.revocations) {
    await run.check(`revocations/${rv.name}`, rv.error ?? "", async () => {
      const rev = parseRevocation(b64(rv.data));
      await verifyRevocation(rev, keys.get(rv.identity_key).pub);
      const diffs = [];
      differ(diffs, "user", formatUserID(rev.user), rv.user);
      differ(diffs, "device", toHex(rev.device), rv.device);
      differ(diffs, "time", rev.revoked, rv.time);
      return diffs;
    });
  }
}

// checkDeviceLists derives two device-list checks (§8.3) from the
// certificate and revocation vectors: a good list, and a foreign entry.
async function checkDeviceLists(run, v, keys) {
  const cert = v.certificates.find((c) => !c.error && c.identity_key === v.revocations[0]?.identity_key);
  const other = v.certificates.find((c) => !c.error && c.identity_key !== cert?.identity_key);
  const rev = v.revocations.find((r) => !r.error && r.user === cert?.user);
  if (!cert || !other || !rev) return;
  const identity = keys.get(cert.identity_key).pub;
  const user = parseUserID(cert.user);
  await run.check(`device-lists/derived-${cert.name}-minus-${rev.name}`, "", async () => {
    const list = await verifyDeviceList(identity, user, [b64(cert.data)], [b64(rev.data)]);
    return list.length === 1 && toHex(list[0].device) === cert.device ? [] : ["wrong devices"];
  });
  await run.check(`device-lists/derived-with-${other.name}`, "mismatch", async () => {
    await verifyDeviceList(identity, user, [b64(cert.data), b64(other.data)], [b64(rev.data)]);
    return [];
  });
}

async function openEnvelopeVector(ev, keys) {
  const env = parseEnvelope(b64(ev.envelope));
  const me = { user: parseUserID(ev.recipient_user), device: parseDeviceID(ev.recipient_device), key: keys.get(ev.recipient_key).priv };
  const sender = ev.sender_identity_key ? keys.get(ev.sender_identity_key).pub : null;
  const now = BigInt(ev.now_ms);
  const result = await openEnvelope(env, me, sender, now);
  // The copy delivered to this device alone must open the same way (§10.6).
  if (env.entries.length > 1) {
    const i = env.entries.findIndex((e) => bytesEqual(e.user, me.user) && bytesEqual(e.device, me.device));
    const copy = await openEnvelope(parseEnvelope(deliveredForm(env, i)), me, sender, now);
    if (copy.status !== result.status || !bytesEqual(copy.message.body, result.message.body)) throw new Error("delivered form differs");
  }
  return result;
}

async function checkEnvelopes(run, v, keys) {
  for (const ev of v.envelopes) {
    await run.check(`envelopes/${ev.name}`, ev.error ?? "", async () => {
      const { message: m, status } = await openEnvelopeVector(ev, keys);
      const diffs = [];
      differ(diffs, "status", status, ev.status);
      differ(diffs, "content type", m.contentType, ev.content_type);
      differ(diffs, "body", m.body, b64(ev.body));
      differ(diffs, "group ID", m.groupID, b64(ev.group_id));
      const want = ev.attachments ?? [];
      differ(diffs, "attachments", m.attachments.length, want.length);
      m.attachments.forEach((a, i) => {
        const w = want[i] ?? {};
        differ(diffs, `attachment ${i} blob ID`, toHex(a.blobID), w.blob_id);
        differ(diffs, `attachment ${i} key`, toHex(a.key), w.key);
        differ(diffs, `attachment ${i} SHA-256`, toHex(a.sha256), w.sha256);
        differ(diffs, `attachment ${i} size`, a.size.toString(), w.size);
        differ(diffs, `attachment ${i} name`, a.name, w.name);
        differ(diffs, `attachment ${i} media type`, a.mediaType, w.media_type);
      });
      return diffs;
    });
  }
}

async function checkChannels(run, v, keys) {
  for (const cv of v.channels) {
    const server = { privateKey: keys.get(cv.server_key).priv, publicKey: keys.get(cv.server_key).pub };
    const deviceAuth = keys.get(cv.device_auth_key).pub;
    const now = BigInt(cv.now_ms);
    const lifetime = BigInt(cv.lifetime_s) * 1000n;
    let accepted = null;
    await run.check(`channels/${cv.name}/setup`, cv.error ?? "", async () => {
      const setup = parseChannelSetup(b64(cv.setup));
      const memory = new SetupReplayMemory();
      if (cv.error === "replay") {
        try {
          await acceptSession(setup, server, deviceAuth, memory, lifetime, now);
        } catch (e) {
          throw new Error(`first acceptance of a replayed setup failed: ${e.message}`);
        }
      }
      accepted = await acceptSession(setup, server, deviceAuth, memory, lifetime, now);
      const diffs = [];
      differ(diffs, "secret", accepted.secret, cv.secret);
      differ(diffs, "session ID", accepted.end.id, cv.session_id);
      differ(diffs, "client-to-server key", accepted.keys.c2s, cv.client_to_server_key);
      differ(diffs, "server-to-client key", accepted.keys.s2c, cv.server_to_client_key);
      differ(diffs, "confirmation", accepted.confirm, b64(cv.confirm));
      differ(diffs, "expiry", accepted.end.expiresMs, cv.expires_ms);
      return diffs;
    });
    if (!accepted || cv.error) continue;
    const client = await clientEnd(fromHex(cv.secret), fromHex(cv.session_id), parseChannelSetup(b64(cv.setup)).time);
    await run.check(`channels/${cv.name}/confirm`, "", async () => {
      await confirmSession(client, b64(cv.confirm), now);
      const diffs = [];
      differ(diffs, "client expiry", client.expiresMs, cv.expires_ms);
      return diffs;
    });
    for (const [i, fv] of (cv.frames ?? []).entries()) {
      await run.check(`channels/${cv.name}/frame-${i}-${fv.kind}`, fv.error ?? "", async () => {
        const kinds = {
          request: () => [accepted.end, request(fv.method, fv.path)],
          response: () => [client, response(BigInt(fv.request_counter), fv.method, fv.path)],
          push: () => [client, PUSH],
        };
        const [end, kind] = kinds[fv.kind]();
        const { body } = await end.open(kind, b64(fv.frame), BigInt(fv.now_ms));
        const diffs = [];
        differ(diffs, "body", body, b64(fv.body));
        return diffs;
      });
    }
  }
}

async function checkResumptions(run, v) {
  const pkcs8 = new Map(v.keys.filter((k) => k.private_pkcs8).map((k) => [k.name, b64(k.private_pkcs8)]));
  for (const rv of v.resumptions) {
    const kv = v.keys.find((k) => k.name === rv.server_key);
    const server = { pkcs8: pkcs8.get(rv.server_key), fp: await serverFingerprint(parsePublicKey(b64(kv.public_spki))) };
    const now = BigInt(rv.now_ms);
    const lifetime = BigInt(rv.lifetime_s) * 1000n;
    const serverRandom = rv.server_random ? fromHex(rv.server_random) : new Uint8Array(32);
    let accepted = null;
    await run.check(`resumptions/${rv.name}/accept`, rv.error ?? "", async () => {
      const memory = new TicketReplayMemory();
      const accept = async () => {
        const q = parseResume(b64(rv.resume));
        const ticket = await checkResume(q, server, now);
        return acceptResume(q, ticket, memory, lifetime, now, serverRandom);
      };
      if (rv.error === "replay") {
        try {
          await accept();
        } catch (e) {
          throw new Error(`first acceptance of a replayed resume failed: ${e.message}`);
        }
      }
      accepted = await accept();
      const diffs = [];
      differ(diffs, "ticket key", await ticketKey(server.pkcs8, server.fp, ticketPeriod(now)), rv.ticket_key);
      differ(diffs, "ticket key period", ticketPeriod(now), rv.ticket_key_period);
      differ(diffs, "origin RS", await resumptionSecret(fromHex(rv.origin_secret), fromHex(rv.origin_session_id)), rv.resumption_secret);
      differ(diffs, "session ID", accepted.id, rv.session_id);
      differ(diffs, "secret", accepted.secret, rv.secret);
      differ(diffs, "client-to-server key", accepted.keys.c2s, rv.client_to_server_key);
      differ(diffs, "server-to-client key", accepted.keys.s2c, rv.server_to_client_key);
      differ(diffs, "next RS", accepted.nextRS, rv.next_resumption_secret);
      differ(diffs, "expiry", accepted.end.expiresMs, rv.expires_ms);
      differ(diffs, "answer", accepted.answer, b64(rv.answer));
      return diffs;
    });
    if (!accepted || rv.error) continue;
    await run.check(`resumptions/${rv.name}/device`, "", async () => {
      const s = await finishResume(b64(rv.resume), fromHex(rv.resumption_secret), b64(rv.answer), now);
      const diffs = [];
      differ(diffs, "device session ID", s.end.id, rv.session_id);
      differ(diffs, "device expiry", s.end.expiresMs, rv.expires_ms);
      return diffs;
    });
    await run.check(`resumptions/${rv.name}/next-ticket`, "", async () => {
      const t = await openTicket(b64(rv.next_ticket), await ticketKey(server.pkcs8, server.fp, ticketPeriod(now)));
      const diffs = [];
      differ(diffs, "period", t.period, rv.ticket_key_period);
      differ(diffs, "user", formatUserID(t.user), rv.ticket_user);
      differ(diffs, "device", toHex(t.device), rv.ticket_device);
      differ(diffs, "auth time", t.authTimeMs, rv.ticket_auth_time_ms);
      differ(diffs, "expiry", t.expiresMs, rv.ticket_expires_ms);
      differ(diffs, "RS", t.rs, rv.next_resumption_secret);
      return diffs;
    });
  }
}

async function checkURIs(run, v) {
  for (const uv of v.uris) {
    await run.check(`uris/${uv.kind}: ${uv.uri.slice(0, 60)}`, uv.error ?? "", async () => {
      const diffs = [];
      if (uv.kind === "contact") {
        const c = parseContactCard(uv.uri);
        differ(diffs, "server", c.server, uv.server);
        differ(diffs, "server fingerprint", fingerprintString(c.serverFP), uv.server_fingerprint);
        differ(diffs, "user", formatUserID(c.user), uv.user);
        differ(diffs, "identity fingerprint", fingerprintString(c.identity), uv.identity_fingerprint);
      } else {
        const inv = parseInvite(uv.uri);
        differ(diffs, "server", inv.server, uv.server);
        differ(diffs, "server fingerprint", fingerprintString(inv.serverFP), uv.server_fingerprint);
        differ(diffs, "token", inv.token, uv.token);
      }
      return diffs;
    });
  }
}

async function checkBlobs(run, v) {
  for (const bv of v.blobs) {
    await run.check(`blobs/${bv.name}`, bv.error ?? "", async () => {
      const plain = await decryptBlob(b64(bv.encrypted), fromHex(bv.key));
      const diffs = [];
      differ(diffs, "plaintext", plain, b64(bv.plaintext));
      return diffs;
    });
  }
}

// checkDerived checks rules that the vectors hold no case for, on inputs
// derived from the vectors: the expected results come from this document's
// rules (cited), not from the reference implementation. Each name starts
// with "derived/".
async function checkDerived(run, v) {
  const derived = (name, want, fn) => run.check(`derived/${name}`, want, async () => (await fn()) ?? []);

  // §8.2: the version byte comes before the size; zero IDs are malformed.
  const rv = v.revocations.find((r) => !r.error);
  if (rv) {
    const rev = b64(rv.data);
    const patched = (off, bytes) => {
      const out = rev.slice();
      out.set(bytes, off);
      return out;
    };
    await derived("revocation-version-2-truncated", "version", () => void parseRevocation(patched(0, [2]).subarray(0, rev.length - 1)));
    await derived("revocation-zero-user", "malformed", () => void parseRevocation(patched(2, new Uint8Array(USER_ID_SIZE))));
    await derived("revocation-zero-device", "malformed", () => void parseRevocation(patched(2 + USER_ID_SIZE, new Uint8Array(DEVICE_ID_SIZE))));
  }

  // §11.4, §11.6, §11.7: setup version before size; a client session is
  // confirmed once, and opens responses and pushes only once confirmed; a
  // method or path over 1024 bytes is too_large before anything else.
  const cv = v.channels.find((c) => !c.error && c.frames?.length);
  if (cv) {
    const setup = b64(cv.setup);
    const wrongVersion = setup.slice(0, setup.length - 1);
    wrongVersion[0] = 2;
    await derived("setup-version-2-truncated", "version", () => void parseChannelSetup(wrongVersion));
    const now = BigInt(cv.now_ms);
    const fresh = () => clientEnd(fromHex(cv.secret), fromHex(cv.session_id), parseChannelSetup(setup).time);
    const push = cv.frames.find((f) => f.kind === "push" && !f.error);
    const resp = cv.frames.find((f) => f.kind === "response" && !f.error);
    if (push) {
      await derived("channel-push-before-confirmation", "malformed", async () => void (await (await fresh()).open(PUSH, b64(push.frame), BigInt(push.now_ms))));
    }
    if (resp) {
      const kind = (path) => response(BigInt(resp.request_counter), resp.method, path);
      await derived("channel-response-before-confirmation", "malformed", async () => void (await (await fresh()).open(kind(resp.path), b64(resp.frame), BigInt(resp.now_ms))));
      const confirmed = async () => {
        const end = await fresh();
        await confirmSession(end, b64(cv.confirm), now);
        return end;
      };
      // 1025 bytes, opened after the session's end: too_large comes first.
      await derived("channel-path-of-1025-bytes", "too_large", async () => void (await (await confirmed()).open(kind("/".repeat(1025)), b64(resp.frame), BigInt(cv.expires_ms))));
      await derived("channel-path-of-1024-bytes", "decrypt", async () => void (await (await confirmed()).open(kind("/".repeat(1024)), b64(resp.frame), BigInt(resp.now_ms))));
      await derived("channel-method-of-1025-bytes", "too_large", async () => void (await (await confirmed()).open(response(0n, "M".repeat(1025), "/"), b64(resp.frame), BigInt(resp.now_ms))));
    }
    // The second confirmation is refused before it is looked at: as a replay
    // even when it is garbage and the session has ended.
    await derived("channel-second-confirmation", "replay", async () => {
      const end = await fresh();
      await confirmSession(end, b64(cv.confirm), now);
      await confirmSession(end, new Uint8Array(1), BigInt(cv.expires_ms));
    });
  }

  // §7: server URLs and user IDs, in URIs built from the vectors'.
  const inv = v.uris.find((u) => u.kind === "invite" && !u.error);
  if (inv) {
    const serverURLs = [
      ["HTTPS://Chat.Example.ORG//", "https://chat.example.org"],
      ["https://chat.example.org/a//b//", "https://chat.example.org/a//b"],
      ["https://chat.example.org:65535/%2F/", "https://chat.example.org:65535/%2F"],
      ["https://[2001:DB8::1]:8443/x", "https://[2001:db8::1]:8443/x"],
      ["https://chat.example.org#", "malformed"],
      ["https://chat.example.org/a\\b", "malformed"],
      ["https://chat.example.org/a b", "malformed"],
      ["https://chat.example.org/a\tb", "malformed"],
      ["https://chat.example.org:", "malformed"],
      ["https://chat.example.org:0", "malformed"],
      ["https://chat.example.org:08443", "malformed"],
      ["https://chat.example.org:65536", "malformed"],
      ["https://:8443", "malformed"],
      ["https:chat.example.org", "malformed"],
      ["https:///chat.example.org", "malformed"],
      ["https://[1.2.3.4]", "malformed"],
    ];
    for (const [url, want] of serverURLs) {
      const uri = `qrtalk:invite?v=1&s=${encodeURIComponent(url)}&sfp=${inv.server_fingerprint}&t=${inv.token}`;
      const error = want === "malformed" ? want : "";
      await derived(`server-url ${JSON.stringify(url)}`, error, () => {
        const diffs = [];
        differ(diffs, "server", parseInvite(uri).server, want);
        return diffs;
      });
    }
  }
  const card = v.uris.find((u) => u.kind === "contact" && !u.error);
  const k = card?.user.indexOf("k") ?? -1;
  if (k >= 0) {
    const contact = (user) => `qrtalk:contact?v=1&s=${encodeURIComponent(card.server)}&sfp=${card.server_fingerprint}&u=${encodeURIComponent(user)}&fp=${card.identity_fingerprint}`;
    const withK = (c) => card.user.slice(0, k) + c + card.user.slice(k + 1);
    await derived("user-id-ascii-capital-K", "", () => {
      const diffs = [];
      differ(diffs, "user", formatUserID(parseContactCard(contact(withK("K"))).user), card.user);
      return diffs;
    });
    // U+212A KELVIN SIGN lowercases to "k" by Unicode rules only (§4).
    await derived("user-id-kelvin-sign", "malformed", () => void parseContactCard(contact(withK("\u212a"))));
  }
}

async function main(path) {
  const { readFile } = await import("node:fs/promises");
  const v = JSON.parse(await readFile(path, "utf8"));
  const run = new Runner();
  // A vector file that lost a section would let every check pass.
  for (const section of ["keys", "certificates", "revocations", "envelopes", "channels", "uris", "blobs", "resumptions"]) {
    await run.check(`file/has-${section}`, "", async () => (v[section]?.length > 0 ? [] : ["section is missing or empty"]));
  }
  const keys = new Map();
  await checkKeys(run, v, keys);
  await checkCertificates(run, v, keys);
  await checkDeviceLists(run, v, keys);
  await checkEnvelopes(run, v, keys);
  await checkChannels(run, v, keys);
  await checkURIs(run, v);
  await checkBlobs(run, v);
  await checkResumptions(run, v);
  await checkDerived(run, v);
  console.log(`${run.passed} passed, ${run.failed} failed`);
  return run.failed === 0 ? 0 : 1;
}

const invokedDirectly = globalThis.process?.argv?.[1] && decodeURIComponent(new URL(import.meta.url).pathname) === process.argv[1];
if (invokedDirectly) {
  const path = process.argv[2];
  if (!subtle) {
    console.error(`check-vectors: this Node.js (${process.version}) has no globalThis.crypto.subtle; use Node 20 or later`);
    process.exit(2);
  }
  if (!path) {
    console.error("usage: node docs/check-vectors.mjs protocol/testdata/vectors.json");
    process.exit(2);
  }
  main(path).then(
    (code) => process.exit(code),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
