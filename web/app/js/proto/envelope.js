// envelope.js: envelopes of QRTalk protocol v1 (docs/PROTOCOL.md §10): a
// message encrypted once under a fresh AES-256-GCM key, the key wrapped
// (RSA-OAEP) for every recipient device, committed to (§10.3) and signed
// (RSA-PSS) by the sender's identity key over the routing fields; parsing
// (§10.4), opening in the order of §10.5, and the delivered form (§10.6).
//
// Times are Unix milliseconds (Numbers; a Date is accepted too); the TTL is
// in milliseconds and must be whole seconds, from 1 s to 7 days.

import { fail, withContext } from "./errors.js";
import { checkBytes, compareBytes, concat, constantTimeEqual, formatTime, i64, isZero, labeled, Reader, readHeader, toMillis, u16, u32, u8, var16, var32, VERSION } from "./wire.js";
import { gcmOpen, gcmSeal, KEY_SIZE, LABEL, NONCE_SIZE, randomBytes, sha256, sign, TAG_SIZE, unwrapKey, verify, wrapKey } from "./primitives.js";
import { deviceIDBytes, deviceIDString, DEVICE_ID_SIZE, messageIDBytes, messageIDString, MESSAGE_ID_SIZE, userIDBytes, userIDString, USER_ID_SIZE } from "./ids.js";
import { PrivateKey, PublicKey } from "./keys.js";
import { decodeMessage, encodeMessage, MAX_PLAINTEXT_SIZE } from "./message.js";

export const MIN_TTL = 1000;
export const MAX_TTL = 7 * 24 * 3600 * 1000;
export const MAX_RECIPIENT_USERS = 2048;
export const MAX_RECIPIENT_DEVICES = 2048;
/** How far in the future a send time may be (5 minutes, in ms). */
export const MAX_CLOCK_SKEW = 5 * 60 * 1000;

const TYPE_ENVELOPE = 3;
const COMMITMENT_SIZE = 32;
const WRAPPED_ENTRY = USER_ID_SIZE + DEVICE_ID_SIZE + KEY_SIZE;
const HEADER_FIXED = 2 + MESSAGE_ID_SIZE + USER_ID_SIZE + DEVICE_ID_SIZE + 8 + 4 + 1 + 2;
const FLAG_SIGNED = 1;
export const MAX_CIPHERTEXT_SIZE = MAX_PLAINTEXT_SIZE + 256 + TAG_SIZE;
export const MAX_ENVELOPE_SIZE =
  HEADER_FIXED + MAX_RECIPIENT_USERS * USER_ID_SIZE + 2 + MAX_RECIPIENT_DEVICES * WRAPPED_ENTRY + NONCE_SIZE + COMMITMENT_SIZE + 4 + MAX_CIPHERTEXT_SIZE + 2 + KEY_SIZE;

/** What open learned of an envelope's signature. */
export const SignatureStatus = Object.freeze({ Verified: "verified", Unsigned: "unsigned", Unchecked: "unchecked" });

const commitment = (id, key) => sha256(labeled(LABEL.commit, id, key));

async function signedData(header, nonce, commit, ciphertext) {
  return labeled(LABEL.envSig, header, nonce, commit, await sha256(ciphertext));
}

function compareAddress(a, b) {
  return compareBytes(a.user, b.user) || compareBytes(a.device, b.device);
}

/**
 * Encrypts msg once and wraps its key for every device of to (the sender's
 * own other devices among them); unless opts.unsigned, signs it with
 * from.identity. Returns the envelope's bytes.
 *
 *   from: { user, device, identity: PrivateKey | null }
 *   to:   [{ user, device, key: PublicKey (from the device's verified certificate) }]
 *   opts: { sent (default now), ttl (ms, whole seconds), id (default fresh), unsigned }
 */
