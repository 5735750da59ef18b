// Devices: this user's devices, revoking one, and linking a new one by
// showing a link code (QR code and text) for it to scan.

import { h, replace, openDialog, confirmDialog, toast, copyText, alertBox, statusBox, field } from './dom.js';
import { errorText, formatTime, countdown } from './format.js';
import { qrCanvas } from './qr.js';

export async function render(ctx) {
  const acc = ctx.app.acc;
  const list = h('ul', { class: 'device-list', 'aria-label': 'Your devices' });
  const alert = alertBox();
  const linkBtn = h('button', { type: 'button', class: 'primary' }, 'Link a new device');
  linkBtn.addEventListener('click', () => linkDialog(ctx, draw));
  replace(ctx.main, h('div', { class: 'page devices' },
    h('div', { class: 'pane-head' }, h('h1', { text: 'Devices' }), h('div', { class: 'pane-actions' }, linkBtn)),
    h('p', { text: 'Every device of yours receives your messages, each with its own keys, certified by your identity. The server cannot add one.' }),
    alert, list,
    h('section', { class: 'card', 'aria-labelledby': 'cli-h' },
      h('h2', { id: 'cli-h', text: 'Link a laptop with the qrtalk command' }),
      h('p', {}, 'On the new computer, run ', h('code', { text: 'qrtalk device join' }), ' with the link code shown here, or scan it.'))));

  async function draw() {
    let devices;
    try {
      devices = await acc.devices();
    } catch (err) {
      alert.show(`Could not list your devices: ${errorText(err)}`);
      return;
    }
    if (!ctx.alive()) return;
    alert.show('');
    replace(list, devices.map((d) => {
      const label = d.current ? 'This browser' : 'Device';
      const revoke = d.current ? null : h('button', { type: 'button', class: 'danger small', 'aria-label': `Revoke device ${d.device}` }, 'Revoke');
      revoke?.addEventListener('click', async () => {
        if (!await confirmDialog('Revoke this device?', `Device ${d.device} will stop receiving your messages and can no longer send as you. Do it at once if it was lost or stolen.`, 'Revoke', { danger: true })) return;
        try {
          await acc.revokeDevice(d.device);
          toast('Device revoked.');
          draw();
        } catch (err) { alert.show(`Could not revoke: ${errorText(err)}`); }
      });
      return h('li', { class: ['device', d.current && 'current'] },
        h('span', { class: 'device-label', text: label }),
        h('code', { text: d.device }),
        d.created ? h('span', { class: 'hint', text: `linked ${formatTime(d.created)}` }) : null,
        revoke);
    }));
  }
  await draw();
}

async function linkDialog(ctx, refresh) {
  const acc = ctx.app.acc;
  const status = statusBox();
  const alert = alertBox();
  const body = h('div', { class: 'link-body' },
    h('p', { text: 'Creating a link code…' }));
  let closed = false;
  let timer = 0;
  const d = openDialog('Link a new device', [body, status, alert], { onClose: () => { closed = true; clearInterval(timer); } });
  let link;
  try {
    link = await acc.startLink();
  } catch (err) {
    replace(body);
    alert.show(`Could not start linking: ${errorText(err)}`);
    return;
  }
  if (closed) return;
  const codeBox = h('textarea', { readOnly: true, rows: 4, class: 'code-text', spellcheck: 'false' });
  codeBox.value = link.code;
  const copy = h('button', { type: 'button' }, 'Copy link code');
  copy.addEventListener('click', () => copyText(link.code, codeBox));
  const left = h('p', { class: 'hint', role: 'timer' });
  const showLeft = () => {
    const ms = link.expires - Date.now();
    left.textContent = ms > 0 ? `The code is good for ${countdown(ms)} more.` : 'The code expired. Close this and make a new one.';
  };
  showLeft();
  timer = setInterval(showLeft, 1000);
  replace(body,
    h('p', { class: 'warning', text: 'Show this only to the device you are linking: whoever scans it can add a device to your account.' }),
    h('div', { class: 'qr-box' }, qrCanvas(link.code, 'Device link QR code')),
    field('Link code', codeBox, 'On the new device: open QRTalk and choose “Link this browser”, or run “qrtalk device join”, then scan or paste this code.').wrap,
    h('div', { class: 'actions start' }, copy),
    left);
  status.show('Waiting for the new device…');
  try {
    const id = await link.complete();
    if (closed) { toast(`Device ${id} is linked.`); refresh(); return; }
    clearInterval(timer);
    replace(body, h('p', { class: 'success', text: `Device ${id} is linked. It receives your messages from now on.` }),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', onclick: () => d.close(true) }, 'Done')));
    status.show('');
    refresh();
  } catch (err) {
    if (closed) return;
    clearInterval(timer);
    status.show('');
    alert.show(`The device was not linked: ${errorText(err)}`);
  }
}
