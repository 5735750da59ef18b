// Screenshots of the main screens at phone (390×844) and desktop (1280×800)
// size, written to $QRTALK_SCREENSHOTS (docs/screenshots to refresh the ones
// the README shows; a temporary directory by default). Each screen is
// also checked for what a small screen breaks first: nothing wider than the
// viewport.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import {
  startServer, launchBrowser, newUser, openApp, stopAll, phone, desktop, TEST_TIMEOUT,
  joinWithInvite, myCode, addContact, goTo, openChat, send, message, screenshot, conversation,
} from './harness.mjs';

let server, browser, alice, bob;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  alice = await newUser(browser, server, { name: 'alice', viewport: desktop });
  bob = await newUser(browser, server, { name: 'bob', viewport: desktop });
}, { timeout: 5 * 60_000 });
after(stopAll, { timeout: 2 * 60_000 });

const sizes = { phone, desktop };

// crc32 of PNG chunks.
const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A small PNG picture (a sunset-like gradient) to send as an attachment. */
function picture(w, h) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0; // filter: none
    for (let x = 0; x < w; x++) {
      const i = y * (w * 3 + 1) + 1 + x * 3;
      const sun = Math.hypot(x - w * 0.7, y - h * 0.55) < h * 0.18;
      const sea = y > h * 0.62;
      raw[i] = sun ? 255 : sea ? 20 + (y * 60) / h : 250 - (y * 120) / h;
      raw[i + 1] = sun ? 210 : sea ? 70 + (y * 40) / h : 150 - (y * 60) / h;
      raw[i + 2] = sun ? 90 : sea ? 120 + (y * 60) / h : 90 + (y * 80) / h;
    }
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Dismisses notices, then checks the width and takes the screenshot. */
async function shoot(user, name, size) {
  const page = user.page;
  for (const b of await page.getByRole('button', { name: 'Dismiss notice' }).all()) await b.click().catch(() => {});
  await page.evaluate(() => document.fonts.ready);
  const [scrollWidth, width] = await page.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
  assert.ok(scrollWidth <= width, `${name} at ${size} size is ${scrollWidth}px wide, wider than the ${width}px screen`);
  await screenshot(page, `${size}-${name}`);
}

test('screenshots of the main screens at phone and desktop size', { timeout: TEST_TIMEOUT }, async () => {
  // The welcome screen, before joining.
  await openApp(alice, server);
  await alice.page.getByRole('heading', { name: 'Welcome to QRTalk' }).waitFor();
  for (const [size, viewport] of Object.entries(sizes)) {
    await alice.page.setViewportSize(viewport);
    await shoot(alice, 'welcome', size);
  }

  // Two people who know each other, and a short conversation.
  await alice.page.setViewportSize(desktop);
  await joinWithInvite(alice, server, await server.invite());
  await joinWithInvite(bob, server, await server.invite());
  const [a, b] = [await myCode(alice.page), await myCode(bob.page)];
  await addContact(alice.page, b.contactCode, 'Bob');
  await addContact(bob.page, a.contactCode, 'Alice');
  await openChat(alice.page, 'Bob');
  await openChat(bob.page, 'Alice');
  await send(alice.page, 'Are we still on for tonight?', { ttl: '1 hour' });
  await message(bob.page, 'Are we still on for tonight?').waitFor();
  await send(bob.page, 'Yes. Here is the view from the place.', {
    ttl: '1 day',
    files: [{ name: 'view.png', mimeType: 'image/png', buffer: picture(360, 220) }],
  });
  await send(bob.page, 'The door code is 4711. This message is gone in 5 minutes.', { ttl: '5 minutes' });
  const withImage = message(alice.page, 'Here is the view');
  await withImage.getByRole('img', { name: 'view.png' }).waitFor();
  await message(alice.page, 'The door code').waitFor();
  await send(alice.page, 'Perfect, see you at 8.', { ttl: '5 minutes' });

  for (const [size, viewport] of Object.entries(sizes)) {
    const page = alice.page;
    await page.setViewportSize(viewport);
    await openChat(page, 'Bob');
    const img = message(page, 'Here is the view').getByRole('img', { name: 'view.png' });
    await img.evaluate((el) => el.decode());
    await conversation(page, 'Bob').getByRole('log').evaluate((el) => { el.scrollTop = el.scrollHeight; });
    await shoot(alice, 'chat', size);

    await goTo(page, 'Chats');
    await shoot(alice, 'chats', size);
    await goTo(page, 'Contacts');
    await shoot(alice, 'contacts', size);
    await goTo(page, 'My code');
    await shoot(alice, 'my-code', size);
    await goTo(page, 'Devices');
    await page.getByRole('list', { name: 'Your devices' }).getByRole('listitem').first().waitFor();
    await shoot(alice, 'devices', size);
  }
  assert.deepEqual(alice.offHost, [], 'requests to a host other than the server');
  assert.deepEqual(alice.problems, [], 'errors in the page');
});
