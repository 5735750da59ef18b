// Contacts: the list, adding a contact (a scanned or pasted contact code, or
// an ID with the fingerprint they read out), verifying one by comparing
// fingerprints, and accepting a changed key.

import { h, replace, field, alertBox, statusBox, openDialog, confirmDialog, toast, busy } from './dom.js';
import { errorText, fingerprintLines, digitsOnly, formatTime } from './format.js';
import { scanDialog } from './qr.js';
import { newGroupDialog } from './chats.js';

/** The verified / unverified / CHANGED badge of a contact. */
export function trustBadge(c) {
  const trust = c.trust || (c.changed ? 'CHANGED' : c.verified ? 'verified' : 'unverified');
  const [cls, text, title] = {
    verified: ['verified', '✔ verified', 'Fingerprint verified in person'],
    unverified: ['unverified', 'unverified', 'Fingerprint not verified yet'],
    CHANGED: ['changed', '⚠ key CHANGED', 'The identity key changed: review it before sending'],
  }[trust] || ['unverified', trust, trust];
  return h('span', { class: ['badge', cls], title, text });
}

function fingerprintBlock(label, numeric) {
  return h('figure', { class: 'fingerprint' },
    h('figcaption', { text: label }),
    h('p', { class: 'digits', 'aria-label': `${label}: ${numeric}` }, fingerprintLines(numeric).map((l) => h('span', { text: l }))));
}

const contactCheck = (text) => {
  if (/^qrtalk:contact\?/.test(text)) return '';
  if (/^qrtalk:/.test(text)) return 'this is not a contact code.';
  return 'this is not a QRTalk contact code.';
};

/** Asks the user to accept a contact's changed key; true once accepted. */
export async function acceptKeyChangeDialog(acc, contact) {
  const name = contact.name || contact.user;
  const ok = await confirmDialog(`Accept ${name}’s new key?`, [
    h('p', { text: `The server now gives another identity key for ${name}. If they reinstalled QRTalk or lost their devices, that is expected. It is also what an attack looks like. Ask them to read their fingerprint to you (in person, or on a call you trust) and compare it with the new one below.` }),
    fingerprintBlock('Old fingerprint', contact.fingerprintNumeric),
    fingerprintBlock('New fingerprint', contact.pendingFingerprintNumeric || '(unknown)'),
    h('p', { text: 'After you accept, the new key is pinned but not verified: verify it when you can.' }),
  ], 'Accept new key', { danger: true });
  if (!ok) return false;
  try {
    await acc.acceptKeyChange(contact.user, contact.pendingFingerprint);
    toast(`${name}’s new key is accepted. Verify it when you can.`);
    return true;
  } catch (err) {
    toast(`Could not accept the new key: ${errorText(err)}`, 'error');
    return false;
  }
}

export async function render(ctx) {
  if (ctx.name === 'contact' && ctx.arg) return detail(ctx, ctx.arg);
  return list(ctx);
}

async function list(ctx) {
  const acc = ctx.app.acc;
  const ul = h('ul', { class: 'contact-list', 'aria-label': 'Contacts' });
  const addBtn = h('button', { type: 'button', class: 'primary' }, 'Add contact');
  addBtn.addEventListener('click', () => addContactDialog(ctx));
  replace(ctx.main, h('div', { class: 'page' },
    h('div', { class: 'pane-head' },
      h('h1', { text: 'Contacts' }),
      h('div', { class: 'pane-actions' }, addBtn,
        h('button', { type: 'button', onclick: () => newGroupDialog(ctx) }, 'New group'))),
    ul));
  const draw = async () => {
    const contacts = await acc.contacts();
    if (!ctx.alive()) return;
    if (!contacts.length) {
      replace(ul, h('li', { class: 'empty' },
        h('p', { text: 'No contacts yet. Scan a contact’s QR code (they find it under “My code”), or paste their contact code.' })));
      return;
    }
    replace(ul, contacts.map((c) => h('li', { class: 'contact' },
      h('a', { href: '#/contact/' + encodeURIComponent(c.user), class: 'contact-name' }, c.name || c.user),
      trustBadge(c),
      h('a', { href: '#/chat/' + encodeURIComponent('u:' + c.user), class: 'button small', 'aria-label': `Chat with ${c.name || c.user}` }, 'Chat'))));
  };
  await draw();
  ctx.on('contact-changed', draw);
  const pending = sessionStorage.getItem('qrtalk-add-contact');
  if (pending) {
    sessionStorage.removeItem('qrtalk-add-contact');
    addContactDialog(ctx, pending);
  }
}