export async function seal(msg, from, to, opts = {}) {
  const sender = { user: userIDBytes(from?.user), device: deviceIDBytes(from?.device), identity: from.identity ?? null };
  if (!opts.unsigned && !(sender.identity instanceof PrivateKey)) fail("malformed", "a signed message needs the sender's identity key");
  const ttl = opts.ttl;
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < MIN_TTL || ttl > MAX_TTL || ttl % 1000 !== 0) {
    fail("malformed", `TTL must be whole seconds from 1 s to 7 days, in milliseconds; got ${ttl}`);
  }
  if (!Array.isArray(to) || to.length === 0 || to.length > MAX_RECIPIENT_DEVICES) {
    fail("too_large", `${to?.length} recipient devices, want 1 to ${MAX_RECIPIENT_DEVICES}`);
  }
  const devices = to.map((d) => {
    if (!(d?.key instanceof PublicKey)) fail("malformed", "recipient device with no key");
    return { user: userIDBytes(d.user), device: deviceIDBytes(d.device), key: d.key };
  });
  devices.sort(compareAddress);
  const users = [];
  for (let i = 0; i < devices.length; i++) {
    const d = devices[i];
    if (i > 0 && compareAddress(devices[i - 1], d) === 0) fail("malformed", `device ${userIDString(d.user)}/${deviceIDString(d.device)} listed twice`);
    if (users.length === 0 || compareBytes(users[users.length - 1], d.user) !== 0) users.push(d.user);
  }
  if (users.length > MAX_RECIPIENT_USERS) fail("too_large", `${users.length} recipient users, at most ${MAX_RECIPIENT_USERS}`);
  const plaintext = encodeMessage(msg);
  const id = opts.id === undefined ? randomBytes(MESSAGE_ID_SIZE) : messageIDBytes(opts.id);
  if (isZero(id)) id[0] = 1; // a fresh ID is never zero (2^-128)
  const sent = toMillis(opts.sent ?? Date.now(), "sent");
  return sealPlaintext(plaintext, sender, devices, users, { id, sent, ttl, unsigned: Boolean(opts.unsigned) });
}

/**
 * Seals an encoded, padded plaintext for devices already sorted and
 * checked by seal. key and nonce are fresh unless given (tests only: the
 * test vectors' values, to compare the output byte for byte).
 */
export async function sealPlaintext(plaintext, from, devices, users, { id, sent, ttl, unsigned }, { key = randomBytes(32), nonce = randomBytes(NONCE_SIZE) } = {}) {
  const header = concat(
    u8(VERSION), u8(TYPE_ENVELOPE), id, from.user, from.device, i64(sent), u32(ttl / 1000), u8(unsigned ? 0 : FLAG_SIGNED), u16(users.length), ...users,
  );
  try {
    const commit = await commitment(id, key);
    const ciphertext = await gcmSeal(key, nonce, plaintext, labeled(LABEL.envAAD, header));
    const wrapLabel = labeled(LABEL.keyWrap, id);
    // Each RSA public operation is independent: WebCrypto may run them in parallel.
    const wrapped = await Promise.all(devices.map((d) => wrapKey(d.key, wrapLabel, key)));
    const sig = unsigned ? new Uint8Array(0) : await sign(from.identity, await signedData(header, nonce, commit, ciphertext));
    const entries = devices.flatMap((d, i) => [d.user, d.device, wrapped[i]]);
    return concat(header, u16(devices.length), ...entries, nonce, commit, var32(ciphertext), var16(sig));
  } finally {
    key.fill(0);
  }
}

/**
 * A parsed envelope: routing fields in the clear. Fields: id (message ID
 * text), sender (user ID text), senderDevice, sent (Unix ms), ttl (ms),
 * recipients (the signed user IDs, ascending by bytes), devices
 * ([{user, device}], the devices this copy has a key for).
 */
export class Envelope {
  #raw;
  #id;
  #header;
  #entries; // [{user, device, raw, wrapped}] as bytes
  #recipients; // user IDs as bytes
  #tail;
  #nonce;
  #commitment;
  #ciphertext;
  #sig;
  #sent; // BigInt, exact

