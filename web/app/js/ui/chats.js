// Chats: the list of conversations and one conversation (a contact or a
// group) over the live channel: messages with their signature status,
// receipts and a live countdown to their expiry, a TTL picker, attachments
// with progress, typing, and the key-change block.

import { h, replace, field, alertBox, openDialog, toast, uid } from './dom.js';
import { TTL_PRESETS, MIN_TTL, MAX_TTL, countdown, countdownWords, formatSize, formatTime, errorText } from './format.js';
import { trustBadge, acceptKeyChangeDialog, addContactDialog } from './contacts.js';
import { showUnreadInTitle } from './main.js';

const TTL_KEY = 'qrtalk-ttl';

export async function render(ctx) {
  const { app, arg } = ctx;
  const acc = app.acc;
  const key = ctx.name === 'chat' ? arg : '';
  const cleanups = [];

  const list = h('ul', { class: 'conv-list', 'aria-label': 'Conversations' });
  const listPane = h('section', { class: 'list-pane', 'aria-labelledby': 'chats-h' },
    h('div', { class: 'pane-head' },
      h('h1', { id: 'chats-h', text: 'Chats' }),
      h('div', { class: 'pane-actions' },
        h('button', { type: 'button', onclick: () => newGroupDialog(ctx) }, 'New group'),
        h('button', { type: 'button', onclick: () => addContactDialog(ctx) }, 'Add contact'))),
    list);
  const convPane = h('section', { class: 'conv-pane' });
  const page = h('div', { class: ['page', 'chats', key && 'has-conv'] }, listPane, convPane);
  replace(ctx.main, page);

  // The conversation list, refreshed on every event that may change it.
  let listTimer = 0;
  const refreshList = () => {
    clearTimeout(listTimer);
    listTimer = setTimeout(() => drawList(acc, list, key, ctx).catch((err) => toast(errorText(err), 'error')), 150);
  };
  await drawList(acc, list, key, ctx);
  for (const t of ['message', 'expired', 'group', 'contact-changed', 'receipt']) ctx.on(t, refreshList);
  cleanups.push(() => clearTimeout(listTimer));

  if (key) {
    cleanups.push(await conversation(ctx, convPane, key));
  } else {
    replace(convPane, h('div', { class: 'empty-pane' },
      h('p', { text: 'Choose a chat, or add a contact to start one.' })));
  }
  return () => { for (const c of cleanups) c?.(); };
}

function preview(last) {
  if (!last || typeof last !== 'object') return '';
  if (last.signature === 'invalid') return 'A message with an invalid signature (hidden)';
  const m = last.message;
  if (!m) return '';
  const who = last.outgoing ? 'You: ' : '';
  if (m.text) return who + m.text.slice(0, 80);
  if (m.attachments?.length) return who + 'Attachment: ' + m.attachments.map((a) => a.name).join(', ');
  return '';
}

async function drawList(acc, list, current, ctx) {
  const convs = await acc.conversations();
  if (!ctx.alive()) return;
  // Most recent first; conversations without messages after, by name.
  const when = (c) => (typeof c.last === 'number' ? c.last : c.last?.sent ?? 0);
  convs.sort((a, b) => when(b) - when(a) || String(a.name).localeCompare(String(b.name)));
  if (!convs.length) {
    replace(list, h('li', { class: 'empty' },
      h('p', { text: 'No chats yet.' }),
      h('p', {}, h('a', { href: '#/contacts' }, 'Add a contact'), ' to start one, or create a group.')));
    return;
  }
  const items = convs.map((c) => {
    const last = c.last && typeof c.last === 'object' ? c.last : null;
    const when = last?.sent ?? (typeof c.last === 'number' ? c.last : 0);
    const a = h('a', { href: '#/chat/' + encodeURIComponent(c.key), class: 'conv-link' },
      h('span', { class: 'conv-name', text: c.name }),
      c.kind === 'group' ? h('span', { class: 'badge group', text: 'group' }) : null,
      when ? h('span', { class: 'conv-time', text: formatTime(when) }) : null,
      h('span', { class: 'conv-preview', text: preview(last) }),
      ctx.app.unread.get(c.key) ? h('span', { class: 'unread', text: `${ctx.app.unread.get(c.key)} new` }) : null);
    if (c.key === current) a.setAttribute('aria-current', 'page');
    return h('li', {}, a);
  });
  replace(list, items);
}

