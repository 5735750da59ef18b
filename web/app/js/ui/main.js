// The web app's entry point: opens the account kept in this browser (or
// shows the welcome screen), draws the shell (header, connection state,
// navigation) and routes between screens by the URL's fragment:
//
//   #/join  #/chats  #/chat/<u:user | g:group>  #/contacts  #/contact/<user>  #/me  #/devices
//
// Errors never leave a blank screen: a screen that fails to draw shows what
// went wrong and a way on; background failures appear as notices.

import { h, replace, toast } from './dom.js';
import { errorText } from './format.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const conn = document.getElementById('conn');

/**
 * Options for the SDK's Account.open/join/joinLink. fetch is wrapped: the
 * SDK calls it as a method of its connection (this.fetch(...)), and the
 * browser's fetch throws "Illegal invocation" when called on another object.
 */
export const sdkOptions = { fetch: (input, init) => globalThis.fetch(input, init) };

/** Application state shared by the screens. */
export const app = {
  acc: null, // the Account, once open
  sdk: null, // the client SDK module
  store: null,
  pending: null, // a qrtalk: code the app was opened with, not yet used
  unread: new Map(), // conversation key -> messages that arrived while it was not on screen
  openConversation: '', // the conversation on screen and visible, if any
};

function showUnreadInTitle() {
  let n = 0;
  for (const v of app.unread.values()) n += v;
  const base = document.title.replace(/^\(\d+\) /, '');
  document.title = n ? `(${n}) ${base}` : base;
}
export { showUnreadInTitle };

function fatal(title, detail) {
  nav.hidden = true;
  replace(main, h('section', { class: 'panel fatal' },
    h('h2', { text: title }),
    h('p', { text: detail }),
    h('p', {}, h('button', { type: 'button', class: 'primary', onclick: () => location.reload() }, 'Reload'))));
  setConnection('offline', 'Not connected');
}

// Background errors become notices, never a silent failure or a blank page.
self.addEventListener('error', (e) => {
  if (e.error || e.message) toast(errorText(e.error || new Error(e.message)), 'error');
});
self.addEventListener('unhandledrejection', (e) => {
  toast(errorText(e.reason), 'error');
});

/** Shows the connection state in the header. */
export function setConnection(state, text, detail = '') {
  conn.dataset.state = state;
  conn.title = detail;
  conn.textContent = text ?? ({
    connected: 'Connected',
    connecting: 'Connecting…',
    offline: 'Offline',
  }[state] || state);
}

// --- the qrtalk: code the page was opened with --------------------------

/**
 * Reads a qrtalk: code from the address: ?invite=, ?link=, ?contact= or
 * ?uri= (the web+qrtalk protocol handler), or the fragment #qrtalk:… /
 * #invite=…. The fragment never reaches the server, so links carrying a
 * secret (a device link code) should use it. The code is removed from the
 * address (and the history) at once.
 */
function takeCodeFromAddress() {
  const url = new URL(location.href);
  let code = '';
  for (const k of ['invite', 'link', 'contact', 'uri', 'code']) {
    const v = url.searchParams.get(k);
    if (v && !code) code = v;
    url.searchParams.delete(k);
  }
  let hash = url.hash.slice(1);
  try { hash = decodeURIComponent(hash); } catch { /* keep as is */ }
  const m = /^(?:(?:invite|link|contact|uri|code)=)?((?:web\+)?qrtalk:.*)$/s.exec(hash);
  if (m) {
    code ||= m[1];
    url.hash = '';
  }
  code = code.trim().replace(/^web\+qrtalk:/, 'qrtalk:');
  if (url.href !== location.href) history.replaceState(null, '', url.pathname + url.search + url.hash);
  return code.startsWith('qrtalk:') ? code : '';
}

// --- routing ------------------------------------------------------------

const screens = {
  join: () => import('./welcome.js'),
  chats: () => import('./chats.js'),
  chat: () => import('./chats.js'),
  contacts: () => import('./contacts.js'),
  contact: () => import('./contacts.js'),
  me: () => import('./me.js'),
  devices: () => import('./devices.js'),
};

