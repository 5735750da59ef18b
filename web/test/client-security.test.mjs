// Security tests of the web client SDK that need no server: what a
// malicious server (or a stranger who is not a contact) can make the
// account do through what it delivers. The account is built in a memory
// store and given envelopes directly, as the live channel would.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as P from '../app/js/client/protocol.js';
import { MemoryStore } from '../app/js/client/memory.js';
import { Account, ContentGroup, ContentReceipt, ContentText, _newDevice } from '../app/js/client/account.js';
import { Conn } from '../app/js/client/conn.js';
import { encryptedBlobSize } from '../app/js/proto/blob.js';

const enc = new TextEncoder();

// A user with an identity key and one device, as the SDK makes them.
async function person() {
  const user = P.newUserID();
  return _newDevice(user, await P.generateIdentityKey(), Date.now());
}

// An account of its own in a memory store (no server: nothing here dials).
async function account({ fetch } = {}) {
  const dev = await person();
  const serverKey = (await P.generateKey('decrypt')).public();
  const store = new MemoryStore();
  await store.putAccount({
    version: 1, server: 'https://127.0.0.1:9', serverFingerprint: (await P.serverFingerprint(serverKey)).toString(),
    user: dev.user, device: dev.device, identityKey: await dev.identity.toStorage(), identityPublic: dev.identity.public().bytes(),
    encKey: await dev.enc.toStorage(), authKey: await dev.auth.toStorage(), cert: dev.cert, created: Date.now(),
  });
  const acc = await Account.open(store, fetch ? { fetch } : {});
  return { acc, store, dev };
}

const to = (dev) => ({ user: dev.user, device: dev.device, key: dev.enc.public() });

async function sealFrom(from, devs, msg, sent = Date.now()) {
  const raw = await P.seal({ groupID: null, attachments: [], ...msg }, { user: from.user, device: from.device, identity: from.identity }, devs.map(to), { sent, ttl: 3600_000 });
  return { raw, env: await P.parseEnvelope(raw) };
}

const contactOf = (dev, name) => ({ user: dev.user, name, identity: dev.identity.public().bytes(), verified: true, pending: null, added: Date.now() });

test('a group state from someone who is not a contact (signature never checked) changes no group', { timeout: 60_000 }, async () => {
  const { acc, dev: me } = await account();
  const stranger = await person();
  try {
    const groupID = P.randomBytes(16);
    const body = enc.encode(JSON.stringify({ name: 'from the server', members: [stranger.user, me.user], version: 1 }));
    // Signed, but with a key nobody pinned: the server could have made it
    // in the name of any user ID.
    const { raw } = await sealFrom(stranger, [me], { contentType: ContentGroup, groupID, body });
    await acc.receive(raw);
    assert.deepEqual(await acc.groups(), [], 'a stranger put this account into a group');

    // The same from a contact (its key pinned, the signature checked) is joined.
    const friend = await person();
    await acc.store.putContact(contactOf(friend, 'friend'));
    const body2 = enc.encode(JSON.stringify({ name: 'friends', members: [friend.user, me.user], version: 1 }));
    const { raw: raw2 } = await sealFrom(friend, [me], { contentType: ContentGroup, groupID: P.randomBytes(16), body: body2 });
    await acc.receive(raw2);
    assert.deepEqual((await acc.groups()).map((g) => g.name), ['friends']);
  } finally {
    acc.close();
  }
});

test('a receipt counts only from a contact the message went to', { timeout: 60_000 }, async () => {
  const { acc, store, dev: me } = await account();
  const alice = await person();
  const bob = await person();
  const stranger = await person();
  try {
    await store.putContact(contactOf(alice, 'alice'));
    await store.putContact(contactOf(bob, 'bob'));
    // Our own copy of a message sent to Alice.
    const { raw, env } = await sealFrom(me, [alice, me], { contentType: ContentText, body: enc.encode('hi') });
    const i = env.devices.findIndex((d) => d.user === me.user && d.device === me.device);
    await store.addMessage({ id: env.id, conversation: 'u:' + alice.user, outgoing: true, envelope: P.forDevice(env, i), sent: env.sent, expires: env.expires(), state: '' });
    assert.ok(raw.length > 0);
    const receipt = (kind) => ({ contentType: ContentReceipt, body: enc.encode(JSON.stringify({ kind, ids: [env.id] })) });
    const state = async () => (await store.getMessage(env.id)).state;

    // Not a contact: its signature was never checked (the server can write it).
    await acc.receive((await sealFrom(stranger, [me], receipt('read'))).raw);
    assert.equal(await state(), '', 'a receipt from a stranger marked the message read');
    // A contact, but not a recipient of that message.
    await acc.receive((await sealFrom(bob, [me], receipt('read'))).raw);
    assert.equal(await state(), '', 'a receipt from a contact the message did not go to marked it read');
    // The recipient: counts.
    await acc.receive((await sealFrom(alice, [me], receipt('delivered'))).raw);
    assert.equal(await state(), 'delivered');
  } finally {
    acc.close();
  }
});

// A Conn whose session is a stand-in: download's checks of the body are
// what is tested, not the secure channel (proto-channel.test.mjs).
function fakeConn(respond) {
  const conn = new Conn({ server: 'https://127.0.0.1:9', serverFingerprint: null, device: {}, serverKey: null, info: {}, fetch: respond });
  conn.session = async () => ({ sealRequest: async () => ({ frame: new Uint8Array(8), counter: 0 }) });
  return conn;
}

