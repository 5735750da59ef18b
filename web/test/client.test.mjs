// The SDK against a real qrtalkd (built from this checkout, on 127.0.0.1
// with a free port and a temporary data directory): JS accounts join, add
// each other by contact code, exchange messages live and queued with TTL,
// receipts, typing, groups, a forged signature, expiry of stored messages,
// a key change that blocks sending, a server restart (the session is set up
// again), a wrong server fingerprint, and linking a second browser device.
// Run: node --test --experimental-websocket web/test/

import test from 'node:test';
import assert from 'node:assert/strict';
import { Server, missing, waitFor, nextEvent } from './client-harness.mjs';
import { Account, MemoryStore } from '../app/js/client/index.js';
import { _newDevice } from '../app/js/client/account.js';
import { plainCall } from '../app/js/client/conn.js';
import * as P from '../app/js/client/protocol.js';

const skip = missing();

test('the SDK against a real qrtalkd', { skip: skip ?? false, timeout: 150_000 }, async (t) => {
  const srv = await Server.start();
  const accounts = [];
  t.after(async () => {
    for (const a of accounts) a.close();
    await srv.stop();
  });
  const invite = await srv.invite(20);
  const join = async () => {
    const store = new MemoryStore();
    const a = await Account.join(store, invite);
    accounts.push(a);
    return { a, store };
  };

  await t.test('a wrong server fingerprint in the invite is refused', async () => {
    const inv = P.parseInvite(invite);
    const other = new P.Invite({ server: inv.server, serverFP: P.parseFingerprint('A'.repeat(42) + 'A'), token: inv.token });
    await assert.rejects(Account.join(new MemoryStore(), other.uri()), (e) => e.code === 'server-key' && /not the one the code pins/.test(e.message));
  });

  const [{ a: alice, store: aliceStore }, { a: bob, store: bobStore }] = await Promise.all([join(), join()]);

  await t.test('a server that shows the pinned key but does not hold it gets nothing', async () => {
    // A man in the middle (TLS is not pinned in a browser) relays GET
    // /v1/info from the real server, so the key checks out, and answers
    // the rest itself. It cannot open the session setup (wrapped to the real
    // key) and so cannot confirm it: the client must stop there.
    const sent = [];
    const mitm = async (url, init = {}) => {
      const path = new URL(url).pathname;
      if (path === '/v1/info') return fetch(url, init);
      sent.push(path);
      if (path === '/v1/session') return new Response(crypto.getRandomValues(new Uint8Array(90)), { status: 200, headers: { 'Content-Type': 'application/x-qrtalk-frame' } });
      return new Response('{}', { status: 200, headers: { 'Content-Type': 'application/x-qrtalk-frame' } });
    };
    const fooled = await Account.open(aliceStore, { fetch: mitm }); // alice's device, through the man in the middle
    await assert.rejects(fooled.addContact(P.newUserID(), 'x'), /did not confirm the session/);
    assert.deepEqual(sent, ['/v1/session'], 'no request went out under an unconfirmed session');
    fooled.close();
  });



  await t.test('join: IDs, fingerprint, contact code', async () => {
    assert.match(alice.user, /^[a-z2-7]{26}$/);
    assert.match(alice.device, /^[0-9a-f]{16}$/);
    assert.match(alice.fingerprintNumeric, /^(\d{5} ){7}\d{5}$/);
    const card = P.parseContactCard(alice.contactCode);
    assert.equal(card.user, alice.user);
    assert.equal(card.identity.toString(), alice.fingerprint);
    assert.notEqual(alice.user, bob.user);
    // The device keys cannot leave WebCrypto; the identity key can (linking only).
    const rec = await aliceStore.getAccount();
    assert.equal(rec.encKey.decrypt.extractable, false);
    assert.equal(rec.authKey.sign.extractable, false);
    assert.equal(rec.identityKey.sign.extractable, true);
    // A second join into the same store is refused.
    await assert.rejects(Account.join(aliceStore, invite), (e) => e.code === 'exists');
  });

  await t.test('contacts by contact code are verified', async () => {
    const b = await alice.addContact(bob.contactCode, 'bob');
    assert.equal(b.trust, 'verified');
    assert.equal(b.fingerprint, bob.fingerprint);
    const a = await bob.addContact(alice.contactCode, 'alice');
    assert.equal(a.trust, 'verified');
    await assert.rejects(alice.addContact(alice.contactCode, 'me'), /your own ID/);
  });

  await t.test('live: delivered at once, shown verified, receipts delivered and read', async () => {
    alice.start();
    bob.start();
    await waitFor('both live channels', () => alice.connection === 'connected' && bob.connection === 'connected');
    const got = nextEvent(bob, 'message', (r) => r.message?.text === 'hello bob');
    const delivered = nextEvent(alice, 'receipt', (r) => r.kind === 'delivered');
    const res = await alice.send('bob', 'hello bob', { ttl: 3600 });
    assert.match(res.id, /^[0-9a-f]{32}$/);
    assert.equal(res.devices.length, 1);
    assert.equal(res.devices[0].device, bob.device);
    assert.equal(res.devices[0].status, 'delivered');
    const r = await got;
    assert.equal(r.signature, 'verified');
    assert.equal(r.from, alice.user);
    assert.equal(r.fromName, 'alice');
    assert.equal(r.conversation, 'u:' + alice.user);
    assert.equal(r.id, res.id);
    assert.ok(Math.abs(r.expires - r.sent - 3600_000) < 1, 'expires = sent + TTL');
    const d = await delivered;
    assert.deepEqual(d.ids, [res.id]);
    await waitFor('the delivered state', async () => (await alice.messages('bob')).find((m) => m.id === res.id)?.state === 'delivered');

    const read = nextEvent(alice, 'receipt', (x) => x.kind === 'read');
    const shown = await bob.messages('alice', { markRead: true });
    assert.deepEqual(shown.map((m) => m.message.text), ['hello bob']);
    assert.deepEqual((await read).ids, [res.id]);
    const mine = await alice.messages('bob');
    assert.equal(mine.length, 1);
    assert.equal(mine[0].outgoing, true);
    assert.equal(mine[0].state, 'read');
    assert.equal(mine[0].message.text, 'hello bob');
    // Kept as received: the store holds the envelope, not the text.
    const stored = (await bobStore.listMessages('u:' + alice.user))[0];
    assert.ok(stored.envelope instanceof Uint8Array);
    assert.equal(Buffer.from(stored.envelope).includes(Buffer.from('hello bob')), false);
  });

  await t.test('an unsigned message is shown as unsigned', async () => {
    const got = nextEvent(bob, 'message', (r) => r.message?.text === 'no signature');
    await alice.send('bob', 'no signature', { ttl: 60, unsigned: true });
    assert.equal((await got).signature, 'unsigned');
  });

  await t.test('a malformed receipt is reported and acknowledged, and what follows arrives', async () => {
    const err = nextEvent(bob, 'error', (x) => /malformed receipt/.test(x.error.message));
    await alice.send('bob', 'this is not JSON', { ttl: 60, contentType: 'application/x.qrtalk.receipt+json' });
    await err;
    const next = nextEvent(bob, 'message', (r) => r.message?.text === 'after the bad receipt');
    await alice.send('bob', 'after the bad receipt', { ttl: 60 });
    await next;
    assert.equal(bob.connection, 'connected', 'the channel stayed up');
  });

  await t.test('typing reaches the other party', async () => {
    const typing = nextEvent(bob, 'typing');
    await alice.sendTyping('bob');
    assert.equal((await typing).from, alice.user);
    // Typing events (and receipts) reuse a device list verified in the
    // last 30 s: the server limits key directory lookups per device.
    const conn = await alice.conn();
    const real = conn.directory;
    let lookups = 0;
    conn.directory = (u) => { lookups++; return real.call(conn, u); };
    try {
      for (let i = 0; i < 3; i++) await alice.sendTyping('bob');
      assert.equal(lookups, 0);
      await alice.send('bob', 'a message looks again', { ttl: 60 });
      assert.equal(lookups, 2, 'bob and alice herself');
    } finally {
      conn.directory = real;
    }
  });

  await t.test('queued while offline, queued first on reconnect', async () => {
    bob.stop();
    await waitFor('bob offline', () => bob.connection === 'offline');
    const r1 = await alice.send('bob', 'while you were away 1', { ttl: 600 });
    const r2 = await alice.send('bob', 'while you were away 2', { ttl: 600 });
    // Even if the server has not yet noticed the closed socket, a live
    // delivery nobody acknowledges is queued after the ack timeout.
    for (const r of [r1, r2]) assert.equal(r.devices[0].status, 'queued');
    const seen = [];
    const on = (e) => { if (e.detail.message) seen.push(e.detail.message.text); };
    bob.addEventListener('message', on);
    bob.start();
    await waitFor('both queued messages', () => seen.length >= 2);
    bob.removeEventListener('message', on);
    assert.deepEqual(seen, ['while you were away 1', 'while you were away 2']);
    const texts = (await bob.messages('alice')).map((m) => m.message.text);
    assert.deepEqual(texts.slice(-2), ['while you were away 1', 'while you were away 2']);
  });

  await t.test('a forged signature is invalid and never shown', async () => {
    const other = await P.generateIdentityKey();
    const certs = await (await alice.conn()).devices(bob.user, (await bobStore.getAccount()).identityPublic);
    const env = await P.seal({ contentType: 'text/plain; charset=utf-8', body: new TextEncoder().encode('transfer the money'), attachments: [] },
      { user: alice.user, device: alice.device, identity: other },
      certs.map((c) => ({ user: c.user, device: c.device, key: c.encryptionKey })), { sent: Date.now(), ttl: 60_000 });
    const got = nextEvent(bob, 'message', (r) => r.signature === 'invalid');
    await (await alice.conn()).send(env);
    const r = await got;
    assert.equal(r.message, null);
    const shown = await bob.messages('alice');
    const forged = shown.find((m) => m.signature === 'invalid');
    assert.ok(forged);
    assert.equal(forged.message, null);
    assert.ok(!JSON.stringify(shown.map((m) => m.message?.text)).includes('money'));
  });

  await t.test('a message from someone who is not a contact: unverified key, listed under their ID', async () => {
    const { a: dave, store: daveStore } = await join();
    accounts.dave = { dave, daveStore };
    await dave.addContact(alice.contactCode, 'alice');
    const got = nextEvent(alice, 'message', (r) => r.from === dave.user);
    await dave.send('alice', 'hello from a stranger', { ttl: 300 });
    const r = await got;
    assert.equal(r.signature, 'unverified key');
    assert.equal(r.fromName, dave.user);
    assert.equal(r.conversation, 'u:' + dave.user);
    const conv = (await alice.conversations()).find((c) => c.key === 'u:' + dave.user);
    assert.equal(conv?.kind, 'unknown');
    assert.deepEqual((await alice.messages('u:' + dave.user)).map((m) => m.message.text), ['hello from a stranger']);
    await assert.rejects(alice.send('u:' + dave.user, 'who are you?'), (e) => e.code === 'no-contact', 'sending needs a contact');
    dave.close();
  });

  await t.test('where WebSockets do not get through, messages come by long polls', async () => {
    const { dave, daveStore } = accounts.dave;
    class Blocked { constructor() { throw new Error('refused by a proxy'); } }
    const polled = await Account.open(daveStore, { WebSocket: Blocked });
    accounts.push(polled);
    const up = nextEvent(polled, 'connection', (c) => c.state === 'connected' && c.via === 'poll', 30_000);
    polled.start();
    await up;
    await alice.addContact(dave.contactCode, 'dave');
    const got = nextEvent(polled, 'message', (r) => r.message?.text === 'by long poll', 30_000);
    const res = await alice.send('dave', 'by long poll', { ttl: 60 });
    assert.equal(res.devices[0].status, 'queued');
    assert.equal((await got).signature, 'verified');
    polled.close();
    await alice.removeContact('dave');
  });

  await t.test('a device list that does not verify under the pinned key is refused', async () => {
    // The server slips a device of its own into bob's list: certified by a
    // key that is not bob's identity key. Nothing is sent.
    const conn = await alice.conn();
    const real = conn.directory;
    const mallory = await P.generateIdentityKey();
    const { encryption, auth } = await P.generateDeviceKeys();
    const forged = await P.certifyDevice(mallory, bob.user, P.newDeviceID(), encryption.public(), auth.public(), Date.now());
    conn.directory = async (user) => {
      const d = await real.call(conn, user);
      if (user === bob.user) d.devices.push(forged.bytes());
      return d;
    };
    try {
      await assert.rejects(alice.send('bob', 'to the server\'s device?', { ttl: 60 }), (e) => e.code === 'mismatch' && /does not verify/.test(e.message));
      await assert.rejects(alice.addContact(bob.user, 'bob again'), (e) => e.code === 'mismatch');
    } finally {
      conn.directory = real;
    }
    assert.equal((await alice.contact('bob')).trust, 'verified', 'a bad list is not a key change');
  });

  await t.test('expiry deletes stored messages and attachments, by timer and on open', async () => {
    const before = bobStore.stats().messages;
    const got = nextEvent(bob, 'message', (r) => r.message?.text === 'this vanishes');
    const expired = new Promise((ok) => bob.addEventListener('expired', (e) => ok(e.detail)));
    const progress = [];
    bob.addEventListener('download', (e) => progress.push(e.detail));
    const res = await alice.send('bob', 'this vanishes', { ttl: 2, files: [{ name: 'v.txt', type: 'text/plain', data: new TextEncoder().encode('gone soon') }] });
    const r = await got;
    assert.equal(r.message.attachments[0].name, 'v.txt');
    assert.ok(progress.length >= 1 && progress.at(-1).done === progress.at(-1).total && progress.at(-1).name === 'v.txt', JSON.stringify(progress));
    assert.equal(await (await bob.attachment(r, 0)).text(), 'gone soon');
    assert.equal(bobStore.stats().messages, before + 1);
    assert.ok(bobStore.stats().blobs >= 1);
    assert.deepEqual((await expired).ids, [res.id], 'the timer fired, nobody read anything');
    assert.equal(bobStore.stats().messages, before);
    assert.equal(bobStore.stats().blobs, 0);
    assert.equal((await alice.messages('bob')).some((m) => m.id === res.id), false, 'gone from the sender too');
    assert.equal((await bob.messages('alice')).some((m) => m.id === res.id), false);

    // Expired while closed: gone when the account is opened again.
    const short = await alice.send('bob', 'closed tab', { ttl: 1 });
    await waitFor('bob has it', async () => (await bobStore.getMessage(short.id)) !== null);
    bob.close();
    await new Promise((ok) => setTimeout(ok, 1200));
    assert.notEqual(await bobStore.getMessage(short.id), null, 'still stored while the tab is closed');
    const reopened = await Account.open(bobStore);
    accounts.push(reopened);
    assert.equal(await bobStore.getMessage(short.id), null, 'swept on open');
    assert.equal(reopened.user, bob.user);
    assert.equal(reopened.fingerprint, bob.fingerprint);
    reopened.start();
    await waitFor('reopened bob live', () => reopened.connection === 'connected');
    accounts.bob = reopened;
  });
  const bob2 = accounts.bob;

  await t.test('groups: created, announced, messages reach every member', async () => {
    const { a: carol } = await join();
    await carol.addContact(alice.contactCode, 'alice');
    await carol.addContact(bob.contactCode, 'bob');
    await assert.rejects(alice.addContact(carol.user, 'carol', { fingerprint: alice.fingerprintNumeric }), (e) => e.code === 'mismatch');
    await assert.rejects(alice.contact('carol'), (e) => e.code === 'no-contact', 'nothing pinned');
    await alice.addContact(carol.user, 'carol');
    assert.equal((await bob2.addContact(carol.user, 'carol', { fingerprint: carol.fingerprintNumeric.replace(/ /g, '-') })).trust, 'verified');
    carol.start();
    await waitFor('carol live', () => carol.connection === 'connected');
    const bobGroup = nextEvent(bob2, 'group', (g) => g.name === 'team');
    const carolGroup = nextEvent(carol, 'group', (g) => g.name === 'team');
    const g = await alice.createGroup('team', ['bob', 'carol']);
    assert.equal(g.members.length, 3);
    assert.equal((await bobGroup).id, g.id);
    await carolGroup;
    const atAlice = nextEvent(alice, 'message', (r) => r.message?.text === 'hi team');
    const atCarol = nextEvent(carol, 'message', (r) => r.message?.text === 'hi team');
    const receipt = nextEvent(bob2, 'receipt', (r) => r.kind === 'delivered');
    const sent = await bob2.send('team', 'hi team', { ttl: 300 });
    const rc = await receipt;
    assert.equal(rc.conversation, g.key, 'a receipt for a group message belongs to the group');
    assert.deepEqual(rc.ids, [sent.id]);
    assert.equal((await atAlice).conversation, g.key);
    assert.equal((await atCarol).conversationName, 'team');
    // A removed member is told too, and sees the group without herself.
    const duo = nextEvent(carol, 'group', (x) => x.name === 'duo');
    await alice.createGroup('duo', ['carol']);
    await duo;
    const removed = nextEvent(carol, 'group', (x) => x.name === 'duo' && x.version === 2);
    const after = await alice.removeMember('duo', 'carol');
    assert.deepEqual(after.members, [alice.user]);
    assert.deepEqual((await removed).members, [alice.user]);
    accounts.carol = carol;
  });

  await t.test('a changed identity key blocks sending until the seen fingerprint is accepted', async () => {
    const carol = accounts.carol;
    const before = await alice.contact('carol');
    assert.equal(before.trust, 'unverified');
    const got = nextEvent(alice, 'message', (r) => r.message?.text === 'from carol');
    await carol.send('alice', 'from carol', { ttl: 600 });
    const fromCarol = await got;
    assert.equal(fromCarol.signature, 'unverified key');
    const shown = async () => (await alice.messages('carol')).find((m) => m.id === fromCarol.id).signature;
    assert.equal(await shown(), 'unverified key');
    await assert.rejects(alice.verifyContact('carol', '00000 '.repeat(8)), (e) => e.code === 'mismatch');
    assert.equal((await alice.verifyContact('carol', carol.fingerprintNumeric)).trust, 'verified');
    assert.equal(await shown(), 'verified', 'the list shown again follows the verification');
    // Carol deletes her account; her ID is registered again with a new key.
    carol.close();
    await carol.deleteAccount();
    const dev = await _newDevice(carol.user, await P.generateIdentityKey({ extractable: true }), Date.now());
    const inv = P.parseInvite(await srv.invite(1));
    await plainCall(srv.url, 'POST', '/v1/register', { invite: inv.token, identity_key: P.toBase64(dev.identity.public().bytes()), device_cert: P.toBase64(dev.cert) });

    const changed = nextEvent(alice, 'contact-changed', (c) => c.user === carol.user && c.trust === 'CHANGED');
    await assert.rejects(alice.send('carol', 'still you?'), (e) => e.code === 'key-changed');
    const c = await changed;
    assert.ok(c.pendingFingerprint && c.pendingFingerprint !== c.fingerprint);
    await assert.rejects(alice.send('carol', 'still you?'), (e) => e.code === 'key-changed', 'still blocked');
    await assert.rejects(alice.send('team', 'hi all'), (e) => e.code === 'key-changed', 'the group too');
    await assert.rejects(alice.acceptKeyChange('carol', before.fingerprint), (e) => e.code === 'key-changed', 'another fingerprint than the one shown');
    const accepted = await alice.acceptKeyChange('carol', c.pendingFingerprint);
    assert.equal(accepted.trust, 'unverified');
    assert.equal(await shown(), 'invalid', 'signed by the old key: it does not verify under the new one');
    const res = await alice.send('carol', 'welcome back', { ttl: 60 });
    assert.equal(res.devices[0].status, 'queued');
  });

  await t.test('after a server restart the session is set up again', async () => {
    alice.stop();
    await waitFor('alice offline', () => alice.connection === 'offline');
    const bobStates = [];
    bob2.addEventListener('connection', (e) => bobStates.push(e.detail));
    await srv.restart();
    // Requests that find together that the server forgot the session
    // (40101) set up one new session between them, and are retried once.
    const conn = await alice.conn();
    const real = conn.fetch;
    let setups = 0;
    conn.fetch = (url, init) => { if (String(url).endsWith('/v1/session')) setups++; return real(url, init); };
    try {
      const dirs = await Promise.all([1, 2, 3].map(() => conn.directory(bob.user)));
      assert.deepEqual(dirs.map((d) => d.user), [bob.user, bob.user, bob.user]);
    } finally {
      conn.fetch = real;
    }
    assert.equal(setups, 1);
    alice.start();
    const got = nextEvent(bob2, 'message', (r) => r.message?.text === 'after the restart', 30_000);
    await waitFor('bob back online', () => bob2.connection === 'connected', 30_000);
    assert.equal(bobStates.at(-1).via, undefined, 'back on the WebSocket, not polling: the server was only restarting');
    await alice.send('bob', 'after the restart', { ttl: 60 });
    await got;
  });

  await t.test('link this browser as a second device', async () => {
    const link = await alice.startLink();
    assert.match(link.code, /^qrtalk:link\?/);
    const laptopStore = new MemoryStore();
    const [newDevice, laptop] = await Promise.all([link.complete(), Account.joinLink(laptopStore, link.code)]);
    accounts.push(laptop);
    assert.equal(laptop.user, alice.user);
    assert.equal(laptop.device, newDevice);
    assert.equal(laptop.fingerprint, alice.fingerprint);
    assert.equal((await alice.devices()).length, 2);
    await laptop.addContact(bob.contactCode, 'bob');
    laptop.start();
    await waitFor('laptop live', () => laptop.connection === 'connected');
    const atLaptop = nextEvent(laptop, 'message', (r) => r.message?.text === 'to both');
    const atAlice = nextEvent(alice, 'message', (r) => r.message?.text === 'to both');
    const res = await bob2.send('alice', 'to both', { ttl: 60 });
    assert.equal(res.devices.length, 2);
    assert.equal((await atLaptop).signature, 'verified');
    await atAlice;
    // What the laptop sends, alice's first device gets as her own.
    const copy = nextEvent(alice, 'message', (r) => r.message?.text === 'from the laptop');
    await laptop.send('bob', 'from the laptop', { ttl: 60 });
    const r = await copy;
    assert.equal(r.outgoing, true);
    assert.equal(r.conversation, 'u:' + bob.user);
    // A code works once.
    await assert.rejects(Account.joinLink(new MemoryStore(), link.code), (e) => e.code === 'link-used');
    await assert.rejects(link.complete(), /already completed/);
    // Revoked, the laptop stops trying: a revoked device cannot come back.
    const stopped = nextEvent(laptop, 'connection', (c) => c.state === 'offline' && c.error?.api?.code === 40104, 30_000);
    await alice.revokeDevice(laptop.device);
    await stopped;
    assert.deepEqual((await alice.devices()).map((d) => d.device), [alice.device]);
    await new Promise((ok) => setTimeout(ok, 1500));
    assert.equal(laptop.connection, 'offline', 'no reconnect after a revocation');
    const after = await bob2.send('alice', 'after the revocation', { ttl: 60 });
    assert.deepEqual(after.devices.map((d) => d.device), [alice.device]);
  });

  await t.test('a link code is good for 10 minutes', async () => {
    const link = await alice.startLink();
    await assert.rejects(Account.joinLink(new MemoryStore(), link.code, { scannedAt: Date.now() - 10 * 60_000 - 1 }), (e) => e.code === 'link-expired');
    const realNow = alice.now;
    alice.now = () => Date.now() + 10 * 60_000;
    try {
      await assert.rejects(link.complete(), (e) => e.code === 'link-expired');
    } finally {
      alice.now = realNow;
    }
    // Nothing was linked.
    assert.equal((await alice.devices()).length, 1);
  });
});
