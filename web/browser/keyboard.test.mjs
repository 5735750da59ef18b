// Keyboard only: a person who cannot use a pointer joins, adds a contact and
// sends a message with Tab, typing, Enter and Escape.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newUser, openApp, stopAll, cliUser, desktop, TEST_TIMEOUT, STEP_TIMEOUT,
  nav, outcome, conversation, message, waitFor,
} from './harness.mjs';

let server, browser;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
}, { timeout: 5 * 60_000 });
after(stopAll, { timeout: 2 * 60_000 });

/** Presses Tab until the element of locator has the focus (at most max times). */
async function tabTo(page, locator, what, max = 40) {
  for (let i = 0; i < max; i++) {
    if (await locator.evaluate((el) => el === document.activeElement).catch(() => false)) return;
    await page.keyboard.press('Tab');
  }
  const focused = await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 120));
  throw new Error(`${max} presses of Tab never reached ${what}; the focus is on ${focused}`);
}

const focused = (locator) => locator.evaluate((el) => el === document.activeElement);

test('join, add a contact and send with the keyboard alone', { timeout: TEST_TIMEOUT }, async () => {
  const user = await newUser(browser, server, { name: 'keyboard', viewport: desktop });
  const bob = await cliUser(server, 'bob');
  await bob.run('join', await server.invite());
  const bobID = await bob.json('id', '--json');

  await openApp(user, server);
  const page = user.page;
  await page.getByRole('heading', { name: 'Welcome to QRTalk' }).waitFor();

  // The first Tab reaches the skip link, which moves the focus to the content.
  await page.keyboard.press('Tab');
  assert.ok(await focused(page.getByRole('link', { name: 'Skip to content' })), 'the first Tab stop is the skip link');
  await page.keyboard.press('Enter');
  await waitFor('the focus on the main content', () => page.evaluate(() => document.activeElement?.id === 'main'));

  await tabTo(page, page.getByLabel('Invite code'), 'the invite field');
  await page.keyboard.type(await server.invite());
  await tabTo(page, page.getByRole('button', { name: 'Join', exact: true }), 'the Join button');
  await page.keyboard.press('Enter');
  await outcome('joining', () => nav(page).isVisible(), page.getByRole('form', { name: 'Join with an invite' }).getByRole('alert'));

  // Contacts, from the navigation.
  await tabTo(page, nav(page).getByRole('link', { name: 'Contacts', exact: true }), 'Contacts in the navigation');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Contacts' }).waitFor();
  const add = page.getByRole('button', { name: 'Add contact' });
  await tabTo(page, add, 'the Add contact button');

  // A dialog takes the focus, and Escape gives it back.
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: 'Add a contact' });
  await dialog.waitFor();
  assert.ok(await dialog.evaluate((d) => d.contains(document.activeElement)), 'the focus is in the dialog');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
  assert.ok(await focused(add), 'Escape returns the focus to the button that opened the dialog');

  await page.keyboard.press('Enter');
  await dialog.waitFor();
  await tabTo(page, dialog.getByLabel('Contact code or user ID'), 'the contact code field');
  await page.keyboard.type(bobID.contact_code);
  await tabTo(page, dialog.getByLabel('Name', { exact: true }), 'the name field');
  await page.keyboard.type('Bob');
  await page.keyboard.press('Enter'); // submits the form
  await outcome('adding Bob', () => dialog.count().then((n) => n === 0), dialog.getByRole('alert'));
  await conversation(page, 'Bob').waitFor();

  // The composer: type, Enter sends.
  const text = `typed, not clicked (${Date.now()})`;
  await tabTo(page, page.getByLabel('Message', { exact: true }), 'the message field');
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
  await message(page, text).waitFor();
  const got = await waitFor("bob's inbox to have the message", async () => {
    const ms = await bob.jsonLines('inbox', '--json');
    return ms.find((m) => m.type === 'message' && m.text === text);
  }, STEP_TIMEOUT, 1_000);
  assert.equal(got.text, text);

  assert.deepEqual(user.offHost, [], 'requests to a host other than the server');
  assert.deepEqual(user.problems, [], 'errors in the page');
});
