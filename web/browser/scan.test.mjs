// Adding a contact with the camera: a second Chromium whose (fake) camera
// films the QR code alice's browser draws. The app's scan dialog finds the
// code in the video, and the contact is added verified.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  startServer, launchBrowser, newUser, stopAll, tempDir, phone, desktop, TEST_TIMEOUT,
  joinWithInvite, myCode, goTo, outcome, conversation,
} from './harness.mjs';

let server, browser;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
}, { timeout: 5 * 60_000 });
after(stopAll, { timeout: 2 * 60_000 });

/**
 * One video frame in Chromium's fake-camera format (YUV4MPEG2, 4:2:0): the
 * grey levels of the QR code, centred on a white frame of side×side.
 */
function y4m({ width, height, grey }, side) {
  const Y = Buffer.alloc(side * side, 255);
  const ox = (side - width) >> 1;
  const oy = (side - height) >> 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) Y[(y + oy) * side + x + ox] = grey[y * width + x];
  }
  const UV = Buffer.alloc((side / 2) * (side / 2) * 2, 128);
  return Buffer.concat([Buffer.from(`YUV4MPEG2 W${side} H${side} F10:1 Ip A1:1 C420jpeg\nFRAME\n`), Y, UV]);
}

test('a browser adds a contact by filming their QR code with the camera', { timeout: TEST_TIMEOUT }, async () => {
  const alice = await newUser(browser, server, { name: 'alice', viewport: desktop });
  await joinWithInvite(alice, server, await server.invite());
  const aliceCode = await myCode(alice.page);
  const frame = await alice.page.getByRole('main').getByRole('img', { name: /QR code/ }).evaluate((canvas) => {
    const { data, width, height } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    const grey = [];
    for (let i = 0; i < data.length; i += 4) grey.push(data[i]);
    return { width, height, grey };
  });
  const side = Math.ceil((Math.max(frame.width, frame.height) + 80) / 16) * 16;
  const video = path.join(await tempDir('camera'), 'qr.y4m');
  await writeFile(video, y4m(frame, side));

  const camera = await launchBrowser({ extraArgs: ['--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${video}`] });
  const dave = await newUser(camera, server, { name: 'dave', viewport: phone });
  await dave.context.grantPermissions(['camera'], { origin: server.url });
  await joinWithInvite(dave, server, await server.invite());
  const page = dave.page;
  await goTo(page, 'Contacts');
  await page.getByRole('button', { name: 'Add contact' }).click();
  const dialog = page.getByRole('dialog', { name: 'Add a contact' });
  await dialog.getByRole('button', { name: 'Scan their QR code' }).click();
  const scan = page.getByRole('dialog', { name: /Scan a contact/ });
  // The dialog closes by itself once the camera sees the code (nothing
  // was pasted or chosen: the code can only come from the camera).
  await outcome('the camera to find the QR code', () => scan.count().then((n) => n === 0), scan.getByRole('alert'), 30_000);
  assert.equal(await dialog.getByLabel('Contact code or user ID').inputValue(), aliceCode.contactCode, 'the scanned code');
  await dialog.getByLabel('Name', { exact: true }).fill('Alice');
  await dialog.getByRole('button', { name: 'Add contact' }).click();
  await outcome('adding Alice', () => dialog.count().then((n) => n === 0), dialog.getByRole('alert'));
  await conversation(page, 'Alice').getByText('✔ verified').waitFor();

  for (const u of [alice, dave]) {
    assert.deepEqual(u.offHost, [], `${u.name}: requests to a host other than the server`);
    assert.deepEqual(u.problems, [], `${u.name}: errors in the page`);
  }
});
