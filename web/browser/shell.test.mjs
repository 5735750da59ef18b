// The app shell at /: served by a real qrtalkd with a strict
// Content-Security-Policy, a manifest and a service worker that make it
// installable and let the shell load offline, and not one request to any
// host other than the server.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newUser, openApp, stopAll, waitFor, desktop, TEST_TIMEOUT } from './harness.mjs';

let server, browser;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
}, { timeout: 5 * 60_000 });
after(stopAll, { timeout: 2 * 60_000 });

// parseCSP turns a policy into a map of directive name to source list.
function parseCSP(policy) {
  const m = new Map();
  for (const part of policy.split(';')) {
    const [name, ...sources] = part.trim().split(/\s+/);
    if (name) m.set(name.toLowerCase(), sources);
  }
  return m;
}

// A source a strict policy may list: keywords, and nothing that names
// another host or a whole scheme ('https:', '*', a host name).
const strictSource = /^('self'|'none'|'strict-dynamic'|'report-sample'|'wasm-unsafe-eval'|'sha(256|384|512)-[A-Za-z0-9+/=]+'|data:|blob:)$/;

test('the shell is served at / with a strict Content-Security-Policy', { timeout: TEST_TIMEOUT }, async () => {
  const user = await newUser(browser, server, { name: 'visitor', viewport: desktop });
  const resp = await openApp(user, server);
  const headers = resp.headers();
  assert.match(headers['content-type'] ?? '', /^text\/html/, 'content type of /');
  const policy = headers['content-security-policy'];
  assert.ok(policy, `no Content-Security-Policy header on / (headers: ${JSON.stringify(headers)})`);
  const csp = parseCSP(policy);
  const fallback = csp.get('default-src');
  assert.ok(fallback, `the policy has no default-src: ${policy}`);
  for (const d of ['script-src', 'object-src', 'base-uri', 'frame-ancestors', 'connect-src', 'style-src', 'img-src']) {
    const sources = csp.get(d) ?? (d === 'base-uri' || d === 'frame-ancestors' ? undefined : fallback);
    assert.ok(sources, `the policy sets no ${d}: ${policy}`);
    for (const s of sources) {
      assert.match(s, strictSource, `${d} allows ${s}: ${policy}`);
    }
  }
  for (const d of ['object-src', 'frame-ancestors']) {
    const sources = csp.get(d) ?? fallback;
    assert.deepEqual(sources, ["'none'"], `${d} must be 'none': ${policy}`);
  }
  assert.equal(headers['x-content-type-options'], 'nosniff', 'X-Content-Type-Options');

  // The page is a real app shell: a title, a language, a main landmark.
  const page = user.page;
  assert.ok((await page.title()).length > 0, 'the page has a title');
  assert.ok(await page.evaluate(() => document.documentElement.lang), '<html lang> is set');
  await page.getByRole('main').first().waitFor();

  // Installable: a manifest with a name, a start URL, standalone display
  // and icons, served by the same server.
  const manifestHref = await page.evaluate(() => document.querySelector('link[rel="manifest"]')?.href);
  assert.ok(manifestHref, 'no <link rel="manifest">');
  const manifest = await page.evaluate(async (href) => (await fetch(href)).json(), manifestHref);
  assert.ok(manifest.name || manifest.short_name, 'the manifest names the app');
  assert.ok(manifest.start_url, 'the manifest has a start_url');
  assert.match(manifest.display ?? '', /standalone|fullscreen|minimal-ui/, 'the manifest display mode');
  assert.ok(Array.isArray(manifest.icons) && manifest.icons.length > 0, 'the manifest lists icons');
  for (const icon of manifest.icons) {
    // Icon URLs are relative to the manifest's.
    const status = await page.evaluate(async ([src, base]) => (await fetch(new URL(src, base))).status, [icon.src, manifestHref]);
    assert.equal(status, 200, `icon ${icon.src}`);
  }

  assert.deepEqual(user.problems, [], 'errors in the page');
  assert.deepEqual(user.offHost, [], 'requests to a host other than the server');
});

test('the service worker registers, and the shell loads offline', { timeout: TEST_TIMEOUT }, async () => {
  const user = await newUser(browser, server, { name: 'offline' });
  await openApp(user, server);
  const page = user.page;
  const scope = await waitFor('the service worker to be active', () => page.evaluate(async () => {
    const reg = await navigator.serviceWorker.getRegistration();
    return reg?.active ? reg.scope : null;
  }), 60_000);
  assert.equal(scope, server.url + '/', 'the service worker controls the whole app');
  // Wait until it controls the page (after a reload at the latest), so that
  // the shell's files are in its cache.
  await page.reload();
  await waitFor('the service worker to control the page', () => page.evaluate(() => !!navigator.serviceWorker.controller));
  await page.getByRole('heading', { name: 'Welcome to QRTalk' }).waitFor();

  // Offline, only the API may fail (the app tries to reach the server);
  // every file of the shell comes from the service worker's cache.
  const failed = [];
  const onFailed = (req) => failed.push(new URL(req.url()).pathname);
  page.on('requestfailed', onFailed);
  await user.context.setOffline(true);
  try {
    await page.reload({ waitUntil: 'load' });
    // The welcome screen is drawn by the app's modules: they ran offline.
    await page.getByRole('heading', { name: 'Welcome to QRTalk' }).waitFor();
  } finally {
    await user.context.setOffline(false);
    page.off('requestfailed', onFailed);
  }
  assert.deepEqual(failed.filter((p) => !p.startsWith('/v1/')), [], 'files of the shell that did not load offline');
  // The failed API requests show as console errors; anything else is a problem.
  const problems = user.problems.filter((p) => !/Failed to load resource|Failed to fetch|ERR_INTERNET_DISCONNECTED|NetworkError|WebSocket/i.test(p));
  assert.deepEqual(problems, [], 'errors in the page');
  assert.deepEqual(user.offHost, [], 'requests to a host other than the server');
});