  constructor(p) {
    const raw = p.slice();
    const r = new Reader(raw, "envelope");
    readHeader(r, TYPE_ENVELOPE, "envelope");
    const id = r.fixed(MESSAGE_ID_SIZE);
    const sender = r.fixed(USER_ID_SIZE);
    const senderDevice = r.fixed(DEVICE_ID_SIZE);
    const sent = r.i64();
    const ttl = r.u32();
    const flags = r.u8();
    const nu = r.u16();
    if (nu === 0 || nu > MAX_RECIPIENT_USERS) fail("malformed", `envelope has ${nu} recipient users, want 1 to ${MAX_RECIPIENT_USERS}`);
    const users = r.fixed(nu * USER_ID_SIZE);
    const header = raw.subarray(0, r.off);
    const nd = r.u16();
    if (nd === 0 || nd > MAX_RECIPIENT_DEVICES) fail("malformed", `envelope has ${nd} recipient devices, want 1 to ${MAX_RECIPIENT_DEVICES}`);
    const keys = r.fixed(nd * WRAPPED_ENTRY);
    const tail = raw.subarray(r.off);
    const nonce = r.fixed(NONCE_SIZE);
    const commit = r.fixed(COMMITMENT_SIZE);
    const ciphertext = r.var32(MAX_CIPHERTEXT_SIZE);
    const sig = r.var16(KEY_SIZE);
    r.finish();
    if (isZero(id) || isZero(sender) || isZero(senderDevice)) fail("malformed", "envelope has a zero ID");
    if (ttl === 0 || ttl > MAX_TTL / 1000) fail("malformed", `envelope TTL ${ttl}s is outside 1 s to 7 days`);
    if (ciphertext.length < TAG_SIZE) fail("malformed", "envelope ciphertext is too short");
    if (sig.length !== 0 && sig.length !== KEY_SIZE) fail("malformed", `envelope signature is ${sig.length} bytes, want 0 or ${KEY_SIZE}`);
    if ((flags & ~FLAG_SIGNED) !== 0) fail("malformed", `envelope flags ${flags}`);
    if ((flags === FLAG_SIGNED) !== (sig.length === KEY_SIZE)) fail("malformed", `envelope flags say signed=${flags === FLAG_SIGNED}, but the signature is ${sig.length} bytes`);
    const recipients = [];
    for (let i = 0; i < nu; i++) {
      const u = users.subarray(i * USER_ID_SIZE, (i + 1) * USER_ID_SIZE);
      if (isZero(u) || (i > 0 && compareBytes(recipients[i - 1], u) >= 0)) fail("malformed", "envelope recipient users are not strictly ascending");
      recipients.push(u);
    }
    const entries = [];
    for (let i = 0; i < nd; i++) {
      const e = keys.subarray(i * WRAPPED_ENTRY, (i + 1) * WRAPPED_ENTRY);
      const entry = { raw: e, user: e.subarray(0, USER_ID_SIZE), device: e.subarray(USER_ID_SIZE, USER_ID_SIZE + DEVICE_ID_SIZE), wrapped: e.subarray(USER_ID_SIZE + DEVICE_ID_SIZE) };
      if (isZero(entry.device) || (i > 0 && compareAddress(entries[i - 1], entry) >= 0)) fail("malformed", "envelope devices are not strictly ascending");
      if (searchUser(recipients, entry.user) < 0) fail("malformed", `envelope has a key for user ${userIDString(entry.user)}, who is not a recipient`);
      entries.push(entry);
    }
    this.#raw = raw;
    this.#id = id;
    this.#header = header;
    this.#entries = entries;
    this.#recipients = recipients;
    this.#tail = tail;
    this.#nonce = nonce;
    this.#commitment = commit;
    this.#ciphertext = ciphertext;
    this.#sig = sig;
    this.#sent = sent;
    this.id = messageIDString(id);
    this.sender = userIDString(sender);
    this.senderDevice = deviceIDString(senderDevice);
    this.sent = Number(sent);
    this.ttl = ttl * 1000;
    this.recipients = recipients.map(userIDString);
    this.devices = entries.map((e) => ({ user: userIDString(e.user), device: deviceIDString(e.device) }));
    Object.freeze(this);
  }

  /** The envelope's encoding (a copy). */
  bytes() {
    return this.#raw.slice();
  }

