// Unit tests of the SDK's memory store (the interface of store.js) and of
// the account-independent rules: TTL bounds, names. No server needed.

import test from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../app/js/client/memory.js';
import { checkStore } from '../app/js/client/store.js';
import { Account, checkTTL, sanitizeName } from '../app/js/client/account.js';
import { storeChecks } from './client-harness.mjs';

const msg = (id, conversation, sent, expires) => ({ id, conversation, outgoing: false, envelope: Uint8Array.of(1, 3, 9), sent, expires, state: '' });

test('memory store implements the store interface', () => {
  checkStore(new MemoryStore());
  assert.throws(() => checkStore({ getAccount() {} }), /not a QRTalk store/);
});

test('the memory store passes the store checks (idb.js passes them in client-browser.test.mjs)', async () => {
  assert.equal(await storeChecks(new MemoryStore()), 'ok');
});

test('messages are kept once, listed in order, and deleted with their blobs at expiry', async () => {
  const s = new MemoryStore();
  assert.equal(await s.addMessage(msg('b'.repeat(32), 'u:x', 2000, 10_000)), true);
  assert.equal(await s.addMessage(msg('a'.repeat(32), 'u:x', 1000, 5_000)), true);
  assert.equal(await s.addMessage(msg('a'.repeat(32), 'u:x', 1000, 99_000)), false, 'a second copy is refused');
  await s.addMessage(msg('c'.repeat(32), 'u:y', 1500, 7_000));
  await s.putBlob('a'.repeat(32), 'f'.repeat(32), Uint8Array.of(7), 5_000);
  await s.addSeen('a'.repeat(32), 5_000);
  assert.deepEqual((await s.listMessages('u:x')).map((m) => m.sent), [1000, 2000]);
  assert.deepEqual((await s.listConversations()).sort(), ['u:x', 'u:y']);
  assert.equal(await s.nextExpiry(), 5_000);

  assert.deepEqual(await s.deleteExpired(4_999), []);
  assert.deepEqual(await s.deleteExpired(5_000), ['a'.repeat(32)]);
  assert.equal(await s.getBlob('a'.repeat(32), 'f'.repeat(32)), null, 'the attachment went with its message');
  assert.equal(await s.hasSeen('a'.repeat(32)), false);
  assert.equal(await s.nextExpiry(), 7_000);
  assert.deepEqual(await s.deleteExpired(20_000), ['b'.repeat(32), 'c'.repeat(32)].filter((id) => id !== 'x').sort((p, q) => (p < q ? -1 : 1)));
  assert.equal(await s.nextExpiry(), null);
  assert.deepEqual(s.stats(), { messages: 0, blobs: 0, seen: 0, contacts: 0 });
});

test('records are copies: changing what was read does not change the store', async () => {
  const s = new MemoryStore();
  await s.putContact({ user: 'u1', name: 'bob', verified: false });
  const c = await s.getContact('u1');
  c.verified = true;
  assert.equal((await s.getContact('u1')).verified, false);
});

test('TTL must be whole seconds from 1 s to 7 days', () => {
  for (const ok of [1, 10, 300, 3600, 86400, 604800]) assert.equal(checkTTL(ok), ok);
  for (const bad of [0, -1, 1.5, 604801, '60', NaN, undefined]) assert.throws(() => checkTTL(bad), (e) => e.code === 'ttl', String(bad));
});

test('names are one printable line', () => {
  assert.equal(sanitizeName('  bob\n\u0007 '), 'bob');
  assert.equal(sanitizeName('a\tb'), 'ab');
});

test('a text that is not an invite or a link code is refused before any request', async () => {
  const noFetch = () => { throw new Error('no request may be made'); };
  for (const text of ['hello', 'qrtalk:invite?v=2&s=https://x&sfp=a&t=b', 'qrtalk:contact?v=1']) {
    await assert.rejects(Account.join(new MemoryStore(), text, { fetch: noFetch }), (e) => e.code === 'malformed', text);
  }
  await assert.rejects(Account.joinLink(new MemoryStore(), 'qrtalk:link?v=1&s=https://x', { fetch: noFetch }), (e) => e.code === 'malformed');
});
