// cert.js: device certificates, revocations and device lists of QRTalk
// protocol v1 (docs/PROTOCOL.md §8): an identity key vouching for a device
// (user ID, device ID, its encryption and authentication keys, a time) or
// revoking it, and the check of a whole device list against a pinned key.
//
// Times are Unix milliseconds (Numbers); the wire carries whole seconds, so
// a time given to certifyDevice or revokeDevice is rounded down to a second.

import { fail, withContext, withContextSync } from "./errors.js";
import { checkBytes, concat, i64, labeled, Reader, readHeader, u8, var16, VERSION } from "./wire.js";
import { KEY_SIZE, LABEL, sign, verify } from "./primitives.js";
import { deviceIDBytes, deviceIDString, DEVICE_ID_SIZE, userIDBytes, userIDString, USER_ID_SIZE } from "./ids.js";
import { MAX_PUBLIC_KEY_DER, parsePublicKey, PrivateKey, PublicKey } from "./keys.js";

const TYPE_CERT = 1;
const TYPE_REVOCATION = 2;
/** The largest possible encoding of a certificate (1266 bytes with v1 keys). */
export const MAX_CERT_SIZE = 2 + USER_ID_SIZE + DEVICE_ID_SIZE + 8 + 2 * (2 + MAX_PUBLIC_KEY_DER) + KEY_SIZE;
/** The exact size of a revocation. */
export const REVOCATION_SIZE = 2 + USER_ID_SIZE + DEVICE_ID_SIZE + 8 + KEY_SIZE;

const seconds = (ms) => BigInt(Math.floor(ms / 1000));

function checkTime(ms, what) {
  if (typeof ms !== "number" || !Number.isSafeInteger(Math.floor(ms))) throw new TypeError(`${what} must be Unix milliseconds (a Number)`);
}

function checkSigner(identity) {
  if (!(identity instanceof PrivateKey)) throw new TypeError("identity must be a PrivateKey");
}

/**
 * A device certificate: fields user, device (ID text), created (Unix ms,
 * whole seconds), encryptionKey and authKey (PublicKeys). Parsing does not
 * make it trustworthy: verify it with the pinned identity key.
 */
export class DeviceCert {
  #raw;
  #tbs;
  #sig;

  constructor(raw, tbsLength, fields) {
    this.#raw = raw;
    this.#tbs = raw.subarray(0, tbsLength);
    this.#sig = raw.subarray(tbsLength);
    Object.assign(this, fields);
    Object.freeze(this);
  }

  /** The certificate's encoding (a copy). */
  bytes() {
    return this.#raw.slice();
  }

