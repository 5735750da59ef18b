// conn.js: one device's connection to its qrtalkd (Go: client/conn.go,
// calls.go, live.go). Plain HTTPS carries the secure channel of
// docs/PROTOCOL.md §11: every authenticated request is a frame sealed for its
// method and path, every answer a frame sealed in reply. The channel, not
// TLS, authenticates the server (a browser cannot pin a self-signed
// certificate): the session secret is wrapped to the server key whose
// fingerprint the invite pinned. Sessions are set up when needed, renewed a
// minute before they end and again when the server forgot them (a restart),
// retrying the request once. The live channel is a WebSocket (/v1/live).

import * as P from './protocol.js';

/** An error answer of the server: err.api is its JSON body {code, http, error, hint}. */
export class APIError extends Error {
  constructor(body, status) {
    const b = body && typeof body.code === 'number' ? body : { code: 0, http: status, error: `server answered HTTP ${status}` };
    super(b.hint ? `${b.error} (code ${b.code}; ${b.hint})` : `${b.error} (code ${b.code})`);
    this.name = 'APIError';
    this.code = 'api';
    this.api = b;
    this.status = status;
  }
}

/** An error of the SDK with a code a caller may branch on (README "Errors"). */
export class ClientError extends Error {
  constructor(code, message, cause) {
    super(message, cause ? { cause } : undefined);
    this.name = 'ClientError';
    this.code = code;
  }
}

// Codes of the server's error catalogue (internal/api/errors.go) that the SDK acts on.
export const API = Object.freeze({
  sessionUnknown: 40101, deviceUnknown: 40104, notFound: 40400, userUnknown: 40401,
  noRoute: 40402, exists: 40900, rateLimited: 42900,
});

/** isAPI reports whether err is the server's error with the given catalogue code. */
export const isAPI = (err, code) => err instanceof APIError && err.api.code === code;

const FRAME = 'application/x-qrtalk-frame';
const JSONType = 'application/json';
const FRAME_HEADER = 'QRTalk-Frame';
const LIVE_PATH = '/v1/live';
const PUSH = { envelope: 1, drained: 2, ping: 3, closing: 4 };
// The server pings an idle channel every 30 s: a socket silent for longer
// than this is dead (a phone that slept, a NAT that forgot it): reconnect.
const LIVE_SILENCE = 75_000;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** jsonBytes encodes a request body as the Go server reads it. */
export const jsonBytes = (v) => enc.encode(JSON.stringify(v));
const parseJSON = (b, what) => {
  try {
    return JSON.parse(dec.decode(b));
  } catch {
    throw new Error(`the server's answer to ${what} is not JSON`);
  }
};

async function errorOf(resp) {
  let body = null;
  if ((resp.headers.get('content-type') ?? '').startsWith(JSONType)) {
    try { body = await resp.json(); } catch { /* not the catalogue's JSON */ }
  } else {
    await resp.arrayBuffer().catch(() => {});
  }
  return new APIError(body, resp.status);
}

/** checkServerURL returns the canonical server URL (as in an invite), or throws. */
export function serverURL(s) {
  return P.checkServerURL(s);
}

/**
 * fetchInfo reads GET /v1/info and checks that the server's key is the one
 * whose fingerprint was pinned. Returns {info, serverKey}.
 */
export async function fetchInfo(server, pinnedFP, fetchFn = globalThis.fetch) {
  let resp;
  try {
    resp = await fetchFn(server + '/v1/info', { cache: 'no-store' });
  } catch (e) {
    throw new Error(`cannot reach the server at ${server}: ${e.message}`, { cause: e });
  }
  if (!resp.ok) throw await errorOf(resp);
  const info = await resp.json();
  const key = await P.parsePublicKey(P.fromBase64(info.server_key ?? ''));
  const fp = await P.serverFingerprint(key);
  if (!P.fingerprintEqual(fp, pinnedFP)) {
    throw new ClientError('server-key', `server key mismatch: the server at ${server} is not the one the code pins (its fingerprint is ${P.fingerprintString(fp)})`);
  }
  return { info, serverKey: key };
}

