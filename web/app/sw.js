// QRTalk's service worker: keeps the app shell (its own HTML, CSS, modules
// and icons) so that the app opens without a network. It never touches the
// API: requests under /v1/ (and anything not a GET of this origin) go to the
// network untouched and are never stored, so no ciphertext, token or
// server answer ever lands in the Cache Storage.
//
// The server replaces the version below with a hash of every file of the
// app: any upgrade of qrtalkd that changes the app changes this file, the
// browser installs it, and it replaces the previous cache.
'use strict';

const VERSION = '__QRTALK_APP_VERSION__';
const CACHE = 'qrtalk-shell-' + VERSION;
const PREFIX = 'qrtalk-shell-';

// What the page needs to start; the modules it loads are added as the page
// reports them (see the 'cache' message), so this list need not know them.
const CORE = [
  '/',
  '/index.html',
  '/app.css',
  '/manifest.webmanifest',
  '/js/ui/main.js',
  '/icons/icon-192.png',
  '/icons/icon.svg',
];

function isShell(url, request) {
  return request.method === 'GET' &&
    url.origin === self.location.origin &&
    url.pathname !== '/v1' && !url.pathname.startsWith('/v1/') &&
    url.pathname !== '/healthz' && url.pathname !== '/readyz';
}

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // cache: 'no-cache' revalidates with the server, so a new version
    // never fills its cache with the HTTP cache's older files.
    await cache.addAll(CORE.map((u) => new Request(u, { cache: 'no-cache' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

// The page lists the files it loaded (same origin, outside /v1/): cache
// them so that the next start works offline.
self.addEventListener('message', (event) => {
  const data = event.data;
  if (!data || data.type !== 'cache' || !Array.isArray(data.urls)) return;
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    for (const u of data.urls.slice(0, 200)) {
      let url;
      try { url = new URL(u, self.location.origin); } catch { continue; }
      url.search = '';
      url.hash = '';
      const req = new Request(url.href, { cache: 'no-cache' });
      if (!isShell(url, req) || await cache.match(req)) continue;
      try {
        const resp = await fetch(req);
        if (resp.ok) await cache.put(req, resp);
      } catch { /* offline now: it will be cached on a later start */ }
    }
  })());
});

// Network first, so that an online start always runs the server's current
// app (every file revalidates by its ETag, a cheap 304); the cache answers
// only when the network does not.
self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (!isShell(url, request)) return; // the API and everything else: untouched
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    // The app's address may carry ?invite= or ?uri=: the shell is the same.
    const key = request.mode === 'navigate' ? new Request('/', { cache: 'no-cache' }) : new Request(url.origin + url.pathname);
    try {
      const resp = await fetch(request);
      // Only whole, same-origin answers (not a 206 range, not an error),
      // and of navigations only the app itself.
      if (resp.status === 200 && resp.type === 'basic' && (request.mode !== 'navigate' || url.pathname === '/')) {
        cache.put(key, resp.clone()).catch(() => { /* quota: the network still answered */ });
      }
      return resp;
    } catch (err) {
      const hit = await cache.match(key);
      if (hit) return hit;
      if (request.mode === 'navigate') {
        const shell = await cache.match('/index.html');
        if (shell) return shell;
      }
      throw err;
    }
  })());
});
