// The SDK and the Go CLI (qrtalk, built from this checkout) on the same real
// qrtalkd: a JS account and a CLI account add each other by contact code and
// exchange a message and an attachment both ways, with receipts; the CLI
// links the JS side as a second device of its user (qrtalk device link).
// Run: node --test --experimental-websocket web/test/

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Server, CLI, missing, waitFor, nextEvent } from './client-harness.mjs';
import { Account, MemoryStore } from '../app/js/client/index.js';

const skip = missing();

test('the SDK and the qrtalk CLI interoperate', { skip: skip ?? false, timeout: 150_000 }, async (t) => {
  const srv = await Server.start();
  const accounts = [];
  t.after(async () => {
    for (const a of accounts) a.close();
    await srv.stop();
  });
  const invite = await srv.invite(10);
  const alice = await Account.join(new MemoryStore(), invite);
  accounts.push(alice);
  const bob = new CLI(srv, 'bob');
  await bob.run('join', invite);
  const bobID = await bob.json('id');
  assert.equal(bobID.fingerprint_numeric.replace(/ /g, '').length, 40);

  await t.test('contacts by contact code, both verified', async () => {
    const c = await alice.addContact(bobID.contact_code, 'bob');
    assert.equal(c.trust, 'verified');
    assert.equal(c.fingerprint, bobID.fingerprint);
    const out = await bob.run('contact', 'add', alice.contactCode, '--name', 'alice');
    assert.match(out, /verified/);
    const contacts = await bob.json('contacts');
    assert.equal(contacts[0].trust, 'verified');
  });

  await t.test('JS to CLI: a message and an attachment, queued, with a delivered receipt', async () => {
    alice.start();
    await waitFor('alice live', () => alice.connection === 'connected');
    const file = new TextEncoder().encode('the plan, in full\n'.repeat(5000)); // 90 KB: two blob chunks
    let progress = 0;
    const res = await alice.send('bob', 'the plan', {
      ttl: 3600, files: [{ name: 'plan.txt', type: 'text/plain', data: file }], onProgress: (name, done) => { progress = done; },
    });
    assert.equal(res.devices[0].status, 'queued');
    assert.ok(progress > file.length, `upload progress reached ${progress}`);
    const delivered = nextEvent(alice, 'receipt', (r) => r.kind === 'delivered' && r.ids.includes(res.id));
    const save = join(srv.tmp, 'bob-downloads');
    await mkdir(save, { recursive: true });
    const msgs = await bob.jsonLines('inbox', '--save', save);
    const m = msgs.find((x) => x.id === res.id);
    assert.ok(m, JSON.stringify(msgs));
    assert.equal(m.text, 'the plan');
    assert.equal(m.signature, 'verified');
    assert.equal(m.from, alice.user);
    assert.equal(m.attachments[0].name, 'plan.txt');
    assert.equal(m.attachments[0].size, file.length);
    assert.deepEqual(new Uint8Array(await readFile(m.attachments[0].saved)), file);
    await delivered;
    // bob reads: alice sees "read".
    const read = nextEvent(alice, 'receipt', (r) => r.kind === 'read' && r.ids.includes(res.id));
    await bob.run('read', 'alice');
    await read;
    assert.equal((await alice.messages('bob')).find((x) => x.id === res.id).state, 'read');
  });

  await t.test('CLI to JS: a message and an attachment, live', async () => {
    const path = join(srv.tmp, 'photo.png');
    const png = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 7) & 0xff);
    await writeFile(path, png);
    const got = nextEvent(alice, 'message', (r) => r.message?.text === 'a photo for you', 30_000);
    const sent = await bob.json('send', 'alice', '--ttl', '5m', '--file', path, 'a photo for you');
    assert.equal(sent.devices[0].status, 'delivered');
    const r = await got;
    assert.equal(r.signature, 'verified');
    assert.equal(r.fromName, 'bob');
    assert.equal(r.id, sent.id);
    assert.ok(Math.abs(r.expires - r.sent - 300_000) < 1);
    const att = r.message.attachments[0];
    assert.deepEqual([att.name, att.mediaType, att.size], ['photo.png', 'image/png', png.length]);
    const blob = await alice.attachment(r, 0);
    assert.equal(blob.type, 'image/png');
    assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), png);
    // alice reads it: the CLI shows it read.
    await alice.messages('bob', { markRead: true });
    await waitFor('bob to see his message read', async () => {
      await bob.jsonLines('inbox');
      const mine = await bob.jsonLines('read', 'alice', '--no-mark');
      return mine.find((x) => x.id === sent.id)?.state === 'read';
    }, 30_000, 500);
  });

  await t.test('a receipt that overtakes the sender\'s own copy still counts', async () => {
    // A listening CLI acknowledges a live message and sends "delivered" at
    // once: the receipt can arrive before alice's send() has stored her copy.
    const listen = spawn(bob.bin, ['--home', bob.home, 'listen', '--json'], { env: bob.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise((ok) => listen.on('exit', ok));
    try {
      let res;
      await waitFor('bob\'s live channel', async () => {
        res = await alice.send('bob', 'are you listening?', { ttl: 60 });
        return res.devices[0].status === 'delivered';
      }, 30_000, 300);
      const sent = await alice.send('bob', 'race', { ttl: 600 });
      assert.equal(sent.devices[0].status, 'delivered');
      await waitFor('the delivered state of a message bob got live', async () =>
        (await alice.messages('bob')).find((m) => m.id === sent.id)?.state === 'delivered', 10_000);
    } finally {
      listen.kill('SIGINT');
      await exited;
    }
  });

  await t.test('a group made by the CLI reaches the JS member', async () => {
    const g = nextEvent(alice, 'group', (x) => x.name === 'pair', 30_000);
    await bob.run('group', 'create', 'pair', 'alice');
    const group = await g;
    assert.deepEqual([...group.members].sort(), [alice.user, bobID.user].sort());
    await alice.send('pair', 'hello pair', { ttl: 60 });
    const msgs = await bob.jsonLines('inbox');
    const m = msgs.find((x) => x.text === 'hello pair');
    assert.ok(m, JSON.stringify(msgs));
    assert.equal(m.conversation, 'pair');
  });

  await t.test('the browser links the CLI as a second device of its user', async () => {
    const link = await alice.startLink();
    const laptop = new CLI(srv, 'alice-laptop');
    const [linked, out] = await Promise.all([link.complete(), laptop.run('device', 'join', link.code)]);
    assert.match(out, /This is now device/);
    const id = await laptop.json('id');
    assert.equal(id.user, alice.user);
    assert.equal(id.device, linked);
    assert.equal(id.fingerprint, alice.fingerprint);
    assert.deepEqual((await alice.devices()).map((d) => d.device).sort(), [alice.device, linked].sort());
    // The CLI device sends as alice; the browser gets its copy, verified.
    await laptop.run('contact', 'add', bobID.contact_code, '--name', 'bob');
    const copy = nextEvent(alice, 'message', (r) => r.message?.text === 'sent from the CLI laptop', 30_000);
    await laptop.run('send', 'bob', 'sent from the CLI laptop');
    const r = await copy;
    assert.equal(r.outgoing, true);
    assert.equal(r.signature, 'verified');
    assert.equal(r.conversation, 'u:' + bobID.user);
  });

  await t.test('the CLI links this browser as a second device of its user', async () => {
    const proc = spawn(bob.bin, ['--home', bob.home, 'device', 'link', '--qr', 'false'], { env: bob.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stderr.on('data', (d) => { err += d; });
    const exited = new Promise((ok) => proc.on('exit', (code) => ok(code)));
    t.after(() => { if (proc.exitCode === null) proc.kill(); });
    const code = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`no link code from qrtalk device link: ${out} ${err}`)), 30_000);
      proc.stdout.on('data', (d) => {
        out += d;
        const m = /^(qrtalk:link\?\S+)$/m.exec(out);
        if (m) { clearTimeout(timer); ok(m[1]); }
      });
    });
    const laptop = await Account.joinLink(new MemoryStore(), code);
    accounts.push(laptop);
    assert.equal(await exited, 0, err);
    assert.equal(laptop.user, bobID.user);
    assert.equal(laptop.fingerprint, bobID.fingerprint);
    const devs = await bob.json('devices');
    assert.equal(devs.length, 2);
    assert.ok(devs.some((d) => d.device === laptop.device || d.id === laptop.device), JSON.stringify(devs));
    // alice's next message reaches the CLI and the linked browser.
    await laptop.addContact(alice.contactCode, 'alice');
    const res = await alice.send('bob', 'to both of bob', { ttl: 60 });
    assert.equal(res.devices.filter((d) => d.user === bobID.user).length, 2);
    const got = await laptop.sync();
    assert.ok(got.some((r) => r.message?.text === 'to both of bob' && r.signature === 'verified'));
    assert.ok((await bob.jsonLines('inbox')).some((x) => x.text === 'to both of bob'));
  });
});
