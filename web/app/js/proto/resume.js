// resume.js: session resumption in QRTalk protocol v1 (docs/PROTOCOL.md §18):
// a device that had a session resumes with the ticket the server sealed for
// it (§18.4) and the resumption secret it kept (§18.2), proving it holds the
// secret with an HMAC binder (§18.5); both ends derive the new session from
// that secret and fresh randomness of each side (§18.6, §18.7), with no RSA.
//
// The browser is the device: ClientSession.ticket() pairs a session's
// ticket, resume() starts a resume, Resumption.finish() checks the answer.
// The server side (TicketKeys, parseResume, acceptResume) is here too, for
// tests and tools; its ticket keys derive from an extractable server key.

import { fail, withContext } from "./errors.js";
import { checkBytes, concat, constantTimeEqual, formatTime, i64, labeled, Reader, readHeader, toHex, toMillis, u32, u8, VERSION } from "./wire.js";
import { aesKey, gcmOpen, gcmSeal, hkdf32, hmac, LABEL, NONCE_SIZE, randomBytes, sha256 } from "./primitives.js";
import { deviceIDBytes, deviceIDString, DEVICE_ID_SIZE, userIDBytes, userIDString, USER_ID_SIZE } from "./ids.js";
import { PrivateKey } from "./keys.js";
import { Fingerprint, FINGERPRINT_SIZE, serverFingerprint } from "./fingerprint.js";
import { MAX_CLOCK_SKEW } from "./envelope.js";
import { newClientEnd, newServerEnd, ServerSession } from "./channel.js";

/** How long a chain of resumptions lasts from its full setup (24 h, in ms). */
export const TICKET_LIFETIME = 24 * 3600 * 1000;
/** How long one ticket key seals new tickets (24 h, in ms). */
export const TICKET_KEY_PERIOD = 24 * 3600 * 1000;
export const TICKET_SIZE = 122;
export const RESUME_SIZE = 252;
export const RESUME_ANSWER_SIZE = 84;

const TYPE_RESUME = 9;
const TYPE_RESUME_ANSWER = 10;
const TYPE_TICKET = 11;
const TICKET_AAD_SIZE = 2 + 4 + 16 + 8 + NONCE_SIZE;
const RANDOM_SIZE = 32;
const RS_SIZE = 32;
const MACED_SIZE = RESUME_SIZE - 32;
const TICKET_STATE_SIZE = 1 + USER_ID_SIZE + DEVICE_ID_SIZE + FINGERPRINT_SIZE + TICKET_SIZE + RS_SIZE;

/** The ticket key period of a time: floor(t / 24 h), as a u32 (0 before 1970). */
export function ticketPeriod(ms) {
  const t = BigInt(toMillis(ms));
  return t < 0n ? 0 : Number((t / BigInt(TICKET_KEY_PERIOD)) & 0xffffffffn);
}

/** K_ticket(e) (§18.3): HKDF(server key PKCS #8, salt = server fingerprint, info = labeled(TICKET_KEY, u32(e))). */
export function ticketKey(serverPKCS8, serverFP, period) {
  return hkdf32(serverPKCS8, serverFP, labeled(LABEL.ticketKey, u32(period)));
}

/**
 * Checks what a device can check of a ticket (§18.4): version, size, type.
 * Returns { period, expires (Unix ms) }.
 */
export function parseTicketHeader(p) {
  checkBytes(p, "ticket");
  if (p.length > 0 && p[0] !== VERSION) fail("version", `ticket version ${p[0]}`);
  if (p.length !== TICKET_SIZE) fail("malformed", `ticket must be ${TICKET_SIZE} bytes, got ${p.length}`);
  if (p[1] !== TYPE_TICKET) fail("malformed", `not a ticket (type ${p[1]})`);
  const view = new DataView(p.buffer, p.byteOffset, p.length);
  return { period: view.getUint32(2), expires: Number(view.getBigInt64(22)) };
}

/**
 * What a device keeps to resume: the server's sealed ticket and the
 * resumption secret. As sensitive as the device's authentication key until
 * it expires: store it only where that key is (toBytes, parseTicket).
 * Fields: user, device (ID text), server (Fingerprint), expires (Unix ms).
 */
export class Ticket {
  #sealed;
  #secret;

  constructor({ user, device, serverFP, expires, sealed, secret }) {
    this.user = userIDString(user);
    this.device = deviceIDString(device);
    this.server = new Fingerprint(serverFP);
    this.expires = expires;
    this.#sealed = sealed;
    this.#secret = secret;
    Object.freeze(this);
  }

