// Helpers of the browser tests: a real qrtalkd on 127.0.0.1, real qrtalk CLI
// users, and Debian's Chromium driven by playwright-core. Everything started
// here is stopped by stopAll() (call it from after()), and killed on exit if
// a test run dies before that.
//
// The Go test web/jstest_test.go builds the binaries once and passes their
// directory in QRTALK_WEB_BINS; run alone (npm run test:browser) the harness
// builds them itself.

import { spawn, execFile, spawnSync } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// Screenshots go to a temporary directory, so that running the tests leaves
// the work tree as it was; QRTALK_SCREENSHOTS=docs/screenshots (relative to
// the repository, or absolute) refreshes the committed ones.
export const screenshotDir = process.env.QRTALK_SCREENSHOTS
  ? path.resolve(repoRoot, process.env.QRTALK_SCREENSHOTS)
  : path.join(os.tmpdir(), 'qrtalk-screenshots');
export const chromiumPath = '/usr/bin/chromium';

export const phone = { width: 390, height: 844 };
export const desktop = { width: 1280, height: 800 };

// Time limits. Generating RSA-3072 keys in the browser takes seconds on a
// loaded two-core machine, so the UI steps get generous but bounded time.
export const STEP_TIMEOUT = 60_000;
export const TEST_TIMEOUT = 8 * 60_000;

const children = new Set(); // live child processes
const cleanups = []; // async cleanups, run last-in first-out by stopAll
let tmpRoot;

process.on('exit', () => {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
  if (tmpRoot) spawnSync('rm', ['-rf', tmpRoot]);
});