// --- one conversation -----------------------------------------------------

async function conversation(ctx, pane, key) {
  const acc = ctx.app.acc;
  const isGroup = key.startsWith('g:');
  let contact = null;
  let group = null;
  const load = async () => {
    if (isGroup) group = await acc.group(key);
    else contact = await acc.contact(key);
  };
  try {
    await load();
  } catch (err) {
    replace(pane, h('div', { class: 'panel' },
      h('h2', { text: 'Chat not found' }),
      h('p', { role: 'alert', class: 'alert', text: errorText(err) }),
      h('p', {}, h('a', { href: '#/chats', class: 'button' }, 'Back to chats'))));
    return null;
  }
  const title = () => (isGroup ? group.name : contact.name || contact.user);

  const headingId = uid('conv');
  const heading = h('h2', { id: headingId, text: title() });
  const headInfo = h('div', { class: 'conv-info' });
  const banner = h('div', { class: 'banner-slot' });
  // The log (announced as messages arrive) scrolls; the list inside keeps
  // list semantics for its items.
  const list = h('ol', { class: 'message-list' });
  const log = h('div', { class: 'messages', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Messages' }, list);
  const typing = h('p', { class: 'typing', 'aria-live': 'polite' });
  const composer = composerForm(ctx, key, () => title(), {
    sent: () => reload(),
    blocked: async () => { await load(); drawHead(); },
  });

  const drawHead = () => {
    heading.textContent = title();
    if (isGroup) {
      replace(headInfo,
        h('span', { class: 'hint', text: `${group.members.length} member${group.members.length === 1 ? '' : 's'}` }),
        h('button', { type: 'button', class: 'small', onclick: () => membersDialog(ctx, group, async () => { await load(); drawHead(); }) }, 'Members'));
    } else {
      replace(headInfo, trustBadge(contact),
        h('a', { href: '#/contact/' + encodeURIComponent(contact.user), class: 'button small', 'aria-label': 'Contact details' }, 'Details'));
    }
    // A changed key blocks sending until the user accepts the new one.
    const changed = !isGroup && contact.changed;
    composer.setBlocked(changed ? `${title()}’s identity key changed: sending is blocked.` : '');
    if (changed) {
      const acceptBtn = h('button', { type: 'button', class: 'danger' }, 'Review new key');
      acceptBtn.addEventListener('click', async () => {
        if (await acceptKeyChangeDialog(acc, contact)) {
          await load();
          drawHead();
        }
      });
      replace(banner, h('div', { class: 'banner danger', role: 'alert' },
        h('p', {}, h('strong', { text: 'Identity key changed. ' }),
          `The server now gives another key for ${title()}. This happens when they reinstall or lose their device, and also when someone tries to intercept your messages. Sending is blocked until you accept the new key — best after comparing fingerprints with them in person.`),
        acceptBtn));
    } else if (!isGroup && !contact.verified) {
      replace(banner, h('div', { class: 'banner' },
        h('p', { text: `You have not verified ${title()}’s fingerprint yet. Scan their QR code or compare the numbers when you meet.` }),
        h('a', { href: '#/contact/' + encodeURIComponent(contact.user), class: 'button' }, 'Verify')));
    } else {
      replace(banner);
    }
  };

  replace(pane, h('div', { class: 'conversation', 'aria-labelledby': headingId, role: 'region' },
    h('header', { class: 'conv-head' },
      h('a', { href: '#/chats', class: 'back button', 'aria-label': 'Back to the chat list' }, '←'),
      heading, headInfo),
    banner, log, typing, composer.form));
  drawHead();

  // Messages: kept by ID so that an update keeps what is on screen (loaded
  // images, focus) and only adds, changes and removes.
  const items = new Map(); // id -> {li, r, urls: []}
  const removeItem = (id) => {
    const it = items.get(id);
    if (!it) return;
    for (const u of it.urls) URL.revokeObjectURL(u);
    it.li.remove();
    items.delete(id);
  };
  let reloading = null;
  let again = false;
  const reload = async () => {
    if (reloading) { again = true; return reloading; }
    reloading = (async () => {
      do {
        again = false;
        const visible = document.visibilityState === 'visible';
        const msgs = await acc.messages(key, { markRead: visible });
        if (!ctx.alive()) return;
        const seen = new Set();
        const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
        for (const r of msgs) {
          if (r.event) continue; // receipts and typing are not shown as messages
          seen.add(r.id);
          const it = items.get(r.id);
          if (it) {
            updateItem(it, r);
          } else {
            const nit = { r, urls: [] };
            nit.li = messageItem(ctx, nit);
            items.set(r.id, nit);
            // In order of sending: a message queued while this device was
            // offline may arrive after newer ones.
            let later = null;
            for (const o of items.values()) {
              if (o !== nit && o.r.sent > r.sent && o.li.isConnected && (!later || o.r.sent < later.r.sent)) later = o;
            }
            if (later) list.insertBefore(nit.li, later.li);
            else list.append(nit.li);
          }
        }
        for (const id of [...items.keys()]) if (!seen.has(id)) removeItem(id);
        if (!items.size) { if (!list.querySelector('.empty')) list.append(emptyNote()); } else list.querySelector('.empty')?.remove();
        if (atBottom) log.scrollTop = log.scrollHeight;
      } while (again);
    })().finally(() => { reloading = null; });
    return reloading;
  };
  await reload();
  log.scrollTop = log.scrollHeight;
  const markSeen = () => {
    if (document.visibilityState !== 'visible') return;
    ctx.app.openConversation = key;
    if (ctx.app.unread.delete(key)) showUnreadInTitle();
  };
  markSeen();

  const mine = (d) => d && (d.conversation === key || (!isGroup && d.from === contact.user && !d.conversation));
  ctx.on('message', (e) => { if (mine(e.detail)) reload(); });
  // A receipt names the conversation of its sender (u:…), also for group
  // messages: what matters is whether it is about a message shown here.
  ctx.on('receipt', (e) => {
    if (mine(e.detail) || (e.detail?.ids || []).some((id) => items.has(id))) reload();
  });
  ctx.on('expired', (e) => { for (const id of e.detail?.ids || []) removeItem(id); });
  ctx.on('contact-changed', async (e) => {
    if (!isGroup && e.detail?.user === contact.user) { await load(); drawHead(); }
  });
  ctx.on('group', async (e) => {
    if (isGroup && e.detail?.key === key) { await load(); drawHead(); }
  });
  let typingTimer = 0;
  ctx.on('typing', (e) => {
    const d = e.detail;
    if (!mine(d) || d.from === acc.user) return;
    const who = isGroup ? (d.fromName || 'Someone') : title();
    typing.textContent = `${who} is typing…`;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => { typing.textContent = ''; }, 6000);
  });
  const onVisible = () => {
    if (document.visibilityState === 'visible') { markSeen(); reload(); } else ctx.app.openConversation = '';
  };
  document.addEventListener('visibilitychange', onVisible);

  // One timer moves every countdown and removes what expired, even when
  // the SDK's own expiry timer has not run yet.
  const tick = setInterval(() => {
    const now = Date.now();
    for (const [id, it] of items) {
      const left = it.r.expires - now;
      if (left <= 0) removeItem(id);
      else setCountdown(it.countdown, left);
    }
    if (!items.size && !list.querySelector('.empty')) list.append(emptyNote());
  }, 1000);

  composer.focus();
  return () => {
    if (ctx.app.openConversation === key) ctx.app.openConversation = '';
    clearInterval(tick);
    clearTimeout(typingTimer);
    composer.dispose();
    document.removeEventListener('visibilitychange', onVisible);
    for (const id of [...items.keys()]) removeItem(id);
  };
}

function emptyNote() {
  return h('li', { class: 'empty' }, 'No messages. Each message disappears when the lifetime chosen for it ends.');
}

function setCountdown(el, left) {
  const text = countdown(left);
  if (el.lastChild.textContent !== text) {
    el.lastChild.textContent = text;
    el.title = `Disappears in ${countdownWords(left)}`;
    el.setAttribute('aria-label', `Disappears in ${countdownWords(left)}`);
  }
  el.classList.toggle('soon', left < 60_000);
}

const SIG_LABEL = {
  verified: ['Signed by a verified key', 'sig-ok', 'verified'],
  'unverified key': ['Signed, but the key is not verified', 'sig-warn', 'unverified key'],
  unsigned: ['Not signed: it proves nothing about who sent it', 'sig-none', 'unsigned'],
  invalid: ['Invalid signature', 'sig-bad', 'invalid signature'],
};

// Signed by someone who is not a contact: no key was pinned to check the
// signature with, so it proves nothing (the server could have written it).
const SIG_UNCHECKED = ['Not checked: the sender is not a contact, so nothing proves who sent it', 'sig-none', 'not checked'];

const TICKS = {
  '': ['✓', 'Sent'],
  delivered: ['✓✓', 'Delivered'],
  read: ['✓✓', 'Read'],
};

function messageItem(ctx, it) {
  const r = it.r;
  const li = h('li', { class: ['message', r.outgoing ? 'out' : 'in'], dataset: { id: r.id } });
  const bubble = h('article', { class: 'bubble', 'aria-label': r.outgoing ? 'Your message' : `Message from ${r.fromName || r.from}` });
  li.append(bubble);
  if (!r.outgoing && r.conversation?.startsWith('g:')) {
    bubble.append(h('p', { class: 'from', text: r.fromName || r.from }));
  }
  if (r.signature === 'invalid' || !r.message) {
    bubble.classList.add('invalid');
    bubble.append(h('p', { class: 'text', text: '⚠ A message with an invalid signature arrived. It may be forged, so it is not shown.' }));
  } else {
    if (r.message.text) bubble.append(h('p', { class: 'text', dir: 'auto', text: r.message.text }));
    const atts = r.message.attachments || [];
    atts.forEach((a, i) => bubble.append(attachmentView(ctx, it, a, i)));
  }
  const [sigTitle, sigClass, sigText] = (r.signature === 'unverified key' && !r.checked ? SIG_UNCHECKED : SIG_LABEL[r.signature]) ||
    [r.signature, 'sig-warn', r.signature];
  it.countdown = h('span', { class: 'countdown', role: 'timer' }, h('span'));
  it.ticks = h('span', { class: 'ticks', role: 'img' });
  const meta = h('p', { class: 'meta' },
    h('time', { datetime: new Date(r.sent).toISOString(), text: formatTime(r.sent) }),
    h('span', { class: ['sig', sigClass], title: sigTitle, text: sigText }),
    it.countdown,
    r.outgoing ? it.ticks : null);
  bubble.append(meta);
  setCountdown(it.countdown, r.expires - Date.now());
  updateItem(it, r);
  return li;
}

function updateItem(it, r) {
  it.r = r;
  if (!r.outgoing) return;
  const [mark, label] = TICKS[r.state || ''] || TICKS[''];
  it.ticks.textContent = mark;
  it.ticks.title = label;
  it.ticks.setAttribute('aria-label', label);
  it.ticks.className = ['ticks', r.state].filter(Boolean).join(' ');
}

const IMAGE_TYPES = /^image\/(png|jpeg|gif|webp|avif|bmp)$/;

function progressBar(label) {
  const bar = h('progress', { max: 1, value: 0, 'aria-label': label });
  return bar;
}

function onProgressOf(bar) {
  // (done, total) or (name, done, total)
  return (...args) => {
    const nums = args.filter((x) => typeof x === 'number');
    const [done, total] = nums.slice(-2);
    if (total > 0) { bar.max = total; bar.value = done; }
  };
}

function attachmentView(ctx, it, a, i) {
  const acc = ctx.app.acc;
  const desc = `${a.name} (${formatSize(a.size)})`;
  const box = h('div', { class: 'attachment' });
  const err = h('p', { class: 'alert', role: 'alert', hidden: true });
  const fetchBlob = async (bar) => {
    box.append(bar);
    try {
      return await acc.attachment(it.r, i, { onProgress: onProgressOf(bar) });
    } finally {
      bar.remove();
    }
  };
  if (IMAGE_TYPES.test(a.mediaType || '')) {
    const fig = h('figure', {}, h('figcaption', { text: desc }));
    box.append(fig, err);
    fetchBlob(progressBar(`Downloading ${a.name}`)).then((blob) => {
      if (!box.isConnected && !ctx.alive()) return;
      const url = URL.createObjectURL(blob);
      it.urls.push(url);
      const img = h('img', { src: url, alt: a.name, class: 'att-image', loading: 'lazy' });
      const save = h('a', { href: url, download: a.name, class: 'button small' }, `Save ${a.name}`);
      fig.prepend(img);
      fig.append(save);
    }).catch((e) => { err.textContent = `Could not open ${a.name}: ${errorText(e)}`; err.hidden = false; });
  } else {
    const btn = h('button', { type: 'button', class: 'att-file' }, `Download ${desc}`);
    btn.addEventListener('click', async () => {
      err.hidden = true;
      btn.disabled = true;
      try {
        const blob = await fetchBlob(progressBar(`Downloading ${a.name}`));
        const url = URL.createObjectURL(blob);
        it.urls.push(url);
        const link = h('a', { href: url, download: a.name, hidden: true });
        document.body.append(link);
        link.click();
        link.remove();
      } catch (e) {
        err.textContent = `Could not download ${a.name}: ${errorText(e)}`;
        err.hidden = false;
      } finally {
        btn.disabled = false;
      }
    });
    box.append(btn, err);
  }
  return box;
}

// --- the composer ---------------------------------------------------------

function ttlPicker() {
  const select = h('select', {});
  for (const p of TTL_PRESETS) select.append(h('option', { value: String(p.s), text: p.label }));
  select.append(h('option', { value: 'custom', text: 'Custom…' }));
  const amount = h('input', { type: 'number', min: 1, step: 1, value: 30, inputmode: 'numeric', class: 'ttl-amount' });
  const unit = h('select', { class: 'ttl-unit' },
    h('option', { value: '1', text: 'seconds' }), h('option', { value: '60', text: 'minutes', selected: true }),
    h('option', { value: '3600', text: 'hours' }), h('option', { value: '86400', text: 'days' }));
  const selField = field('Disappears after', select);
  const custom = h('div', { class: 'ttl-custom', hidden: true },
    field('Custom lifetime', amount).wrap, field('Unit', unit).wrap);
  const saved = localStorage.getItem(TTL_KEY);
  if (saved && TTL_PRESETS.some((p) => String(p.s) === saved)) select.value = saved;
  else if (saved && /^\d+$/.test(saved)) {
    select.value = 'custom';
    const s = Number(saved);
    const u = [86400, 3600, 60, 1].find((n) => s % n === 0);
    unit.value = String(u);
    amount.value = String(s / u);
    custom.hidden = false;
  } else select.value = '3600';
  select.addEventListener('change', () => {
    custom.hidden = select.value !== 'custom';
    if (!custom.hidden) amount.focus();
  });
  const el = h('div', { class: 'ttl' }, selField.wrap, custom);
  return {
    el,
    /** The chosen TTL in seconds, or throws a readable error. */
    value() {
      let s = select.value === 'custom' ? Number(amount.value) * Number(unit.value) : Number(select.value);
      if (!Number.isInteger(s) || s < MIN_TTL || s > MAX_TTL) {
        throw new Error(`The lifetime must be whole seconds from 1 second to 7 days (you chose ${amount.value} ${unit.selectedOptions[0].text}).`);
      }
      localStorage.setItem(TTL_KEY, String(s));
      return s;
    },
  };
}

function composerForm(ctx, key, title, hooks) {
  const acc = ctx.app.acc;
  const text = h('textarea', { rows: 1, class: 'compose-text', placeholder: 'Message', autocomplete: 'off', 'aria-label': 'Message' });
  const ttl = ttlPicker();
  const fileInput = h('input', { type: 'file', multiple: true, class: 'visually-hidden', id: uid('att') });
  const attachLabel = h('label', { for: fileInput.id, class: 'button attach', title: 'Attach files' }, 'Attach files');
  const chosen = h('ul', { class: 'chosen-files', 'aria-label': 'Files to send' });
  const progress = h('div', { class: 'upload-progress' });
  const sendBtn = h('button', { type: 'submit', class: 'primary send' }, 'Send');
  const alert = alertBox();
  const blockedNote = h('p', { class: 'blocked', role: 'status' });
  const form = h('form', { class: 'composer', 'aria-label': 'Write a message' },
    blockedNote, alert, chosen, progress,
    h('div', { class: 'compose-row' }, text, sendBtn),
    h('div', { class: 'compose-tools' }, ttl.el, fileInput, attachLabel));

  let files = [];
  const drawFiles = () => {
    replace(chosen, files.map((f, i) => h('li', {},
      h('span', { text: `${f.name} (${formatSize(f.size)})` }),
      h('button', { type: 'button', class: 'icon-button', 'aria-label': `Remove ${f.name}`, onclick: () => { files.splice(i, 1); drawFiles(); } }, '×'))));
  };
  fileInput.addEventListener('change', () => {
    files = files.concat([...fileInput.files]);
    fileInput.value = '';
    drawFiles();
    text.focus();
  });
  // Files dropped on the composer, or pasted into the message box, are
  // attached like chosen ones.
  form.addEventListener('dragover', (e) => {
    if (blocked || !e.dataTransfer?.types?.includes('Files')) return;
    e.preventDefault();
    form.classList.add('dropping');
  });
  form.addEventListener('dragleave', () => form.classList.remove('dropping'));
  form.addEventListener('drop', (e) => {
    form.classList.remove('dropping');
    if (blocked || !e.dataTransfer?.files?.length) return;
    e.preventDefault();
    files = files.concat([...e.dataTransfer.files]);
    drawFiles();
  });
  text.addEventListener('paste', (e) => {
    const pasted = [...(e.clipboardData?.files || [])];
    if (!pasted.length || blocked) return;
    e.preventDefault();
    files = files.concat(pasted.map((f, i) => (f.name ? f : new File([f], `pasted-${Date.now()}-${i}.png`, { type: f.type }))));
    drawFiles();
  });

  // Enter sends, Shift+Enter starts a new line.
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  const grow = () => {
    text.rows = Math.min(6, Math.max(1, text.value.split('\n').length));
  };
  let lastTyping = 0;
  text.addEventListener('input', () => {
    grow();
    const now = Date.now();
    if (text.value && now - lastTyping > 4000 && !sendBtn.disabled) {
      lastTyping = now;
      acc.sendTyping(key).catch(() => { /* typing is best effort */ });
    }
  });

  let blocked = '';
  let sending = false;
  const setDisabled = () => {
    sendBtn.disabled = sending || !!blocked;
    text.disabled = !!blocked;
    fileInput.disabled = !!blocked;
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (sending || blocked) return;
    alert.show('');
    const body = text.value.trim();
    if (!body && !files.length) {
      text.focus();
      return;
    }
    let seconds;
    try {
      seconds = ttl.value();
    } catch (err) {
      alert.show(err.message);
      return;
    }
    sending = true;
    setDisabled();
    sendBtn.textContent = 'Sending…';
    const bars = new Map();
    const sendFiles = files.slice();
    for (const f of sendFiles) {
      const bar = progressBar(`Uploading ${f.name}`);
      bars.set(f.name, bar);
      progress.append(h('div', { class: 'upload' }, h('span', { text: `Uploading ${f.name}` }), bar));
    }
    try {
      const res = await acc.send(key, body, {
        ttl: seconds,
        files: sendFiles.length ? sendFiles : undefined,
        onProgress: (name, done, total) => {
          const bar = bars.get(name) || [...bars.values()][0];
          if (bar && total > 0) { bar.max = total; bar.value = done; }
        },
      });
      text.value = '';
      grow();
      files = [];
      drawFiles();
      const rejected = (res?.devices || []).filter((d) => d.status === 'rejected');
      if (rejected.length) {
        alert.show(`Not delivered to ${rejected.length} device${rejected.length === 1 ? '' : 's'}: ${[...new Set(rejected.map((d) => d.reason || d.code || 'refused'))].join('; ')}`);
      }
      hooks.sent();
    } catch (err) {
      console.warn(err);
      alert.show(`Not sent: ${errorText(err)}`);
      if (err.code === 'key-changed') await hooks.blocked();
    } finally {
      sending = false;
      sendBtn.textContent = 'Send';
      setDisabled();
      replace(progress);
      if (!blocked) text.focus();
    }
  });

  return {
    form,
    focus: () => { if (!blocked && matchMedia('(min-width: 900px)').matches) text.focus(); },
    setBlocked(why) {
      blocked = why;
      blockedNote.textContent = why;
      blockedNote.hidden = !why;
      setDisabled();
    },
    dispose() {},
  };
}