/** The "Add contact" dialog; code prefills a contact code opened as a link. */
export function addContactDialog(ctx, code = '') {
  const acc = ctx.app.acc;
  const ref = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', value: code, placeholder: 'qrtalk:contact?… or a user ID' });
  const name = h('input', { type: 'text', autocomplete: 'off', maxlength: 100 });
  const fp = h('input', { type: 'text', inputmode: 'numeric', autocomplete: 'off', placeholder: '12345 67890 …' });
  const fpField = field('Their fingerprint (optional, with a user ID)', fp, 'The 40 digits they read out to you: with them, the contact is verified at once.');
  const scanBtn = h('button', { type: 'button' }, 'Scan their QR code');
  const addBtn = h('button', { type: 'submit', class: 'primary' }, 'Add contact');
  const alert = alertBox();
  const status = statusBox();
  const isCode = () => ref.value.trim().startsWith('qrtalk:');
  const syncFp = () => { fpField.wrap.hidden = isCode(); };
  ref.addEventListener('input', syncFp);
  syncFp();
  const form = h('form', {},
    h('p', { text: 'Scanning their QR code (under “My code” in their app) adds and verifies them in one step.' }),
    h('div', { class: 'actions start' }, scanBtn),
    field('Contact code or user ID', ref).wrap,
    field('Name', name, 'How they appear to you; only you see it.').wrap,
    fpField.wrap,
    status, alert,
    h('div', { class: 'actions' }, addBtn));
  const d = openDialog('Add a contact', form);
  if (code) name.focus();
  scanBtn.addEventListener('click', async () => {
    const text = await scanDialog('Scan a contact’s QR code', { check: contactCheck, what: 'contact QR code' });
    if (text) {
      ref.value = text;
      syncFp();
      name.focus();
    }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    alert.show('');
    const r = ref.value.trim();
    if (!r) { alert.show('Scan their QR code, or paste their contact code or user ID.'); ref.focus(); return; }
    if (r.startsWith('qrtalk:')) {
      const why = contactCheck(r);
      if (why) { alert.show(`The code: ${why}`); return; }
    }
    const digits = digitsOnly(fp.value);
    if (!r.startsWith('qrtalk:') && fp.value.trim() && digits.length !== 40) {
      alert.show(`A fingerprint has 40 digits; you typed ${digits.length}.`);
      fp.focus();
      return;
    }
    await busy(addBtn, 'Adding…', async () => {
      status.show('Fetching their keys and checking them…');
      try {
        // Typed digits are checked before anything is pinned: a mismatch
        // changes nothing (and never removes a contact already known).
        let c;
        try {
          c = await acc.addContact(r, name.value.trim(), digits.length === 40 ? { fingerprint: digits } : {});
        } catch (err) {
          if (err.code !== 'mismatch' || digits.length !== 40) throw err;
          status.show('');
          alert.show('The fingerprint you typed does not match the key the server gives for this ID, so nothing was added or changed. Check the digits with them, or scan their QR code.');
          return;
        }
        status.show('');
        d.close(true);
        toast(`${c.name || c.user} added${c.verified ? ' and verified' : ' (not verified yet)'}.`);
        ctx.go('#/chat/' + encodeURIComponent('u:' + c.user));
      } catch (err) {
        console.warn(err);
        status.show('');
        alert.show(`Could not add the contact: ${errorText(err)}`);
      }
    });
  });
}

