// A browser linked as the second device of a qrtalk CLI user, from the code
// `qrtalk device link` prints: it is the same user (ID, fingerprint), it
// receives what the first device sends and what others send the user, and
// what it sends is verified as the user's.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  startServer, launchBrowser, newUser, openApp, stopAll, cliUser, tempDir, phone, TEST_TIMEOUT, STEP_TIMEOUT,
  nav, outcome, myCode, goTo, addContact, openChat, message, messageID, waitFor,
} from './harness.mjs';

let server, browser, laptop, alice, bob, me, linked = false;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  laptop = await newUser(browser, server, { name: "alice's browser", viewport: phone });
  alice = await cliUser(server, 'alice');
  bob = await cliUser(server, 'bob');
}, { timeout: 5 * 60_000 });
after(stopAll, { timeout: 2 * 60_000 });

test('a browser linked as a second device receives what the first device sends', { timeout: TEST_TIMEOUT }, async () => {
  await Promise.all([
    server.invite().then((inv) => alice.run('join', inv)),
    server.invite().then((inv) => bob.run('join', inv)),
  ]);
  const [aliceID, bobID] = await Promise.all([alice.json('id', '--json'), bob.json('id', '--json')]);
  await alice.run('contact', 'add', bobID.contact_code, '--name', 'bob');
  await bob.run('contact', 'add', aliceID.contact_code, '--name', 'alice');

  // Alice's first device shows a link code; the browser takes it.
  const link = alice.start('device', 'link', '--qr=false');
  const code = (await link.line(/^\s*qrtalk:link\?/)).trim();
  await openApp(laptop, server);
  const page = laptop.page;
  await page.getByLabel('Link code').fill(code);
  await page.getByRole('button', { name: 'Link this browser' }).click();
  await outcome('linking', () => nav(page).isVisible(), page.getByRole('form', { name: /another device/ }).getByRole('alert'), 2 * STEP_TIMEOUT);
  const { code: exit } = await link.exited;
  assert.equal(exit, 0, `qrtalk device link exit status; its output:\n${link.lines.join('\n')}\n${link.stderr.join('\n')}`);

  // The same user: same ID, same fingerprint; two devices.
  me = await myCode(page);
  assert.equal(me.user, aliceID.user, "the browser is alice's");
  assert.equal(me.fingerprintNumeric, aliceID.fingerprint_numeric, "alice's fingerprint, unchanged by the new device");
  await goTo(page, 'Devices');
  const devices = page.getByRole('list', { name: 'Your devices' }).getByRole('listitem');
  await waitFor('two devices', async () => await devices.count() === 2);
  await devices.filter({ hasText: 'This browser' }).waitFor();
  await devices.filter({ hasText: aliceID.device }).waitFor();
  const cliDevices = await alice.json('devices', '--json');
  assert.equal(cliDevices.length, 2, 'the first device sees two devices');

  // Contacts stay on each device: the browser adds bob too.
  await addContact(page, bobID.contact_code, 'Bob');
  await openChat(page, 'Bob');

  // What the first device sends arrives in the browser, as alice's own.
  const first = `sent from the first device (${Date.now()})`;
  const sent = await alice.json('send', 'bob', '--json', first);
  const copy = message(page, first);
  await copy.waitFor();
  assert.equal(await copy.getAttribute('aria-label'), 'Your message', 'shown as sent by alice');
  assert.equal(await messageID(copy), sent.id);

  // What bob sends alice reaches both of her devices.
  const toAlice = `to both of alice's devices (${Date.now()})`;
  const bobSent = await bob.json('send', 'alice', '--json', toAlice);
  assert.equal(bobSent.devices.length, 2, `bob seals for both of alice's devices: ${JSON.stringify(bobSent.devices)}`);
  const got = message(page, toAlice);
  await got.waitFor();
  assert.equal(await got.getAttribute('aria-label'), 'Message from Bob');
  await got.getByText('verified', { exact: true }).waitFor();
  const inbox = await alice.jsonLines('inbox', '--json');
  assert.ok(inbox.some((m) => m.type === 'message' && m.text === toAlice), "alice's first device got bob's message too");

  // What the browser sends is alice's, verified by bob, and copied to the
  // first device.
  const fromBrowser = `sent from the browser (${Date.now()})`;
  await page.getByLabel('Message', { exact: true }).fill(fromBrowser);
  await page.getByRole('button', { name: 'Send', exact: true }).click();
  await message(page, fromBrowser).waitFor();
  const bobInbox = await waitFor("bob's inbox to have the browser's message", async () => {
    const ms = await bob.jsonLines('inbox', '--json');
    return ms.find((m) => m.type === 'message' && m.text === fromBrowser);
  }, STEP_TIMEOUT, 1_000);
  assert.equal(bobInbox.from, aliceID.user);
  assert.equal(bobInbox.signature, 'verified', "bob verifies the browser's message as alice's");
  const aliceInbox = await alice.jsonLines('inbox', '--json');
  const own = aliceInbox.find((m) => m.type === 'message' && m.text === fromBrowser);
  assert.ok(own && own.outgoing, "alice's first device got the browser's copy");

  assert.deepEqual(laptop.offHost, [], 'requests to a host other than the server');
  assert.deepEqual(laptop.problems, [], 'errors in the page');
  linked = true;
});

