// channel.js: the secure channel of QRTalk protocol v1 (docs/PROTOCOL.md
// §11): the device's setup message (§11.2), the session ID and keys
// (§11.3), the server's acceptance (§11.4), frames (§11.5, §11.6), opening
// them in the order of §11.7, and the replay window (§11.8).
//
// The browser is the client end (newClientSession); the server end
// (acceptSession) is here too, for tests and tools. Times are Unix
// milliseconds (Numbers; a Date is accepted too). Counters are Numbers.

import { fail, withContext } from "./errors.js";
import { checkBytes, concat, constantTimeEqual, formatTime, i64, labeled, Reader, readHeader, toHex, toMillis, u64, u8, utf8, var16, VERSION } from "./wire.js";
import { aesKey, gcmOpen, gcmSeal, hkdf32, KEY_SIZE, LABEL, NONCE_SIZE, randomBytes, sha256, sign, TAG_SIZE, unwrapKey, verify, wrapKey } from "./primitives.js";
import { deviceIDBytes, deviceIDString, DEVICE_ID_SIZE, userIDBytes, userIDString, USER_ID_SIZE } from "./ids.js";
import { PrivateKey, PublicKey } from "./keys.js";
import { Fingerprint, FINGERPRINT_SIZE, serverFingerprint } from "./fingerprint.js";
import { MAX_CLOCK_SKEW, MAX_ENVELOPE_SIZE } from "./envelope.js";
// resume.js imports this module too; each uses the other's names only inside functions.
import { parseTicketHeader, Ticket } from "./resume.js";

/** The longest a session may live (1 hour, in ms). */
export const MAX_SESSION_LIFETIME = 3600 * 1000;
/** How far behind the highest counter accepted a frame may arrive, once. */
export const REPLAY_WINDOW = 1024;
export const MAX_FRAME_SIZE = MAX_ENVELOPE_SIZE + 1024;
export const SESSION_ID_SIZE = 16;
/** The bound on the method and on the path a frame is bound to, in bytes. */
export const MAX_METHOD_PATH = 1024;

const TYPE_SETUP = 4;
const TYPE_FRAME = 5;
const SETUP_TBS_SIZE = 2 + USER_ID_SIZE + DEVICE_ID_SIZE + FINGERPRINT_SIZE + 8 + 16 + KEY_SIZE;
export const CHANNEL_SETUP_SIZE = SETUP_TBS_SIZE + KEY_SIZE;
const FRAME_HEADER_SIZE = 2 + SESSION_ID_SIZE + 8;
const DIR_C2S = 1;
const DIR_S2C = 2;
const KIND = { confirm: 1, request: 2, response: 3, push: 4 };
const MAX_COUNTER = 1n << 63n; // counters from here on are refused: no arithmetic can wrap
const CONFIRM = { method: "SETUP", path: "/" };
const PUSH = { method: "PUSH", path: "/" };

/** The session ID of a setup: SHA-256(labeled(SESSION_ID, setup))[:16]. */
async function sessionID(setup) {
  return (await sha256(labeled(LABEL.sessionID, setup))).slice(0, SESSION_ID_SIZE);
}

/** The two directions' keys (§11.3), as bytes: { c2s, s2c }. */
export async function channelKeys(secret, id) {
  return {
    c2s: await hkdf32(secret, id, `${LABEL.chKeys} client-to-server`),
    s2c: await hkdf32(secret, id, `${LABEL.chKeys} server-to-client`),
  };
}

function methodPath(method, path) {
  if (typeof method !== "string" || typeof path !== "string") throw new TypeError("method and path must be strings");
  const m = utf8(method);
  const p = utf8(path);
  if (m.length > MAX_METHOD_PATH || p.length > MAX_METHOD_PATH) fail("too_large", `method or path longer than ${MAX_METHOD_PATH} bytes`);
  return { m, p };
}

function frameNonce(dir, ctr) {
  const n = new Uint8Array(NONCE_SIZE);
  n[0] = dir;
  n.set(u64(ctr), 4);
  return n;
}

