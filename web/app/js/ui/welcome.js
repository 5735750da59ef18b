// The welcome screen: join a server with an invite, or make this browser a
// new device of an existing user with a link code.

import { h, replace, field, alertBox, statusBox, busy, toast } from './dom.js';
import { errorText } from './format.js';
import { scanDialog } from './qr.js';
import { accountReady, sdkOptions } from './main.js';

/** The kind of a qrtalk: code ("invite", "link", "contact"), or ''. */
export function codeKind(text) {
  const m = /^qrtalk:([a-z]+)\?/.exec(String(text || '').trim());
  return m ? m[1] : '';
}

/** The server a code names (its s= parameter), for the user to see. */
export function codeServer(text) {
  try {
    const q = new URLSearchParams(String(text).trim().replace(/^qrtalk:[a-z]+\?/, ''));
    return q.get('s') || '';
  } catch {
    return '';
  }
}

/**
 * '' when the code's server is the one that served this page, else why it
 * cannot be used here: the browser app talks to its own origin only (the
 * Content-Security-Policy allows nothing else).
 */
export function serverCheck(text) {
  const s = codeServer(text);
  if (!s) return '';
  let origin;
  try { origin = new URL(s).origin; } catch { return `its server address ${s} is not valid.`; }
  if (origin === location.origin) return '';
  return `it is for the server ${s}, but this page comes from ${location.origin}. Open QRTalk from ${s} instead: the web app talks only to the server it was loaded from.`;
}

/** A link to open the code in the web app of its own server. */
function elsewhereLink(text) {
  const s = codeServer(text);
  try {
    const u = new URL(s);
    return h('a', { href: `${u.origin}${u.pathname.replace(/\/$/, '')}/#${encodeURIComponent(text.trim())}` }, `Open this code at ${u.origin}`);
  } catch {
    return null;
  }
}

function kindCheck(want) {
  return (text) => {
    const k = codeKind(text);
    if (k === want) return '';
    if (!k) return `this is not a QRTalk code (it should start with qrtalk:${want}?).`;
    if (k === 'link' && want === 'invite') return 'this is a device link code: use “Link this browser” below.';
    if (k === 'invite' && want === 'link') return 'this is an invite: use “Join” above to create a new account.';
    if (k === 'contact') return 'this is someone’s contact code: join first, then add them in Contacts.';
    return `this is a qrtalk:${k} code, not a qrtalk:${want} code.`;
  };
}