/** plainCall makes an unauthenticated JSON request (register). */
export async function plainCall(server, method, path, body, fetchFn = globalThis.fetch) {
  const resp = await fetchFn(server + path, {
    method, cache: 'no-store',
    headers: body === undefined ? {} : { 'Content-Type': JSONType },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) throw await errorOf(resp);
  return resp.json();
}

/**
 * A Conn is one device's authenticated connection. device is
 * {user, device, authKey} (authKey: the non-extractable RSA-PSS CryptoKey).
 */
export class Conn {
  #session = null;
  #setup = null; // the session being set up, shared by concurrent callers

  /** dial fetches the server's description, checks its key against the pin, and returns a Conn. */
  static async dial({ server, serverFingerprint, device, fetch = globalThis.fetch, now = Date.now, WebSocket }) {
    const url = serverURL(server);
    const { info, serverKey } = await fetchInfo(url, serverFingerprint, fetch);
    return new Conn({ server: url, serverFingerprint, device, serverKey, info, fetch, now, WebSocket });
  }

  constructor({ server, serverFingerprint, device, serverKey, info, fetch = globalThis.fetch, now = Date.now, WebSocket }) {
    Object.assign(this, { server, serverFingerprint, device, serverKey, info, now });
    this.WebSocket = WebSocket; // undefined: the global one
    // Called as a plain function: a browser's fetch throws "Illegal
    // invocation" when called as a method of another object.
    this.fetch = (...args) => fetch.apply(globalThis, args);
    this.nativeFetch = fetch === globalThis.fetch;
  }

  /** reachable reports whether the server answers plain HTTPS requests. */
  async reachable() {
    try {
      const r = await this.fetch(this.server + '/v1/info', { cache: 'no-store' });
      await r.arrayBuffer();
      return r.ok;
    } catch {
      return false;
    }
  }

  /**
   * session returns a confirmed session with at least a minute left,
   * setting one up if needed. failed is a session the server no longer
   * knows (a restart): a new one replaces it, once for all the requests
   * that found out at the same time.
   */
  async session(failed = null) {
    const s = this.#session;
    if (s && s !== failed && this.now() + 60_000 < s.expires) return s;
    if (this.#setup) return this.#setup; // newer than any session that failed
    const p = this.#newSession().finally(() => { if (this.#setup === p) this.#setup = null; });
    this.#setup = p;
    return p;
  }

  async #newSession() {
    const { session, setup } = await P.newClientSession(
      { user: this.device.user, device: this.device.device, authKey: this.device.authKey }, this.serverKey, this.now());
    let resp;
    try {
      resp = await this.fetch(this.server + '/v1/session', {
        method: 'POST', body: setup, cache: 'no-store', headers: { 'Content-Type': FRAME },
      });
    } catch (e) {
      throw new Error(`cannot reach the server at ${this.server}: ${e.message}`, { cause: e });
    }
    if (!resp.ok) {
      const err = await errorOf(resp);
      err.message = `setting up a session: ${err.message}`;
      throw err;
    }
    const confirm = new Uint8Array(await resp.arrayBuffer());
    try {
      await session.confirm(confirm, this.now());
    } catch (e) {
      throw new Error(`the server did not confirm the session (${e.message}): it does not hold the pinned key`, { cause: e });
    }
    this.#session = session;
    return session;
  }

  /** call makes an authenticated request and returns the opened answer (bytes). */
  async callRaw(method, path, body) {
    let failed = null;
    for (let attempt = 0; ; attempt++) {
      const sess = await this.session(failed);
      try {
        return await this.#roundTrip(sess, method, path, body);
      } catch (e) {
        if (attempt === 0 && isAPI(e, API.sessionUnknown)) { failed = sess; continue; }
        throw e;
      }
    }
  }

  /** call makes an authenticated request with a JSON (or raw) body and decodes the JSON answer. */
  async call(method, path, body) {
    const raw = body instanceof Uint8Array ? body : jsonBytes(body ?? {});
    return parseJSON(await this.callRaw(method, path, raw), `${method} ${path}`);
  }

  async #roundTrip(sess, method, path, body) {
    const { frame, counter } = await sess.sealRequest(method, path, body);
    let resp;
    try {
      resp = await this.fetch(this.server + path, { method, body: frame, cache: 'no-store', headers: { 'Content-Type': FRAME } });
    } catch (e) {
      throw new Error(`cannot reach the server at ${this.server}: ${e.message}`, { cause: e });
    }
    if (!resp.ok) throw await errorOf(resp);
    const data = new Uint8Array(await resp.arrayBuffer());
    try {
      return await sess.openResponse(counter, method, path, data, this.now());
    } catch (e) {
      throw new Error(`the server's answer to ${method} ${path} does not authenticate: ${e.message}`, { cause: e });
    }
  }

  // The routes of internal/api (docs/PROTOCOL.md, "The HTTP API").

  /** send submits a sealed envelope: {id, expires_ms, results: [{user, device, status, code, reason}]}. */
  send(envelope) { return this.call('POST', '/v1/send', envelope); }

  /** directory: a user's identity key and device list as the server holds them (unverified). */
  async directory(user) {
    const d = await this.call('POST', '/v1/directory/' + user, {});
    if (d.user !== user) throw new Error(`directory: asked for ${user}, got ${d.user}`);
    return {
      user: d.user,
      identityKey: P.fromBase64(d.identity_key ?? ''),
      devices: (d.devices ?? []).map((b) => P.fromBase64(b)),
      revocations: (d.revocations ?? []).map((b) => P.fromBase64(b)),
    };
  }

  /**
   * devices fetches a user's devices and verifies them under the pinned
   * identity key (DER): a key that differs or a list that does not verify
   * is refused whole.
   */
  async devices(user, pinnedDER) {
    const dir = await this.directory(user);
    if (!P.bytesEqual(dir.identityKey, pinnedDER)) {
      throw new ClientError('key-changed', `the identity key of ${user} changed`);
    }
    const key = await P.parsePublicKey(dir.identityKey);
    return P.verifyDeviceList(key, user, dir.devices, dir.revocations);
  }

  addDevice(certBytes) { return this.call('POST', '/v1/devices/add', { device_cert: P.toBase64(certBytes) }); }
  revoke(revocationBytes) { return this.call('POST', '/v1/devices/revoke', { revocation: P.toBase64(revocationBytes) }); }
  deleteAccount() { return this.call('POST', '/v1/account/delete', {}); }

  /** inbox fetches queued envelopes (oldest first): {envelopes: [Uint8Array], more}. */
  async inbox({ limit = 100, wait = 0 } = {}) {
    const r = await this.call('POST', '/v1/inbox', { limit, wait_ms: wait });
    return { envelopes: (r.envelopes ?? []).map((b) => P.fromBase64(b)), more: !!r.more };
  }

  ack(ids) { return this.call('POST', '/v1/ack', { ids }); }

  /**
   * upload stores an encrypted blob (Uint8Array or Blob) for the given
   * devices ([{user, device}]) until ttl (seconds) ends; onProgress(done,
   * total) follows the bytes sent. Returns {id, expires_ms}.
   */
  async upload(data, sha256, ttl, recipients, onProgress) {
    const size = data.size ?? data.byteLength;
    const hdr = jsonBytes({ size, sha256: P.toBase64(sha256), ttl_s: ttl, recipients });
    const path = '/v1/blobs';
    let failed = null;
    for (let attempt = 0; ; attempt++) {
      const sess = await this.session(failed);
      const { frame, counter } = await sess.sealRequest('POST', path, hdr);
      let status, type, body;
      try {
        ({ status, type, body } = await sendBlob(this, path, P.toBase64URL(frame), data, size, onProgress));
      } catch (e) {
        throw new Error(`uploading an attachment: ${e.message}`, { cause: e });
      }
      if (status !== 200) {
        const err = new APIError(type.startsWith(JSONType) ? safeJSON(body) : null, status);
        if (attempt === 0 && isAPI(err, API.sessionUnknown)) { failed = sess; continue; } // the body was not kept: send again
        throw err;
      }
      return parseJSON(await sess.openResponse(counter, 'POST', path, body, this.now()), 'the upload');
    }
  }

  /**
   * download fetches a blob and checks it against its SHA-256 (from the
   * message that referenced it). Returns the encrypted bytes. maxSize (the
   * encrypted size of the attachment the signed message names) bounds what
   * is read: a server cannot fill the tab's memory with an endless body.
   */
  async download(id, sha256, onProgress, maxSize) {
    if (!Number.isSafeInteger(maxSize) || maxSize < 0) throw new TypeError('download needs the size the blob may have');
    const path = '/v1/blobs/' + id;
    let resp;
    let failed = null;
    for (let attempt = 0; ; attempt++) {
      const sess = await this.session(failed);
      const { frame } = await sess.sealRequest('GET', path, jsonBytes({}));
      resp = await this.fetch(this.server + path, { headers: { [FRAME_HEADER]: P.toBase64URL(frame) }, cache: 'no-store' });
      if (resp.ok) break;
      const err = await errorOf(resp);
      if (attempt === 0 && isAPI(err, API.sessionUnknown)) { failed = sess; continue; }
      throw err;
    }
    const data = await readBounded(resp, maxSize,
      () => new ClientError('decrypt', `the server sent a blob larger than the attachment (${maxSize} bytes): it was changed on the way`), onProgress);
    const sum = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
    if (!P.bytesEqual(sum, sha256)) throw new ClientError('decrypt', 'the attachment does not match its SHA-256: it was changed on the way');
    return data;
  }

  /** live opens the device's live channel (retrying once with a new session if the server forgot it). */
  async live() {
    let failed = null;
    for (let attempt = 0; ; attempt++) {
      const sess = await this.session(failed);
      try {
        return await Live.open(this, sess);
      } catch (e) {
        if (attempt === 0 && isAPI(e, API.sessionUnknown)) { failed = sess; continue; }
        throw e;
      }
    }
  }

  // Provisioning mailboxes (device linking, docs/PROTOCOL.md §17.8): not
  // authenticated; the bodies are sealed provisioning messages.

  async provisionPut(mailboxHex, msg) {
    const resp = await this.fetch(this.server + `/v1/provision/${mailboxHex}`, {
      method: 'PUT', body: msg, cache: 'no-store', headers: { 'Content-Type': 'application/octet-stream' },
    });
    if (!resp.ok) throw await errorOf(resp);
    await resp.arrayBuffer();
  }

  /** provisionTake takes a mailbox's message, waiting up to wait ms; throws APIError 40400 when none came. */
  async provisionTake(mailboxHex, wait = 0, signal) {
    const q = wait > 0 ? `?wait=${Math.floor(wait)}` : '';
    const resp = await this.fetch(this.server + `/v1/provision/${mailboxHex}/take${q}`, { method: 'POST', cache: 'no-store', signal });
    if (!resp.ok) throw await errorOf(resp);
    return readBounded(resp, P.MAX_LINK_MESSAGE_SIZE, () => new Error('the server returned more than a provisioning message'));
  }
}

