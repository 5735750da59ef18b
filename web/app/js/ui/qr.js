// QR codes: drawn with the vendored qrcode-generator onto a canvas, read
// from the camera or a photo with the browser's BarcodeDetector when it has
// one, the vendored jsQR otherwise (loaded only then).

import qrcode from '../../vendor/qrcode-generator/qrcode.mjs';
import { h, openDialog, alertBox, statusBox, field } from './dom.js';

/**
 * A canvas showing text as a QR code (error correction M, a 4-module
 * quiet zone), with an accessible name.
 */
export function qrCanvas(text, label, { cssSize = 288 } = {}) {
  const qr = qrcode(0, 'M');
  qr.addData(text, 'Byte');
  qr.make();
  const n = qr.getModuleCount();
  const quiet = 4;
  // A whole number of device pixels per module, so that every module has
  // the same size on screen (uneven modules are harder to scan).
  const dpr = self.devicePixelRatio || 1;
  const px = Math.max(2, Math.floor((cssSize * dpr) / (n + 2 * quiet)));
  const size = (n + 2 * quiet) * px;
  const canvas = h('canvas', { class: 'qr', width: size, height: size, role: 'img', 'aria-label': label });
  canvas.style.width = `${size / dpr}px`; // CSSOM, which the CSP allows (no style attribute in markup)
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, size, size);
  ctx.fillStyle = '#000000';
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      if (qr.isDark(r, c)) ctx.fillRect((c + quiet) * px, (r + quiet) * px, px, px);
    }
  }
  canvas.dataset.payload = text; // for tests and for "copy": the same text as shown beside it
  return canvas;
}

let jsQRPromise;
/** Loads vendor/jsqr/jsQR.js as a classic script (CSP: 'self'). */
function loadJsQR() {
  if (self.jsQR) return Promise.resolve(self.jsQR);
  jsQRPromise ??= new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = new URL('../../vendor/jsqr/jsQR.js', import.meta.url).href;
    s.onload = () => (self.jsQR ? resolve(self.jsQR) : reject(new Error('the QR decoder did not load')));
    s.onerror = () => { jsQRPromise = undefined; reject(new Error('the QR decoder could not be loaded')); };
    document.head.append(s);
  });
  return jsQRPromise;
}

let detectorPromise;
/** The browser's BarcodeDetector for QR codes, or null. */
function nativeDetector() {
  detectorPromise ??= (async () => {
    try {
      if (!('BarcodeDetector' in self)) return null;
      const formats = await self.BarcodeDetector.getSupportedFormats();
      return formats.includes('qr_code') ? new self.BarcodeDetector({ formats: ['qr_code'] }) : null;
    } catch {
      return null;
    }
  })();
  return detectorPromise;
}

/** Decodes a QR code in a canvas; returns its text or null. */
async function decodeCanvas(canvas) {
  const det = await nativeDetector();
  if (det) {
    try {
      const codes = await det.detect(canvas);
      if (codes.length) return codes[0].rawValue;
    } catch { /* fall through to jsQR */ }
  }
  const jsQR = await loadJsQR();
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const code = jsQR(img.data, img.width, img.height, { inversionAttempts: 'attemptBoth' });
  return code ? code.data : null;
}

/** Draws src (video, bitmap) into a canvas at most maxSide wide or high. */
function toCanvas(src, w, hgt, maxSide, canvas = document.createElement('canvas')) {
  const scale = Math.min(1, maxSide / Math.max(w, hgt));
  canvas.width = Math.max(1, Math.round(w * scale));
  canvas.height = Math.max(1, Math.round(hgt * scale));
  canvas.getContext('2d', { willReadFrequently: true }).drawImage(src, 0, 0, canvas.width, canvas.height);
  return canvas;
}

/** Decodes a QR code in an image file (a photo or a screenshot). */
export async function decodeImageFile(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error('This file is not an image the browser can read.');
  }
  try {
    // Large photos decode better scaled down; small codes need the detail.
    for (const side of [1024, 1600, 640, 2400]) {
      const text = await decodeCanvas(toCanvas(bitmap, bitmap.width, bitmap.height, side));
      if (text) return text;
    }
    return null;
  } finally {
    bitmap.close?.();
  }
}

/** Why the camera cannot be used here, or '' when it may be. */
export function cameraUnavailable() {
  if (!self.isSecureContext) return 'The camera needs a secure (https) connection.';
  if (!navigator.mediaDevices?.getUserMedia) return 'This browser does not give access to a camera.';
  return '';
}

