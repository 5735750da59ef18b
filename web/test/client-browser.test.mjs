// The SDK inside real headless Chromium (Debian's, driven by playwright-core),
// against a real qrtalkd that serves web/app: the IndexedDB store keeps the
// keys as CryptoKeys (device keys non-extractable), the browser's WebSocket
// and XMLHttpRequest upload path work, and after a reload the identity and
// the unexpired messages (with their attachments) are there and the expired
// ones are gone. The other party is an SDK account in Node.
// Run: node --test --experimental-websocket web/test/

import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { Server, missing, waitFor, storeChecks } from './client-harness.mjs';
import { Account, MemoryStore } from '../app/js/client/index.js';

const CHROMIUM = '/usr/bin/chromium';
let chromium = null;
let why = missing();
if (!why) {
  try {
    ({ chromium } = await import('playwright-core'));
  } catch {
    why = 'playwright-core is not installed: run npm ci in web/';
  }
  if (!why && !existsSync(CHROMIUM)) why = `no ${CHROMIUM}: apt-get install chromium`;
  if (why && process.env.CI === 'true') throw new Error(`${why} (CI=true: failing instead of skipping)`);
}

test('the SDK in Chromium: IndexedDB, WebSocket, uploads, reload', { skip: why ?? false, timeout: 150_000 }, async (t) => {
  const srv = await Server.start();
  const browser = await chromium.launch({
    executablePath: CHROMIUM, timeout: 60_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--ignore-certificate-errors'],
  });
  const bob = await Account.join(new MemoryStore(), await srv.invite(2));
  t.after(async () => {
    bob.close();
    await browser.close();
    await srv.stop();
  });
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await ctx.newPage();
  page.setDefaultTimeout(60_000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // A page of the server's origin without the app's own script: the test
  // drives the SDK modules the app is made of, served by qrtalkd.
  const open = async () => {
    await page.goto(srv.url + '/manifest.webmanifest');
    await page.evaluate(async () => {
      const sdk = await import('/js/client/index.js');
      const store = await sdk.openIDBStore('qrtalk-sdk-test');
      window.t = { sdk, store, got: [], events: [] };
    });
  };
  await open();
  const invite = await srv.invite(1);

  await t.test('the IndexedDB store passes the store checks', async () => {
    const result = await page.evaluate(`(async () => {
      const { openIDBStore } = await import('/js/client/idb.js');
      const store = await openIDBStore('qrtalk-store-checks');
      try { return await (${storeChecks.toString()})(store); } finally { store.close(); }
    })()`);
    assert.equal(result, 'ok');
  });

  const me = await page.evaluate(async (invite) => {
    const { sdk, store } = window.t;
    const acc = await sdk.Account.join(store, invite);
    window.t.acc = acc;
    const rec = await store.getAccount();
    const isKey = (k) => k instanceof CryptoKey;
    return {
      user: acc.user, device: acc.device, fingerprint: acc.fingerprint, contactCode: acc.contactCode,
      encExtractable: rec.encKey.decrypt.extractable, authExtractable: rec.authKey.sign.extractable,
      keysAreCryptoKeys: isKey(rec.encKey.decrypt) && isKey(rec.authKey.sign) && isKey(rec.identityKey.sign),
    };
  }, invite);
  assert.equal(me.keysAreCryptoKeys, true, 'IndexedDB holds CryptoKey objects');
  assert.equal(me.encExtractable, false);
  assert.equal(me.authExtractable, false);

  await bob.addContact(me.contactCode, 'web');
  await page.evaluate(async (code) => {
    const { acc } = window.t;
    await acc.addContact(code, 'bob');
    acc.addEventListener('message', (e) => window.t.got.push({ id: e.detail.id, text: e.detail.message?.text, sig: e.detail.signature, atts: e.detail.message?.attachments }));
    acc.addEventListener('connection', (e) => window.t.events.push(e.detail.state));
    acc.start();
  }, bob.contactCode);
  await waitFor('the browser live', () => page.evaluate(() => window.t.acc.connection === 'connected'));

  await t.test('Node to browser, live, with an attachment', async () => {
    const file = new Uint8Array(100_000).map((_, i) => i % 251);
    const keep = await bob.send('web', 'hi browser', { ttl: 3600, files: [{ name: 'data.bin', data: file }] });
    const brief = await bob.send('web', 'short-lived', { ttl: 2 });
    assert.equal(keep.devices[0].status, 'delivered');
    await waitFor('both messages in the browser', () => page.evaluate(() => window.t.got.length >= 2));
    const got = await page.evaluate(() => window.t.got);
    assert.deepEqual(got.map((g) => [g.id, g.text, g.sig]), [[keep.id, 'hi browser', 'verified'], [brief.id, 'short-lived', 'verified']]);
    const sum = await page.evaluate(async () => {
      const [r] = (await window.t.acc.messages('bob')).filter((m) => m.message?.text === 'hi browser');
      const b = new Uint8Array(await (await window.t.acc.attachment(r, 0)).arrayBuffer());
      return [b.length, b.reduce((a, x) => (a * 31 + x) % 1000003, 0)];
    });
    assert.deepEqual(sum, [file.length, file.reduce((a, x) => (a * 31 + x) % 1000003, 0)]);
  });

  await t.test('browser to Node, with a File uploaded by XMLHttpRequest (progress)', async () => {
    const res = await page.evaluate(async () => {
      const f = new File([new Uint8Array(80_000).fill(7)], 'sevens.bin', { type: 'application/octet-stream' });
      let last = 0;
      const r = await window.t.acc.send('bob', 'from the browser', { ttl: 600, files: [f], onProgress: (name, done) => { last = done; } });
      return { ...r, last };
    });
    assert.ok(res.last >= 80_000, `upload progress ${res.last}`);
    const r = (await bob.sync()).find((x) => x.message?.text === 'from the browser');
    assert.ok(r, 'bob fetched it from his queue');
    assert.equal(r.signature, 'verified');
    const blob = await bob.attachment(r, 0);
    const b = new Uint8Array(await blob.arrayBuffer());
    assert.equal(b.length, 80_000);
    assert.ok(b.every((x) => x === 7));
    assert.equal(r.id, res.id);
  });

  await t.test('two tabs of one device share one live channel', async () => {
    // The server keeps one live channel per device; two tabs must not take
    // it from each other. The second tab gets what arrives from the first.
    const page2 = await ctx.newPage();
    page2.on('pageerror', (e) => errors.push(e.message));
    await page2.goto(srv.url + '/manifest.webmanifest');
    await page2.evaluate(async () => {
      const sdk = await import('/js/client/index.js');
      const acc = await sdk.Account.open(await sdk.openIDBStore('qrtalk-sdk-test'));
      window.t = { acc, got: [], states: [] };
      acc.addEventListener('message', (e) => window.t.got.push(e.detail.message?.text));
      acc.addEventListener('connection', (e) => window.t.states.push(e.detail.state));
      acc.start();
    });
    await waitFor('the second tab to learn the channel is up', () => page2.evaluate(() => window.t.acc.connection === 'connected'));
    const before = await page.evaluate(() => window.t.events.length);
    await bob.send('web', 'to every tab', { ttl: 600 });
    await waitFor('the message in the second tab', () => page2.evaluate(() => window.t.got.includes('to every tab')));
    await waitFor('the message in the first tab', () => page.evaluate(() => window.t.got.some((g) => g.text === 'to every tab')));
    await new Promise((ok) => setTimeout(ok, 1500));
    assert.equal(await page.evaluate(() => window.t.events.length), before, 'the first tab kept its channel');
    // The first tab goes: the second takes the channel over.
    await page.evaluate(() => window.t.acc.close());
    // Its states: connecting (waiting), connected (the first tab's), then its own connecting, connected.
    await waitFor('the second tab to hold the channel', () => page2.evaluate(() =>
      window.t.states.filter((x) => x === 'connecting').length >= 2 && window.t.states.at(-1) === 'connected'));
    await bob.send('web', 'after the takeover', { ttl: 600 });
    await waitFor('the message in the second tab', () => page2.evaluate(() => window.t.got.includes('after the takeover')));
    await page2.evaluate(() => window.t.acc.close());
    await page2.close();
  });

  await t.test('after a reload: same identity, unexpired messages and attachments kept, expired gone', async () => {
    await new Promise((ok) => setTimeout(ok, 2500)); // the 2-second message expires while the page is gone
    await page.reload();
    await open();
    const after = await page.evaluate(async () => {
      const { sdk, store } = window.t;
      const acc = await sdk.Account.open(store);
      const msgs = await acc.messages('bob');
      const withFile = msgs.find((m) => m.message?.text === 'hi browser');
      const size = withFile ? (await acc.attachment(withFile, 0)).size : -1;
      const convs = (await acc.conversations()).map((c) => [c.kind, c.name]);
      acc.close();
      return { user: acc.user, device: acc.device, fingerprint: acc.fingerprint, texts: msgs.map((m) => m.message?.text), size, convs };
    });
    assert.deepEqual([after.user, after.device, after.fingerprint], [me.user, me.device, me.fingerprint]);
    assert.deepEqual(after.texts, ['hi browser', 'from the browser', 'to every tab', 'after the takeover']);
    assert.equal(after.size, 100_000);
    assert.deepEqual(after.convs, [['contact', 'bob']]);
  });
  assert.deepEqual(errors, []);
});