  /** Whether the ticket may still be used (it is used at most once). */
  get usable() {
    return this.#secret !== null;
  }

  /** The ticket with its secret, in a local format for storage (Go's MarshalBinary). */
  toBytes() {
    if (!this.#secret) fail("malformed", "ticket already used");
    return concat(u8(VERSION), userIDBytes(this.user), deviceIDBytes(this.device), this.server.bytes(), this.#sealed, this.#secret);
  }

  toJSON() {
    return `ticket of ${this.user}/${this.device} until ${formatTime(this.expires)} (secret hidden)`;
  }

  // resume's access: the sealed ticket, and the secret, once.
  static _take(t) {
    const secret = t.#secret;
    t.#secret = null;
    return { sealed: t.#sealed, secret };
  }
}

/** Restores a ticket saved with toBytes. */
export function parseTicket(p) {
  checkBytes(p, "saved ticket");
  if (p.length !== TICKET_STATE_SIZE || p[0] !== VERSION) fail("malformed", "saved ticket");
  const r = new Reader(p.subarray(1), "saved ticket");
  const user = r.fixed(USER_ID_SIZE);
  const device = r.fixed(DEVICE_ID_SIZE);
  const serverFP = r.fixed(FINGERPRINT_SIZE);
  const sealed = r.fixed(TICKET_SIZE).slice();
  const secret = r.fixed(RS_SIZE).slice();
  const { expires } = parseTicketHeader(sealed);
  return new Ticket({ user, device, serverFP, expires, sealed, secret });
}

async function binder(secret, ticketID, maced) {
  const k = await hkdf32(secret, ticketID, LABEL.resumeBinder);
  try {
    return await hmac(k, labeled(LABEL.resume, maced));
  } finally {
    k.fill(0);
  }
}

/** The ID and secret of a resumed session (§18.6 step 11). Not part of the public API. */
export async function resumedKeys(msg, serverRandom, rs) {
  const id = (await sha256(labeled(LABEL.resumedSessionID, msg, serverRandom))).slice(0, 16);
  return { id, secret: await hkdf32(rs, id, LABEL.resumeSecret) };
}

/** A resume in flight: the device sent its message and waits for the answer. */
export class Resumption {
  #msg;
  #at;
  #secret;
  #owner;

  constructor(msg, at, secret, owner) {
    this.#msg = msg;
    this.#at = at;
    this.#secret = secret;
    this.#owner = owner;
  }

  /**
   * Checks the server's answer (§18.7) and returns the new, confirmed
   * ClientSession. If it throws, set up a full session instead.
   */
  async finish(answer, now) {
    checkBytes(answer, "resume answer");
    if (answer.length > 0 && answer[0] !== VERSION) fail("version", `resume answer version ${answer[0]}`);
    if (answer.length !== RESUME_ANSWER_SIZE) fail("malformed", `resume answer must be ${RESUME_ANSWER_SIZE} bytes, got ${answer.length}`);
    if (answer[1] !== TYPE_RESUME_ANSWER) fail("malformed", `not a resume answer (type ${answer[1]})`);
    if (!this.#secret) fail("replay", "resumption already finished");
    const { id, secret } = await resumedKeys(this.#msg, answer.subarray(2, 2 + RANDOM_SIZE), this.#secret);
    let session;
    try {
      session = await newClientEnd(secret, id, this.#at, this.#owner);
    } finally {
      secret.fill(0);
    }
    await withContext("resumed session", () => session.confirm(answer.subarray(2 + RANDOM_SIZE), now));
    this.#secret.fill(0);
    this.#secret = null;
    return session;
  }
}

/**
 * Starts resuming with ticket t: returns { resumption, message }; send the
 * message (POST /v1/session). This forgets t's secret: a ticket is good for
 * one resume that the server answered (§18.5); a device that got no answer
 * at all may try again with a copy of t saved before (toBytes).
 */
export async function resume(t, now) {
  if (!(t instanceof Ticket) || !t.usable) fail("malformed", "no ticket, or a ticket already used");
  const at = toMillis(now, "now");
  if (at >= t.expires) fail("expired", `ticket ended at ${formatTime(t.expires)}`);
  const { sealed, secret } = Ticket._take(t);
  const owner = { user: userIDBytes(t.user), device: deviceIDBytes(t.device), serverFP: t.server.bytes() };
  const message = await buildResume(owner, at, randomBytes(RANDOM_SIZE), sealed, secret);
  return { resumption: new Resumption(message, at, secret, owner), message };
}

/** The resume message (§18.5) of a ticket. Not part of the public API (tests give the client random). */
export async function buildResume(owner, at, clientRandom, sealed, secret) {
  const maced = concat(u8(VERSION), u8(TYPE_RESUME), owner.user, owner.device, owner.serverFP, i64(at), clientRandom, sealed);
  return concat(maced, await binder(secret, sealed.subarray(6, 22), maced));
}

/** Reports whether a body sent to the session route is a resume message rather than a setup. */
export function isResume(p) {
  return p.length >= 2 && p[0] === VERSION && p[1] === TYPE_RESUME;
}

/** A parsed resume message: user, device (ID text), serverFP (Fingerprint), time (ms). Check it with TicketKeys.check. */
export class ResumeRequest {
  #raw;
  #state = null; // set by TicketKeys.check

  constructor(raw, fields) {
    this.#raw = raw;
    Object.assign(this, fields);
    Object.freeze(this);
  }

  bytes() {
    return this.#raw.slice();
  }

  static _raw(q) {
    return q.#raw;
  }

  static _setState(q, state) {
    q.#state = state;
  }

  // acceptResume's access to the checked state, once.
  static _takeState(q) {
    const s = q.#state;
    q.#state = null;
    return s;
  }
}

/** Decodes a resume message (§18.6 parsing: version, exact size, type) without checking it. */
export function parseResume(p) {
  checkBytes(p, "resume");
  if (p.length > 0 && p[0] !== VERSION) fail("version", `resume version ${p[0]}`);
  if (p.length !== RESUME_SIZE) fail("malformed", `resume must be ${RESUME_SIZE} bytes, got ${p.length}`);
  const raw = p.slice();
  const r = new Reader(raw, "resume");
  readHeader(r, TYPE_RESUME, "resume");
  const user = r.fixed(USER_ID_SIZE);
  const device = r.fixed(DEVICE_ID_SIZE);
  const fp = r.fixed(FINGERPRINT_SIZE);
  const time = r.i64();
  return new ResumeRequest(raw, { user: userIDString(user), device: deviceIDString(device), serverFP: new Fingerprint(fp), time: Number(time) });
}

/**
 * The ticket keys of a server key (§18.3), one per 24-hour period, derived
 * from the key itself: make them with newTicketKeys(serverKey).
 */
export class TicketKeys {
  #ikm;
  #fp;
  #keys = new Map(); // period -> Promise<CryptoKey>

  constructor(ikm, fp) {
    this.#ikm = ikm;
    this.#fp = fp;
  }

  #key(period) {
    let k = this.#keys.get(period);
    if (!k) {
      k = ticketKey(this.#ikm, this.#fp, period).then(async (raw) => {
        try {
          return await aesKey(raw);
        } finally {
          raw.fill(0);
        }
      });
      // Keep only the periods a server still uses.
      for (const e of this.#keys.keys()) if (e + 3 < period || e > period + 3) this.#keys.delete(e);
      this.#keys.set(period, k);
    }
    return k;
  }

  /**
   * Seals a ticket for session s, which acceptSession or acceptResume has
   * just returned. A session gives one ticket.
   */
  async issueTicket(s, now) {
    const nowMs = toMillis(now, "now");
    const { authTime, rs } = ServerSession._takeResumption(s);
    if (!rs) fail("malformed", `session ${s.id} has already had its ticket`);
    try {
      const expires = authTime + TICKET_LIFETIME;
      if (nowMs >= expires) fail("expired", `the session's resumption chain ended at ${formatTime(expires)}`);
      const period = ticketPeriod(nowMs);
      const nonce = randomBytes(NONCE_SIZE);
      const head = concat(u8(VERSION), u8(TYPE_TICKET), u32(period), randomBytes(16), i64(expires), nonce);
      const plain = concat(userIDBytes(s.user), deviceIDBytes(s.device), i64(authTime), rs);
      try {
        return concat(head, await gcmSeal(await this.#key(period), nonce, plain, labeled(LABEL.ticket, head)));
      } finally {
        plain.fill(0);
      }
    } finally {
      rs.fill(0);
    }
  }

  /** Opens a ticket: { user, device, authTime, expires, secret }. For check and for tests. */
  async open(ticket) {
    const { period, expires } = parseTicketHeader(ticket);
    const head = ticket.subarray(0, TICKET_AAD_SIZE);
    const key = await this.#key(period);
    const plain = await withContext("resume ticket", () => gcmOpen(key, head.subarray(TICKET_AAD_SIZE - NONCE_SIZE), ticket.subarray(TICKET_AAD_SIZE), labeled(LABEL.ticket, head)));
    const view = new DataView(plain.buffer, plain.byteOffset, plain.length);
    const out = {
      user: userIDString(plain.subarray(0, USER_ID_SIZE)),
      device: deviceIDString(plain.subarray(USER_ID_SIZE, USER_ID_SIZE + DEVICE_ID_SIZE)),
      authTime: view.getBigInt64(USER_ID_SIZE + DEVICE_ID_SIZE),
      expires: Number(expires),
      secret: plain.slice(USER_ID_SIZE + DEVICE_ID_SIZE + 8),
      period,
    };
    plain.fill(0);
    return out;
  }

  /**
   * Checks a resume in the order of §18.6 steps 1 to 8: everything that
   * needs no state. Then look the device up, and call acceptResume.
   */
  async check(q, now) {
    if (!(q instanceof ResumeRequest)) throw new TypeError("check needs a parsed ResumeRequest");
    const nowMs = BigInt(toMillis(now, "now"));
    if (!q.serverFP.equal(new Fingerprint(this.#fp))) fail("mismatch", "resume is for another server key");
    const raw = ResumeRequest._raw(q);
    const skew = nowMs - new DataView(raw.buffer, raw.byteOffset).getBigInt64(58);
    if (skew > BigInt(MAX_CLOCK_SKEW) || skew < -BigInt(MAX_CLOCK_SKEW)) fail("clock_skew", `resume time ${q.time}`);
    const ticket = raw.subarray(98, 98 + TICKET_SIZE);
    const { period } = await withContext("resume ticket", () => parseTicketHeader(ticket));
    const cur = ticketPeriod(Number(nowMs));
    if (((period + 1) >>> 0) < cur || period > ((cur + 1) >>> 0)) fail("expired", `ticket key period ${period} is not in use (now ${cur})`);
    const t = await this.open(ticket);
    try {
      if (t.user !== q.user || t.device !== q.device) fail("mismatch", "ticket is for another device");
      const expires = new DataView(ticket.buffer, ticket.byteOffset).getBigInt64(22);
      if (nowMs >= expires) fail("expired", `ticket ended at ${formatTime(expires)}`);
      if (expires > t.authTime + BigInt(TICKET_LIFETIME)) fail("malformed", "ticket outlives its chain");
      const want = await binder(t.secret, ticket.subarray(6, 22), raw.subarray(0, MACED_SIZE));
      if (!constantTimeEqual(want, raw.subarray(MACED_SIZE))) fail("bad_signature", `resume of ${q.user}/${q.device}`);
      ResumeRequest._setState(q, { ticketID: toHex(ticket.subarray(6, 22)), expires: Number(expires), authTime: Number(t.authTime), secret: t.secret.slice() });
    } finally {
      t.secret.fill(0);
    }
  }
}

/** The ticket keys of a server key, which must be extractable (its PKCS #8 is their input). */
export async function newTicketKeys(serverKey) {
  if (!(serverKey instanceof PrivateKey)) throw new TypeError("newTicketKeys needs the server's PrivateKey");
  return new TicketKeys(await serverKey.bytes(), (await serverFingerprint(serverKey.public())).bytes());
}

/**
 * Starts the session a checked resume asks for (§18.6 steps 10 to 12). The
 * ticket is good once: replay remembers its ID until it expires. Returns
 * { session, answer }; then issue the session's own ticket.
 */
export function acceptResume(q, replay, lifetime, now) {
  return acceptResumeWithRandom(q, replay, lifetime, now, randomBytes(RANDOM_SIZE));
}

/** acceptResume with a given server random: for the test vectors only. */
export async function acceptResumeWithRandom(q, replay, lifetime, now, random) {
  const state = q instanceof ResumeRequest ? ResumeRequest._takeState(q) : null;
  if (!state) fail("malformed", "resume not checked, or already accepted");
  const nowMs = toMillis(now, "now");
  try {
    if (await replay.seen(state.ticketID, nowMs, state.expires)) fail("replay", "ticket already used");
    const { id, secret } = await resumedKeys(ResumeRequest._raw(q), random, state.secret);
    try {
      const { session, confirm } = await newServerEnd(secret, id, q.user, q.device, state.authTime, lifetime, nowMs);
      return { session, answer: concat(u8(VERSION), u8(TYPE_RESUME_ANSWER), random, confirm) };
    } finally {
      secret.fill(0);
    }
  } finally {
    state.secret.fill(0);
  }
}