// readBounded reads a response body of at most max bytes; a longer one (by
// its stated length, or as it arrives) is cancelled and tooLarge() thrown,
// so a server cannot make the page buffer an endless body.
async function readBounded(resp, max, tooLarge, onProgress) {
  const total = Number(resp.headers.get('content-length') ?? 0);
  if (total > max) {
    await resp.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  if (!resp.body) return new Uint8Array(0);
  const parts = [];
  let done = 0;
  const reader = resp.body.getReader();
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    done += value.byteLength;
    if (done > max) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    parts.push(value);
    onProgress?.(done, total);
  }
  return P.concat(...parts);
}

function safeJSON(bytes) {
  try { return JSON.parse(dec.decode(bytes)); } catch { return null; }
}

// sendBlob posts the blob with the frame in a header. A browser uses
// XMLHttpRequest, whose upload events give real progress (and which streams
// a Blob from disk without reading it into script memory); Node streams the
// body through fetch and counts what it hands over.
async function sendBlob(conn, path, frameHeader, data, size, onProgress) {
  const url = conn.server + path;
  if (typeof XMLHttpRequest === 'function' && conn.nativeFetch) {
    return new Promise((resolve, reject) => {
      const x = new XMLHttpRequest();
      x.open('POST', url);
      x.responseType = 'arraybuffer';
      x.setRequestHeader(FRAME_HEADER, frameHeader);
      x.setRequestHeader('Content-Type', 'application/octet-stream');
      x.upload.onprogress = (e) => onProgress?.(e.loaded, size);
      x.onload = () => resolve({ status: x.status, type: x.getResponseHeader('content-type') ?? '', body: new Uint8Array(x.response ?? new ArrayBuffer(0)) });
      x.onerror = () => reject(new Error('network error'));
      x.send(data);
    });
  }
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(await data.arrayBuffer());
  const chunk = 64 << 10;
  let off = 0;
  const stream = new ReadableStream({
    pull(ctrl) {
      if (off >= bytes.byteLength) { ctrl.close(); return; }
      const end = Math.min(off + chunk, bytes.byteLength);
      ctrl.enqueue(bytes.subarray(off, end));
      off = end;
      onProgress?.(off, size);
    },
  });
  const resp = await conn.fetch(url, {
    method: 'POST', body: stream, duplex: 'half', cache: 'no-store',
    headers: { [FRAME_HEADER]: frameHeader, 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) },
  });
  return { status: resp.status, type: resp.headers.get('content-type') ?? '', body: new Uint8Array(await resp.arrayBuffer()) };
}

