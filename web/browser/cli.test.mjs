// A browser user and a qrtalk CLI user: each adds the other (the CLI from a
// picture of the QR code the browser draws), and they exchange messages and
// attachments both ways, with receipts.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  startServer, launchBrowser, newUser, stopAll, cliUser, tempDir, desktop, TEST_TIMEOUT, STEP_TIMEOUT,
  joinWithInvite, myCode, addContact, openChat, send, message, messageID, goTo, outcome, conversation,
} from './harness.mjs';

let server, browser, alice, carol, dir, ready = false;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  alice = await newUser(browser, server, { name: 'alice', viewport: desktop });
  carol = await cliUser(server, 'carol');
  dir = await tempDir('cli-files');
}, { timeout: 5 * 60_000 });
after(stopAll, { timeout: 2 * 60_000 });

const sha256 = (b) => createHash('sha256').update(b).digest('hex');

test('a browser user and a qrtalk CLI user exchange messages and attachments both ways', { timeout: TEST_TIMEOUT }, async () => {
  const [, joined] = await Promise.all([
    joinWithInvite(alice, server, await server.invite()),
    server.invite().then((inv) => carol.run('join', inv)),
  ]);
  assert.match(joined, /Joined/);
  const carolID = await carol.json('id', '--json');

  // Carol adds alice from a picture of the QR code alice's browser shows:
  // the CLI decodes it, and the key the server gives matches the code.
  const aliceCode = await myCode(alice.page);
  const qrFile = path.join(dir, 'alice-qr.png');
  await writeFile(qrFile, aliceCode.qrPNG);
  const added = await carol.run('contact', 'add', qrFile, '--name', 'alice');
  assert.match(added, /verified/, `carol adds alice from the QR picture: ${added}`);
  const contacts = await carol.json('contacts', '--json');
  assert.equal(contacts[0].user, aliceCode.user, "the QR code's user");

  // Alice adds carol by the contact code the CLI prints.
  await addContact(alice.page, carolID.contact_code, 'Carol');
  const chat = await openChat(alice.page, 'Carol');
  await chat.getByText('✔ verified').waitFor();

  // Browser to CLI: a text and two files, one binary.
  const listen = carol.start('listen', '--json', '--save', path.join(dir, 'carol-downloads'));
  const notes = Buffer.from('the plan, in full\n');
  const blob = randomBytes(300_000);
  const text = `from the browser (${Date.now()})`;
  const out = await send(alice.page, text, {
    ttl: '1 hour',
    files: [
      { name: 'notes.txt', mimeType: 'text/plain', buffer: notes },
      { name: 'data.bin', mimeType: 'application/octet-stream', buffer: blob },
    ],
  });
  const got = await listen.json((m) => m.type === 'message' && m.text === text, 2 * STEP_TIMEOUT);
  assert.equal(got.signature, 'verified', 'signature as the CLI sees it');
  assert.equal(got.from, aliceCode.user);
  assert.equal(got.id, await messageID(out), 'the message ID on both sides');
  assert.ok(got.expires_in_s > 3500 && got.expires_in_s <= 3600, `TTL as received: ${got.expires_in_s} s`);
  const byName = Object.fromEntries((got.attachments ?? []).map((a) => [a.name, a]));
  assert.deepEqual(Object.keys(byName).sort(), ['data.bin', 'notes.txt'], 'attachments');
  assert.equal(byName['notes.txt'].media_type, 'text/plain');
  assert.deepEqual(await readFile(byName['notes.txt'].saved), notes, 'notes.txt as saved by the CLI');
  assert.equal(sha256(await readFile(byName['data.bin'].saved)), sha256(blob), 'data.bin as saved by the CLI');

  // CLI to browser: a text, a file and an image.
  const report = Buffer.from('quarterly numbers: 1, 2, 3\n');
  const image = await alice.page.screenshot({ clip: { x: 0, y: 0, width: 120, height: 80 } });
  await writeFile(path.join(dir, 'report.txt'), report);
  await writeFile(path.join(dir, 'view.png'), image);
  const reply = `from the command line (${Date.now()})`;
  const sent = await carol.json('send', 'alice', '--json', '--ttl', '5m',
    '--file', path.join(dir, 'report.txt'), '--file', path.join(dir, 'view.png'), reply);
  assert.equal(sent.devices.length, 1);
  const incoming = message(alice.page, reply);
  await incoming.waitFor();
  assert.equal(await messageID(incoming), sent.id);
  assert.equal(await incoming.getAttribute('aria-label'), 'Message from Carol');
  await incoming.getByText('verified', { exact: true }).waitFor();
  assert.match(await incoming.getByRole('timer').getAttribute('aria-label'), /^Disappears in (5 minutes|4 minutes)/);

  // The image is decrypted and shown.
  const img = incoming.getByRole('img', { name: 'view.png' });
  await img.waitFor();
  const size = await img.evaluate(async (el) => {
    await el.decode();
    return [el.naturalWidth, el.naturalHeight];
  });
  assert.deepEqual(size, [120, 80], 'the image as the browser decoded it');

  // The file downloads with its content.
  const [download] = await Promise.all([
    alice.page.waitForEvent('download'),
    incoming.getByRole('button', { name: /Download report\.txt/ }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'report.txt');
  assert.deepEqual(await readFile(await download.path()), report, 'report.txt as downloaded');

  // Alice's read reaches carol as a receipt.
  await listen.json((m) => m.type === 'read' && (m.about ?? []).includes(sent.id));
  await listen.stop();

  assert.deepEqual(alice.offHost, [], 'requests to a host other than the server');
  assert.deepEqual(alice.problems, [], 'errors in the page');
  ready = true;
});

test("a browser user sees the CLI user's delivered and read receipts", { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(ready, 'needs the contacts of the test before');
  const listen = carol.start('listen', '--json');
  await openChat(alice.page, 'Carol');
  const text = `receipts, please (${Date.now()})`;
  const out = await send(alice.page, text);
  await listen.json((m) => m.type === 'message' && m.text === text);
  // The listener sends "delivered" at once; reading sends "read".
  await out.getByLabel('Delivered', { exact: true }).waitFor();
  await carol.run('read', 'alice');
  await out.getByLabel('Read', { exact: true }).waitFor();
  await listen.stop();
  assert.deepEqual(alice.problems, [], 'errors in the page');
});

test('a browser user makes a group with a CLI user, and both write to it', { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(ready, 'needs the contacts of the first test');
  const page = alice.page;
  const listen = carol.start('listen', '--json');
  await goTo(page, 'Chats');
  await page.getByRole('button', { name: 'New group' }).click();
  const dialog = page.getByRole('dialog', { name: 'New group' });
  await dialog.getByLabel('Group name').fill('team');
  await dialog.getByRole('checkbox', { name: 'Carol' }).check();
  await dialog.getByRole('button', { name: 'Create group' }).click();
  await outcome('creating the group', () => dialog.count().then((n) => n === 0), dialog.getByRole('alert'));
  await conversation(page, 'team').waitFor();

  // The CLI learns of the group, and writes to it by its name.
  await listen.json((m) => m.type === 'group');
  const groups = await carol.json('groups', '--json');
  assert.equal(groups.length, 1, `carol's groups: ${JSON.stringify(groups)}`);
  const hi = `hi team, from the command line (${Date.now()})`;
  await carol.run('send', 'team', hi);
  const got = message(page, hi);
  await got.waitFor();
  assert.equal(await got.getAttribute('aria-label'), 'Message from Carol');

  // And the browser's message to the group reaches the CLI, in the group.
  const reply = `hi carol, from the browser (${Date.now()})`;
  await send(page, reply);
  const m = await listen.json((m) => m.type === 'message' && m.text === reply);
  assert.equal(m.conversation, 'team', 'the conversation of the group message');
  assert.equal(m.signature, 'verified');
  await listen.stop();
  assert.deepEqual(alice.problems, [], 'errors in the page');
});

test('a message that looks like HTML is shown as text, never run', { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(ready, 'needs the contacts of the first test');
  const page = alice.page;
  await openChat(page, 'Carol');
  const html = `<img src="/pwned.png" onerror="window.pwned=1"><b>bold</b><script>window.pwned=2</script> (${Date.now()})`;
  await carol.run('send', 'alice', html);
  const got = message(page, html);
  await got.waitFor();
  assert.equal(await got.locator('img, b, script').count(), 0, 'no element made from the text');
  assert.equal(await page.evaluate(() => window.pwned), undefined, 'nothing of the text ran');
  assert.ok(!alice.requests.some((r) => r.includes('pwned')), 'nothing of the text was fetched');
  assert.deepEqual(alice.problems, [], 'errors in the page');
});

test('an unsigned message from the CLI shows as unsigned in the browser', { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(ready, 'needs the contacts of the first test');
  const page = alice.page;
  await openChat(page, 'Carol');
  const text = `no signature on this one (${Date.now()})`;
  await carol.run('send', 'alice', '--unsigned', text);
  const got = message(page, text);
  await got.waitFor();
  await got.getByText('unsigned', { exact: true }).waitFor();
  assert.equal(await got.getByText('verified', { exact: true }).count(), 0, 'not shown as verified');
});

test('adding a known contact again with mistyped fingerprint digits keeps the contact and its pinned key', { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(ready, 'needs the contacts of the first test');
  const page = alice.page;
  const carolID = await carol.json('id', '--json');
  await goTo(page, 'Contacts');
  await page.getByRole('button', { name: 'Add contact' }).click();
  const dialog = page.getByRole('dialog', { name: 'Add a contact' });
  await dialog.getByLabel('Contact code or user ID').fill(carolID.user);
  await dialog.getByLabel('Name', { exact: true }).fill('Carol again');
  await dialog.getByLabel('Their fingerprint (optional, with a user ID)').fill('12345 '.repeat(8).trim());
  await dialog.getByRole('button', { name: 'Add contact' }).click();
  await dialog.getByRole('alert').filter({ hasText: 'does not match' }).waitFor();
  await dialog.getByRole('button', { name: 'Close' }).click();
  // Carol is still there, still verified: a typo deletes no pinned key.
  await goTo(page, 'Contacts');
  await page.getByRole('link', { name: 'Chat with Carol', exact: true }).waitFor();
  const chat = await openChat(page, 'Carol');
  await chat.getByText('✔ verified').waitFor();
});