function cameraError(err) {
  switch (err?.name) {
    case 'NotAllowedError': case 'SecurityError':
      return 'Camera access was refused. Allow the camera in the browser’s site settings, or paste the code or choose a photo instead.';
    case 'NotFoundError': case 'OverconstrainedError':
      return 'No camera was found. Paste the code or choose a photo instead.';
    case 'NotReadableError':
      return 'The camera is in use by another app. Close it, or choose a photo instead.';
    default:
      return 'The camera could not be started' + (err?.message ? ` (${err.message})` : '') + '. Paste the code or choose a photo instead.';
  }
}

/**
 * Opens a dialog that scans a QR code: the camera where the browser allows
 * it, a photo otherwise (or as well), and a text box for a pasted code.
 * check(text) returns '' when the text is what is wanted, else why not (the
 * scan goes on). Resolves to the text, or null when the user closes it.
 */
export function scanDialog(title, { check = () => '', what = 'QR code' } = {}) {
  const video = h('video', { class: 'scan-video', muted: true, playsinline: true, autoplay: true, 'aria-label': 'Camera preview' });
  video.muted = true;
  const status = statusBox();
  const error = alertBox();
  const photo = h('input', { type: 'file', accept: 'image/*', class: 'file-input' });
  const photoField = field(`Choose a photo of the ${what}`, photo);
  const pasted = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'qrtalk:…' });
  const pasteField = field('Or paste the code', pasted);
  const useBtn = h('button', { type: 'button', class: 'primary', text: 'Use this code' });
  const videoWrap = h('div', { class: 'scan-frame', hidden: true }, video, h('div', { class: 'scan-target', 'aria-hidden': 'true' }));

  let stream = null;
  let stopped = false;
  let timer = 0;
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    if (stream) for (const t of stream.getTracks()) t.stop();
    stream = null;
  };
  const d = openDialog(title, [
    h('p', { class: 'hint', text: `Point the camera at the ${what}, choose a photo of it (or paste a screenshot), or paste the code.` }),
    videoWrap, status, error, photoField.wrap, pasteField.wrap, h('div', { class: 'actions' }, useBtn),
  ], { className: 'scan-dialog', onClose: stop });

  const accept = (text, source) => {
    text = String(text || '').trim();
    const why = check(text);
    if (why) {
      error.show(`${source}: ${why}`);
      return false;
    }
    stop();
    d.close(text);
    return true;
  };

  useBtn.addEventListener('click', () => accept(pasted.value, 'The pasted code'));
  pasted.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); accept(pasted.value, 'The pasted code'); }
  });
  const readImage = async (f) => {
    error.show('');
    status.show('Reading the photo…');
    try {
      const text = await decodeImageFile(f);
      status.show('');
      if (!text) error.show(`No QR code was found in this photo. Try a sharper, closer one, or paste the code.`);
      else accept(text, 'The QR code in the photo');
    } catch (err) {
      status.show('');
      error.show(err.message);
    }
  };
  photo.addEventListener('change', async () => {
    const f = photo.files?.[0];
    if (f) await readImage(f);
    photo.value = '';
  });
  // A screenshot pasted anywhere in the dialog (Ctrl+V) is read like a photo.
  d.dialog.addEventListener('paste', (e) => {
    const img = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith('image/'));
    if (!img) return; // text goes into the text box as usual
    e.preventDefault();
    readImage(img);
  });

  const why = cameraUnavailable();
  if (why) {
    status.show(`${why} Choose a photo or paste the code instead.`);
  } else {
    status.show('Starting the camera…');
    (async () => {
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: 'environment' } }, audio: false });
        if (stopped) { for (const t of stream.getTracks()) t.stop(); return; }
        video.srcObject = stream;
        await video.play().catch(() => {});
        videoWrap.hidden = false;
        status.show(`Looking for a ${what}…`);
        const frame = document.createElement('canvas');
        let lastWhy = '';
        const tick = async () => {
          if (stopped) return;
          if (video.readyState >= 2 && video.videoWidth) {
            try {
              const text = await decodeCanvas(toCanvas(video, video.videoWidth, video.videoHeight, 720, frame));
              if (text && !stopped) {
                const w = check(text.trim());
                if (!w) { accept(text, 'The scanned code'); return; }
                if (w !== lastWhy) { lastWhy = w; error.show(`The scanned code: ${w}`); }
              }
            } catch (err) {
              error.show(err.message);
            }
          }
          timer = setTimeout(tick, 250);
        };
        tick();
      } catch (err) {
        status.show('');
        error.show(cameraError(err));
      }
    })();
  }
  return d.closed.then((v) => (typeof v === 'string' && v ? v : null));
}