/**
 * A Live is the device's live channel: the server pushes the queue, then a
 * "drained" marker, then messages as they arrive; the device acknowledges
 * each by message ID. next() returns {type: 'envelope', envelope} |
 * {type: 'drained'} | {type: 'closing'}; pings are absorbed. A closed
 * socket makes next() throw.
 */
export class Live {
  #ws;
  #sess;
  #conn;
  #queue = [];
  #waiters = [];
  #closed = null;
  #watchdog = null;

  static async open(conn, sess) {
    const url = conn.server.replace(/^http/, 'ws') + LIVE_PATH;
    // An error here says the WebSocket itself did not get through (a
    // proxy that refuses it, say): the account then falls back to polling.
    const blocked = (cause) => Object.assign(new Error(`opening the live channel to ${conn.server} failed`, { cause }), { websocket: true });
    let ws;
    try {
      ws = new (conn.WebSocket ?? globalThis.WebSocket)(url);
    } catch (e) {
      throw blocked(e);
    }
    ws.binaryType = 'arraybuffer';
    const live = new Live(conn, ws, sess);
    await new Promise((ok, fail) => {
      ws.onopen = ok;
      ws.onerror = () => fail(blocked());
    });
    const { frame } = await sess.sealRequest('GET', LIVE_PATH, jsonBytes({}));
    ws.send(frame);
    // The server answers a frame it cannot open by closing (policy
    // violation, with the reason); the first push tells the channel is up.
    await live.#peek();
    return live;
  }

