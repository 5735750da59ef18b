// protocol.js: the SDK's one door to the protocol module (../proto/), with
// the few helpers the SDK needs on top of it. Everything cryptographic is
// done there, on WebCrypto; nothing here is a primitive.

export * from '../proto/index.js';
import { constantTimeEqual, ContactCard, Fingerprint } from '../proto/index.js';

/** concat joins byte strings. */
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

/** bytesEqual compares byte strings in time that depends only on their lengths. */
export const bytesEqual = (a, b) => a instanceof Uint8Array && b instanceof Uint8Array && constantTimeEqual(a, b);

/** fingerprintEqual compares two Fingerprints in constant time. */
export const fingerprintEqual = (a, b) => a instanceof Fingerprint && a.equal(b);
export const fingerprintString = (f) => f.toString();
export const fingerprintNumeric = (f) => f.numeric();
export const matchesNumeric = (f, typed) => f.matchesNumeric(typed);

/** contactCardURI is the qrtalk:contact text of a user (server, serverFP, user, identity fingerprint). */
export const contactCardURI = (o) => new ContactCard(o).uri();
