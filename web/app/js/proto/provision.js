// provision.js: linking a device by QR code (provisioning) in QRTalk protocol
// v1 (docs/PROTOCOL.md §17): the link code (§17.2), its mailboxes (§17.3)
// and keys (§17.4), and both roles' messages (§17.5), opened in the order
// of §17.6. The existing device (A) makes the code, opens the request and
// seals the response; the new device (B) parses the code, seals the request
// and opens the response, which carries the identity key (private).

import { fail, withContext, withContextSync } from "./errors.js";
import { checkBytes, concat, fromBase64URL, isZero, labeled, Reader, toBase64URL, toHex, u8, var16, VERSION } from "./wire.js";
import { gcmOpen, gcmSeal, hkdf32, LABEL, NONCE_SIZE, randomBytes, sha256, TAG_SIZE } from "./primitives.js";
import { deviceIDBytes, deviceIDString, DEVICE_ID_SIZE, userIDBytes, userIDString, USER_ID_SIZE } from "./ids.js";
import { MAX_PRIVATE_KEY_DER, MAX_PUBLIC_KEY_DER, parsePrivateKey, parsePublicKey, PrivateKey, PublicKey } from "./keys.js";
import { Fingerprint, parseFingerprint } from "./fingerprint.js";
import { checkServerURL, parseURI, queryEscape } from "./uri.js";
import { DeviceCert, MAX_CERT_SIZE, parseDeviceCert } from "./cert.js";

export const LINK_MAILBOX_SIZE = 16;
export const LINK_SECRET_SIZE = 32;
/** How long a link code is good for (10 minutes, in ms). */
export const LINK_LIFETIME = 10 * 60 * 1000;

const TYPE_REQUEST = 7;
const TYPE_RESPONSE = 8;
const HEADER_SIZE = 2 + NONCE_SIZE;
const MAX_REQUEST_PLAIN = DEVICE_ID_SIZE + 2 * (2 + MAX_PUBLIC_KEY_DER);
const MAX_RESPONSE_PLAIN = USER_ID_SIZE + 2 + MAX_PRIVATE_KEY_DER + 2 + MAX_CERT_SIZE;
export const MAX_LINK_MESSAGE_SIZE = HEADER_SIZE + MAX_RESPONSE_PLAIN + TAG_SIZE;
export const MIN_LINK_MESSAGE_SIZE = HEADER_SIZE + TAG_SIZE;

/** Checks a mailbox's text form (32 lowercase hex characters, not zero) and returns it. */
export function parseLinkMailbox(s) {
  if (typeof s !== "string" || !/^[0-9a-f]{32}$/.test(s) || /^0+$/.test(s)) fail("malformed", "provisioning mailbox must be 32 lowercase hexadecimal characters, not zero");
  return s;
}

function fixedSecret(b, size, what) {
  checkBytes(b, what);
  if (b.length !== size || isZero(b)) fail("malformed", `${what} must be ${size} bytes, not all zero`);
  return b.slice();
}

/**
 * A link code: server (canonical URL), serverFP (Fingerprint), user (ID
 * text), and the mailbox and secret, which stay inside the object: its
 * string and JSON forms hide them, and only uri() (the QR code) shows them.
 */
export class LinkCode {
  #mailbox;
  #secret;

  constructor({ server, serverFP, user, mailbox, secret }) {
    if (!(serverFP instanceof Fingerprint)) throw new TypeError("LinkCode serverFP must be a Fingerprint");
    this.server = checkServerURL(server);
    this.serverFP = serverFP;
    this.user = userIDString(userIDBytes(user));
    this.#mailbox = fixedSecret(mailbox, LINK_MAILBOX_SIZE, "link mailbox");
    this.#secret = fixedSecret(secret, LINK_SECRET_SIZE, "link secret");
    Object.freeze(this);
  }

  /** The code as a qrtalk:link URI, to show as a QR code. It holds the secret: do not log it. */
  uri() {
    return `qrtalk:link?v=1&s=${queryEscape(this.server)}&sfp=${this.serverFP}&u=${this.user}&m=${toBase64URL(this.#mailbox)}&k=${toBase64URL(this.#secret)}`;
  }