  constructor(conn, ws, sess) {
    this.#conn = conn;
    this.#ws = ws;
    this.#sess = sess;
    const alive = () => {
      clearTimeout(this.#watchdog);
      this.#watchdog = setTimeout(() => {
        this.#closed ??= new Error('live channel: nothing from the server for 75 s; reconnecting');
        this.#push({ error: this.#closed });
        this.close();
      }, LIVE_SILENCE);
      this.#watchdog.unref?.();
    };
    alive();
    ws.onmessage = (e) => {
      alive();
      this.#push({ data: new Uint8Array(e.data) });
    };
    ws.onclose = (e) => {
      clearTimeout(this.#watchdog);
      let err;
      if (e.code === 1008 && /session/i.test(e.reason)) {
        err = new APIError({ code: API.sessionUnknown, http: 401, error: e.reason }, 401);
      } else if (e.code === 1008 && /device/i.test(e.reason)) {
        err = new APIError({ code: API.deviceUnknown, http: 401, error: e.reason }, 401);
      } else {
        err = new Error(`live channel closed (${e.code}${e.reason ? ': ' + e.reason : ''})`);
      }
      this.#closed = err;
      this.#push({ error: err });
    };
    ws.onerror = () => {};
  }

  #push(item) {
    const w = this.#waiters.shift();
    if (w) w(item); else this.#queue.push(item);
  }

  #take() {
    if (this.#queue.length) return Promise.resolve(this.#queue.shift());
    if (this.#closed) return Promise.resolve({ error: this.#closed });
    return new Promise((ok) => this.#waiters.push(ok));
  }

  async #peek() {
    const item = await this.#take();
    this.#queue.unshift(item);
    if (item.error) throw item.error;
  }

  async next() {
    for (;;) {
      const item = await this.#take();
      if (item.error) throw item.error;
      let body;
      try {
        body = await this.#sess.openPush(item.data, this.#conn.now());
      } catch (e) {
        this.close();
        throw new Error(`live channel: a pushed frame does not authenticate: ${e.message}`, { cause: e });
      }
      if (body.length === 0) throw new Error('live channel: empty push');
      switch (body[0]) {
        case PUSH.envelope: return { type: 'envelope', envelope: body.subarray(1) };
        case PUSH.drained: return { type: 'drained' };
        case PUSH.closing: return { type: 'closing' };
        default: continue; // pings; unknown pushes are for newer clients
      }
    }
  }

  /** ack acknowledges messages by ID (hex); the server deletes them. */
  async ack(ids) {
    const body = P.concat(...ids.map((id) => P.fromHex(id)));
    const { frame } = await this.#sess.sealRequest('ACK', LIVE_PATH, body);
    if (this.#ws.readyState === 1) this.#ws.send(frame);
  }

  close() {
    clearTimeout(this.#watchdog);
    try { this.#ws.close(1000, 'bye'); } catch { /* closed already */ }
  }
}
