// link.js: linking a device by QR code (Go: client/link.go; docs/PROTOCOL.md
// §17). The existing device calls startLink and shows the code; the new
// device scans it and calls joinLink; the existing device's complete()
// certifies the new device with the identity key and sends it the identity
// key. The two messages go through the server's mailboxes encrypted under
// the code's secret, which the server never sees.
//
// This is the only module that exports the identity key (PrivateKey.bytes()
// inside sealLinkResponse), and only into a provisioning message sealed for
// the device that answered this code.

import * as P from './protocol.js';
import { Conn, ClientError, API, isAPI, fetchInfo } from './conn.js';

/** A code is good for 10 minutes (protocol LinkLifetime). */
export const LINK_LIFETIME = 10 * 60 * 1000;
// One take waits this long on the server (it allows 30 s).
const POLL = 25_000;

const sleep = (ms, signal) => new Promise((ok) => {
  const t = setTimeout(ok, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); ok(); }, { once: true });
});

// await long-polls a mailbox until its message arrives, the deadline
// passes or signal aborts.
async function awaitMailbox(conn, mailbox, deadline, signal, now) {
  for (;;) {
    if (signal?.aborted) throw new ClientError('aborted', 'device link cancelled');
    const left = deadline - now();
    if (left <= 0) throw new ClientError('link-expired', 'the link code expired (a code is good for 10 minutes): no answer came in time; start a new link');
    const start = Date.now();
    const ctl = new AbortController();
    const stop = () => ctl.abort();
    signal?.addEventListener('abort', stop, { once: true });
    const timer = setTimeout(stop, Math.min(left, POLL + 10_000));
    try {
      return await conn.provisionTake(mailbox, Math.min(POLL, left), ctl.signal);
    } catch (e) {
      if (isAPI(e, API.notFound)) {
        // The server answers at the end of the wait when nothing came; at
        // once only when the message was there and taken by another.
        if (Date.now() - start < Math.min(POLL, left) / 2) {
          throw new ClientError('link-used', 'the link code was already used: the message was taken by someone else; start a new link');
        }
        continue;
      }
      if (isAPI(e, API.rateLimited)) { await sleep(2000, signal); continue; }
      if (e?.name === 'AbortError' || ctl.signal.aborted) continue; // the loop checks why
      throw e;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', stop);
    }
  }
}

/**
 * A Link is a device link in progress on the existing device. Show code
 * (as a QR code, or as text) to the new device only: it holds the secret.
 */
export class Link {
  #ctx;
  #lc;
  #used = false;

  /** start makes a fresh code and checks that the server relays device links. */
  static async start({ conn, identity, user, server, serverFP, now = Date.now }) {
    if (!identity?.extractable) {
      throw new ClientError('malformed', 'linking a device needs the identity key, which this device cannot export');
    }
    const lc = P.newLinkCode(server, serverFP, user);
    try {
      // The request mailbox is empty: a take answers 404 "not found" on a
      // server that has provisioning, "no such route" on one without.
      await conn.provisionTake(await lc.requestMailbox(), 0);
    } catch (e) {
      if (isAPI(e, API.noRoute)) throw new Error('this server cannot link devices (ask its operator to upgrade qrtalkd)');
      if (!isAPI(e, API.notFound)) throw new Error(`starting a device link: ${e.message}`, { cause: e });
    }
    const link = new Link();
    link.#ctx = { conn, identity, user, now };
    link.#lc = lc;
    link.code = lc.uri();
    link.expires = now() + LINK_LIFETIME;
    return link;
  }

