// primitives.js: the labels and cryptographic primitives of QRTalk protocol
// v1 (docs/PROTOCOL.md §1.3, §3.3, §3.4, §17.1, §18.1 and Appendix A), on
// WebCrypto only: RSA-PSS-SHA256 (salt 32) signatures, RSA-OAEP-SHA256 key
// wrapping with a label, AES-256-GCM, HKDF-SHA256, HMAC-SHA256, SHA-256 and
// random bytes.

import { fail } from "./errors.js";
import { utf8 } from "./wire.js";

export const subtle = globalThis.crypto?.subtle;
if (!subtle) throw new Error("qrtalk: WebCrypto (crypto.subtle) is not available; a browser needs a secure context (https)");

/** Labels (§3.3 and §17.1): every signature, wrapped key and hash is bound to one purpose. */
export const LABEL = Object.freeze({
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
  prov: "qrtalk/v1/provisioning",
  provMailbox: "qrtalk/v1/provisioning-mailbox",
  ticketKey: "qrtalk/v1/ticket-key",
  ticket: "qrtalk/v1/ticket",
  resume: "qrtalk/v1/resume",
  resumeBinder: "qrtalk/v1/resume-binder",
  resumeSecret: "qrtalk/v1/resume-secret",
  resumedSessionID: "qrtalk/v1/resumed-session-id",
});

/** Bytes of an RSA-3072 modulus, ciphertext or signature. */
export const KEY_SIZE = 384;
export const NONCE_SIZE = 12;
export const TAG_SIZE = 16;

/** n fresh random bytes. */
export function randomBytes(n) {
  const b = new Uint8Array(n);
  // getRandomValues fills at most 65536 bytes per call.
  for (let off = 0; off < n; off += 65536) globalThis.crypto.getRandomValues(b.subarray(off, Math.min(n, off + 65536)));
  return b;
}

export async function sha256(data) {
  return new Uint8Array(await subtle.digest("SHA-256", data));
}

const PSS = { name: "RSA-PSS", saltLength: 32 };

/** Sign(key, M): RSA-PSS over M (the full labeled input). key is a PrivateKey. */
export async function sign(privateKey, message) {
  return new Uint8Array(await subtle.sign(PSS, await privateKey.cryptoKey("sign"), message));
}

/** Verify(key, M, sig): bad_signature unless sig is 384 bytes and verifies. */
export async function verify(publicKey, message, sig) {
  if (sig.length !== KEY_SIZE) fail("bad_signature", `signature is ${sig.length} bytes, want ${KEY_SIZE}`);
  if (!(await subtle.verify(PSS, await publicKey.cryptoKey("verify"), sig, message))) fail("bad_signature");
}

/** Wrap(key, L, K): RSA-OAEP encryption of a short key under label L. */
export async function wrapKey(publicKey, label, key) {
  return new Uint8Array(await subtle.encrypt({ name: "RSA-OAEP", label }, await publicKey.cryptoKey("wrap"), key));
}

/**
 * Unwrap(key, L, C): C must be 384 bytes (malformed); a failed decryption
 * and a result of the wrong size are both just decrypt.
 */
export async function unwrapKey(privateKey, label, wrapped, size = 32) {
  if (wrapped.length !== KEY_SIZE) fail("malformed", `wrapped key is ${wrapped.length} bytes, want ${KEY_SIZE}`);
  const ck = await privateKey.cryptoKey("decrypt");
  let key;
  try {
    key = new Uint8Array(await subtle.decrypt({ name: "RSA-OAEP", label }, ck, wrapped));
  } catch {
    fail("decrypt");
  }
  if (key.length !== size) {
    key.fill(0);
    fail("decrypt");
  }
  return key;
}

/** Imports a 32-byte AES-256-GCM key, non-extractable. */
export async function aesKey(raw) {
  if (raw.length !== 32) throw new TypeError("AES-256 key must be 32 bytes");
  return subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

/** Seal(K, N, P, A): AES-256-GCM; K is 32 bytes or an AES CryptoKey. */
export async function gcmSeal(key, nonce, plaintext, aad) {
  const k = key instanceof Uint8Array ? await aesKey(key) : key;
  const params = { name: "AES-GCM", iv: nonce, tagLength: 128 };
  if (aad) params.additionalData = aad;
  return new Uint8Array(await subtle.encrypt(params, k, plaintext));
}

/** Open(K, N, C, A): decrypt on any failure. */
export async function gcmOpen(key, nonce, ciphertext, aad) {
  const k = key instanceof Uint8Array ? await aesKey(key) : key;
  const params = { name: "AES-GCM", iv: nonce, tagLength: 128 };
  if (aad) params.additionalData = aad;
  try {
    return new Uint8Array(await subtle.decrypt(params, k, ciphertext));
  } catch {
    fail("decrypt");
  }
}

/** HKDF(ikm, salt, info, 32): HKDF-SHA256, 32 bytes; info is a string or bytes. */
export async function hkdf32(ikm, salt, info) {
  const k = await subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info: typeof info === "string" ? utf8(info) : info }, k, 256));
}

/** HMAC(K, M): HMAC-SHA-256 with a 32-byte key (§18.1). */
export async function hmac(key, message) {
  const k = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, message));
}