let cleanup = null;
let routeSeq = 0;
let firstRoute = true;

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  const name = parts[0] || '';
  const arg = parts.slice(1).map((p) => { try { return decodeURIComponent(p); } catch { return p; } }).join('/');
  return { name, arg };
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  const seq = ++routeSeq;
  let { name, arg } = parseRoute();
  if (!app.acc) {
    name = 'join';
  } else if (!screens[name] || name === 'join') {
    name = 'chats';
    history.replaceState(null, '', '#/chats');
  }
  nav.hidden = !app.acc;
  for (const a of nav.querySelectorAll('a')) {
    const current = a.dataset.route === name || (name === 'chat' && a.dataset.route === 'chats') ||
      (name === 'contact' && a.dataset.route === 'contacts');
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  try {
    cleanup?.();
  } catch { /* the old screen is going anyway */ }
  cleanup = null;
  try {
    const mod = await screens[name]();
    if (seq !== routeSeq) return;
    const listeners = [];
    const ctx = {
      app, arg, name, main, go,
      // on(type, fn): an account event listener removed when the screen goes.
      on(type, fn) {
        app.acc?.addEventListener(type, fn);
        listeners.push([type, fn]);
      },
      // alive(): false once the user went to another screen.
      alive: () => seq === routeSeq,
    };
    // Focus goes to the content, so that a screen reader starts there (a
    // screen may then focus a field of its own).
    if (!firstRoute) main.focus({ preventScroll: true });
    firstRoute = false;
    const done = await mod.render(ctx);
    if (seq === routeSeq) {
      // The welcome screen keeps the plain name, which the page has before
      // any script runs; every other screen adds its heading.
      const heading = name === 'join' ? null : main.querySelector('.conv-head h2') || main.querySelector('h1');
      document.title = heading ? `${heading.textContent} – QRTalk` : 'QRTalk';
      showUnreadInTitle();
    }
    const off = () => {
      for (const [t, f] of listeners) app.acc?.removeEventListener(t, f);
      if (typeof done === 'function') done();
    };
    if (seq !== routeSeq) off();
    else cleanup = off;
  } catch (err) {
    if (seq !== routeSeq) return;
    console.error(err);
    replace(main, h('section', { class: 'panel' },
      h('h2', { text: 'This screen could not be shown' }),
      h('p', { class: 'alert', role: 'alert', text: errorText(err) }),
      h('p', {}, h('a', { href: '#/chats', class: 'button' }, 'Back to chats'), ' ',
        h('button', { type: 'button', onclick: () => location.reload() }, 'Reload'))));
  }
}

// --- account events that matter on every screen -------------------------

function watchAccount(acc) {
  setConnection(acc.connection || 'connecting');
  let lastStop = '';
  acc.addEventListener('connection', (e) => {
    const d = e.detail || {};
    // The SDK gives up on two errors: a server whose key is not the pinned
    // one, and a device the server no longer knows (revoked or deleted).
    const permanent = d.error && (d.error.code === 'server-key' || (d.error.code === 'api' && d.error.api?.code === 40104));
    if (permanent) {
      setConnection('offline', 'Disconnected', errorText(d.error));
      const text = errorText(d.error);
      if (text !== lastStop) {
        lastStop = text;
        toast(`QRTalk stopped connecting: ${text}`, 'error');
      }
      return;
    }
    setConnection(d.state, d.state === 'offline' && d.error ? 'Offline, retrying…' : undefined, d.error ? errorText(d.error) : '');
  });
  acc.addEventListener('contact-changed', (e) => {
    const c = e.detail;
    if (c?.changed) toast(`${c.name || c.user}’s identity key changed. Sending to them is blocked until you review it.`, 'error');
  });
  // A message from someone who is not a contact (or of a group this device
  // does not know yet, as on a newly linked device) has no chat to show it
  // in: say so, rather than let it pass unseen.
  acc.addEventListener('message', async (e) => {
    const r = e.detail;
    if (!r || r.outgoing || !r.conversation) return;
    if (r.conversation !== app.openConversation || document.visibilityState !== 'visible') {
      app.unread.set(r.conversation, (app.unread.get(r.conversation) || 0) + 1);
      showUnreadInTitle();
    }
    try {
      if (r.conversation.startsWith('g:')) await acc.group(r.conversation);
      else await acc.contact(r.conversation);
    } catch {
      toast(r.conversation.startsWith('g:')
        ? `A message arrived for a group this device does not know yet (from ${r.fromName || r.from}).`
        : `A message arrived from ${r.from}, who is not in your contacts. Add them (Contacts → Add contact, with this ID) to read it.`);
    }
  });
  acc.addEventListener('error', (e) => {
    toast(errorText(e.detail?.error), 'error');
  });
}

/** Called by the welcome screen once this browser has an account. */
export async function accountReady(acc) {
  app.acc = acc;
  watchAccount(acc);
  try {
    await acc.start(); // start() may return nothing, or a promise
  } catch (err) {
    toast(`Could not connect: ${errorText(err)}`, 'error');
  }
  go('#/chats');
}

// --- the service worker -------------------------------------------------

async function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  try {
    const reg = await navigator.serviceWorker.register('/sw.js', { scope: '/', updateViaCache: 'none' });
    // Tell it the files this page loaded, so that the next start works offline.
    const send = () => {
      const urls = performance.getEntriesByType('resource').map((e) => e.name)
        .concat([location.origin + '/'])
        .filter((u) => { try { const p = new URL(u); return p.origin === location.origin && !p.pathname.startsWith('/v1/'); } catch { return false; } });
      (reg.active || navigator.serviceWorker.controller)?.postMessage({ type: 'cache', urls });
    };
    if (reg.active) send();
    else navigator.serviceWorker.ready.then(send);
    // Every screen's modules load lazily: report them again a bit later.
    setTimeout(send, 5000);
  } catch (err) {
    // The app works without it (only not offline): a notice is enough.
    console.warn('service worker:', err);
  }
}

