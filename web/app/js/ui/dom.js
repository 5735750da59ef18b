// Small DOM helpers for the UI. Everything is built with createElement and
// textContent: no HTML strings (nothing a message could inject into), no
// inline styles or handlers (the Content-Security-Policy forbids them).

/**
 * h('button', {class: 'primary', onclick: fn, 'aria-label': 'Send'}, 'Send')
 * Props: class, text, dataset {}, on<event> functions, booleans (true sets
 * the attribute, false/null leaves it out), anything else as an attribute.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'multiple' ||
               k === 'required' || k === 'readOnly' || k === 'selected') el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces every child of el. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let idCounter = 0;
/** A unique id for label/aria wiring. */
export function uid(prefix = 'id') {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** A labelled form field: returns {wrap, input}. */
export function field(label, input, hint) {
  if (!input.id) input.id = uid('f');
  const wrap = h('div', { class: 'field' }, h('label', { for: input.id, text: label }));
  if (hint) {
    const hintEl = h('p', { class: 'hint', id: uid('hint'), text: hint });
    input.setAttribute('aria-describedby', hintEl.id);
    wrap.append(input, hintEl);
  } else {
    wrap.append(input);
  }
  return { wrap, input };
}

/** An element whose text is an error, announced by screen readers. */
export function alertBox() {
  const el = h('p', { class: 'alert', role: 'alert', hidden: true });
  el.show = (msg) => {
    el.textContent = msg;
    el.hidden = !msg;
  };
  return el;
}

/** A polite status line. */
export function statusBox() {
  const el = h('p', { class: 'status', role: 'status' });
  el.show = (msg) => { el.textContent = msg || ''; };
  return el;
}

/** Sets a button busy (disabled, with another label) while fn runs. */
export async function busy(button, label, fn) {
  const old = button.textContent;
  const wasDisabled = button.disabled;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  if (label) button.textContent = label;
  try {
    return await fn();
  } finally {
    button.disabled = wasDisabled;
    button.removeAttribute('aria-busy');
    button.textContent = old;
  }
}

/**
 * Opens a modal dialog. Escape closes it (the browser's own <dialog>
 * behaviour), focus stays inside while open and goes back to what had it.
 * content: nodes. Returns {dialog, close, closed (a Promise of the return
 * value)}.
 */
export function openDialog(title, content, { className, onClose } = {}) {
  const opener = document.activeElement;
  const titleId = uid('dlg');
  const closeBtn = h('button', { type: 'button', class: 'icon-button dialog-close', 'aria-label': 'Close' }, '×');
  const dialog = h('dialog', { class: ['dialog', className], 'aria-labelledby': titleId },
    h('div', { class: 'dialog-head' }, h('h2', { id: titleId, text: title }), closeBtn),
    h('div', { class: 'dialog-body' }, content));
  let resolve;
  const closed = new Promise((r) => { resolve = r; });
  const close = (value) => {
    if (dialog.open) dialog.close();
    dialog.returnValue = value === undefined ? '' : String(value);
    finish(value);
  };
  let done = false;
  const finish = (value) => {
    if (done) return;
    done = true;
    onClose?.();
    dialog.remove();
    if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    resolve(value);
  };
  closeBtn.addEventListener('click', () => close(null));
  dialog.addEventListener('close', () => finish(null));
  document.body.append(dialog);
  dialog.showModal();
  const first = dialog.querySelector('[autofocus]') ?? dialog.querySelector('input, textarea, select, button:not(.dialog-close)');
  first?.focus();
  return { dialog, close, closed };
}

/** A yes/no question in a dialog; resolves true or false. */
export async function confirmDialog(title, text, yes = 'OK', { danger = false } = {}) {
  const yesBtn = h('button', { type: 'button', class: danger ? 'danger' : 'primary', text: yes });
  const noBtn = h('button', { type: 'button', text: 'Cancel' });
  const body = [
    ...(Array.isArray(text) ? text : [h('p', { text })]),
    h('div', { class: 'actions' }, noBtn, yesBtn),
  ];
  const d = openDialog(title, body);
  yesBtn.addEventListener('click', () => d.close(true));
  noBtn.addEventListener('click', () => d.close(false));
  noBtn.focus();
  return (await d.closed) === true;
}

/** Shows a short notice in the toast area; errors stay longer. */
export function toast(msg, kind = 'info') {
  const area = document.getElementById('toasts');
  if (!area) return;
  const el = h('div', { class: ['toast', kind] }, h('span', { text: msg }));
  const dismiss = h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Dismiss notice' }, '×');
  dismiss.addEventListener('click', () => el.remove());
  el.append(dismiss);
  area.append(el);
  while (area.children.length > 4) area.firstElementChild.remove();
  setTimeout(() => el.remove(), kind === 'error' ? 12000 : 6000);
}

/** Copies text to the clipboard; falls back to selecting it in el. */
export async function copyText(text, el) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Copied.');
  } catch {
    if (el && typeof el.select === 'function') {
      el.focus();
      el.select();
      toast('Press Ctrl+C (or ⌘C) to copy the selected text.');
    } else {
      toast('Copying is not allowed here: select the text and copy it.', 'error');
    }
  }
}