// --- groups ---------------------------------------------------------------

export async function newGroupDialog(ctx) {
  const acc = ctx.app.acc;
  const contacts = await acc.contacts();
  const name = h('input', { type: 'text', required: true, maxlength: 100, autocomplete: 'off' });
  const alert = alertBox();
  const boxes = contacts.map((c) => {
    const cb = h('input', { type: 'checkbox', value: c.user, id: uid('m') });
    return { cb, el: h('div', { class: 'check' }, cb, h('label', { for: cb.id, text: `${c.name || c.user}` }), trustBadge(c)) };
  });
  const create = h('button', { type: 'submit', class: 'primary' }, 'Create group');
  const form = h('form', {},
    field('Group name', name).wrap,
    contacts.length
      ? h('fieldset', {}, h('legend', { text: 'Members' }), boxes.map((b) => b.el))
      : h('p', { text: 'You have no contacts yet: add some first, then make a group of them.' }),
    alert,
    h('div', { class: 'actions' }, create));
  const d = openDialog('New group', form);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const members = boxes.filter((b) => b.cb.checked).map((b) => b.cb.value);
    if (!name.value.trim()) { alert.show('Give the group a name.'); name.focus(); return; }
    if (!members.length) { alert.show('Choose at least one member.'); return; }
    create.disabled = true;
    try {
      const g = await acc.createGroup(name.value.trim(), members);
      d.close(true);
      ctx.go('#/chat/' + encodeURIComponent(g.key));
    } catch (err) {
      alert.show(`Could not create the group: ${errorText(err)}`);
    } finally {
      create.disabled = false;
    }
  });
}