/** A fresh directory under this run's temporary root. */
export async function tempDir(name) {
  if (!tmpRoot) tmpRoot = await mkdtemp(path.join(os.tmpdir(), 'qrtalk-browser-'));
  const dir = path.join(tmpRoot, name);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Stops browsers, CLI processes and servers, then removes the temporary files. */
export async function stopAll() {
  while (cleanups.length) {
    const f = cleanups.pop();
    try {
      await withTimeout(f(), 30_000, 'cleanup');
    } catch (err) {
      console.error(`cleanup: ${err.message}`);
    }
  }
  for (const c of children) c.kill('SIGKILL');
  if (tmpRoot) await rm(tmpRoot, { recursive: true, force: true });
  tmpRoot = undefined;
}

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms / 1000}s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls cond until it returns a truthy value, or throws at the deadline. */
export async function waitFor(what, cond, ms = STEP_TIMEOUT, every = 250) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (err) {
      if (err.fatal) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`waiting for ${what}: still not there after ${ms / 1000}s${last ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

function run(file, args, opts = {}) {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 5 * 60_000, maxBuffer: 16 << 20, ...opts }, (err, stdout, stderr) => {
      if (err) {
        err.message = `${path.basename(file)} ${args.join(' ')}: ${err.message}\n${stdout}${stderr}`;
        reject(err);
        return;
      }
      resolve({ stdout, stderr });
    });
  });
}

let binsPromise;
/** The directory holding the qrtalkd and qrtalk binaries, built once. */
export function binaries() {
  if (process.env.QRTALK_WEB_BINS) return Promise.resolve(process.env.QRTALK_WEB_BINS);
  binsPromise ??= (async () => {
    const dir = await tempDir('bin');
    await run('go', ['build', '-o', dir + path.sep, './cmd/qrtalkd', './cmd/qrtalk'], { cwd: repoRoot, timeout: 10 * 60_000 });
    return dir;
  })();
  return binsPromise;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Collects a child's output, and lets a caller wait for a line matching a pattern. */
function lineWatcher(stream) {
  const lines = [];
  const waiters = [];
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    partial += chunk;
    let i;
    while ((i = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, i);
      partial = partial.slice(i + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  return {
    lines,
    /** Resolves with the first line (already seen or to come) matching re. */
    until(re, ms, what) {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return withTimeout(new Promise((resolve) => waiters.push({ re, resolve })), ms, what);
    },
  };
}

/**
 * Starts a real qrtalkd with a temporary data directory on a free port of
 * 127.0.0.1, with its default self-signed TLS certificate.
 */
export async function startServer() {
  const bins = await binaries();
  const data = await tempDir('server');
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const bin = path.join(bins, 'qrtalkd');
  const proc = spawn(bin, ['serve', '--data', data, '--listen', `127.0.0.1:${port}`, '--public-url', url, '--qr=false'], {
    env: { HOME: data, PATH: process.env.PATH },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
    children.delete(proc);
    resolve({ code, signal });
  }));
  const out = lineWatcher(proc.stdout);
  const err = lineWatcher(proc.stderr);
  const died = exited.then(({ code, signal }) => {
    throw new Error(`qrtalkd exited (${code ?? signal}) before it was ready:\n${err.lines.join('\n')}`);
  });
  // Its first start prints an invite once it listens.
  await Promise.race([out.until(/qrtalk:invite\?/, 2 * 60_000, 'qrtalkd start'), died]);
  died.catch(() => {});

  let inviteChain = Promise.resolve();
  const makeInvite = async (uses) => {
    const { stdout } = await run(bin, ['invite', '--data', data, '--listen', `127.0.0.1:${port}`, '--public-url', url, '--uses', String(uses), '--expires', '1h', '--qr=false'], { env: { HOME: data, PATH: process.env.PATH } });
    const m = stdout.match(/qrtalk:invite\?\S+/);
    if (!m) throw new Error(`qrtalkd invite printed no invite:\n${stdout}`);
    return m[0];
  };
  const server = {
    url,
    host: `127.0.0.1:${port}`,
    data,
    bins,
    stderr: err.lines,
    /**
     * A fresh invite, good for uses people. One at a time: two qrtalkd
     * invite processes opening the database together may meet SQLITE_BUSY.
     */
    invite(uses = 1) {
      const next = inviteChain.then(() => makeInvite(uses));
      inviteChain = next.catch(() => {});
      return next;
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      try {
        await withTimeout(exited, 30_000, 'qrtalkd graceful stop');
      } catch {
        proc.kill('SIGKILL');
        await exited;
      }
    },
  };
  cleanups.push(() => server.stop());
  return server;
}

/**
 * A qrtalk command-line user with a home of its own. run() runs a command
 * to its end; start() leaves it running (listen, device link) and lets the
 * test wait for its output lines.
 */
export async function cliUser(server, name) {
  const home = await tempDir(`cli-${name}`);
  const bin = path.join(server.bins, 'qrtalk');
  const env = { HOME: home, PATH: process.env.PATH, TZ: 'UTC' };
  return {
    home,
    async run(...args) {
      const { stdout } = await run(bin, ['--home', home, ...args], { env, cwd: home, timeout: 2 * 60_000 });
      return stdout;
    },
    async json(...args) {
      const out = await this.run(...args);
      try {
        return JSON.parse(out);
      } catch {
        throw new Error(`qrtalk ${args.join(' ')} printed no JSON:\n${out}`);
      }
    },
    /** JSON lines printed by a command such as inbox --json. */
    async jsonLines(...args) {
      const out = await this.run(...args);
      return out.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
    },
    start(...args) {
      const proc = spawn(bin, ['--home', home, ...args], { env, cwd: home, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(proc);
      const exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
        children.delete(proc);
        resolve({ code, signal });
      }));
      const out = lineWatcher(proc.stdout);
      const err = lineWatcher(proc.stderr);
      const stop = async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) return;
        proc.kill('SIGINT');
        try {
          await withTimeout(exited, 15_000, `qrtalk ${args[0]} stop`);
        } catch {
          proc.kill('SIGKILL');
          await exited;
        }
      };
      cleanups.push(stop);
      return {
        lines: out.lines,
        stderr: err.lines,
        exited,
        stop,
        line(re, ms = STEP_TIMEOUT) {
          return out.until(re, ms, `qrtalk ${args.join(' ')} to print ${re}`);
        },
        /** Waits for a JSON line (listen --json) for which match returns true. */
        async json(match, ms = STEP_TIMEOUT) {
          const l = await out.until({ test: (line) => {
            try { return match(JSON.parse(line)); } catch { return false; }
          } }, ms, `qrtalk ${args.join(' ')}: an expected JSON line`);
          return JSON.parse(l);
        },
      };
    },
  };
}

/** Launches Debian's Chromium, headless, shut at stopAll; extraArgs add flags. */
export async function launchBrowser({ extraArgs = [] } = {}) {
  if (!existsSync(chromiumPath)) {
    throw new Error(`${chromiumPath} is missing: apt-get install chromium (bash .ci/run installs it)`);
  }
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: 2 * 60_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // The server's certificate is self-signed: the app authenticates the
      // server by the fingerprint in the invite, inside its secure channel.
      '--ignore-certificate-errors',
      // A safety net under the request check of newUser: no name resolves,
      // so nothing could leave the machine even if the page tried.
      '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
      ...extraArgs,
    ],
  });
  cleanups.push(() => browser.close());
  return browser;
}

/**
 * A simulated person: a browser context of their own (own IndexedDB, own
 * service worker) with one page. Every request and WebSocket the context
 * makes is checked against the server's host: offHost lists any other, and
 * problems lists uncaught page errors, console errors and CSP violations.
 */
export async function newUser(browser, server, { viewport = phone, name = 'user' } = {}) {
  const context = await browser.newContext({
    viewport,
    ignoreHTTPSErrors: true,
    serviceWorkers: 'allow',
    acceptDownloads: true,
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  context.setDefaultTimeout(STEP_TIMEOUT);
  const user = { name, context, offHost: [], problems: [], requests: [] };
  const check = (url, kind) => {
    let u;
    try {
      u = new URL(url);
    } catch {
      user.offHost.push(`${kind} ${url}`);
      return;
    }
    if (['data:', 'blob:', 'about:'].includes(u.protocol)) return;
    user.requests.push(`${kind} ${url}`);
    if (u.host !== server.host || !['https:', 'wss:'].includes(u.protocol)) user.offHost.push(`${kind} ${url}`);
  };
  context.on('request', (req) => check(req.url(), req.resourceType()));
  // Error answers, by URL: Chromium's console names none.
  user.httpErrors = [];
  context.on('response', (resp) => {
    if (resp.status() >= 400) user.httpErrors.push(`${resp.status()} ${resp.request().method()} ${new URL(resp.url()).pathname}`);
  });
  const watchPage = (page) => {
    page.setDefaultTimeout(STEP_TIMEOUT);
    page.on('websocket', (ws) => check(ws.url(), 'websocket'));
    page.on('pageerror', (err) => user.problems.push(`[${name}] uncaught: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' || /Content Security Policy/i.test(msg.text())) {
        user.problems.push(`[${name}] console.${msg.type()}: ${msg.text()}`);
      }
    });
  };
  context.on('page', watchPage);
  context.on('serviceworker', (sw) => check(sw.url(), 'serviceworker'));
  user.page = await context.newPage();
  cleanups.push(() => context.close());
  return user;
}

