// Two people in two browsers: they join from invites, verify each other by
// the payload of their QR codes, chat with a short TTL and watch the message
// vanish at expiry, on both sides and in IndexedDB. Then a reload keeps the
// identity and the unexpired history, and drops what expired while the tab
// was closed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newUser, openApp, stopAll, waitFor, phone, desktop, TEST_TIMEOUT,
  joinWithInvite, myCode, addContact, addContactByPhoto, goTo, openChat, send, message, messages, messageID, storedMessage, nav,
} from './harness.mjs';

let server, browser, alice, bob;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  alice = await newUser(browser, server, { name: 'alice', viewport: desktop });
  bob = await newUser(browser, server, { name: 'bob', viewport: phone });
}, { timeout: 5 * 60_000 });
after(stopAll, { timeout: 2 * 60_000 });

const noProblems = (...users) => {
  for (const u of users) {
    assert.deepEqual(u.offHost, [], `${u.name}: requests to a host other than the server`);
    assert.deepEqual(u.problems, [], `${u.name}: errors in the page`);
  }
};

let aliceCode, bobCode;

test('two browser users join, verify each other by QR payload, and a 20-second message vanishes at expiry', { timeout: TEST_TIMEOUT }, async () => {
  await Promise.all([
    joinWithInvite(alice, server, await server.invite()),
    joinWithInvite(bob, server, await server.invite()),
  ]);
  aliceCode = await myCode(alice.page);
  bobCode = await myCode(bob.page);
  assert.match(aliceCode.user, /^[a-z2-7]{26}$/, "alice's user ID");
  assert.notEqual(aliceCode.user, bobCode.user, 'two users, two IDs');
  assert.match(aliceCode.fingerprintNumeric, /^(\d{5} ){7}\d{5}$/, "alice's fingerprint digits");

  // Each adds the other from what their QR code carries, which verifies
  // the key the server gives against the code: alice pastes bob's contact
  // code; bob's browser decodes a picture of the QR code alice's shows.
  await addContact(alice.page, bobCode.contactCode, 'Bob');
  const scanned = await addContactByPhoto(bob.page, aliceCode.qrPNG, 'Alice');
  assert.equal(scanned, aliceCode.contactCode, "the payload of alice's QR code is her contact code");
  for (const [u, peer] of [[alice, 'Bob'], [bob, 'Alice']]) {
    const chat = await openChat(u.page, peer);
    await chat.getByText('✔ verified').waitFor();
  }

  // The fingerprints each side shows for the other match the other's own.
  await goTo(bob.page, 'Contacts');
  await bob.page.getByRole('link', { name: 'Alice', exact: true }).click();
  await bob.page.getByLabel(`Alice’s fingerprint: ${aliceCode.fingerprintNumeric}`).waitFor();

  // Alice sends with a 20-second lifetime (short, with room for a loaded
  // CI machine); it arrives at once (live) and shows its countdown.
  await openChat(alice.page, 'Bob');
  await openChat(bob.page, 'Alice');
  const text = `see you at 6 (${Date.now()})`;
  const sentAt = Date.now();
  const mine = await send(alice.page, text, { ttl: 20 });
  const theirs = message(bob.page, text);
  await theirs.waitFor({ timeout: 12_000 });
  const id = await messageID(theirs);
  assert.match(id, /^[0-9a-f]{32}$/, 'the message ID');
  assert.equal(await messageID(mine), id, 'the same message on both sides');
  assert.equal(await theirs.getAttribute('aria-label'), 'Message from Alice');
  await theirs.getByText('verified', { exact: true }).waitFor();
  const timer = theirs.getByRole('timer');
  assert.match(await timer.getAttribute('aria-label'), /^Disappears in \d+ seconds?$/, 'the countdown');
  assert.deepEqual(await storedMessage(bob.page, id), { message: 1, blobs: 0 }, "bob's stored copy");

  // It is still there shortly before its time, gone right after, on both
  // sides, and from IndexedDB too.
  await waitFor('15 s after sending', () => Date.now() - sentAt > 15_000, 20_000);
  assert.equal(await theirs.count(), 1, 'the message is shown before it expires');
  await waitFor('the message to vanish', async () => await theirs.count() === 0 && await message(alice.page, text).count() === 0, 30_000);
  const vanishedAfter = Date.now() - sentAt;
  assert.ok(vanishedAfter >= 19_000, `vanished ${vanishedAfter} ms after sending, before its 20 s`);
  await waitFor('the stored copies to be deleted', async () => {
    const [a, b] = await Promise.all([storedMessage(alice.page, id), storedMessage(bob.page, id)]);
    return a.message === 0 && b.message === 0;
  }, 10_000);
  noProblems(alice, bob);
});

test('a reload keeps the identity and the unexpired history, and drops the expired', { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(bobCode, 'needs the users of the test before');
  await openChat(alice.page, 'Bob');
  const keep = `this one stays for an hour (${Date.now()})`;
  const brief = `this one lasts 40 seconds (${Date.now()})`;
  await send(alice.page, keep, { ttl: '1 hour' });
  const briefSent = await send(alice.page, brief, { ttl: 40, files: [{ name: 'brief.txt', mimeType: 'text/plain', buffer: Buffer.from('gone in 40 seconds') }] });
  const briefID = await messageID(briefSent);
  const briefAt = Date.now();
  await openChat(bob.page, 'Alice');
  await message(bob.page, keep).waitFor();
  await message(bob.page, brief).waitFor();
  // Its attachment is downloaded (still encrypted) as it arrives.
  await waitFor("bob's browser to store the attachment", async () => (await storedMessage(bob.page, briefID)).blobs === 1, 15_000);

  // A plain reload: same account, both messages still there.
  await bob.page.reload();
  await nav(bob.page).waitFor();
  const again = await myCode(bob.page);
  assert.equal(again.user, bobCode.user, 'the user ID after a reload');
  assert.equal(again.fingerprintNumeric, bobCode.fingerprintNumeric, 'the fingerprint after a reload');
  await openChat(bob.page, 'Alice');
  await message(bob.page, keep).waitFor();
  await message(bob.page, brief).waitFor();

  assert.ok(Date.now() - briefAt < 35_000, 'the checks after the reload ran before the 40-second message expired');

  // Bob closes the tab; the 40-second message expires meanwhile; a new
  // tab of the same browser keeps the rest and has dropped it, from the
  // screen and from IndexedDB.
  await bob.page.close();
  await waitFor('the 40-second message to expire', () => Date.now() - briefAt > 42_000, 60_000);
  bob.page = await bob.context.newPage();
  await openApp(bob, server);
  await nav(bob.page).waitFor();
  const after = await myCode(bob.page);
  assert.equal(after.user, bobCode.user, 'the user ID in a new tab');
  await openChat(bob.page, 'Alice');
  await message(bob.page, keep).waitFor();
  assert.equal(await message(bob.page, brief).count(), 0, 'the expired message is not shown');
  assert.deepEqual(await storedMessage(bob.page, briefID), { message: 0, blobs: 0 }, 'the expired message and its attachment are not stored');
  assert.ok(await messages(bob.page).count() >= 1);

  // The service worker's cache holds the shell only: no API answer.
  const cached = await bob.page.evaluate(async () => {
    const urls = [];
    for (const name of await caches.keys()) {
      for (const req of await (await caches.open(name)).keys()) urls.push(new URL(req.url).pathname);
    }
    return urls;
  });
  assert.ok(cached.length > 0, 'the service worker cached the shell');
  assert.deepEqual(cached.filter((p) => p.startsWith('/v1')), [], 'API answers in the Cache Storage');
  noProblems(alice, bob);
});