  /** The end of the message's life, sent + ttl, in Unix ms. */
  expires() {
    return this.sent + this.ttl;
  }

  /** Whether the envelope carries a signature. */
  signed() {
    return this.#sig.length !== 0;
  }

  /** Whether user (ID text) is in the signed recipient set. */
  isRecipient(user) {
    return searchUser(this.#recipients, userIDBytes(user)) >= 0;
  }

  /**
   * The envelope as delivered to device i of this.devices (§10.6): the same
   * bytes with that device's key entry alone (Go's Envelope.For).
   */
  forDevice(i) {
    if (!Number.isInteger(i) || i < 0 || i >= this.#entries.length) throw new RangeError(`no device ${i} in this envelope`);
    if (this.#entries.length === 1) return this.#raw.slice();
    return concat(this.#header, u16(1), this.#entries[i].raw, this.#tail);
  }

  /**
   * Checks and decrypts the envelope for one device, in the order of
   * §10.5, and returns { message, status }. me: { user, device, key:
   * PrivateKey (its encryption key) }; senderIdentity: the PublicKey pinned
   * for this.sender, or null. A signature that does not verify is always an
   * error, never content.
   */
  async open(me, senderIdentity, now) {
    const nowMs = BigInt(toMillis(now, "now"));
    const expires = this.#sent + BigInt(this.ttl);
    if (nowMs >= expires) fail("expired", `message expired at ${formatTime(expires)}`);
    if (this.#sent > nowMs + BigInt(MAX_CLOCK_SKEW)) fail("clock_skew", "message sent in the future");
    const user = userIDBytes(me?.user);
    const device = deviceIDBytes(me?.device);
    if (!(me.key instanceof PrivateKey)) throw new TypeError("me.key must be the device's encryption PrivateKey");
    if (senderIdentity != null && !(senderIdentity instanceof PublicKey)) throw new TypeError("senderIdentity must be a PublicKey or null");
    if (searchUser(this.#recipients, user) < 0) fail("not_recipient", `user ${userIDString(user)} is not in the signed recipient set`);
    const entry = this.#entries.find((e) => compareBytes(e.user, user) === 0 && compareBytes(e.device, device) === 0);
    if (!entry) fail("not_recipient", `no key for device ${deviceIDString(device)}`);
    let status = SignatureStatus.Unsigned;
    if (this.signed()) {
      status = SignatureStatus.Unchecked;
      if (senderIdentity) {
        const data = await signedData(this.#header, this.#nonce, this.#commitment, this.#ciphertext);
        await withContext(`envelope from ${this.sender}`, () => verify(senderIdentity, data, this.#sig));
        status = SignatureStatus.Verified;
      }
    }
    const key = await withContext("unwrapping the message key", () => unwrapKey(me.key, labeled(LABEL.keyWrap, this.#id), entry.wrapped));
    try {
      if (!constantTimeEqual(await commitment(this.#id, key), this.#commitment)) fail("decrypt", "key commitment does not match");
      const plaintext = await gcmOpen(key, this.#nonce, this.#ciphertext, labeled(LABEL.envAAD, this.#header));
      try {
        return { message: decodeMessage(plaintext), status };
      } finally {
        plaintext.fill(0);
      }
    } finally {
      key.fill(0);
    }
  }
}

function searchUser(sorted, user) {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const c = compareBytes(sorted[mid], user);
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/**
 * Decodes an envelope and checks its form (§10.4): version, sizes,
 * canonical order, no trailing data. It verifies nothing and decrypts
 * nothing.
 */
export function parseEnvelope(p) {
  checkBytes(p, "envelope");
  if (p.length > MAX_ENVELOPE_SIZE) fail("too_large", `envelope is ${p.length} bytes, at most ${MAX_ENVELOPE_SIZE}`);
  return new Envelope(p);
}

/** open(env, me, senderIdentity, now) is env.open(me, senderIdentity, now). */
export function open(env, me, senderIdentity, now) {
  return env.open(me, senderIdentity, now);
}

/** forDevice(env, i) is env.forDevice(i) (Go's Envelope.For). */
export function forDevice(env, i) {
  return env.forDevice(i);
}