// The skip link moves focus to the content without touching the fragment,
// which is the router's.
document.querySelector('.skip-link')?.addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

// --- installing the app -------------------------------------------------

// Where the browser offers to install the app (Chromium), a button in the
// header does it; elsewhere the browser's own menu ("Add to Home Screen").
let installPrompt = null;
self.addEventListener('beforeinstallprompt', (e) => {
  e.preventDefault();
  installPrompt = e;
  if (document.getElementById('install')) return;
  const btn = h('button', { type: 'button', id: 'install', class: 'small install' }, 'Install app');
  btn.addEventListener('click', async () => {
    const p = installPrompt;
    installPrompt = null;
    btn.remove();
    if (p) await p.prompt().catch(() => {});
  });
  conn.before(btn);
});
self.addEventListener('appinstalled', () => document.getElementById('install')?.remove());

// --- one tab at a time ---------------------------------------------------

// Two tabs of the same browser are one device: both would hold a live
// channel and handle the same messages. A Web Lock lets one tab run; another
// one says so and can take over.
const LOCK = 'qrtalk-app';

function otherTab(lost) {
  try { app.acc?.close(); } catch { /* going anyway */ }
  nav.hidden = true;
  const use = h('button', { type: 'button', class: 'primary' }, 'Use QRTalk here');
  use.addEventListener('click', async () => {
    use.disabled = true;
    // Stealing ends the other tab's hold; it shows this same screen.
    await navigator.locks.request(LOCK, { steal: true }, () => {});
    location.reload();
  });
  replace(main, h('section', { class: 'panel' },
    h('h1', { text: lost ? 'QRTalk was opened in another tab' : 'QRTalk is open in another tab' }),
    h('p', { text: 'This browser is one QRTalk device, and one tab at a time can use it. Use the other tab, or continue here (the other tab then stops).' }),
    h('p', {}, use)));
  setConnection('offline', 'In another tab');
}

/** Resolves true once this tab holds the app lock, false if another tab keeps it. */
function holdLock() {
  if (!navigator.locks || !AbortSignal.timeout) return Promise.resolve(true); // older browsers: no guard
  return new Promise((resolve) => {
    navigator.locks.request(LOCK, { signal: AbortSignal.timeout(2000) }, (lock) => {
      resolve(true);
      return new Promise(() => {}); // held until the page goes, or another tab steals it
    }).catch((err) => {
      if (err?.name === 'TimeoutError' || err?.name === 'AbortError' && !app.started) resolve(false);
      else otherTab(true); // stolen
    });
  });
}

// --- start --------------------------------------------------------------

async function start() {
  app.pending = takeCodeFromAddress();
  if (!self.isSecureContext || !self.crypto?.subtle) {
    fatal('QRTalk needs a secure connection',
      'This page was not opened over https, so the browser does not give it the cryptography it needs. Open the server’s https:// address.');
    return;
  }
  if (!self.indexedDB) {
    fatal('QRTalk cannot store your keys here',
      'This browser gives the page no private storage (IndexedDB), perhaps in a private window. Open QRTalk in a normal window.');
    return;
  }
  if (!await holdLock()) {
    otherTab(false);
    return;
  }
  app.started = true;
  setConnection('offline', 'Opening…');
  let sdk;
  try {
    sdk = await import('../client/index.js');
  } catch (err) {
    console.error(err);
    fatal('QRTalk could not start', `The app’s code did not load: ${err.message}. Reload the page; if it persists, the server may be upgrading.`);
    return;
  }
  app.sdk = sdk;
  try {
    app.store = await sdk.openIDBStore();
    app.acc = await sdk.Account.open(app.store, sdkOptions);
  } catch (err) {
    console.error(err);
    fatal('Your account could not be opened', errorText(err));
    return;
  }
  window.addEventListener('hashchange', route);
  if (app.acc) {
    watchAccount(app.acc);
    Promise.resolve().then(() => app.acc.start()).catch((err) => setConnection('offline', 'Offline, retrying…', errorText(err)));
    if (app.pending) {
      const code = app.pending;
      app.pending = null;
      if (code.startsWith('qrtalk:contact')) {
        sessionStorage.setItem('qrtalk-add-contact', code);
        if (!location.hash.startsWith('#/contacts')) location.hash = '#/contacts';
      } else {
        toast('This browser already has a QRTalk account; the code you opened was not used.');
      }
    }
  } else {
    setConnection('offline', 'No account yet');
  }
  await route();
}

start().catch((err) => {
  console.error(err);
  fatal('QRTalk could not start', errorText(err));
});
registerServiceWorker();