/** Opens the app at / and returns the navigation's response. */
export async function openApp(user, server, pathAndQuery = '/') {
  const resp = await user.page.goto(server.url + pathAndQuery, { waitUntil: 'load', timeout: STEP_TIMEOUT });
  if (!resp || !resp.ok()) throw new Error(`GET ${pathAndQuery}: ${resp ? resp.status() : 'no response'}`);
  return resp;
}

/** Saves a screenshot as <screenshotDir>/<name>.png. */
export async function screenshot(page, name) {
  await mkdir(screenshotDir, { recursive: true });
  const file = path.join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, animations: 'disabled', caret: 'hide' });
  return file;
}

// --- the app's flows, as a person does them (roles and labels only) -----

/** The main navigation, shown once the browser has an account. */
export function nav(page) {
  return page.getByRole('navigation', { name: 'Main' });
}

/** Goes to a screen through the main navigation: 'Chats', 'Contacts', 'My code', 'Devices'. */
export async function goTo(page, screen) {
  await nav(page).getByRole('link', { name: screen, exact: true }).click();
  await page.getByRole('heading', { level: 1, name: screen, exact: true }).waitFor();
}

/** Joins from an invite pasted on the welcome screen (creating the keys takes seconds). */
export async function joinWithInvite(user, server, invite) {
  await openApp(user, server);
  const page = user.page;
  await page.getByRole('heading', { name: 'Welcome to QRTalk' }).waitFor();
  await page.getByLabel('Invite code').fill(invite);
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await outcome('joining', () => nav(page).isVisible(), page.getByRole('form', { name: 'Join with an invite' }).getByRole('alert'));
  await page.getByRole('heading', { level: 1, name: 'Chats' }).waitFor();
}

/**
 * Reads the "My code" screen: the contact code (text), the user ID and the
 * fingerprint digits, and the QR code's image (PNG bytes) as drawn.
 */
export async function myCode(page) {
  await goTo(page, 'My code');
  const contactCode = await page.getByRole('textbox', { name: 'Your contact code', exact: true }).inputValue();
  const user = new URLSearchParams(contactCode.replace(/^qrtalk:contact\?/, '')).get('u');
  const fpLabel = await page.getByLabel(/^Your fingerprint: /).getAttribute('aria-label');
  const qr = page.getByRole('main').getByRole('img', { name: /QR code/ });
  return {
    contactCode,
    user,
    fingerprintNumeric: fpLabel.replace(/^Your fingerprint: /, ''),
    qrPNG: await qr.screenshot(),
  };
}

/** Adds a contact from their contact code (the QR payload), which verifies them. Ends in the chat. */
export async function addContact(page, code, name) {
  await goTo(page, 'Contacts');
  await page.getByRole('button', { name: 'Add contact' }).click();
  const dialog = page.getByRole('dialog', { name: 'Add a contact' });
  await dialog.getByLabel('Contact code or user ID').fill(code);
  await dialog.getByLabel('Name', { exact: true }).fill(name);
  await dialog.getByRole('button', { name: 'Add contact' }).click();
  await outcome(`adding ${name}`, () => dialog.count().then((n) => n === 0), dialog.getByRole('alert'));
  await conversation(page, name).waitFor();
}