  /**
   * complete waits for the new device's request (until the code expires or
   * signal aborts), certifies the new device with the identity key,
   * registers it with the server and sends it the identity key and its
   * certificate. Returns the new device's ID: show it, so that the user sees
   * which device was linked. A link completes once.
   */
  async complete({ signal } = {}) {
    if (this.#used) throw new Error('this device link was already completed or attempted; start a new one');
    this.#used = true;
    const { conn, identity, user, now } = this.#ctx;
    const lc = this.#lc;
    let msg;
    try {
      msg = await awaitMailbox(conn, await lc.requestMailbox(), this.expires, signal, now);
    } catch (e) {
      e.message = `waiting for the new device: ${e.message}`;
      throw e;
    }
    let req;
    try {
      req = await P.openLinkRequest(lc, msg);
    } catch (e) {
      throw new ClientError('link-failed', `device link failed: the request that arrived was not made with this link code (${e.message}); start a new link`, e);
    }
    const cert = await P.certifyDevice(identity, user, req.device, req.encryptionKey, req.authKey, now());
    try {
      await conn.addDevice(cert.bytes());
    } catch (e) {
      e.message = `registering the new device ${req.device}: ${e.message}`;
      throw e;
    }
    const sealed = await P.sealLinkResponse(lc, req, { user, identity, cert });
    try {
      await conn.provisionPut(await lc.responseMailbox(), sealed);
    } catch (e) {
      throw new Error(`answering the new device ${req.device} (it is registered: revoke it if it never comes up): ${e.message}`, { cause: e });
    }
    return req.device;
  }
}

/**
 * joinLink makes this a new device of the user whose other device shows
 * code. The server's URL and fingerprint come from the code and are pinned.
 * scannedAt is when the code was read: the join gives up 10 minutes after.
 * Returns {dev, conn, server, serverFP} for Account.adopt.
 */
export async function joinLink(code, { scannedAt, now = Date.now, fetch = globalThis.fetch, server, signal } = {}) {
  let lc;
  try {
    lc = await P.parseLinkCode(String(code ?? '').trim());
  } catch (e) {
    throw new ClientError('malformed', `reading the link code: ${e.message}`, e);
  }
  const url = server ? P.checkServerURL(server) : lc.server;
  const deadline = (scannedAt ?? now()) + LINK_LIFETIME;
  if (deadline <= now()) throw new ClientError('link-expired', 'the link code expired: scan a new code on your other device');
  const { info, serverKey } = await fetchInfo(url, lc.serverFP, fetch);
  const { encryption, auth } = await P.generateDeviceKeys();
  const req = { device: P.newDeviceID(), encryptionKey: encryption.public(), authKey: auth.public() };
  const sealed = await P.sealLinkRequest(lc, req);
  const conn0 = new Conn({ server: url, serverFingerprint: lc.serverFP, device: null, serverKey, info, fetch, now });
  try {
    await conn0.provisionPut(await lc.requestMailbox(), sealed);
  } catch (e) {
    if (isAPI(e, API.exists)) {
      throw new ClientError('link-used', 'the link code was already used by another device. If that was not you, list the devices on your other device and revoke the one you do not know; then link again with a new code');
    }
    throw new Error(`sending the link request: ${e.message}`, { cause: e });
  }
  let msg;
  try {
    msg = await awaitMailbox(conn0, await lc.responseMailbox(), deadline, signal, now);
  } catch (e) {
    e.message = `waiting for your other device to confirm: ${e.message}`;
    throw e;
  }
  let resp;
  try {
    // Extractable: this device can link further devices, as the Go SDK's can.
    resp = await P.openLinkResponse(lc, req, msg, { extractable: true });
  } catch (e) {
    throw new ClientError('link-failed', `device link failed: the answer is not valid (${e.message}); link again with a new code`, e);
  }
  const dev = { user: resp.user, device: req.device, identity: resp.identity, enc: encryption, auth, cert: resp.cert.bytes() };
  const conn = new Conn({
    server: url, serverFingerprint: lc.serverFP, device: { user: dev.user, device: dev.device, authKey: auth },
    serverKey, info, fetch, now,
  });
  // Last, ask the server, as the new device, for the user's devices: it
  // must hold the same identity key and list this device's certificate.
  let certs;
  try {
    certs = await conn.devices(dev.user, resp.identity.public().bytes());
  } catch (e) {
    throw new ClientError('link-failed', `checking the new device with the server: ${e.message}`, e);
  }
  if (!certs.some((c) => c.device === dev.device && P.bytesEqual(c.bytes(), dev.cert))) {
    throw new ClientError('link-failed', 'device link failed: the server does not list this device under the user\'s identity key');
  }
  return { dev, conn, server: url, serverFP: lc.serverFP };
}