  /** Checks the signature under the pinned identity key: bad_signature otherwise. */
  async verify(identity) {
    await withContext(`device certificate ${this.user}/${this.device}`, () => verify(identity, labeled(LABEL.cert, this.#tbs), this.#sig));
  }
}

/** Signs a certificate for a device with the user's identity key. */
export async function certifyDevice(identity, user, device, encryptionKey, authKey, created) {
  checkSigner(identity);
  checkTime(created, "created");
  const u = userIDBytes(user);
  const d = deviceIDBytes(device);
  if (!(encryptionKey instanceof PublicKey) || !(authKey instanceof PublicKey)) fail("malformed", "missing device key");
  const tbs = concat(u8(VERSION), u8(TYPE_CERT), u, d, i64(seconds(created)), var16(encryptionKey.bytes()), var16(authKey.bytes()));
  const raw = concat(tbs, await sign(identity, labeled(LABEL.cert, tbs)));
  return parseDeviceCert(raw);
}

/** Parses a certificate (§8.1, in the order of its parsing steps) without verifying it. */
export function parseDeviceCert(data) {
  checkBytes(data, "device certificate");
  if (data.length > MAX_CERT_SIZE) fail("too_large", `device certificate is ${data.length} bytes`);
  const raw = data.slice();
  const r = new Reader(raw, "device certificate");
  readHeader(r, TYPE_CERT, "device certificate");
  const user = r.fixed(USER_ID_SIZE);
  const device = r.fixed(DEVICE_ID_SIZE);
  const created = r.i64();
  const encDER = r.var16(MAX_PUBLIC_KEY_DER);
  const authDER = r.var16(MAX_PUBLIC_KEY_DER);
  const tbsLength = r.off;
  r.fixed(KEY_SIZE);
  r.finish();
  if (user.every((b) => b === 0) || device.every((b) => b === 0)) fail("malformed", "device certificate has a zero ID");
  const encryptionKey = withContextSync("device certificate encryption key", () => parsePublicKey(encDER));
  const authKey = withContextSync("device certificate authentication key", () => parsePublicKey(authDER));
  return new DeviceCert(raw, tbsLength, {
    user: userIDString(user),
    device: deviceIDString(device),
    created: Number(created) * 1000,
    encryptionKey,
    authKey,
  });
}

/** A revocation: fields user, device (ID text), revoked (Unix ms, whole seconds). */
export class Revocation {
  #raw;

  constructor(raw, fields) {
    this.#raw = raw;
    Object.assign(this, fields);
    Object.freeze(this);
  }

  bytes() {
    return this.#raw.slice();
  }

  /** Checks the signature under the pinned identity key: bad_signature otherwise. */
  async verify(identity) {
    const tbs = this.#raw.subarray(0, REVOCATION_SIZE - KEY_SIZE);
    const sig = this.#raw.subarray(REVOCATION_SIZE - KEY_SIZE);
    await withContext(`revocation of ${this.user}/${this.device}`, () => verify(identity, labeled(LABEL.revoke, tbs), sig));
  }
}

/** Signs a revocation of a device, from the time at on, with the identity key. */
export async function revokeDevice(identity, user, device, at) {
  checkSigner(identity);
  checkTime(at, "at");
  const tbs = concat(u8(VERSION), u8(TYPE_REVOCATION), userIDBytes(user), deviceIDBytes(device), i64(seconds(at)));
  return parseRevocation(concat(tbs, await sign(identity, labeled(LABEL.revoke, tbs))));
}

/** Parses a revocation (§8.2): the version byte first, then the exact size. */
export function parseRevocation(data) {
  checkBytes(data, "revocation");
  if (data.length > 0 && data[0] !== VERSION) fail("version", `revocation version ${data[0]}`);
  if (data.length !== REVOCATION_SIZE) fail("malformed", `revocation must be ${REVOCATION_SIZE} bytes, got ${data.length}`);
  const raw = data.slice();
  const r = new Reader(raw, "revocation");
  readHeader(r, TYPE_REVOCATION, "revocation");
  const user = r.fixed(USER_ID_SIZE);
  const device = r.fixed(DEVICE_ID_SIZE);
  const revoked = r.i64();
  r.fixed(KEY_SIZE);
  r.finish();
  if (user.every((b) => b === 0) || device.every((b) => b === 0)) fail("malformed", "revocation has a zero ID");
  return new Revocation(raw, { user: userIDString(user), device: deviceIDString(device), revoked: Number(revoked) * 1000 });
}

/**
 * Checks a user's device list as fetched from the server against the
 * identity key the client pinned (§8.3) and returns the certificates of
 * the devices not revoked, in order. One bad entry fails the whole list.
 */
export async function verifyDeviceList(identity, user, certs, revocations) {
  user = userIDString(userIDBytes(user));
  const revoked = new Set();
  for (const data of revocations) {
    const v = parseRevocation(data);
    if (v.user !== user) fail("mismatch", `revocation for user ${v.user} in the list of ${user}`);
    await v.verify(identity);
    revoked.add(v.device);
  }
  const out = [];
  const seen = new Set();
  for (const data of certs) {
    const c = parseDeviceCert(data);
    if (c.user !== user) fail("mismatch", `certificate for user ${c.user} in the list of ${user}`);
    await c.verify(identity);
    if (seen.has(c.device)) fail("malformed", `device ${c.device} listed twice`);
    seen.add(c.device);
    if (!revoked.has(c.device)) out.push(c);
  }
  return out;
}