/**
 * Adds a contact by scanning their QR code from a photo (PNG bytes) in the
 * app's scan dialog, which decodes it in the browser. Ends in the chat.
 */
export async function addContactByPhoto(page, png, name) {
  await goTo(page, 'Contacts');
  await page.getByRole('button', { name: 'Add contact' }).click();
  const dialog = page.getByRole('dialog', { name: 'Add a contact' });
  await dialog.getByRole('button', { name: 'Scan their QR code' }).click();
  const scan = page.getByRole('dialog', { name: /Scan a contact/ });
  await scan.getByLabel(/Choose a photo of the contact QR code/).setInputFiles({ name: 'photo.png', mimeType: 'image/png', buffer: png });
  await outcome('decoding the photo', () => scan.count().then((n) => n === 0), scan.getByRole('alert'));
  const code = await dialog.getByLabel('Contact code or user ID').inputValue();
  await dialog.getByLabel('Name', { exact: true }).fill(name);
  await dialog.getByRole('button', { name: 'Add contact' }).click();
  await outcome(`adding ${name}`, () => dialog.count().then((n) => n === 0), dialog.getByRole('alert'));
  await conversation(page, name).waitFor();
  return code;
}

/**
 * Waits until done() holds, failing at once with the app's own words when
 * the alert shows instead (a form's error), so that a failure says why.
 */
export async function outcome(what, done, alert, ms = 2 * STEP_TIMEOUT) {
  await waitFor(what, async () => {
    if (await done()) return true;
    if (await alert.first().isVisible().catch(() => false)) {
      const text = (await alert.allTextContents()).join(' ').trim();
      if (text) throw Object.assign(new Error(`${what}: the app says: ${text}`), { fatal: true });
    }
    return false;
  }, ms);
}

/** The open conversation with name (a region labelled by its heading). */
export function conversation(page, name) {
  return page.getByRole('region', { name, exact: true });
}

/** Opens the chat with a contact from the contacts list. */
export async function openChat(page, name) {
  await goTo(page, 'Contacts');
  await page.getByRole('link', { name: `Chat with ${name}`, exact: true }).click();
  await conversation(page, name).waitFor();
  return conversation(page, name);
}

/** The messages of the open conversation. */
export function messages(page) {
  return page.getByRole('log', { name: 'Messages' }).getByRole('article');
}

/** A message of the open conversation with the given text. */
export function message(page, text) {
  return messages(page).filter({ hasText: text });
}

/**
 * Sends from the open conversation. ttl: a preset's label ('10 seconds',
 * '1 hour', ...) or a number of seconds (the custom lifetime). files:
 * [{name, mimeType, buffer}].
 */
export async function send(page, text, { ttl = '1 hour', files = [] } = {}) {
  const picker = page.getByLabel('Disappears after');
  if (typeof ttl === 'number') {
    await picker.selectOption({ label: 'Custom…' });
    await page.getByLabel('Custom lifetime').fill(String(ttl));
    await page.getByLabel('Unit').selectOption({ label: 'seconds' });
  } else {
    await picker.selectOption({ label: ttl });
  }
  if (files.length) await page.getByLabel(/Attach files/).setInputFiles(files);
  await page.getByLabel('Message', { exact: true }).fill(text);
  const sendButton = page.getByRole('button', { name: 'Send', exact: true });
  await sendButton.click();
  // The composer empties and the button comes back once the send is done.
  await waitFor('the send to finish', async () => (await page.getByLabel('Message', { exact: true }).inputValue()) === '' && await sendButton.isEnabled());
  const sent = message(page, text).last();
  await sent.waitFor();
  const alert = page.getByRole('form', { name: 'Write a message' }).getByRole('alert');
  if (await alert.isVisible()) throw new Error(`the composer says: ${await alert.textContent()}`);
  return sent;
}

/** The ID of a message shown in the log (its list item's data-id). */
export function messageID(article) {
  return article.evaluate((el) => el.closest('li[data-id]')?.dataset.id);
}

/**
 * What this browser's IndexedDB holds for a message: its record in
 * "messages" and its attachment blobs, counted straight from the database.
 */
export function storedMessage(page, id) {
  return page.evaluate((id) => new Promise((resolve, reject) => {
    const open = indexedDB.open('qrtalk');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction(['messages', 'blobs']);
      const msg = tx.objectStore('messages').count(id);
      const blobs = tx.objectStore('blobs').count(IDBKeyRange.bound([id], [id, []]));
      tx.oncomplete = () => {
        db.close();
        resolve({ message: msg.result, blobs: blobs.result });
      };
      tx.onerror = () => reject(tx.error);
    };
  }), id);
}