async function membersDialog(ctx, group, changed) {
  const acc = ctx.app.acc;
  const contacts = await acc.contacts();
  const byUser = new Map(contacts.map((c) => [c.user, c]));
  const alert = alertBox();
  const list = h('ul', { class: 'members' });
  const draw = () => {
    replace(list, group.members.map((u) => {
      const c = byUser.get(u);
      const isMe = u === acc.user;
      const rm = isMe ? null : h('button', { type: 'button', class: 'small', 'aria-label': `Remove ${c?.name || u} from the group` }, 'Remove');
      rm?.addEventListener('click', async () => {
        try {
          group = await acc.removeMember(group.key, u);
          draw();
          await changed();
        } catch (err) { alert.show(errorText(err)); }
      });
      return h('li', {}, h('span', { text: isMe ? 'You' : (c?.name || u) }), c ? trustBadge(c) : null, rm);
    }));
  };
  draw();
  const addSel = h('select', {}, h('option', { value: '', text: 'Choose a contact' }),
    contacts.filter((c) => !group.members.includes(c.user)).map((c) => h('option', { value: c.user, text: c.name || c.user })));
  const addBtn = h('button', { type: 'button' }, 'Add to group');
  addBtn.addEventListener('click', async () => {
    if (!addSel.value) return;
    try {
      group = await acc.addMember(group.key, addSel.value);
      addSel.selectedOptions[0].remove();
      draw();
      await changed();
    } catch (err) { alert.show(errorText(err)); }
  });
  openDialog(`Members of ${group.name}`, [list, field('Add a member', addSel).wrap, h('div', { class: 'actions' }, addBtn), alert]);
}