async function detail(ctx, who) {
  const acc = ctx.app.acc;
  let c;
  try {
    c = await acc.contact(who);
  } catch (err) {
    replace(ctx.main, h('section', { class: 'panel' },
      h('h1', { text: 'Contact not found' }),
      h('p', { class: 'alert', role: 'alert', text: errorText(err) }),
      h('p', {}, h('a', { href: '#/contacts', class: 'button' }, 'Back to contacts'))));
    return;
  }
  const page = h('div', { class: 'page contact-detail' });
  replace(ctx.main, page);

  const draw = () => {
    const name = c.name || c.user;
    const alert = alertBox();
    const status = statusBox();
    const typed = h('input', { type: 'text', inputmode: 'numeric', autocomplete: 'off', placeholder: '12345 67890 …' });
    const verifyBtn = h('button', { type: 'submit' }, 'Verify these digits');
    const scanBtn = h('button', { type: 'button', class: 'primary' }, 'Scan their QR code');
    const verify = async (fingerprint) => {
      alert.show('');
      try {
        c = await acc.verifyContact(c.user, fingerprint);
        toast(`${name} is verified.`);
        draw();
      } catch (err) {
        alert.show(err.code === 'mismatch'
          ? `The fingerprints do NOT match. This is not the key ${name} has: do not trust it until you have checked with them in person.`
          : `Could not verify: ${errorText(err)}`);
      }
    };
    scanBtn.addEventListener('click', async () => {
      const text = await scanDialog(`Scan ${name}’s QR code`, { check: contactCheck, what: 'contact QR code' });
      if (text) await verify(text);
    });
    const verifyForm = h('form', { class: 'verify-form' },
      field(`${name}’s fingerprint, as they read it out`, typed).wrap,
      h('div', { class: 'actions' }, verifyBtn));
    verifyForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      const digits = digitsOnly(typed.value);
      if (digits.length !== 40) { alert.show(`A fingerprint has 40 digits; you typed ${digits.length}.`); typed.focus(); return; }
      await busy(verifyBtn, 'Checking…', () => verify(digits));
    });

    const removeBtn = h('button', { type: 'button', class: 'danger' }, 'Remove contact');
    removeBtn.addEventListener('click', async () => {
      if (!await confirmDialog(`Remove ${name}?`, `${name} will no longer be in your contacts, and your chat with them goes too. You can add them again from their code.`, 'Remove', { danger: true })) return;
      try {
        await acc.removeContact(c.user);
        toast(`${name} removed.`);
        ctx.go('#/contacts');
      } catch (err) { alert.show(errorText(err)); }
    });

    const changed = c.changed
      ? h('section', { class: 'banner danger', role: 'alert', 'aria-labelledby': 'chg-h' },
        h('h2', { id: 'chg-h', text: 'Identity key changed' }),
        h('p', { text: `The server now gives another key for ${name}. Sending to them is blocked until you accept it.` }),
        fingerprintBlock('New fingerprint', c.pendingFingerprintNumeric || '(unknown)'),
        h('button', { type: 'button', class: 'danger', onclick: async () => { if (await acceptKeyChangeDialog(acc, c)) { c = await acc.contact(c.user); draw(); } } }, 'Review and accept new key'))
      : null;

    replace(page,
      h('p', {}, h('a', { href: '#/contacts', class: 'back-link' }, '← Contacts')),
      h('div', { class: 'pane-head' }, h('h1', { text: name }), trustBadge(c)),
      changed,
      h('dl', { class: 'facts' },
        h('dt', { text: 'User ID' }), h('dd', {}, h('code', { text: c.user })),
        c.added ? [h('dt', { text: 'Added' }), h('dd', { text: formatTime(c.added) })] : null),
      h('section', { class: 'card', 'aria-labelledby': 'ver-h' },
        h('h2', { id: 'ver-h', text: c.verified ? 'Verified' : 'Verify this contact' }),
        h('p', { text: c.verified
          ? `You checked ${name}’s fingerprint. Messages signed with this key are shown as verified.`
          : `Make sure this is really ${name}: scan their QR code when you meet, or compare the fingerprints below, digit by digit, on a call you trust.` }),
        h('div', { class: 'fp-compare' },
          fingerprintBlock(`${name}’s fingerprint`, c.fingerprintNumeric),
          fingerprintBlock('Your fingerprint', acc.fingerprintNumeric)),
        c.verified ? null : h('div', { class: 'actions start' }, scanBtn),
        c.verified ? null : verifyForm,
        status, alert),
      h('div', { class: 'actions start' },
        h('a', { href: '#/chat/' + encodeURIComponent('u:' + c.user), class: 'button primary' }, `Chat with ${name}`),
        removeBtn));
  };
  draw();
  ctx.on('contact-changed', async (e) => {
    if (e.detail?.user === c.user) { c = await acc.contact(c.user); draw(); }
  });
}
