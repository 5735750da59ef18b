// account.js: one device's whole state and what a user does with it (Go:
// client/account.go, device.go, contacts.go, groups.go, messaging.go,
// receive.go). Join from an invite, contacts pinned on first use, groups,
// sending to every device of every recipient and to the user's own other
// devices, receiving (open, signature status, receipts, typing, group
// changes), the live channel with reconnects, and expiry of everything
// stored when its TTL ends. Events go out through EventTarget (README.md).

import * as P from './protocol.js';
import { Conn, ClientError, APIError, API, isAPI, plainCall, fetchInfo, serverURL } from './conn.js';
import { checkStore } from './store.js';
import { Link, joinLink } from './link.js';

// Content types of the messages the SDK sends, as the Go SDK (messaging.go).
export const ContentText = 'text/plain; charset=utf-8';
export const ContentReceipt = 'application/x.qrtalk.receipt+json';
export const ContentTyping = 'application/x.qrtalk.typing';
export const ContentGroup = 'application/x.qrtalk.group+json';

// Signature statuses shown for every message.
export const SigVerified = 'verified';
export const SigUnverifiedKey = 'unverified key';
export const SigUnsigned = 'unsigned';
export const SigInvalid = 'invalid';

export const MIN_TTL = 1;
export const MAX_TTL = 7 * 24 * 3600;
const DEFAULT_TTL = 3600;
const TYPING_TTL = 10;
const MAX_TIMER = 2 ** 31 - 1;
// After this many failed WebSocket openings in a row the account polls the
// queue for POLL_PERIOD, with long polls of POLL_WAIT, then tries again.
const WS_TRIES = 3;
const POLL_PERIOD = 5 * 60_000;
const POLL_WAIT = 25_000;
// How many opened messages are kept in memory for redrawing a list.
const OPENED_CACHE = 2000;
// How long a verified device list serves receipts and typing events.
const DEVICE_CACHE = 30_000;
// Delivered receipts wait this long for more messages of the same sender.
const RECEIPT_DELAY = 200;
// Events the tab holding the live channel relays to the device's other tabs.
const RELAYED = new Set(['message', 'receipt', 'typing', 'group', 'contact-changed', 'expired', 'connection', 'download', 'drained']);

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: false });
const isControl = (ct) => ct === ContentReceipt || ct === ContentTyping || ct === ContentGroup;

/** sanitizeName keeps nicknames to one printable line (Go: sanitizeName). */
export function sanitizeName(s) {
  return String(s ?? '').trim().replace(/[\u0000-\u001f\u007f]/g, '');
}

/** checkTTL returns ttl (seconds) if it is whole seconds from 1 s to 7 days, else throws. */
export function checkTTL(ttl) {
  if (!Number.isInteger(ttl) || ttl < MIN_TTL || ttl > MAX_TTL) {
    throw new ClientError('ttl', `TTL must be whole seconds from 1 s to 7 days (604800 s), not ${ttl}`);
  }
  return ttl;
}

