// "My code": this user's ID, fingerprint and contact code (as a QR code and
// as text) for others to add and verify them; the server; account deletion.

import { h, replace, confirmDialog, toast, copyText, alertBox, field } from './dom.js';
import { errorText, fingerprintLines } from './format.js';
import { qrCanvas } from './qr.js';

export async function render(ctx) {
  const acc = ctx.app.acc;
  const code = acc.contactCode;
  const codeBox = h('textarea', { readOnly: true, rows: 3, class: 'code-text', spellcheck: 'false' });
  codeBox.value = code;
  const copyCode = h('button', { type: 'button', class: 'primary' }, 'Copy contact code');
  copyCode.addEventListener('click', () => copyText(code, codeBox));
  const idEl = h('code', { class: 'user-id', text: acc.user });
  const copyId = h('button', { type: 'button', class: 'small' }, 'Copy ID');
  copyId.addEventListener('click', () => copyText(acc.user));

  const delAlert = alertBox();
  const delBtn = h('button', { type: 'button', class: 'danger' }, 'Delete my account');
  delBtn.addEventListener('click', async () => {
    const typed = h('input', { type: 'text', autocomplete: 'off' });
    const ok = await confirmDialog('Delete your account?', [
      h('p', { text: 'Your account is deleted on the server and every key and message goes from this browser. Your other devices stop working. This cannot be undone.' }),
      field('Type DELETE to confirm', typed).wrap,
    ], 'Delete account', { danger: true });
    if (!ok) return;
    if (typed.value.trim() !== 'DELETE') { delAlert.show('Not deleted: type DELETE to confirm.'); return; }
    try {
      await acc.deleteAccount();
      acc.close?.(); // no reconnecting with a deleted device
      toast('Your account is deleted.');
      location.hash = '';
      location.reload();
    } catch (err) {
      delAlert.show(`Could not delete the account: ${errorText(err)}`);
    }
  });

  replace(ctx.main, h('div', { class: 'page me' },
    h('h1', { text: 'My code' }),
    h('section', { class: 'card identity', 'aria-labelledby': 'qr-h' },
      h('h2', { id: 'qr-h', text: 'Let a contact scan this' }),
      h('p', { text: 'Someone who scans this QR code adds you with your key verified. Show it in person; a screenshot sent over another app proves less.' }),
      h('div', { class: 'qr-box' }, qrCanvas(code, 'Your QR code')),
      field('Your contact code', codeBox).wrap,
      h('div', { class: 'actions start' }, copyCode)),
    h('section', { class: 'card', 'aria-labelledby': 'id-h' },
      h('h2', { id: 'id-h', text: 'Your identity' }),
      h('dl', { class: 'facts' },
        h('dt', { text: 'Your ID' }), h('dd', {}, idEl, ' ', copyId),
        h('dt', { text: 'Fingerprint' }),
        h('dd', {}, h('p', { class: 'digits', 'aria-label': `Your fingerprint: ${acc.fingerprintNumeric}` },
          fingerprintLines(acc.fingerprintNumeric).map((l) => h('span', { text: l })))),
        h('dt', { text: 'Server' }), h('dd', {}, h('code', { text: acc.server })),
        h('dt', { text: 'Server fingerprint' }), h('dd', {}, h('code', { class: 'wrap', text: acc.serverFingerprint }))),
      h('p', { class: 'hint', text: 'Your fingerprint stays the same on all your devices. Contacts compare it to know the key is yours.' })),
    h('section', { class: 'card', 'aria-labelledby': 'danger-h' },
      h('h2', { id: 'danger-h', text: 'Delete account' }),
      h('div', { class: 'actions start' }, delBtn), delAlert)));
}
