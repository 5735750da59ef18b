// keys.js: the RSA keys of QRTalk protocol v1 (docs/PROTOCOL.md §1.3, §5 and
// Appendix A): strict, canonical parsing of public keys (DER
// SubjectPublicKeyInfo, §5.1) and private keys (PKCS #8, §5.2), PEM, and
// keys made and held by WebCrypto.
//
// WebCrypto does not check what §5 requires (size 3072, e = 65537, one
// encoding per key), so this module parses the DER itself before any key
// reaches crypto.subtle. A WebCrypto key is fixed to one algorithm: a
// PublicKey imports itself once for RSA-PSS (verify) and once for RSA-OAEP
// (wrap), as needed; a PrivateKey holds a CryptoKey for each use it has.

import { fail } from "./errors.js";
import { checkBytes, concat, constantTimeEqual, decodeBase64Loose, fromBase64URL, fromHex, Reader, toBase64, utf8 } from "./wire.js";
import { subtle } from "./primitives.js";

export const KEY_BITS = 3072;
export const KEY_EXPONENT = 65537;
/** Bytes of a modulus, and so of every RSA ciphertext and signature. */
export const KEY_SIZE = KEY_BITS / 8;
export const MAX_PUBLIC_KEY_DER = 1024;
export const MAX_PRIVATE_KEY_DER = 4096;

// The canonical DER of a v1 public key is prefix || modulus || suffix (§5.1).
const SPKI_PREFIX = fromHex("308201a2300d06092a864886f70d01010105000382018f003082018a0282018100");
const SPKI_SUFFIX = fromHex("0203010001");
const RSA_ENCRYPTION_OID = fromHex("2a864886f70d010101");
const PKCS8_HEAD = fromHex("020100300d06092a864886f70d0101010500"); // version 0, rsaEncryption, NULL

// WebCrypto algorithms for each use of a key (Appendix A).
const ALGORITHM = {
  verify: { name: "RSA-PSS", hash: "SHA-256" },
  sign: { name: "RSA-PSS", hash: "SHA-256" },
  wrap: { name: "RSA-OAEP", hash: "SHA-256" },
  decrypt: { name: "RSA-OAEP", hash: "SHA-256" },
};

// ------------------------------------------------------------------- DER

// derElement reads one element of the given tag with a minimal definite
// length (at most 2 length bytes: nothing here is larger) and returns its contents.
function derElement(r, tag) {
  if (r.u8() !== tag) fail("malformed", `DER: expected tag ${tag}`);
  let len = r.u8();
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 2) fail("malformed", "DER: unsupported length");
    const p = r.fixed(n);
    len = n === 1 ? p[0] : (p[0] << 8) | p[1];
    if (p[0] === 0 || len < 0x80) fail("malformed", "DER: length is not minimal");
  }
  return r.fixed(len);
}

// derPositive reads a positive, minimally encoded INTEGER and returns its
// magnitude (without the leading zero byte).
function derPositive(r) {
  const p = derElement(r, 0x02);
  if (p.length === 0 || p[0] & 0x80) fail("malformed", "DER: integer is not positive");
  if (p.length > 1 && p[0] === 0 && !(p[1] & 0x80)) fail("malformed", "DER: integer is not minimal");
  const mag = p[0] === 0 ? p.subarray(1) : p;
  if (mag.length === 0) fail("malformed", "DER: integer is zero");
  return mag;
}

function derHeader(tag, length) {
  if (length < 0x80) return Uint8Array.of(tag, length);
  if (length < 0x100) return Uint8Array.of(tag, 0x81, length);
  return Uint8Array.of(tag, 0x82, length >> 8, length & 0xff);
}

function derInteger(mag) {
  let i = 0;
  while (i < mag.length - 1 && mag[i] === 0) i++;
  mag = mag.subarray(i);
  const body = mag[0] & 0x80 ? concat(Uint8Array.of(0), mag) : mag;
  return concat(derHeader(0x02, body.length), body);
}

const bitLength = (mag) => 8 * mag.length - Math.clz32(mag[0]) + 24;
const big = (mag) => mag.reduce((v, b) => (v << 8n) | BigInt(b), 0n);