export async function render(ctx) {
  const { app } = ctx;
  const pending = app.pending;
  app.pending = null;

  // Join with an invite.
  const invite = h('textarea', { rows: 3, autocomplete: 'off', spellcheck: 'false', placeholder: 'qrtalk:invite?v=1&s=…' });
  const inviteField = field('Invite code', invite, 'The invite text the server’s operator gave you, or scan its QR code.');
  const inviteScan = h('button', { type: 'button', text: 'Scan invite QR code' });
  const joinBtn = h('button', { type: 'submit', class: 'primary', text: 'Join' });
  const joinAlert = alertBox();
  const joinStatus = statusBox();
  const joinServer = h('p', { class: 'hint' });
  const showServer = () => {
    const s = codeKind(invite.value) === 'invite' ? codeServer(invite.value) : '';
    joinServer.textContent = s ? `You will join the server ${s}.` : '';
  };
  invite.addEventListener('input', showServer);

  const joinForm = h('form', { class: 'card', 'aria-labelledby': 'join-h' },
    h('h2', { id: 'join-h', text: 'Join with an invite' }),
    h('p', { text: 'You get a new, anonymous ID. No phone number, no e-mail: your keys are made in this browser and stay here.' }),
    inviteField.wrap, joinServer,
    h('div', { class: 'actions' }, inviteScan, joinBtn),
    joinStatus, joinAlert);

  inviteScan.addEventListener('click', async () => {
    const text = await scanDialog('Scan the invite', { check: kindCheck('invite'), what: 'invite QR code' });
    if (text) {
      invite.value = text;
      showServer();
      joinBtn.focus();
    }
  });

  joinForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    joinAlert.show('');
    const text = invite.value.trim();
    const why = kindCheck('invite')(text) || serverCheck(text);
    if (why) {
      joinStatus.show('');
      joinAlert.show(`The invite code: ${why}`);
      const other = serverCheck(text) && elsewhereLink(text);
      if (other) joinAlert.append(' ', other);
      invite.focus();
      return;
    }
    await busy(joinBtn, 'Joining…', async () => {
      joinStatus.show('Creating your keys and registering. This takes a few seconds…');
      try {
        const acc = await app.sdk.Account.join(app.store, text, { ...sdkOptions });
        joinStatus.show('Joined.');
        await accountReady(acc);
      } catch (err) {
        console.warn(err);
        joinStatus.show('');
        joinAlert.show(`Could not join: ${errorText(err)}`);
      }
    });
  });

  // Link this browser to an existing user.
  const link = h('textarea', { rows: 3, autocomplete: 'off', spellcheck: 'false', placeholder: 'qrtalk:link?v=1&s=…' });
  const linkField = field('Link code', link, 'On your other device, run “qrtalk device link”, or open Devices → Link a new device in QRTalk, then scan or paste the code it shows.');
  const linkScan = h('button', { type: 'button', text: 'Scan link QR code' });
  const linkBtn = h('button', { type: 'submit', class: 'primary', text: 'Link this browser' });
  const linkAlert = alertBox();
  const linkStatus = statusBox();
  const linkForm = h('form', { class: 'card', 'aria-labelledby': 'link-h' },
    h('h2', { id: 'link-h', text: 'Already use QRTalk on another device?' }),
    h('p', { text: 'Link this browser as another device of your account: it receives your messages too, with the same ID and fingerprint.' }),
    linkField.wrap,
    h('div', { class: 'actions' }, linkScan, linkBtn),
    linkStatus, linkAlert);

  let scannedAt = 0;
  linkScan.addEventListener('click', async () => {
    const text = await scanDialog('Scan the link code', { check: kindCheck('link'), what: 'link QR code' });
    if (text) {
      link.value = text;
      scannedAt = Date.now();
      linkBtn.focus();
    }
  });
  linkForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    linkAlert.show('');
    const text = link.value.trim();
    const why = kindCheck('link')(text) || serverCheck(text);
    if (why) {
      linkStatus.show('');
      linkAlert.show(`The link code: ${why}`);
      const other = serverCheck(text) && elsewhereLink(text);
      if (other) linkAlert.append(' ', other);
      link.focus();
      return;
    }
    await busy(linkBtn, 'Linking…', async () => {
      linkStatus.show('Creating this device’s keys and waiting for your other device to confirm…');
      try {
        const acc = await app.sdk.Account.joinLink(app.store, text, scannedAt ? { ...sdkOptions, scannedAt } : { ...sdkOptions });
        linkStatus.show('Linked.');
        await accountReady(acc);
        toast('This browser is linked. Contacts and groups are not copied from your other device: add your contacts here too (messages that arrive meanwhile wait for you).');
      } catch (err) {
        console.warn(err);
        linkStatus.show('');
        linkAlert.show(`Could not link this browser: ${errorText(err)}`);
      }
    });
  });

  const intro = h('section', { class: 'intro' },
    h('h1', { text: 'Welcome to QRTalk' }),
    h('p', { text: 'End-to-end encrypted messages that disappear when their time is up: from the server, from your devices, from everyone’s.' }));

  replace(ctx.main, h('div', { class: 'page welcome' }, intro, joinForm, linkForm));

  // A code the app was opened with: fill it in, let the user confirm.
  if (pending) {
    const kind = codeKind(pending);
    if (kind === 'invite') {
      invite.value = pending;
      showServer();
      joinStatus.show('An invite was opened from a link. Check the server above, then press Join.');
      joinBtn.focus();
    } else if (kind === 'link') {
      link.value = pending;
      linkStatus.show('A link code was opened. Press “Link this browser” to continue.');
      linkBtn.focus();
    } else if (kind === 'contact') {
      joinAlert.show('You opened someone’s contact code. Join a server first (with an invite), then add them in Contacts.');
    }
  }
}