function frameAAD(id, dir, kind, ctr, reqCtr, m, p) {
  return labeled(LABEL.chFrame, id, u8(dir), u8(kind), u64(ctr), u64(reqCtr), var16(m), var16(p));
}

function toCounter(c) {
  if (typeof c === "bigint" && c >= 0n && c < 1n << 64n) return c;
  if (Number.isSafeInteger(c) && c >= 0) return BigInt(c);
  throw new TypeError("a counter must be a non-negative integer");
}

/**
 * The replay window of §11.8: a counter is fresh if it is above the
 * highest accepted, or among the 1024 below it and not accepted before.
 */
export class ReplayWindow {
  #top = null; // BigInt: the highest counter accepted
  #seen = new Set();

  fresh(c) {
    if (c >= MAX_COUNTER) return false;
    if (this.#top === null || c > this.#top) return true;
    return this.#top - c < BigInt(REPLAY_WINDOW) && !this.#seen.has(c);
  }

  /** Records c; false if it is no longer fresh. */
  accept(c) {
    if (!this.fresh(c)) return false;
    this.#seen.add(c);
    if (this.#top === null || c > this.#top) {
      this.#top = c;
      for (const old of this.#seen) if (c - old >= BigInt(REPLAY_WINDOW)) this.#seen.delete(old);
    }
    return true;
  }
}

/**
 * Returns the session ID (hex) and counter of a frame, by steps 2 to 4 of
 * §11.7, so that a server can find the session a request belongs to.
 */
export function parseFrameHeader(frame) {
  checkBytes(frame, "frame");
  if (frame.length > MAX_FRAME_SIZE) fail("too_large", `frame is ${frame.length} bytes, at most ${MAX_FRAME_SIZE}`);
  if (frame.length < FRAME_HEADER_SIZE + TAG_SIZE) fail("malformed", "frame is too short");
  const r = new Reader(frame, "frame");
  readHeader(r, TYPE_FRAME, "channel frame");
  const id = r.fixed(SESSION_ID_SIZE);
  const ctr = r.u64();
  return { sessionID: toHex(id), counter: ctr <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(ctr) : ctr, id, ctr };
}

// One session's state, shared by both kinds of ends.
class Keys {
  constructor(id, send, recv, sendDir, recvDir, expires) {
    this.id = id;
    this.send = send;
    this.recv = recv;
    this.sendDir = sendDir;
    this.recvDir = recvDir;
    this.expires = expires; // Number, ms
    this.sendCtr = 0n;
    this.window = new ReplayWindow();
  }

  static async derive(secret, id, client, expires) {
    const { c2s, s2c } = await channelKeys(secret, id);
    try {
      const [kc2s, ks2c] = [await aesKey(c2s), await aesKey(s2c)];
      return client ? new Keys(id, kc2s, ks2c, DIR_C2S, DIR_S2C, expires) : new Keys(id, ks2c, kc2s, DIR_S2C, DIR_C2S, expires);
    } finally {
      c2s.fill(0);
      s2c.fill(0);
    }
  }

  async seal(kind, reqCtr, m, p, body) {
    checkBytes(body, "body");
    const ctr = this.sendCtr++; // taken before any await: never two frames with one counter
    const sealed = await gcmSeal(this.send, frameNonce(this.sendDir, ctr), body, frameAAD(this.id, this.sendDir, kind, ctr, reqCtr, m, p));
    return { frame: concat(u8(VERSION), u8(TYPE_FRAME), this.id, u64(ctr), sealed), counter: Number(ctr) };
  }

  // open runs steps 1 to 8 of §11.7; step 0 is the caller's.
  async open(kind, reqCtr, m, p, frame, now) {
    if (toMillis(now, "now") >= this.expires) fail("expired", `channel session ended at ${formatTime(this.expires)}`);
    const { id, ctr } = parseFrameHeader(frame);
    if (!constantTimeEqual(id, this.id)) fail("mismatch", `frame is for session ${toHex(id)}, not ${toHex(this.id)}`);
    if (!this.window.fresh(ctr)) fail("replay", `frame ${ctr}`);
    const body = await gcmOpen(this.recv, frameNonce(this.recvDir, ctr), frame.subarray(FRAME_HEADER_SIZE), frameAAD(this.id, this.recvDir, kind, ctr, reqCtr, m, p));
    // Only an authentic frame moves the window, so forgeries cannot push genuine frames out of it.
    if (!this.window.accept(ctr)) fail("replay", `frame ${ctr}`);
    return { body, counter: Number(ctr) };
  }
}

/** The device end of a channel session. Make one with newClientSession. */
export class ClientSession {
  #k;
  #confirmed = false;
  // For resumption (resume.js): who the session is for, and its
  // resumption secret until ticket() pairs it with the server's ticket.
  #owner;
  #rs;

  constructor(keys, owner, rs) {
    this.#k = keys;
    this.#owner = owner;
    this.#rs = rs;
  }

  /**
   * Pairs the ticket the server issued for this session (the QRTalk-Ticket
   * answer header, §18.8) with the session's resumption secret and returns
   * a Ticket to resume with later. A session pairs one ticket.
   */
  async ticket(sealed, now) {
    if (!this.#confirmed) fail("malformed", "channel session is not confirmed");
    const { expires } = parseTicketHeader(sealed);
    if (toMillis(now, "now") >= expires) fail("expired", `ticket ended at ${formatTime(expires)}`);
    const rs = this.#rs;
    this.#rs = null;
    if (!rs) fail("malformed", `session ${this.id} has already paired a ticket`);
    return new Ticket({ ...this.#owner, expires, sealed: sealed.slice(), secret: rs });
  }

  /** The session ID, 32 lowercase hex characters. */
  get id() {
    return toHex(this.#k.id);
  }

  /** When the session ends, Unix ms: set up a new one before. */
  get expires() {
    return this.#k.expires;
  }

  get confirmed() {
    return this.#confirmed;
  }

  /**
   * Checks the server's confirmation (§11.6): the first server frame,
   * which proves that the server holds its key and says when the session
   * ends. A session is confirmed once; a second confirmation is replay.
   */
  async confirm(frame, now) {
    if (this.#confirmed) fail("replay", "channel session is already confirmed");
    const c = methodPath(CONFIRM.method, CONFIRM.path);
    const { body, counter } = await withContext("channel confirmation", () => this.#k.open(KIND.confirm, 0n, c.m, c.p, frame, now));
    if (counter !== 0 || body.length !== 8) fail("malformed", "channel confirmation");
    const ms = new DataView(body.buffer, body.byteOffset, 8).getBigUint64(0);
    if (ms >= 1n << 63n) fail("malformed", "channel confirmation expiry");
    if (ms < BigInt(this.#k.expires)) this.#k.expires = Number(ms);
    this.#confirmed = true;
  }

  /** Encrypts a request body for method and path; returns { frame, counter } (the response is bound to counter). */
  async sealRequest(method, path, body) {
    if (!this.#confirmed) fail("malformed", "channel session is not confirmed");
    const { m, p } = methodPath(method, path);
    return this.#k.seal(KIND.request, 0n, m, p, body);
  }

  /** Decrypts the response to the request with counter reqCounter. */
  async openResponse(reqCounter, method, path, frame, now) {
    if (!this.#confirmed) fail("malformed", "channel session is not confirmed");
    const { m, p } = methodPath(method, path);
    return (await this.#k.open(KIND.response, toCounter(reqCounter), m, p, frame, now)).body;
  }

  /** Decrypts a frame the server pushed on the live channel. */
  async openPush(frame, now) {
    if (!this.#confirmed) fail("malformed", "channel session is not confirmed");
    const { m, p } = methodPath(PUSH.method, PUSH.path);
    return (await this.#k.open(KIND.push, 0n, m, p, frame, now)).body;
  }
}

/**
 * Starts a session with the server whose key the device pinned. device:
 * { user, device, authKey: PrivateKey (RSA-PSS) }; serverKey: PublicKey.
 * Returns { session, setup }: send setup, then pass the server's answer to
 * session.confirm.
 */
export async function newClientSession(device, serverKey, now) {
  const user = userIDBytes(device?.user);
  const dev = deviceIDBytes(device?.device);
  if (!(device.authKey instanceof PrivateKey) || !(serverKey instanceof PublicKey)) fail("malformed", "channel device or server key missing");
  const time = toMillis(now, "now");
  const nonce = randomBytes(16);
  const secret = randomBytes(32);
  try {
    const fp = (await serverFingerprint(serverKey)).bytes();
    const wrapped = await wrapKey(serverKey, labeled(LABEL.chWrap, nonce), secret);
    const tbs = concat(u8(VERSION), u8(TYPE_SETUP), user, dev, fp, i64(time), nonce, wrapped);
    const setup = concat(tbs, await sign(device.authKey, labeled(LABEL.chSetup, tbs)));
    return { session: await clientSessionFromSecret(secret, setup, time, { user, device: dev, serverFP: fp }), setup };
  } finally {
    secret.fill(0);
  }
}

/**
 * The client end of the session of setup, from the secret the device
 * wrapped in it. For newClientSession and for tests (the vectors give the
 * secret); not part of the public API. owner: { user, device, serverFP }
 * as bytes, for the session's ticket.
 */
export async function clientSessionFromSecret(secret, setup, setupTime, owner = null) {
  return newClientEnd(secret, await sessionID(setup), setupTime, owner);
}

/** The resumption secret of a session (§18.2). */
export function resumptionSecret(secret, id) {
  return hkdf32(secret, id, `${LABEL.chKeys} resumption`);
}

/**
 * The device end of a session from its secret (a setup's or a resume's).
 * Until confirmed, it may not outlive its setup's (or resume's) time + 1 hour.
 */
export async function newClientEnd(secret, id, at, owner) {
  const keys = await Keys.derive(secret, id, true, at + MAX_SESSION_LIFETIME);
  return new ClientSession(keys, owner, await resumptionSecret(secret, id));
}

/**
 * The server end of a session from its secret, and its confirmation: it
 * ends at now + lifetime (at most one hour). authTime: when the device
 * last proved its authentication key (§18.4).
 */
export async function newServerEnd(secret, id, user, device, authTime, lifetime, now) {
  if (!(lifetime > 0 && lifetime <= MAX_SESSION_LIFETIME)) lifetime = MAX_SESSION_LIFETIME;
  const keys = await Keys.derive(secret, id, false, now + Math.floor(lifetime));
  const rs = await resumptionSecret(secret, id);
  const c = methodPath(CONFIRM.method, CONFIRM.path);
  const { frame } = await keys.seal(KIND.confirm, 0n, c.m, c.p, u64(keys.expires));
  return { session: new ServerSession(keys, user, device, authTime, rs), confirm: frame };
}

/** A parsed setup message: user, device (ID text), serverFP (Fingerprint), time (ms), nonce (16 bytes). */
export class ChannelSetup {
  #raw;
  constructor(raw, fields) {
    this.#raw = raw;
    Object.assign(this, fields);
    Object.freeze(this);
  }
  bytes() {
    return this.#raw.slice();
  }
}

/** Decodes a setup message (§11.4: version first, then the exact size, then the type) without checking it. */
export function parseChannelSetup(p) {
  checkBytes(p, "channel setup");
  if (p.length > 0 && p[0] !== VERSION) fail("version", `channel setup version ${p[0]}`);
  if (p.length !== CHANNEL_SETUP_SIZE) fail("malformed", `channel setup must be ${CHANNEL_SETUP_SIZE} bytes, got ${p.length}`);
  const raw = p.slice();
  const r = new Reader(raw, "channel setup");
  readHeader(r, TYPE_SETUP, "channel setup");
  const user = r.fixed(USER_ID_SIZE);
  const device = r.fixed(DEVICE_ID_SIZE);
  const fp = r.fixed(FINGERPRINT_SIZE);
  const time = r.i64();
  const nonce = r.fixed(16);
  r.fixed(2 * KEY_SIZE);
  r.finish();
  return new ChannelSetup(raw, {
    user: userIDString(user),
    device: deviceIDString(device),
    serverFP: new Fingerprint(fp),
    time: Number(time),
    nonce: nonce.slice(),
  });
}

/**
 * A replay memory of setups for one process (§11.4 step 4): seen(key, now,
 * expires) records key (hex) until expires and reports whether it was there.
 * A server with several nodes needs one shared by all of them instead; any
 * object with such a seen method (sync or async) will do.
 */
export class MemoryReplayCache {
  #keys = new Map();
  #next = -Infinity;

  seen(key, now, expires) {
    if (now > this.#next || now < this.#next - 120000) {
      for (const [k, exp] of this.#keys) if (now > exp) this.#keys.delete(k);
      this.#next = now + 60000;
    }
    if (this.#keys.has(key)) return true;
    this.#keys.set(key, expires);
    return false;
  }
}

/** The server end of a session. Make one with acceptSession. */
export class ServerSession {
  #k;
  #authTime;
  #rs;
  constructor(keys, user, device, authTime, rs) {
    this.#k = keys;
    this.#authTime = authTime;
    this.#rs = rs;
    this.user = user;
    this.device = device;
  }
  // For TicketKeys.issueTicket: the auth time, and the resumption secret, once.
  static _takeResumption(s) {
    const rs = s.#rs;
    s.#rs = null;
    return { authTime: s.#authTime, rs };
  }
  get id() {
    return toHex(this.#k.id);
  }
  get expires() {
    return this.#k.expires;
  }
  /** Decrypts a request frame received for method and path; returns { body, counter }. */
  async openRequest(method, path, frame, now) {
    const { m, p } = methodPath(method, path);
    return this.#k.open(KIND.request, 0n, m, p, frame, now);
  }
  /** Encrypts the response to the request with counter reqCounter. */
  async sealResponse(reqCounter, method, path, body) {
    const { m, p } = methodPath(method, path);
    return (await this.#k.seal(KIND.response, toCounter(reqCounter), m, p, body)).frame;
  }
  /** Encrypts a frame to push on the live channel. */
  async sealPush(body) {
    const { m, p } = methodPath(PUSH.method, PUSH.path);
    return (await this.#k.seal(KIND.push, 0n, m, p, body)).frame;
  }
}

/**
 * Checks a setup in the order of §11.4 and starts the server end: the
 * setup must name this server's key (mismatch), be within 5 minutes of now
 * (clock_skew), be signed by deviceAuth (bad_signature) and be new (replay).
 * lifetime is in ms (zero, negative or above one hour means one hour).
 * Returns { session, confirm }: send confirm back.
 */
export async function acceptSession(setup, serverKey, deviceAuth, replay, lifetime, now) {
  if (!(setup instanceof ChannelSetup)) throw new TypeError("setup must be a parsed ChannelSetup");
  const nowMs = toMillis(now, "now");
  if (!setup.serverFP.equal(await serverFingerprint(serverKey.public()))) fail("mismatch", "setup is for another server key");
  if (Math.abs(nowMs - setup.time) > MAX_CLOCK_SKEW) fail("clock_skew", `setup time ${setup.time}`);
  const raw = setup.bytes();
  await withContext(`channel setup of ${setup.user}/${setup.device}`, () => verify(deviceAuth, labeled(LABEL.chSetup, raw.subarray(0, SETUP_TBS_SIZE)), raw.subarray(SETUP_TBS_SIZE)));
  const id = await sessionID(raw);
  if (await replay.seen(toHex(id), nowMs, setup.time + MAX_CLOCK_SKEW)) fail("replay", "channel setup");
  const secret = await withContext("channel setup", () => unwrapKey(serverKey, labeled(LABEL.chWrap, setup.nonce), raw.subarray(82, 82 + KEY_SIZE)));
  try {
    return await newServerEnd(secret, id, setup.user, setup.device, nowMs, lifetime, nowMs);
  } finally {
    secret.fill(0);
  }
}