function checkPublicNumbers(n, e) {
  if (e.length > 8 || (e.length === 8 && e[0] & 0x80)) fail("malformed", "public exponent is too large");
  if (bitLength(n) !== KEY_BITS) fail("key_size", `got ${bitLength(n)} bits`);
  if (big(e) !== BigInt(KEY_EXPONENT)) fail("key_exponent", `got ${big(e)}`);
}

// --------------------------------------------------------------- PEM (§5.1)

// Unicode White_Space: what may surround a PEM block.
const WHITE_SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;

// decodePEM returns the contents of the one PEM block of type in text, by
// the rules of §5.1: exactly one block, without headers, whose BEGIN line
// starts the input or a line, with nothing but white space around it. The
// lines of the block are those of RFC 7468 as Go's encoding/pem reads them:
// trailing spaces, tabs and CRs ignored, base64 with any spaces, tabs and
// line breaks, its unused bits ignored.
function decodePEM(text, type, maxDER) {
  if (typeof text !== "string") text = new TextDecoder().decode(checkBytes(text, "PEM"));
  const size = utf8(text).length;
  if (size > 2 * maxDER) fail("too_large", `PEM input is ${size} bytes`);
  const bad = (why) => fail("malformed", `PEM: ${why}`);
  const first = text.startsWith("-----BEGIN ") ? 0 : text.indexOf("\n-----BEGIN ") + 1;
  if (first === 0 && !text.startsWith("-----BEGIN ")) bad("no PEM block found");
  if (text.indexOf("-----BEGIN") !== first || text.indexOf("-----BEGIN", first + 1) >= 0) bad("data around the PEM block");
  if (!WHITE_SPACE.test(text.slice(0, first))) bad("data before the PEM block");
  const lineEnd = (i) => (text.indexOf("\n", i) < 0 ? text.length : text.indexOf("\n", i));
  const trimLine = (l) => l.replace(/[ \t\r]+$/, "");
  const typeEnd = lineEnd(first);
  const typeLine = trimLine(text.slice(first, typeEnd));
  if (typeEnd === text.length || !typeLine.endsWith("-----")) bad("no PEM block found");
  if (typeLine !== `-----BEGIN ${type}-----`) bad(`block is not of type ${type}`);
  const body = typeEnd + 1;
  const end = text.startsWith("-----END ", body) ? body : text.indexOf("\n-----END ", body) + 1;
  if (end === 0 && !text.startsWith("-----END ", body)) bad("block is not terminated");
  const data = text.slice(body, Math.max(body, end - 1));
  if (data.includes(":")) bad("block has headers");
  const endLineEnd = lineEnd(end);
  if (trimLine(text.slice(end, endLineEnd)) !== `-----END ${type}-----`) bad("block is not terminated");
  if (!WHITE_SPACE.test(text.slice(endLineEnd + 1))) bad("data after the PEM block");
  const der = decodeBase64Loose(data.replace(/[ \t\r\n]/g, ""));
  if (der === null) bad("block is not base64");
  return der;
}

function encodePEM(type, der) {
  const b64 = toBase64(der);
  let lines = "";
  for (let i = 0; i < b64.length; i += 64) lines += b64.slice(i, i + 64) + "\n";
  return `-----BEGIN ${type}-----\n${lines}-----END ${type}-----\n`;
}

// ------------------------------------------------------------ public keys

const token = Symbol("qrtalk keys");

/**
 * A validated v1 RSA public key (3072 bits, e = 65537). Make one with
 * parsePublicKey; it is immutable.
 */
export class PublicKey {
  #der;
  #cryptoKeys = new Map();

  constructor(t, der) {
    if (t !== token) throw new TypeError("use parsePublicKey to make a PublicKey");
    this.#der = der;
  }

  /** The canonical DER SubjectPublicKeyInfo (422 bytes), a copy. */
  bytes() {
    return this.#der.slice();
  }