function mediaType(name) {
  const ext = (/\.[^.]*$/.exec(name ?? '')?.[0] ?? '').toLowerCase();
  return { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.txt': 'text/plain', '.pdf': 'application/pdf' }[ext]
    ?? 'application/octet-stream';
}

/** An Account is one device: its keys, contacts, groups and messages. */
export class Account extends EventTarget {
  #store;
  #rec;
  #conn = null;
  #connP = null;
  #identity = null; // PrivateKey (RSA-PSS; extractable for device linking only)
  #enc = null; // PrivateKey (RSA-OAEP, non-extractable)
  #auth = null; // PrivateKey (RSA-PSS, non-extractable)
  #identityPub = null;
  #serverFP = null; // Fingerprint
  #keys = new Map(); // DER hex -> parsed PublicKey
  #timer = null;
  #live = null;
  #running = false;
  #wake = null;
  #onOnline = null;
  #leader = false; // this object holds the device's live channel
  #tabs = null; // BroadcastChannel to the other tabs of this device (browser)
  #lockAbort = null;
  #closed = false;
  #delivered = new Map(); // sender -> envelopes awaiting a delivered receipt
  #deliveredTimer = null;
  #deviceCache = new Map(); // user -> {at, identity, certs}: verified lists, for receipts and typing
  #opened = new Map(); // message ID -> {tag, status, view}: messages opened for display (memory only)
  #early = new Map(); // message ID -> {at, said: [{from, kind}]}: receipts that came before our own copy was stored
  connection = 'offline';

  /**
   * join creates a new user from a qrtalk:invite text: identity and device
   * keys, the server's key pinned from the invite, registration. opts.server
   * replaces the invite's URL (tests and reverse proxies only).
   */
  static async join(store, invite, { server, now = Date.now, fetch = globalThis.fetch } = {}) {
    checkStore(store);
    let inv;
    try {
      inv = P.parseInvite(String(invite ?? '').trim());
    } catch (e) {
      throw new ClientError('malformed', `reading the invite: ${e.message}`, e);
    }
    if (await store.getAccount()) throw new ClientError('exists', 'this browser already holds an account');
    const url = server ? serverURL(server) : inv.server;
    const { info, serverKey } = await fetchInfo(url, inv.serverFP, fetch);
    const user = P.newUserID();
    // The identity key is extractable only so that linking a device can
    // export it (link.js); nothing else exports it.
    const dev = await newDevice(user, await P.generateIdentityKey({ extractable: true }), now());
    return Account.#register(store, { url, serverFP: inv.serverFP, info, serverKey, token: inv.token, dev, now, fetch });
  }

  // register sends the new user's identity key and first certificate.
  static async #register(store, { url, serverFP, info, serverKey, token, dev, now, fetch }) {
    const req = { identity_key: P.toBase64(dev.identity.public().bytes()), device_cert: P.toBase64(dev.cert) };
    if (token) req.invite = token;
    let resp;
    try {
      resp = await plainCall(url, 'POST', '/v1/register', req, fetch);
    } catch (e) {
      e.message = `registering: ${e.message}`;
      throw e;
    }
    if (resp.user !== dev.user || resp.device !== dev.device) {
      throw new Error(`registering: the server confirmed ${resp.user}/${resp.device}, not ${dev.user}/${dev.device}`);
    }
    const rec = await accountRecord(url, serverFP, dev, now());
    await store.putAccount(rec);
    const acc = new Account(store, rec, { now, fetch });
    await acc.#afterOpen();
    acc.#conn = new Conn({ server: url, serverFingerprint: serverFP, device: acc.#channelDevice(), serverKey, info, fetch, now });
    return acc;
  }

  /** open returns the account kept in store, or null if there is none. */
  static async open(store, { now = Date.now, fetch = globalThis.fetch, WebSocket } = {}) {
    checkStore(store);
    const rec = await store.getAccount();
    if (!rec) return null;
    if (rec.version !== 1) throw new Error('the stored account is of an unknown version');
    const acc = new Account(store, rec, { now, fetch, WebSocket });
    await acc.#afterOpen();
    return acc;
  }

  /** adopt stores a device made elsewhere (linking) as this store's account. */
  static async adopt(store, { server, serverFP, dev, conn, now = Date.now, fetch = globalThis.fetch }) {
    checkStore(store);
    if (await store.getAccount()) throw new ClientError('exists', 'this browser already holds an account');
    const rec = await accountRecord(server, serverFP, dev, now());
    await store.putAccount(rec);
    const acc = new Account(store, rec, { now, fetch });
    await acc.#afterOpen();
    acc.#conn = conn;
    return acc;
  }

  /**
   * joinLink makes this store's account a new device of the user whose
   * other device shows code (qrtalk:link?...; e.g. `qrtalk device link`).
   */
  static async joinLink(store, code, { scannedAt, now = Date.now, fetch = globalThis.fetch, server, signal } = {}) {
    checkStore(store);
    if (await store.getAccount()) throw new ClientError('exists', 'this browser already holds an account');
    const { dev, conn, server: url, serverFP } = await joinLink(code, { scannedAt, now, fetch, server, signal });
    return Account.adopt(store, { server: url, serverFP, dev, conn, now, fetch });
  }

  constructor(store, rec, { now = Date.now, fetch = globalThis.fetch, WebSocket } = {}) {
    super();
    this.#store = store;
    this.#rec = rec;
    this.now = now;
    this.fetch = fetch;
    this.WebSocket = WebSocket; // undefined: the global one (tests give another)
  }

  async #afterOpen() {
    this.#identity = P.privateKeyFromStorage(this.#rec.identityKey);
    this.#enc = P.privateKeyFromStorage(this.#rec.encKey);
    this.#auth = P.privateKeyFromStorage(this.#rec.authKey);
    this.#identityPub = this.#identity.public();
    this.#serverFP = P.parseFingerprint(this.#rec.serverFingerprint);
    const fp = await P.identityFingerprint(this.#identityPub);
    this.fingerprint = P.fingerprintString(fp);
    this.fingerprintNumeric = P.fingerprintNumeric(fp);
    this.contactCode = P.contactCardURI({ server: this.server, serverFP: this.#serverFP, user: this.user, identity: fp });
    // Whatever expired while the account was closed goes before anything
    // else is done with it.
    await this.expire();
  }

  get user() { return this.#rec.user; }
  get device() { return this.#rec.device; }
  get server() { return this.#rec.server; }
  get serverFingerprint() { return this.#rec.serverFingerprint; }
  /** The local store (for the UI's own settings it may keep beside). */
  get store() { return this.#store; }

  #channelDevice() { return { user: this.user, device: this.device, authKey: this.#auth }; }
  #me() { return { user: this.user, device: this.device, key: this.#enc }; }
  #sender() { return { user: this.user, device: this.device, identity: this.#identity }; }

  /** conn returns the connection to the server, dialing it on first use. */
  async conn() {
    if (this.#conn) return this.#conn;
    this.#connP ??= Conn.dial({
      server: this.server, serverFingerprint: this.#serverFP, device: this.#channelDevice(),
      fetch: this.fetch, now: this.now, WebSocket: this.WebSocket,
    }).then((c) => (this.#conn = c)).finally(() => { this.#connP = null; });
    return this.#connP;
  }

  async #key(der) {
    const k = P.toHex(der);
    let key = this.#keys.get(k);
    if (!key) {
      key = await P.parsePublicKey(der);
      this.#keys.set(k, key);
    }
    return key;
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
    // The tab that holds the live channel tells the other tabs of this
    // device what arrived (see start).
    if (this.#leader && this.#tabs && RELAYED.has(type)) {
      try { this.#tabs.postMessage({ type, detail }); } catch { /* not cloneable: the other tabs read the store */ }
    }
  }

  #setConnection(state, error, via) {
    if (this.connection === state && !error) return;
    this.connection = state;
    const detail = { state };
    if (error) detail.error = error;
    if (via) detail.via = via;
    this.#emit('connection', detail);
  }

  // poll receives by long polls of the queue (inbox) until the time until.
  async #poll(until) {
    const conn = await this.conn();
    await conn.inbox({ limit: 1 }); // the server answers: only the WebSocket is blocked
    this.#setConnection('connected', null, 'poll');
    while (this.#running && this.now() < until) {
      await this.sync({ wait: POLL_WAIT });
    }
  }

  // ---- contacts (Go: contacts.go) ----

  /**
   * addContact adds a contact from a qrtalk:contact code (scanned or pasted:
   * its key is verified by the code) or a user ID (pinned unverified). The
   * contact's device list must verify under the key.
   */
  async addContact(ref, name, { fingerprint } = {}) {
    ref = String(ref ?? '').trim();
    let card = null;
    let user;
    if (ref.startsWith('qrtalk:')) {
      card = await P.parseContactCard(ref);
      if (card.server !== this.server || !P.fingerprintEqual(card.serverFP, this.#serverFP)) {
        throw new ClientError('other-server', `the contact is on another server: ${card.server} (this account is on ${this.server})`);
      }
      user = card.user;
    } else {
      try {
        user = P.parseUserID(ref);
      } catch (e) {
        throw new ClientError('malformed', `"${ref}" is neither a user ID nor a qrtalk:contact code`, e);
      }
    }
    if (user === this.user) throw new ClientError('malformed', 'that is your own ID');
    const conn = await this.conn();
    const dir = await conn.directory(user);
    const key = await this.#key(dir.identityKey);
    if (card && !P.fingerprintEqual(await P.identityFingerprint(key), card.identity)) {
      throw new ClientError('mismatch', `the server gives a key for ${user} that is not the one in the code you scanned: do not trust this contact`);
    }
    // A fingerprint typed with the ID (read out by the contact) verifies
    // the key before it is pinned; a mismatch pins nothing.
    const typed = fingerprint != null && String(fingerprint).trim() !== '';
    if (typed && !P.matchesNumeric(await P.identityFingerprint(key), String(fingerprint))) {
      throw new ClientError('mismatch', `the fingerprint you typed is not the one of the key the server gives for ${user}: do not trust this contact until you know why`);
    }
    try {
      await P.verifyDeviceList(key, user, dir.devices, dir.revocations);
    } catch (e) {
      throw new ClientError('mismatch', `the device list of ${user} does not verify: ${e.message}`, e);
    }
    name = sanitizeName(name) || user.slice(0, 8);
    const all = await this.#store.listContacts();
    if (all.some((c) => c.name === name && c.user !== user)) {
      throw new ClientError('exists', `a contact named "${name}" exists already; choose another name`);
    }
    const old = all.find((c) => c.user === user);
    let c;
    if (old && !P.bytesEqual(old.identity, dir.identityKey)) {
      // A known contact whose key the server now gives differently: that is
      // a key change, not a new contact. Go keeps the old row; so do we.
      c = old;
    } else {
      c = { user, name, identity: dir.identityKey, verified: !!card || typed || !!old?.verified, pending: old?.pending ?? null, added: old?.added ?? this.now() };
      await this.#store.putContact(c);
    }
    return this.#contactView(c);
  }

  async #findContact(who) {
    who = String(who ?? '').trim();
    if (who.startsWith('u:')) who = who.slice(2);
    let id = null;
    try { id = P.parseUserID(who); } catch { /* a name */ }
    const byID = id ? await this.#store.getContact(id) : null;
    if (byID) return byID;
    const name = sanitizeName(who);
    const all = await this.#store.listContacts();
    return all.find((c) => c.name === name) ?? null;
  }

  async #mustContact(who) {
    const c = await this.#findContact(who);
    if (!c) throw new ClientError('no-contact', `no such contact: "${who}"`);
    return c;
  }

  async #contactView(c) {
    const fp = await P.identityFingerprint(await this.#key(c.identity));
    const v = {
      user: c.user, name: c.name, key: 'u:' + c.user, verified: !!c.verified, changed: !!c.pending,
      trust: c.pending ? 'CHANGED' : c.verified ? 'verified' : 'unverified',
      fingerprint: P.fingerprintString(fp), fingerprintNumeric: P.fingerprintNumeric(fp),
      pendingFingerprint: null, pendingFingerprintNumeric: null, added: c.added,
    };
    if (c.pending) {
      const pfp = await P.identityFingerprint(await this.#key(c.pending));
      v.pendingFingerprint = P.fingerprintString(pfp);
      v.pendingFingerprintNumeric = P.fingerprintNumeric(pfp);
    }
    return v;
  }

  /** contact finds a contact by name, user ID or 'u:<user ID>'. */
  async contact(who) { return this.#contactView(await this.#mustContact(who)); }

  /** contacts lists the contacts by name. */
  async contacts() {
    const all = await this.#store.listContacts();
    all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return Promise.all(all.map((c) => this.#contactView(c)));
  }

  /**
   * verifyContact marks a contact verified when fingerprint (the 40 digits
   * the contact reads out, or their qrtalk:contact code) matches the pinned
   * key. A mismatch throws and changes nothing.
   */
  async verifyContact(who, fingerprint) {
    const c = await this.#mustContact(who);
    const fp = await P.identityFingerprint(await this.#key(c.identity));
    const s = String(fingerprint ?? '').trim();
    let ok;
    if (s.startsWith('qrtalk:')) {
      const card = await P.parseContactCard(s);
      ok = card.user === c.user && P.fingerprintEqual(card.identity, fp);
    } else {
      ok = P.matchesNumeric(fp, s);
    }
    if (!ok) {
      throw new ClientError('mismatch', `the fingerprint does not match ${c.name}'s pinned key; do not trust this contact until you know why`);
    }
    c.verified = true;
    await this.#store.putContact(c);
    const v = await this.#contactView(c);
    this.#emit('contact-changed', v);
    return v;
  }

  /**
   * acceptKeyChange pins the new identity key a contact's server showed,
   * once the user has checked it with them. seen is the fingerprint the user
   * was shown (base64url, or the 40 digits): if the pending key is not that
   * one, nothing is pinned. The new key starts unverified.
   */
  async acceptKeyChange(who, seen) {
    const c = await this.#mustContact(who);
    if (!c.pending) throw new ClientError('malformed', `${c.name}'s key has not changed`);
    const pfp = await P.identityFingerprint(await this.#key(c.pending));
    const s = String(seen ?? '').trim();
    let same = false;
    if (/^[A-Za-z0-9_-]{43}$/.test(s)) same = P.fingerprintEqual(pfp, P.parseFingerprint(s));
    else if (/\d/.test(s)) same = P.matchesNumeric(pfp, s);
    if (!same) {
      throw new ClientError('key-changed', `${c.name}'s new key is not the one whose fingerprint was shown; nothing accepted`);
    }
    const now = await this.#store.getContact(c.user);
    if (!now?.pending || !P.bytesEqual(now.pending, c.pending)) {
      throw new ClientError('key-changed', `${c.name}'s pending key changed while accepting; nothing accepted`);
    }
    Object.assign(now, { identity: now.pending, pending: null, verified: false });
    await this.#store.putContact(now);
    const v = await this.#contactView(now);
    this.#emit('contact-changed', v);
    return v;
  }

  /** removeContact forgets a contact (its messages stay until they expire). */
  async removeContact(who) {
    const c = await this.#mustContact(who);
    await this.#store.deleteContact(c.user);
  }

  // contactDevices fetches a contact's devices verified under the pinned
  // key. Another key on the server marks the contact changed and stops.
  // With cached, a list verified in the last 30 s is used again: receipts
  // and typing events (whose loss is harmless) then cost no key directory
  // lookup, which the server limits per device (2/s). Messages always look.
  async #contactDevices(c, cached = false) {
    if (c.pending) {
      throw new ClientError('key-changed', `${c.name}'s identity key changed: check the new fingerprint with them, then accept it. Nothing was sent`);
    }
    const hit = this.#deviceCache.get(c.user);
    if (cached && hit && this.now() - hit.at < DEVICE_CACHE && P.bytesEqual(hit.identity, c.identity)) return hit.certs;
    const conn = await this.conn();
    const dir = await conn.directory(c.user);
    if (!P.bytesEqual(dir.identityKey, c.identity)) {
      await this.#key(dir.identityKey); // refuses a key that is not a v1 key
      const cur = (await this.#store.getContact(c.user)) ?? c;
      cur.pending = dir.identityKey;
      await this.#store.putContact(cur);
      this.#emit('contact-changed', await this.#contactView(cur));
      throw new ClientError('key-changed', `${c.name}'s identity key changed: check the new fingerprint with them, then accept it. Nothing was sent`);
    }
    let certs;
    try {
      certs = await P.verifyDeviceList(await this.#key(c.identity), c.user, dir.devices, dir.revocations);
    } catch (e) {
      this.#deviceCache.delete(c.user);
      throw new ClientError('mismatch', `the device list of ${c.name} does not verify under the pinned key: ${e.message}`, e);
    }
    this.#deviceCache.set(c.user, { at: this.now(), identity: c.identity, certs });
    return certs;
  }

  /** ownDevices: this user's devices, verified under its own identity key. */
  async #ownDevices() {
    const conn = await this.conn();
    let certs;
    try {
      certs = await conn.devices(this.user, this.#rec.identityPublic);
    } catch (e) {
      e.message = `your own device list: ${e.message}`;
      throw e;
    }
    if (!certs.some((c) => c.device === this.device)) {
      throw new ClientError('revoked', 'this device is not in your device list: it was revoked');
    }
    return certs;
  }

  /** devices lists this user's devices: [{device, created, current}]. */
  async devices() {
    return (await this.#ownDevices()).map((c) => ({ device: c.device, created: c.created, current: c.device === this.device }));
  }

  /** revokeDevice revokes one of this user's devices (this one included). */
  async revokeDevice(device) {
    const id = P.parseDeviceID(String(device).trim());
    const rev = await P.revokeDevice(this.#identity, this.user, id, this.now());
    await (await this.conn()).revoke(rev.bytes());
  }

  /** deleteAccount deletes the user on the server, then everything in the store. */
  async deleteAccount() {
    await (await this.conn()).deleteAccount();
    this.close();
    await this.#store.clear();
  }

  /**
   * startLink begins linking a new device to this user: returns a Link
   * {code, expires, complete()}. Show code to the new device only.
   */
  async startLink() {
    return Link.start({ conn: await this.conn(), identity: this.#identity, user: this.user, server: this.server, serverFP: this.#serverFP, now: () => this.now() });
  }

  // ---- groups (Go: groups.go) ----

  async #findGroup(who) {
    who = String(who ?? '').trim();
    if (who.startsWith('g:')) who = who.slice(2);
    const byID = /^[0-9a-f]{32}$/.test(who) ? await this.#store.getGroup(who) : null;
    if (byID) return byID;
    const name = sanitizeName(who);
    return (await this.#store.listGroups()).find((g) => g.name === name) ?? null;
  }

  async #mustGroup(who) {
    const g = await this.#findGroup(who);
    if (!g) throw new ClientError('no-group', `no such group: "${who}"`);
    return g;
  }

  #groupView(g) { return { id: g.id, key: 'g:' + g.id, name: g.name, members: [...g.members], version: g.version }; }

  async group(who) { return this.#groupView(await this.#mustGroup(who)); }

  async groups() {
    const all = await this.#store.listGroups();
    all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return all.map((g) => this.#groupView(g));
  }

  async #saveGroup(g, isNew) {
    const clash = (await this.#store.listGroups()).find((o) => o.name === g.name && o.id !== g.id);
    if (clash && isNew) throw new ClientError('exists', `a group named "${g.name}" exists already`);
    await this.#store.putGroup(g);
  }

  /** createGroup makes a group of this user and the given contacts, and tells them. */
  async createGroup(name, members = []) {
    name = sanitizeName(name);
    if (!name) throw new ClientError('malformed', 'a group needs a name');
    const g = { id: P.toHex(P.randomBytes(16)), name, members: [this.user], version: 1 };
    for (const m of members) {
      const c = await this.#mustContact(m);
      if (!g.members.includes(c.user)) g.members.push(c.user);
    }
    await this.#saveGroup(g, true);
    await this.#announceGroup(g, []);
    const v = this.#groupView(g);
    this.#emit('group', v);
    return v;
  }

  /** addMember adds a contact to a group and tells every member. */
  addMember(group, who) { return this.#changeGroup(group, who, true); }

  /** removeMember removes a member and tells every member, the removed one included. */
  removeMember(group, who) { return this.#changeGroup(group, who, false); }

  async #changeGroup(group, who, add) {
    const g = await this.#mustGroup(group);
    const c = await this.#mustContact(who);
    const removed = [];
    if (add) {
      if (g.members.includes(c.user)) return this.#groupView(g);
      g.members.push(c.user);
    } else {
      const i = g.members.indexOf(c.user);
      if (i < 0) throw new ClientError('malformed', `${c.name} is not in ${g.name}`);
      g.members.splice(i, 1);
      removed.push(c);
    }
    g.version++;
    await this.#saveGroup(g, false);
    await this.#announceGroup(g, removed);
    const v = this.#groupView(g);
    this.#emit('group', v);
    return v;
  }

  async #announceGroup(g, alsoTo) {
    const conv = await this.#resolve('g:' + g.id);
    conv.members.push(...alsoTo);
    if (conv.members.length === 0) return;
    const body = enc.encode(JSON.stringify({ name: g.name, members: g.members, version: g.version }));
    await this.#sendTo(conv, { contentType: ContentGroup, groupID: P.fromHex(g.id), body, attachments: [] }, { ttl: MAX_TTL });
  }

  // applyGroup takes a group state from a member: a newer version from a
  // current member replaces ours; an unknown group is joined.
  async #applyGroup(from, groupID, body) {
    let st;
    try {
      st = JSON.parse(dec.decode(body));
    } catch {
      throw new ClientError('malformed', `a malformed group state from ${from}`);
    }
    if (!st || !Array.isArray(st.members) || !Number.isInteger(st.version)) throw new ClientError('malformed', `a malformed group state from ${from}`);
    const members = [];
    for (const m of st.members) members.push(P.parseUserID(String(m)));
    const id = P.toHex(groupID);
    const old = await this.#store.getGroup(id);
    if (!old) {
      if (!members.includes(from) || !members.includes(this.user)) return null;
      const g = { id, name: await this.#uniqueGroupName(sanitizeName(st.name)), members, version: st.version };
      await this.#store.putGroup(g);
      return g;
    }
    if (!old.members.includes(from) || st.version <= old.version) return null;
    Object.assign(old, { members, version: st.version });
    await this.#store.putGroup(old);
    return old;
  }

  async #uniqueGroupName(name) {
    name ||= 'group';
    const names = new Set((await this.#store.listGroups()).map((g) => g.name));
    for (let i = 1; ; i++) {
      const n = i > 1 ? `${name}-${i}` : name;
      if (!names.has(n)) return n;
    }
  }

  // ---- sending (Go: messaging.go) ----

  // resolve finds a contact or a group by name, ID or conversation key.
  async #resolve(who) {
    const s = String(who ?? '').trim();
    if (!s.startsWith('g:')) {
      const c = await this.#findContact(s);
      if (c) return { key: 'u:' + c.user, name: c.name, groupID: null, members: [c] };
      if (s.startsWith('u:')) throw new ClientError('no-contact', `no such contact: "${who}"`);
    }
    const g = await this.#findGroup(s);
    if (!g) throw new ClientError('no-contact', `no such contact or group: "${who}"`);
    const conv = { key: 'g:' + g.id, name: g.name, groupID: P.fromHex(g.id), members: [] };
    for (const u of g.members) {
      if (u === this.user) continue;
      const c = await this.#store.getContact(u);
      if (!c) throw new ClientError('no-contact', `group ${g.name}: member ${u} is not a contact; add them first`);
      conv.members.push(c);
    }
    return conv;
  }

  /**
   * send sends a message to a contact or a group: sealed once for every
   * device of every recipient, this user's other devices included, and kept
   * in the local store. Returns {id, expires, devices}.
   */
  async send(to, text, { ttl = DEFAULT_TTL, unsigned = false, files = [], onProgress, contentType = ContentText } = {}) {
    checkTTL(ttl);
    const conv = await this.#resolve(to);
    const body = typeof text === 'string' ? enc.encode(text) : (text ?? new Uint8Array(0));
    return this.#sendTo(conv, { contentType, groupID: conv.groupID, body, attachments: [] }, { ttl, unsigned, files, onProgress });
  }

  /** sendTyping tells a contact or group that this user is typing. */
  async sendTyping(to) {
    const conv = await this.#resolve(to);
    await this.#sendTo(conv, { contentType: ContentTyping, groupID: conv.groupID, body: new Uint8Array(0), attachments: [] }, { ttl: TYPING_TTL });
  }

  async #sendTo(conv, msg, { ttl, unsigned = false, files = [], onProgress }) {
    checkTTL(ttl);
    const conn = await this.conn();
    // Receipts and typing events concern the other party only; messages
    // and group changes go to this user's other devices too.
    const ownToo = msg.contentType !== ContentReceipt && msg.contentType !== ContentTyping;
    const rcpts = await this.#recipientDevices(conv, ownToo);
    const kept = [];
    for (const f of files) {
      const { att, encrypted } = await this.#upload(conn, f, ttl, rcpts, onProgress);
      msg.attachments.push(att);
      kept.push({ att, encrypted });
    }
    const envelope = await P.seal(msg, this.#sender(), rcpts, { sent: this.now(), ttl: ttl * 1000, unsigned });
    const env = await P.parseEnvelope(envelope);
    const resp = await conn.send(envelope);
    const res = {
      id: resp.id, expires: resp.expires_ms,
      devices: (resp.results ?? []).filter((r) => r.status !== 'self'),
    };
    if (!isControl(msg.contentType)) {
      // Keep our own copy, as the envelope sealed for this device.
      const i = env.devices.findIndex((d) => d.user === this.user && d.device === this.device);
      if (i >= 0) {
        await this.#storeEnvelope(conv.key, true, env, P.forDevice(env, i));
        const early = this.#early.get(env.id);
        if (early) {
          this.#early.delete(env.id);
          const kinds = early.said.filter((x) => env.recipients.includes(x.from)).map((x) => x.kind);
          if (kinds.length) await this.#store.setMessageState(env.id, kinds.includes('read') ? 'read' : 'delivered');
        }
        for (const { att, encrypted } of kept) await this.#store.putBlob(env.id, P.toHex(att.blobID), encrypted, env.expires());
        this.#schedule();
      }
    }
    return res;
  }

  // recipientDevices: every verified device of every member, and every
  // device of this user (this one included, for the local copy: the server
  // does not route it).
  async #recipientDevices(conv, ownToo) {
    const out = [];
    for (const c of conv.members) {
      for (const cert of await this.#contactDevices(c, !ownToo)) out.push({ user: cert.user, device: cert.device, key: cert.encryptionKey });
    }
    if (!ownToo) {
      if (out.length === 0) throw new ClientError('no-device', `${conv.name} has no device to send to`);
      return out;
    }
    for (const cert of await this.#ownDevices()) out.push({ user: cert.user, device: cert.device, key: cert.encryptionKey });
    return out;
  }

  // upload encrypts a file and uploads it for the recipient devices.
  async #upload(conn, f, ttl, rcpts, onProgress) {
    const name = sanitizeName(f.name ?? '') || 'attachment';
    const data = f.data ?? f;
    if (!(data instanceof Uint8Array) && typeof data?.arrayBuffer !== 'function') {
      throw new ClientError('malformed', `attachment ${name}: give a File, a Blob or {name, data: Uint8Array}`);
    }
    const key = P.newBlobKey();
    // A File or Blob is read chunk by chunk as it is encrypted.
    const { data: encrypted, sha256, size } = await P.encryptBlob(data, key);
    const to = rcpts.filter((r) => !(r.user === this.user && r.device === this.device)).map((r) => ({ user: r.user, device: r.device }));
    if (to.length === 0) throw new ClientError('no-device', 'an attachment needs a device to go to');
    let up;
    try {
      up = await conn.upload(encrypted, sha256, ttl, to, onProgress ? (done, total) => onProgress(name, done, total) : undefined);
    } catch (e) {
      e.message = `uploading ${name}: ${e.message}`;
      throw e;
    }
    if (!/^[0-9a-f]{32}$/.test(up.id ?? '')) throw new Error(`the server returned a bad blob ID "${up.id}"`);
    const type = sanitizeName(f.type ?? data.type ?? '') || mediaType(name);
    const att = { blobID: P.fromHex(up.id), key, sha256, size, name, mediaType: type };
    return { att, encrypted };
  }

  async #storeEnvelope(conversation, outgoing, env, raw) {
    await this.#store.addMessage({ id: env.id, conversation, outgoing, envelope: raw, sent: env.sent, expires: env.expires(), state: '' });
    await this.#store.addSeen(env.id, env.expires());
  }

  // ---- receiving (Go: receive.go) ----

  /**
   * expire deletes every message whose TTL has ended, with its attachments,
   * and announces them in an 'expired' event. Every read path calls it.
   */
  async expire() {
    const ids = await this.#store.deleteExpired(this.now());
    for (const id of ids) this.#opened.delete(id);
    if (ids.length) this.#emit('expired', { ids });
    this.#schedule();
    return ids.length;
  }

  // schedule sets the timer for the next expiry.
  #schedule() {
    if (this.#closed) return;
    this.#store.nextExpiry().then((next) => {
      if (this.#closed) return;
      clearTimeout(this.#timer);
      this.#timer = null;
      if (next === null) return;
      const delay = Math.min(Math.max(next - this.now(), 0) + 5, MAX_TIMER);
      this.#timer = setTimeout(() => this.expire().catch((error) => this.#emit('error', { error })), delay);
      this.#timer.unref?.(); // Node: a pending expiry does not keep the process alive
    }, (error) => this.#emit('error', { error }));
  }

  /**
   * receive handles one envelope as delivered by the server: opens it, keeps
   * it (encrypted), applies receipts and group changes and fires the events.
   * Returns the Received, or null for a message already handled or expired;
   * the caller acknowledges it either way.
   */
  async receive(raw) {
    const env = await P.parseEnvelope(raw);
    await this.expire();
    if ((await this.#store.hasSeen(env.id)) || this.now() >= env.expires()) return null;
    const { r, msg, checked } = await this.#open(env);
    if (r.signature !== SigInvalid && msg && isControl(msg.contentType)) {
      await this.#store.addSeen(env.id, env.expires());
      await this.#applyControl(env, msg, r, checked);
      return r;
    }
    const conv = await this.#conversationOf(env, msg);
    await this.#storeEnvelope(conv, env.sender === this.user, env, raw);
    this.#schedule();
    r.conversation = conv;
    r.conversationName = await this.#conversationName(conv);
    if (msg && r.checked && msg.attachments.length && env.sender !== this.user) {
      // Fetch now: the server deletes a blob once every device has it. It
      // stays encrypted here until it is shown, and goes at expiry. Only
      // for a signature checked under a pinned key: what a stranger (or the
      // server in anyone's name) sends is fetched when the user opens it.
      try {
        await this.#fetchAttachments(env, msg);
      } catch (error) {
        this.#emit('error', { error: new Error(`attachment of message ${env.id}: ${error.message}`, { cause: error }) });
      }
    }
    this.#emit('message', r);
    if (r.signature !== SigInvalid && env.sender !== this.user) this.#deliveredLater(env);
    return r;
  }

  // open decrypts an envelope for this device and names its signature
  // status. checked: the signature verified under a pinned key (this user's
  // or a contact's); a sender that is not a contact is only a claim, which
  // the server could have made in anyone's name.
  async #open(env, { cache = false } = {}) {
    const r = {
      id: env.id, conversation: '', conversationName: '', from: env.sender, fromName: '', outgoing: env.sender === this.user,
      sent: env.sent, expires: env.expires(), signature: SigInvalid, checked: false, message: null, state: '', event: '', eventIDs: [],
    };
    let key = null;
    let verified = false;
    let tag = 'none'; // which key the signature was checked with
    if (env.sender === this.user) {
      key = this.#identityPub; verified = true; r.fromName = 'me'; tag = 'self';
    } else {
      const c = await this.#store.getContact(env.sender);
      if (c) {
        key = await this.#key(c.identity); verified = !!c.verified; r.fromName = c.name; tag = P.toHex(c.identity);
      } else r.fromName = env.sender;
    }
    const show = (status, view) => {
      if (!view) return; // invalid: never shown as content
      if (status === 'unsigned') r.signature = SigUnsigned;
      else if (status === 'verified' && verified) r.signature = SigVerified;
      else r.signature = SigUnverifiedKey;
      // Verified under the pinned key of this user or of a contact; a
      // stranger's signature is never checked (no key to check it with).
      r.checked = status === 'verified';
      r.message = { ...view, attachments: view.attachments.map((a) => ({ ...a })) };
    };
    // A list shown again (every receipt redraws it) need not be decrypted
    // again: RSA is slow on a phone. The result is kept in memory only, for
    // the key it was checked with, and dropped at expiry.
    const hit = cache ? this.#opened.get(env.id) : null;
    if (hit && hit.tag === tag) {
      show(hit.status, hit.view);
      return { r, msg: null };
    }
    let opened;
    try {
      opened = await P.open(env, this.#me(), key, this.now());
    } catch {
      if (cache) this.#remember(env.id, { tag, status: null, view: null });
      return { r, msg: null }; // never shown as content
    }
    const { message: msg, status } = opened;
    const view = {
      contentType: msg.contentType, body: msg.body, groupID: msg.groupID?.length ? P.toHex(msg.groupID) : '',
      text: msg.contentType.startsWith('text/') ? dec.decode(msg.body) : null,
      attachments: msg.attachments.map((a) => ({ blobID: P.toHex(a.blobID), name: a.name, mediaType: a.mediaType, size: Number(a.size) })),
    };
    show(status, view);
    if (cache) this.#remember(env.id, { tag, status, view });
    return { r, msg, checked: r.checked };
  }

  #remember(id, entry) {
    this.#opened.delete(id);
    this.#opened.set(id, entry);
    if (this.#opened.size > OPENED_CACHE) this.#opened.delete(this.#opened.keys().next().value);
  }

  // conversationOf: the group of a group message, else the other party. A
  // message naming a known group whose members do not include its sender
  // (a removed member, say) goes with the sender, not into the group.
  async #conversationOf(env, msg) {
    if (msg?.groupID?.length) {
      const id = P.toHex(msg.groupID);
      const g = env.sender === this.user ? null : await this.#store.getGroup(id);
      if (!g || g.members.includes(env.sender)) return 'g:' + id;
    }
    if (env.sender !== this.user) return 'u:' + env.sender;
    const other = env.recipients.find((u) => u !== this.user); // a copy of what this user sent from another device
    return 'u:' + (other ?? this.user);
  }

  async #conversationName(conv) {
    const [kind, id] = [conv.slice(0, 1), conv.slice(2)];
    if (kind === 'g') return (await this.#store.getGroup(id))?.name ?? 'group ' + id.slice(0, 8);
    if (id === this.user) return 'me';
    return (await this.#store.getContact(id))?.name ?? id;
  }

  async #applyControl(env, msg, r, checked) {
    const conversation = await this.#conversationOf(env, msg);
    r.conversation = conversation;
    r.conversationName = await this.#conversationName(conversation);
    r.message = null;
    switch (msg.contentType) {
      case ContentReceipt: {
        let rc;
        try { rc = JSON.parse(dec.decode(msg.body)); } catch { rc = null; }
        if (!rc || (rc.kind !== 'delivered' && rc.kind !== 'read') || !Array.isArray(rc.ids)) {
          throw new ClientError('malformed', `a malformed receipt from ${env.sender}`);
        }
        r.event = rc.kind;
        r.eventIDs = rc.ids.filter((id) => typeof id === 'string');
        // Ticks change only on a receipt whose signature was checked, from
        // a user the message went to: not one the server wrote in the name
        // of a stranger, nor one from a contact about another's message.
        if (!checked) return;
        let about = null; // the conversation of the messages it is about (a group's, for group messages)
        for (const id of r.eventIDs) {
          // "read" wins over "delivered"; only our own messages change.
          const m = await this.#store.getMessage(id);
          if (m && m.outgoing && m.state !== 'read' && (await this.#wentTo(m, env.sender))) await this.#store.setMessageState(id, rc.kind);
          about ??= m?.conversation ?? null;
          // A receipt can overtake the sender's own copy: the server
          // answers a send only once the recipient acknowledged it, and a
          // recipient may send its receipt at once. Kept for the copy.
          if (!m) this.#earlyReceipt(id, rc.kind, env.sender);
        }
        this.#emit('receipt', { from: env.sender, kind: rc.kind, ids: r.eventIDs, conversation: about ?? 'u:' + env.sender });
        break;
      }
      case ContentTyping:
        r.event = 'typing';
        if (env.sender !== this.user) this.#emit('typing', { from: env.sender, fromName: r.fromName, conversation });
        break;
      case ContentGroup: {
        r.event = 'group';
        // Group changes must be signed, under a pinned key: a stranger's
        // (or the server's) claim adds and removes no one.
        if (!checked) return;
        const g = await this.#applyGroup(env.sender, msg.groupID, msg.body);
        if (g) this.#emit('group', this.#groupView(g));
        break;
      }
    }
  }

  #earlyReceipt(id, kind, from) {
    const now = this.now();
    for (const [k, v] of this.#early) if (v.at < now - 60_000) this.#early.delete(k);
    if (this.#early.size >= 1000) return;
    // Who said what is kept: the copy, once stored, counts only what its
    // recipients said.
    const old = this.#early.get(id);
    const said = (old?.said ?? []).filter((x) => x.from !== from || x.kind === 'read');
    if (!said.some((x) => x.from === from)) said.push({ from, kind });
    this.#early.set(id, { at: now, said });
  }

  // wentTo reports whether user is a recipient of the stored message m.
  async #wentTo(m, user) {
    try {
      return (await P.parseEnvelope(m.envelope)).recipients.includes(user);
    } catch {
      return false;
    }
  }

  // deliveredLater queues a delivered receipt: what arrives together (a
  // queue drained on reconnect) is acknowledged in one receipt per sender,
  // not one message (and one directory lookup) per message received.
  #deliveredLater(env) {
    const list = this.#delivered.get(env.sender) ?? [];
    list.push(env);
    this.#delivered.set(env.sender, list);
    if (this.#deliveredTimer) return;
    this.#deliveredTimer = setTimeout(() => {
      this.#deliveredTimer = null;
      const all = [...this.#delivered.values()];
      this.#delivered.clear();
      for (const envs of all) this.#sendReceipts(envs, 'delivered').catch(() => {}); // best effort, like Go
    }, RECEIPT_DELAY);
  }

  // sendReceipts sends one receipt about messages of one sender (best effort).
  async #sendReceipts(envs, kind) {
    if (!envs.length) return;
    const c = await this.#store.getContact(envs[0].sender);
    if (!c) return; // receipts go to contacts only
    const last = Math.max(...envs.map((e) => e.expires()));
    const ttl = Math.min(Math.floor((last - this.now()) / 1000), 24 * 3600);
    if (ttl < 1) return;
    const body = enc.encode(JSON.stringify({ kind, ids: envs.map((e) => e.id) }));
    const conv = { key: 'u:' + c.user, name: c.name, groupID: null, members: [c] };
    await this.#sendTo(conv, { contentType: ContentReceipt, groupID: null, body, attachments: [] }, { ttl });
  }

  /**
   * messages returns a conversation's unexpired messages, oldest first,
   * decrypted for display; with markRead, incoming ones are marked read and
   * one read receipt per sender lists every message just read.
   */
  async messages(who, { markRead = false } = {}) {
    let conv;
    try {
      conv = await this.#resolve(who);
    } catch (e) {
      // Reading (not sending) works for a conversation with someone who is
      // not a contact: what they sent is shown, unverified.
      const key = String(who ?? '').trim();
      if (e.code !== 'no-contact' || !/^[ug]:/.test(key)) throw e;
      conv = { key, name: await this.#conversationName(key) };
    }
    await this.expire();
    const now = this.now();
    const out = [];
    const unread = new Map();
    for (const m of await this.#store.listMessages(conv.key)) {
      if (m.expires <= now) continue;
      let env;
      try { env = await P.parseEnvelope(m.envelope); } catch { continue; }
      const { r } = await this.#open(env, { cache: true });
      r.conversation = conv.key;
      r.conversationName = conv.name;
      r.state = m.state;
      out.push(r);
      if (markRead && !r.outgoing && r.signature !== SigInvalid && m.state !== 'read') {
        await this.#store.setMessageState(m.id, 'read');
        r.state = 'read';
        if (!unread.has(env.sender)) unread.set(env.sender, []);
        unread.get(env.sender).push(env);
      }
    }
    // Not awaited: showing the messages does not wait for the network.
    for (const envs of unread.values()) this.#sendReceipts(envs, 'read').catch(() => {});
    return out;
  }

  /** conversations lists contacts and groups as conversations, with their last message time. */
  async conversations() {
    const out = [];
    for (const c of await this.contacts()) out.push({ key: c.key, name: c.name, kind: 'contact', trust: c.trust });
    for (const g of await this.groups()) out.push({ key: g.key, name: g.name, kind: 'group' });
    // Messages from someone who is not (or no longer) a contact, or of a
    // group this device does not know: shown under the sender's ID.
    const known = new Set(out.map((c) => c.key));
    for (const key of await this.#store.listConversations()) {
      if (!known.has(key)) out.push({ key, name: await this.#conversationName(key), kind: 'unknown' });
    }
    for (const c of out) {
      const ms = await this.#store.listMessages(c.key);
      c.last = ms.length ? ms[ms.length - 1].sent : null;
    }
    return out;
  }

  /** attachment returns attachment i of a received message, decrypted, as a Blob. */
  async attachment(received, i, { onProgress } = {}) {
    const m = received?.message;
    if (!m || !m.attachments[i]) throw new ClientError('malformed', 'no such attachment');
    const stored = await this.#store.getMessage(received.id);
    if (!stored || stored.expires <= this.now()) throw new ClientError('expired', 'the message expired');
    const env = await P.parseEnvelope(stored.envelope);
    const { msg } = await this.#open(env);
    if (!msg) throw new ClientError('malformed', 'the message does not open');
    const att = msg.attachments[i];
    const blobID = P.toHex(att.blobID);
    let data = await this.#store.getBlob(env.id, blobID);
    if (!data) {
      data = await (await this.conn()).download(blobID, att.sha256, onProgress, attachmentBound(att));
      await this.#store.putBlob(env.id, blobID, data, env.expires());
    }
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(await data.arrayBuffer());
    const plain = await P.decryptBlob(bytes, att.key, { sha256: att.sha256 });
    return new Blob([plain], { type: att.mediaType || 'application/octet-stream' });
  }

  async #fetchAttachments(env, msg) {
    const conn = await this.conn();
    for (const att of msg.attachments) {
      const blobID = P.toHex(att.blobID);
      if (await this.#store.getBlob(env.id, blobID)) continue;
      const data = await conn.download(blobID, att.sha256,
        (done, total) => this.#emit('download', { id: env.id, blobID, name: att.name, done, total }), attachmentBound(att));
      await this.#store.putBlob(env.id, blobID, data, env.expires());
    }
  }

  /**
   * sync fetches every message queued on the server over plain requests,
   * handles each and acknowledges them. With wait (ms) it waits that long
   * for the first one.
   */
  async sync({ wait = 0 } = {}) {
    const conn = await this.conn();
    const out = [];
    for (;;) {
      const inbox = await conn.inbox({ limit: 100, wait });
      wait = 0;
      const ids = [];
      for (const raw of inbox.envelopes) {
        const r = await this.#receiveQuietly(raw);
        if (r.id) ids.push(r.id);
        if (r.received) out.push(r.received);
      }
      if (ids.length) await conn.ack(ids);
      if (!inbox.more) return out;
    }
  }

  // receiveQuietly handles an envelope; a malformed one is acknowledged and
  // reported, never retried.
  async #receiveQuietly(raw) {
    let id = null;
    try {
      id = (await P.parseEnvelope(raw)).id;
    } catch (error) {
      this.#emit('error', { error: new Error(`the server delivered a malformed envelope: ${error.message}`) });
      return { id: null, received: null };
    }
    try {
      return { id, received: await this.receive(raw) };
    } catch (error) {
      // What the message says can be wrong (a malformed receipt or group
      // state): reported and acknowledged, never retried. Anything else (the
      // server, the store: a full disk) is not acknowledged, so the message
      // stays queued and comes again.
      if (error instanceof APIError || typeof error?.code !== 'string' || error.code === 'api') throw error;
      this.#emit('error', { error });
      return { id, received: null };
    }
  }

  // ---- the live channel (Go: Listen) ----

  /** start opens the live channel and keeps it open (reconnecting) until stop(). */
  start() {
    if (this.#running || this.#closed) return;
    this.#running = true;
    // A browser that comes back online, or a tab shown again (a phone
    // woken up), reconnects at once, not after the backoff.
    this.#onOnline ??= () => { if (globalThis.document?.visibilityState !== 'hidden') this.#wake?.(); };
    globalThis.addEventListener?.('online', this.#onOnline);
    globalThis.document?.addEventListener?.('visibilitychange', this.#onOnline);
    const locks = globalThis.navigator?.locks;
    if (!locks || typeof BroadcastChannel !== 'function') {
      this.#leader = true;
      this.#listen();
      return;
    }
    // Several tabs of one browser are one device, and the server keeps one
    // live channel per device (a new one closes the old): two tabs would
    // take it from each other forever. One tab holds a lock and the
    // channel, and relays what arrives; the others listen to it, and one of
    // them takes over when that tab closes.
    const id = `qrtalk:${this.user}/${this.device}`;
    this.#tabs = new BroadcastChannel(id);
    this.#tabs.onmessage = (e) => {
      if (this.#leader && e.data?.type === 'state?') {
        this.#tabs?.postMessage({ type: 'connection', detail: { state: this.connection } });
        return;
      }
      if (this.#leader || !e.data || !RELAYED.has(e.data.type)) return;
      if (e.data.type === 'connection') this.connection = e.data.detail.state;
      this.dispatchEvent(new CustomEvent(e.data.type, { detail: e.data.detail }));
    };
    this.#lockAbort = new AbortController();
    this.#setConnection('connecting');
    this.#tabs.postMessage({ type: 'state?' }); // the state of the tab that holds the channel, if any
    locks.request(id + '/live', { signal: this.#lockAbort.signal }, async () => {
      if (!this.#running) return;
      this.#leader = true;
      try {
        await this.#listen();
      } finally {
        this.#leader = false;
      }
    }).catch(() => { /* aborted by stop() while another tab held the channel */ });
  }

  /** stop closes the live channel. */
  stop() {
    this.#running = false;
    if (this.#onOnline) {
      globalThis.removeEventListener?.('online', this.#onOnline);
      globalThis.document?.removeEventListener?.('visibilitychange', this.#onOnline);
    }
    this.#lockAbort?.abort();
    this.#lockAbort = null;
    this.#tabs?.close();
    this.#tabs = null;
    this.#live?.close();
    this.#wake?.();
    this.#setConnection('offline');
  }

  /** close stops everything; the object is done (the store stays open). */
  close() {
    this.stop();
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#deliveredTimer);
    this.#delivered.clear();
    this.#opened.clear();
  }

  async #listen() {
    let backoff = 500;
    let blocked = 0; // WebSocket openings that failed in a row
    while (this.#running) {
      this.#setConnection('connecting');
      let err = null;
      try {
        if (blocked >= WS_TRIES) {
          // The WebSocket does not get through, though the server answers:
          // fetch the queue by long polls for a while, then try again.
          await this.#poll(this.now() + POLL_PERIOD);
          blocked = 0;
        } else {
          await this.#listenOnce();
          blocked = 0;
        }
        backoff = 500;
      } catch (e) {
        err = e;
        blocked = e?.liveOpen ? blocked + 1 : 0;
      }
      if (!this.#running) break;
      if (err && (err.code === 'server-key' || isAPI(err, API.deviceUnknown))) {
        // Permanent: a server that is not ours, or a device revoked or
        // deleted. Retrying would fail forever.
        this.#running = false;
        this.#setConnection('offline', err);
        return;
      }
      if (!err) continue;
      this.#setConnection('offline', err);
      await new Promise((ok) => {
        const t = setTimeout(ok, backoff);
        this.#wake = () => { clearTimeout(t); ok(); };
      });
      this.#wake = null;
      backoff = Math.min(2 * backoff, 30_000);
    }
    this.#setConnection('offline');
  }

  async #listenOnce() {
    const conn = await this.conn();
    let live;
    try {
      live = await conn.live();
    } catch (e) {
      // Blocked only if the server answers otherwise: a server that is
      // down (or restarting) refuses the WebSocket too.
      if (e?.websocket && (await conn.reachable())) e.liveOpen = true;
      throw e;
    }
    this.#live = live;
    if (!this.#running) { live.close(); return; }
    this.#setConnection('connected');
    try {
      for (;;) {
        const ev = await live.next();
        if (ev.type === 'closing') return;
        if (ev.type === 'drained') { this.#emit('drained', {}); continue; }
        const { id } = await this.#receiveQuietly(ev.envelope);
        if (id) await live.ack([id]);
      }
    } finally {
      live.close();
      this.#live = null;
    }
  }
}

// attachmentBound is the encrypted size of the attachment the signed
// message names: download reads no more than that.
function attachmentBound(att) {
  return typeof att.size === 'number' ? Math.min(P.encryptedBlobSize(att.size), Number.MAX_SAFE_INTEGER) : Number.MAX_SAFE_INTEGER;
}

// newDevice makes the credentials of a device of user: encryption and
// authentication keys (non-extractable) certified by the identity key.
async function newDevice(user, identity, now) {
  const { encryption, auth } = await P.generateDeviceKeys();
  const device = P.newDeviceID();
  const cert = await P.certifyDevice(identity, user, device, encryption.public(), auth.public(), now);
  return { user, device, identity, enc: encryption, auth, cert: cert.bytes() };
}

// accountRecord is what the store keeps: the private keys as CryptoKeys
// (toStorage keeps the device keys non-extractable), the rest as bytes and text.
async function accountRecord(server, serverFP, dev, created) {
  return {
    version: 1, server, serverFingerprint: serverFP.toString(), user: dev.user, device: dev.device,
    identityKey: await dev.identity.toStorage(), identityPublic: dev.identity.public().bytes(),
    encKey: await dev.enc.toStorage(), authKey: await dev.auth.toStorage(), cert: dev.cert, created,
  };
}

export { newDevice as _newDevice, ClientError, APIError };