  toString() {
    return `link code for user ${this.user} on ${this.server} (mailbox and secret hidden)`;
  }

  toJSON() {
    return this.toString();
  }

  /** The mailbox the new device's request goes to (m), as 32 hex characters. */
  requestMailbox() {
    return toHex(this.#mailbox);
  }

  /** The mailbox the existing device answers in: SHA-256(labeled(PROV_MAILBOX, m || k))[:16], hex. */
  async responseMailbox() {
    return toHex((await sha256(labeled(LABEL.provMailbox, this.#mailbox, this.#secret))).subarray(0, LINK_MAILBOX_SIZE));
  }

  // The library's own access to the secret parts.
  static _parts(code) {
    return { mailbox: code.#mailbox, secret: code.#secret };
  }
}

/** Makes a link code with a fresh random mailbox and secret; the server URL is put in canonical form. */
export function newLinkCode(server, serverFP, user) {
  return new LinkCode({ server, serverFP, user, mailbox: fresh(LINK_MAILBOX_SIZE), secret: fresh(LINK_SECRET_SIZE) });
}

function fresh(n) {
  for (;;) {
    const b = randomBytes(n);
    if (!isZero(b)) return b;
  }
}

/** Parses a qrtalk:link URI (§17.2). */
export function parseLinkCode(uri) {
  const q = parseURI(uri, "link", ["s", "sfp", "u", "m", "k"]);
  const server = checkServerURL(q.s);
  const serverFP = parseFingerprint(q.sfp);
  const user = userIDString(userIDBytes(q.u));
  const b64 = (s, size, what) => {
    if (s.length !== Math.ceil((size * 4) / 3)) fail("malformed", `${what} must be ${Math.ceil((size * 4) / 3)} base64url characters`);
    return fromBase64URL(s, what);
  };
  return new LinkCode({ server, serverFP, user, mailbox: b64(q.m, LINK_MAILBOX_SIZE, "link mailbox"), secret: b64(q.k, LINK_SECRET_SIZE, "link secret") });
}

/** K_req or K_rsp (§17.4). Not part of the public API (tests check the known answers). */
export function linkKey(code, type) {
  const { mailbox, secret } = LinkCode._parts(code);
  return hkdf32(secret, mailbox, `${LABEL.prov} ${type === TYPE_RESPONSE ? "response" : "request"}`);
}

function linkAAD(code, type) {
  return labeled(LABEL.prov, u8(type), LinkCode._parts(code).mailbox);
}

/** Seals plain as a provisioning message of type (7 or 8). nonce is fresh unless given (tests only). */
export async function sealLinkMessage(code, type, plain, nonce = randomBytes(NONCE_SIZE)) {
  const key = await linkKey(code, type);
  try {
    return concat(u8(VERSION), u8(type), nonce, await gcmSeal(key, nonce, plain, linkAAD(code, type)));
  } finally {
    key.fill(0);
  }
}

// linkMessageType runs steps 1 to 4 of §17.6 but the expected type.
function linkMessageType(msg) {
  checkBytes(msg, "provisioning message");
  if (msg.length > 0 && msg[0] !== VERSION) fail("version", `provisioning message version ${msg[0]}`);
  if (msg.length > MAX_LINK_MESSAGE_SIZE) fail("too_large", `provisioning message is ${msg.length} bytes, at most ${MAX_LINK_MESSAGE_SIZE}`);
  if (msg.length < MIN_LINK_MESSAGE_SIZE) fail("malformed", "provisioning message is too short");
  if (msg[1] !== TYPE_REQUEST && msg[1] !== TYPE_RESPONSE) fail("malformed", `not a provisioning message (type ${msg[1]})`);
  return msg[1];
}

/** What a server can check of a provisioning message without the secret (§17.6 steps 1 to 4). */
export function checkLinkMessage(msg) {
  linkMessageType(msg);
}

async function openLink(code, type, msg, what) {
  if (linkMessageType(msg) !== type) fail("malformed", `not a ${what} (type ${msg[1]})`);
  const key = await linkKey(code, type);
  try {
    return await withContext(`${what} does not open with this link code`, () => gcmOpen(key, msg.subarray(2, HEADER_SIZE), msg.subarray(HEADER_SIZE), linkAAD(code, type)));
  } finally {
    key.fill(0);
  }
}

// checkRequest: a non-zero device ID and two keys that differ (one key, one purpose).
function checkRequest(req) {
  const device = deviceIDBytes(req?.device);
  if (!(req.encryptionKey instanceof PublicKey) || !(req.authKey instanceof PublicKey)) fail("malformed", "link request lacks a key");
  if (req.encryptionKey.equal(req.authKey)) fail("malformed", "link request has the same key for encryption and authentication");
  return device;
}

/** Seals the new device's request { device, encryptionKey, authKey } for the code's request mailbox. */
export async function sealLinkRequest(code, req) {
  const device = checkRequest(req);
  return sealLinkMessage(code, TYPE_REQUEST, concat(device, var16(req.encryptionKey.bytes()), var16(req.authKey.bytes())));
}

/** Opens and checks a request taken from the code's request mailbox: { device, encryptionKey, authKey }. */
export async function openLinkRequest(code, msg) {
  const plain = await openLink(code, TYPE_REQUEST, msg, "link request");
  const r = new Reader(plain, "link request");
  const device = r.fixed(DEVICE_ID_SIZE);
  const encDER = r.var16(MAX_PUBLIC_KEY_DER);
  const authDER = r.var16(MAX_PUBLIC_KEY_DER);
  r.finish();
  const encryptionKey = withContextSync("link request encryption key", () => parsePublicKey(encDER));
  const authKey = withContextSync("link request authentication key", () => parsePublicKey(authDER));
  if (isZero(device)) fail("malformed", "link request has a zero device ID");
  const req = { device: deviceIDString(device), encryptionKey, authKey };
  checkRequest(req);
  return req;
}

// checkResponse: §17.6 step 8.
async function checkResponse(code, req, resp) {
  if (!(resp?.identity instanceof PrivateKey) || !(resp.cert instanceof DeviceCert)) fail("malformed", "link response lacks the identity key or the certificate");
  if (resp.user !== code.user) fail("mismatch", `link response is for user ${resp.user}, the code for ${code.user}`);
  const c = resp.cert;
  if (c.user !== resp.user || c.device !== req.device) fail("mismatch", `certificate is for ${c.user}/${c.device}, not ${resp.user}/${req.device}`);
  if (!c.encryptionKey.equal(req.encryptionKey) || !c.authKey.equal(req.authKey)) fail("mismatch", "certificate does not bind the keys of the request");
  await c.verify(resp.identity.public());
}

/**
 * Seals the existing device's answer to req: resp = { user, identity
 * (an extractable PrivateKey), cert (DeviceCert) }. It makes the checks of
 * openLinkResponse first, so that a wrong answer is never sent.
 */
export async function sealLinkResponse(code, req, resp) {
  if (!req) fail("malformed", "no link request to answer");
  await checkResponse(code, req, resp);
  const der = await resp.identity.bytes();
  const plain = concat(userIDBytes(resp.user), var16(der), var16(resp.cert.bytes()));
  der.fill(0);
  try {
    return await sealLinkMessage(code, TYPE_RESPONSE, plain);
  } finally {
    plain.fill(0);
  }
}

/**
 * Opens and checks the answer to req (the request this device sent) taken
 * from the code's response mailbox: { user, identity, cert }. The identity
 * key is imported for signing, non-extractable unless extractable is true
 * (only an extractable identity key can link further devices).
 */
export async function openLinkResponse(code, req, msg, { extractable = false } = {}) {
  if (!req) fail("malformed", "no link request to match the response to");
  const plain = await openLink(code, TYPE_RESPONSE, msg, "link response");
  try {
    const r = new Reader(plain, "link response");
    const user = userIDString(r.fixed(USER_ID_SIZE));
    const keyDER = r.var16(MAX_PRIVATE_KEY_DER);
    const certDER = r.var16(MAX_CERT_SIZE);
    r.finish();
    const identity = await withContext("link response identity key", () => parsePrivateKey(keyDER, { extractable, uses: ["sign"] }));
    const cert = withContextSync("link response", () => parseDeviceCert(certDER));
    const resp = { user, identity, cert };
    await checkResponse(code, req, resp);
    return resp;
  } finally {
    plain.fill(0);
  }
}