  /** The key as a PEM block of type PUBLIC KEY. */
  pem() {
    return encodePEM("PUBLIC KEY", this.#der);
  }

  /** Reports whether other is the same key, in constant time. */
  equal(other) {
    return other instanceof PublicKey && constantTimeEqual(this.#der, other.#der);
  }

  /** The WebCrypto key for use "verify" (RSA-PSS) or "wrap" (RSA-OAEP), imported once. */
  cryptoKey(use) {
    if (use !== "verify" && use !== "wrap") throw new TypeError(`a public key cannot ${use}`);
    let k = this.#cryptoKeys.get(use);
    if (!k) {
      k = subtle.importKey("spki", this.#der, ALGORITHM[use], true, [use === "wrap" ? "encrypt" : "verify"]);
      this.#cryptoKeys.set(use, k);
    }
    return k;
  }

  // A generated key's public CryptoKey, to reuse instead of importing.
  static _withCryptoKey(pub, use, ck) {
    pub.#cryptoKeys.set(use, Promise.resolve(ck));
    return pub;
  }
}

/**
 * Parses a DER SubjectPublicKeyInfo holding a v1 key, by the steps of
 * §5.1 in order: too_large, malformed, key_size, key_exponent, then
 * malformed unless the bytes are the canonical encoding.
 */
export function parsePublicKey(der) {
  checkBytes(der, "public key");
  if (der.length > MAX_PUBLIC_KEY_DER) fail("too_large", `public key is ${der.length} bytes, at most ${MAX_PUBLIC_KEY_DER}`);
  const r = new Reader(der, "public key");
  const spki = new Reader(derElement(r, 0x30), "public key");
  r.finish();
  const alg = new Reader(derElement(spki, 0x30), "public key");
  if (!constantTimeEqual(derElement(alg, 0x06), RSA_ENCRYPTION_OID)) fail("malformed", "public key is not an RSA key");
  if (derElement(alg, 0x05).length !== 0) fail("malformed", "RSA parameters are not NULL");
  alg.finish();
  const bits = new Reader(derElement(spki, 0x03), "public key");
  spki.finish();
  if (bits.u8() !== 0) fail("malformed", "public key BIT STRING has unused bits");
  const rsa = new Reader(derElement(bits, 0x30), "public key");
  bits.finish();
  const n = derPositive(rsa);
  const e = derPositive(rsa);
  rsa.finish();
  checkPublicNumbers(n, e);
  const canonical = concat(SPKI_PREFIX, n, SPKI_SUFFIX);
  if (!constantTimeEqual(der, canonical)) fail("malformed", "public key encoding is not canonical DER");
  return new PublicKey(token, canonical);
}

/** Parses a PEM block of type PUBLIC KEY, with nothing but white space around it. */
export function parsePublicKeyPEM(pem) {
  return parsePublicKey(decodePEM(pem, "PUBLIC KEY", MAX_PUBLIC_KEY_DER));
}

// ----------------------------------------------------------- private keys

// parsePKCS8 checks that der is a canonical PKCS #8 v1 RSA key (§5.2) and
// returns its modulus.
function parsePKCS8(der) {
  if (der.length > MAX_PRIVATE_KEY_DER) fail("too_large", `private key is ${der.length} bytes, at most ${MAX_PRIVATE_KEY_DER}`);
  const r = new Reader(der, "private key");
  const info = new Reader(derElement(r, 0x30), "private key");
  r.finish();
  if (!constantTimeEqual(info.fixed(Math.min(PKCS8_HEAD.length, info.remaining)), PKCS8_HEAD)) fail("malformed", "not a version 0 PKCS #8 RSA key");
  const octets = new Reader(derElement(info, 0x04), "private key");
  info.finish();
  const rsa = new Reader(derElement(octets, 0x30), "private key");
  octets.finish();
  const version = derElement(rsa, 0x02);
  if (version.length !== 1 || version[0] !== 0) fail("malformed", "RSAPrivateKey version is not 0 (two primes)");
  const ints = [];
  for (let i = 0; i < 8; i++) ints.push(derPositive(rsa));
  rsa.finish();
  const [n, e, d, p, q, dP, dQ, qInv] = ints;
  const [N, E, D, P, Q, DP, DQ, QI] = [n, e, d, p, q, dP, dQ, qInv].map(big);
  // The consistency rules of §5.2, those of Go's crypto/rsa.
  const half = Math.floor(bitLength(n) / 2);
  const consistent =
    P * Q === N &&
    D < N &&
    E % 2n === 1n &&
    E < 1n << 31n &&
    DP < P - 1n &&
    DQ < Q - 1n &&
    (E * DP) % (P - 1n) === 1n &&
    (E * DQ) % (Q - 1n) === 1n &&
    D % (P - 1n) === DP &&
    D % (Q - 1n) === DQ &&
    QI < P &&
    (QI * Q) % P === 1n &&
    (P > Q ? P - Q : Q - P) >= 1n << BigInt(half - 100) &&
    D >= 1n << BigInt(half);
  if (!consistent) fail("malformed", "inconsistent RSA private key");
  if (!constantTimeEqual(der, encodePKCS8(ints))) fail("malformed", "private key encoding is not canonical PKCS #8");
  // Size and exponent last: only a canonical, consistent key gets key_size or key_exponent (§5.2).
  checkPublicNumbers(n, e);
  return n;
}

// encodePKCS8 is the canonical PKCS #8 of the eight RSA integers.
function encodePKCS8(ints) {
  const key = concat(Uint8Array.of(0x02, 0x01, 0x00), ...ints.map(derInteger));
  const seq = concat(derHeader(0x30, key.length), key);
  const body = concat(PKCS8_HEAD, derHeader(0x04, seq.length), seq);
  return concat(derHeader(0x30, body.length), body);
}

/**
 * A v1 RSA private key held by WebCrypto, with its public half. It can do
 * what its CryptoKeys allow: "sign" (RSA-PSS) and/or "decrypt" (RSA-OAEP).
 * An extractable key can do both (it re-imports itself) and can be exported
 * (bytes()); a non-extractable one never leaves WebCrypto.
 */
export class PrivateKey {
  #public;
  #keys; // use -> Promise<CryptoKey>
  #extractable;

  constructor(t, publicKey, keys, extractable) {
    if (t !== token) throw new TypeError("use generateKey, parsePrivateKey or privateKeyFromStorage to make a PrivateKey");
    this.#public = publicKey;
    this.#keys = new Map(Object.entries(keys).filter(([, v]) => v).map(([u, v]) => [u, Promise.resolve(v)]));
    this.#extractable = extractable;
  }

  /** The public half. */
  public() {
    return this.#public;
  }

  /** Whether bytes() may export the key (only the identity key, for provisioning). */
  get extractable() {
    return this.#extractable;
  }

  /** Whether the key can do use ("sign" or "decrypt"). */
  can(use) {
    return this.#keys.has(use) || (this.#extractable && (use === "sign" || use === "decrypt"));
  }

  /** The WebCrypto key for use "sign" (RSA-PSS) or "decrypt" (RSA-OAEP). */
  cryptoKey(use) {
    let k = this.#keys.get(use);
    if (k) return k;
    if (!this.can(use)) throw new TypeError(`this private key cannot ${use} (WebCrypto fixes a key to one algorithm)`);
    k = (async () => {
      const jwk = await subtle.exportKey("jwk", await this.#any());
      delete jwk.alg;
      delete jwk.key_ops;
      return subtle.importKey("jwk", jwk, ALGORITHM[use], false, [use]);
    })();
    this.#keys.set(use, k);
    return k;
  }

  #any() {
    return this.#keys.values().next().value;
  }

  /**
   * The canonical PKCS #8 DER of the key (Go's Bytes). Only an extractable
   * key has one; it is for provisioning alone: never store or log it.
   */
  async bytes() {
    if (!this.#extractable) throw new TypeError("this private key is not extractable");
    const jwk = await subtle.exportKey("jwk", await this.#any());
    const ints = ["n", "e", "d", "p", "q", "dp", "dq", "qi"].map((f) => fromBase64URL(jwk[f], "JWK"));
    const der = encodePKCS8(ints);
    parsePKCS8(der); // one encoding, consistent: as any parsed key
    return der;
  }

  /** The key as a PEM block of type PRIVATE KEY (extractable keys only). */
  async pem() {
    return encodePEM("PRIVATE KEY", await this.bytes());
  }

  /**
   * A structured-cloneable object for IndexedDB: the public key's DER and
   * the CryptoKeys (which stay non-extractable if they were). Turn it back
   * into a PrivateKey with privateKeyFromStorage.
   */
  async toStorage() {
    const out = { publicKey: this.#public.bytes(), extractable: this.#extractable, sign: null, decrypt: null };
    for (const use of ["sign", "decrypt"]) if (this.#keys.has(use)) out[use] = await this.#keys.get(use);
    return out;
  }
}

/**
 * Parses a canonical PKCS #8 v1 private key (§5.2) and imports it into
 * WebCrypto for the given uses (default both). extractable (default false)
 * says whether bytes() may export it again.
 */
export async function parsePrivateKey(der, { extractable = false, uses = ["sign", "decrypt"] } = {}) {
  checkBytes(der, "private key");
  const n = parsePKCS8(der);
  const pub = new PublicKey(token, concat(SPKI_PREFIX, n, SPKI_SUFFIX));
  const keys = {};
  for (const use of uses) {
    if (use !== "sign" && use !== "decrypt") throw new TypeError(`a private key cannot ${use}`);
    keys[use] = await subtle.importKey("pkcs8", der, ALGORITHM[use], extractable, [use]);
  }
  return new PrivateKey(token, pub, keys, extractable);
}

/** Parses a PEM block of type PRIVATE KEY (PKCS #8); options as parsePrivateKey. */
export function parsePrivateKeyPEM(pem, options) {
  return parsePrivateKey(decodePEM(pem, "PRIVATE KEY", MAX_PRIVATE_KEY_DER), options);
}

/** Rebuilds a PrivateKey from what toStorage returned. */
export function privateKeyFromStorage(o) {
  if (!o || !(o.publicKey instanceof Uint8Array)) throw new TypeError("not a stored private key");
  const pub = parsePublicKey(o.publicKey);
  for (const use of ["sign", "decrypt"]) {
    const ck = o[use];
    if (!ck) continue;
    const a = ck.algorithm;
    if (ck.type !== "private" || a.name !== ALGORITHM[use].name || a.modulusLength !== KEY_BITS || !ck.usages.includes(use)) {
      throw new TypeError(`stored ${use} key is not an RSA-3072 ${ALGORITHM[use].name} private key`);
    }
  }
  if (!o.sign && !o.decrypt) throw new TypeError("stored private key has no CryptoKey");
  return new PrivateKey(token, pub, { sign: o.sign ?? null, decrypt: o.decrypt ?? null }, Boolean(o.extractable));
}

/**
 * Generates a v1 key pair for use "sign" (RSA-PSS: identity and
 * authentication keys) or "decrypt" (RSA-OAEP: device encryption keys).
 * The private key is non-extractable unless extractable is true.
 */
export async function generateKey(use, { extractable = false } = {}) {
  if (use !== "sign" && use !== "decrypt") throw new TypeError(`cannot generate a key to ${use}`);
  const pubUse = use === "sign" ? "verify" : "wrap";
  const pair = await subtle.generateKey(
    { ...ALGORITHM[use], modulusLength: KEY_BITS, publicExponent: Uint8Array.of(1, 0, 1) },
    extractable,
    use === "sign" ? ["sign", "verify"] : ["encrypt", "decrypt"],
  );
  const pub = parsePublicKey(new Uint8Array(await subtle.exportKey("spki", pair.publicKey)));
  PublicKey._withCryptoKey(pub, pubUse, pair.publicKey);
  return new PrivateKey(token, pub, { [use]: pair.privateKey }, extractable);
}

/**
 * Generates a user's identity key (RSA-PSS). Only an extractable identity
 * key can be sent to a new device when linking it (provisioning).
 */
export function generateIdentityKey({ extractable = false } = {}) {
  return generateKey("sign", { extractable });
}

/**
 * Generates a device's two keys, both non-extractable: encryption
 * (RSA-OAEP, message keys are wrapped to it) and auth (RSA-PSS, it signs
 * the channel setup).
 */
export async function generateDeviceKeys() {
  const [encryption, auth] = await Promise.all([generateKey("decrypt"), generateKey("sign")]);
  return { encryption, auth };
}