test('the browser links a new device: a qrtalk CLI that reads the QR code it shows', { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(linked, 'needs the linked browser of the test before');
  const page = laptop.page;
  const phoneCLI = await cliUser(server, 'alice-phone');
  await goTo(page, 'Devices');
  await page.getByRole('button', { name: 'Link a new device' }).click();
  const dialog = page.getByRole('dialog', { name: 'Link a new device' });
  const code = await dialog.getByRole('textbox', { name: 'Link code' }).inputValue();
  assert.match(code, /^qrtalk:link\?/);
  // The CLI reads a picture of the QR code the browser shows.
  const qrFile = path.join(await tempDir('link-qr'), 'link.png');
  await writeFile(qrFile, await dialog.getByRole('img', { name: /QR code/ }).screenshot());
  const joined = await phoneCLI.run('device', 'join', qrFile);
  assert.match(joined, /This is now device/);
  const phoneID = await phoneCLI.json('id', '--json');
  assert.equal(phoneID.user, me.user, "the new device is alice's");
  await outcome('the browser to confirm the link', () => dialog.getByText(`Device ${phoneID.device} is linked.`).isVisible(), dialog.getByRole('alert'));
  await dialog.getByRole('button', { name: 'Done' }).click();
  const devices = page.getByRole('list', { name: 'Your devices' }).getByRole('listitem');
  await waitFor('three devices', async () => await devices.count() === 3);

  // Bob's next message reaches all three.
  const text = `to all three of alice's devices (${Date.now()})`;
  const sent = await bob.json('send', 'alice', '--json', text);
  assert.equal(sent.devices.length, 3, `bob seals for three devices: ${JSON.stringify(sent.devices)}`);
  await openChat(page, 'Bob');
  await message(page, text).waitFor();
  const inbox = await phoneCLI.jsonLines('inbox', '--json');
  assert.ok(inbox.some((m) => m.type === 'message' && m.text === text), 'the new device got it');
  // An empty provisioning mailbox answers a take with 404 (PROTOCOL.md
  // 17.8), which Chromium logs as a failed load: that one is expected.
  const others = laptop.httpErrors.filter((e) => !/^404 POST \/v1\/provision\/[0-9a-f]{32}\/take$/.test(e));
  assert.deepEqual(others, [], 'error answers other than an empty mailbox');
  const problems = laptop.problems.filter((p) => !(others.length === 0 && /Failed to load resource: the server responded with a status of 404/.test(p)));
  assert.deepEqual(problems, [], 'errors in the page');
});
