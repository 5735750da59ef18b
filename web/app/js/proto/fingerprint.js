// fingerprint.js: fingerprints of QRTalk protocol v1 (docs/PROTOCOL.md §6):
// SHA-256 of a labeled canonical public key, shown as 43 base64url
// characters (in URIs) or as 40 digits read aloud.

import { fail } from "./errors.js";
import { checkBytes, constantTimeEqual, fromBase64URL, labeled, toBase64URL, utf8 } from "./wire.js";
import { LABEL, sha256 } from "./primitives.js";
import { PublicKey } from "./keys.js";

export const FINGERPRINT_SIZE = 32;

/** A 32-byte fingerprint. Immutable; make one with identityFingerprint, serverFingerprint or parseFingerprint. */
export class Fingerprint {
  #b;

  /** Wraps 32 bytes (copied). */
  constructor(bytes) {
    checkBytes(bytes, "fingerprint");
    if (bytes.length !== FINGERPRINT_SIZE) throw new TypeError(`fingerprint must be ${FINGERPRINT_SIZE} bytes`);
    this.#b = bytes.slice();
  }

  /** The 32 bytes, a copy. */
  bytes() {
    return this.#b.slice();
  }

  /** Unpadded base64url, 43 characters: the form in qrtalk: URIs. */
  toString() {
    return toBase64URL(this.#b);
  }

  toJSON() {
    return this.toString();
  }

  /**
   * The form people read aloud: 40 digits in 8 groups of 5; group i is the
   * big-endian u32 of bytes 4i..4i+3 modulo 100000.
   */
  numeric() {
    const view = new DataView(this.#b.buffer, this.#b.byteOffset, FINGERPRINT_SIZE);
    const groups = [];
    for (let i = 0; i < 8; i++) groups.push(String(view.getUint32(4 * i) % 100000).padStart(5, "0"));
    return groups.join(" ");
  }

  /** Reports whether other is the same fingerprint, in constant time. */
  equal(other) {
    return other instanceof Fingerprint && constantTimeEqual(this.#b, other.#b);
  }

  /**
   * Reports whether typed, a numeric fingerprint as a person typed it
   * (spaces, '-', tabs and newlines between digits), is this one; any other
   * character means no match. Constant-time in the digits.
   */
  matchesNumeric(typed) {
    if (typeof typed !== "string" || /[^0-9 \t\n-]/.test(typed)) return false;
    return constantTimeEqual(utf8(typed.replace(/[ \t\n-]/g, "")), utf8(this.numeric().replace(/ /g, "")));
  }
}

function keyDER(pub) {
  if (!(pub instanceof PublicKey)) throw new TypeError("fingerprint of something that is not a PublicKey");
  return pub.bytes();
}

/** The fingerprint of a user's identity key (async: SHA-256 is WebCrypto's). */
export async function identityFingerprint(pub) {
  return new Fingerprint(await sha256(labeled(LABEL.idFP, keyDER(pub))));
}

/** The fingerprint of a server's key; its label differs from a user's. */
export async function serverFingerprint(pub) {
  return new Fingerprint(await sha256(labeled(LABEL.serverFP, keyDER(pub))));
}

/** Parses the 43-character base64url form; malformed otherwise. */
export function parseFingerprint(s) {
  if (typeof s !== "string" || s.length !== 43) fail("malformed", "fingerprint must be 43 base64url characters");
  return new Fingerprint(fromBase64URL(s, "fingerprint"));
}