test('download stops reading a blob larger than the attachment it is for', { timeout: 30_000 }, async () => {
  const chunk = new Uint8Array(64 << 10);
  let pulled = 0;
  const endless = () => new Response(new ReadableStream({
    pull(ctrl) {
      pulled++;
      if (pulled > 4096) { ctrl.close(); return; } // 256 MiB: the test's own bound
      ctrl.enqueue(chunk);
    },
  }), { status: 200, headers: { 'Content-Type': 'application/octet-stream' } });
  const conn = fakeConn(async () => endless());
  const max = encryptedBlobSize(1000);
  await assert.rejects(conn.download('ab'.repeat(16), new Uint8Array(32), undefined, max), /larger than|too large/);
  assert.ok(pulled < 16, `read ${pulled} chunks of 64 KiB for an attachment of ${max} bytes`);

  // A stated length over the bound is refused before reading.
  pulled = 0;
  const big = fakeConn(async () => new Response(new ReadableStream({ pull(c) { pulled++; c.enqueue(chunk); if (pulled > 64) c.close(); } }),
    { status: 200, headers: { 'Content-Length': String(1 << 30) } }));
  await assert.rejects(big.download('ab'.repeat(16), new Uint8Array(32), undefined, max), /larger than|too large/);

  // The right size still downloads (and is checked against its SHA-256).
  const data = P.randomBytes(max);
  const sum = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  const ok = fakeConn(async () => new Response(data, { status: 200 }));
  assert.deepEqual(await ok.download('ab'.repeat(16), sum, undefined, max), data);
});

test('a group message from someone not in the group (a removed member) is not shown in the group', { timeout: 60_000 }, async () => {
  const { acc, store, dev: me } = await account();
  const alice = await person();
  const bob = await person();
  try {
    await store.putContact(contactOf(alice, 'alice'));
    await store.putContact(contactOf(bob, 'bob'));
    const id = P.toHex(P.randomBytes(16));
    await store.putGroup({ id, name: 'team', members: [me.user, alice.user], version: 2 });
    const groupID = P.fromHex(id);
    await acc.receive((await sealFrom(alice, [me], { contentType: ContentText, groupID, body: enc.encode('from a member') })).raw);
    await acc.receive((await sealFrom(bob, [me], { contentType: ContentText, groupID, body: enc.encode('from outside') })).raw);
    const texts = (await acc.messages('g:' + id)).map((r) => r.message?.text);
    assert.deepEqual(texts, ['from a member'], 'a non-member wrote into the group');
    // Not lost: shown as what it is, a message from bob.
    assert.deepEqual((await acc.messages('u:' + bob.user)).map((r) => r.message?.text), ['from outside']);
  } finally {
    acc.close();
  }
});

test('a signed message from someone who is not a contact says its signature was not checked', { timeout: 60_000 }, async () => {
  const { acc, store, dev: me } = await account();
  const stranger = await person();
  const alice = await person();
  try {
    await store.putContact({ ...contactOf(alice, 'alice'), verified: false });
    const r1 = await acc.receive((await sealFrom(stranger, [me], { contentType: ContentText, body: enc.encode('trust me') })).raw);
    // The server could have written it in the stranger's name: no key was
    // there to check it with, so it must not read as signed by anyone.
    assert.equal(r1.signature, 'unverified key');
    assert.equal(r1.checked, false);
    const r2 = await acc.receive((await sealFrom(alice, [me], { contentType: ContentText, body: enc.encode('hello') })).raw);
    assert.equal(r2.signature, 'unverified key');
    assert.equal(r2.checked, true, 'a pinned (unverified) contact key was checked');
    // The same when the list is read again (from the cache of opened messages, too).
    for (let i = 0; i < 2; i++) {
      assert.deepEqual((await acc.messages('u:' + stranger.user)).map((r) => r.checked), [false]);
      assert.deepEqual((await acc.messages('u:' + alice.user)).map((r) => r.checked), [true]);
    }
  } finally {
    acc.close();
  }
});

test('a provisioning mailbox answer larger than a provisioning message is not read whole', { timeout: 30_000 }, async () => {
  const chunk = new Uint8Array(64 << 10);
  let pulled = 0;
  const conn = fakeConn(async () => new Response(new ReadableStream({
    pull(ctrl) {
      pulled++;
      if (pulled > 4096) { ctrl.close(); return; } // 256 MiB: the test's own bound
      ctrl.enqueue(chunk);
    },
  }), { status: 200 }));
  await assert.rejects(conn.provisionTake('ab'.repeat(32), 0), /more than a provisioning message/);
  assert.ok(pulled * chunk.length < P.MAX_LINK_MESSAGE_SIZE + 4 * chunk.length, `read ${pulled} chunks of 64 KiB`);
});

test("a stranger's attachments are not downloaded when the message arrives", { timeout: 60_000 }, async () => {
  const asked = [];
  const fetch = async (url) => { asked.push(String(url)); throw new TypeError('no network in this test'); };
  const { acc, store, dev: me } = await account({ fetch });
  const stranger = await person();
  const alice = await person();
  acc.addEventListener('error', () => {}); // the contact's download fails here: no server
  try {
    await store.putContact(contactOf(alice, 'alice'));
    const att = { blobID: P.randomBytes(16), key: P.randomBytes(32), sha256: P.randomBytes(32), size: 100 << 20, name: 'big.bin', mediaType: 'application/octet-stream' };
    const msg = { contentType: ContentText, body: enc.encode('see attached'), attachments: [att] };
    await acc.receive((await sealFrom(stranger, [me], msg)).raw);
    assert.deepEqual(asked, [], 'a stranger (whom the server can impersonate) made this device download 100 MiB');
    await acc.receive((await sealFrom(alice, [me], msg)).raw);
    assert.ok(asked.length > 0, "a contact's attachment is fetched at once");
  } finally {
    acc.close();
  }
});
