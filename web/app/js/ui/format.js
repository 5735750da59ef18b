// Text for people: durations, countdowns, sizes, times, and readable errors.

/** The TTL presets of the protocol, in seconds. */
export const TTL_PRESETS = [
  { s: 10, label: '10 seconds' },
  { s: 300, label: '5 minutes' },
  { s: 3600, label: '1 hour' },
  { s: 86400, label: '1 day' },
  { s: 604800, label: '1 week' },
];
export const MIN_TTL = 1;
export const MAX_TTL = 604800;

/** "1 h", "5 min", "10 s", "2 d 3 h": a duration in seconds, short. */
export function shortDuration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  const d = Math.floor(seconds / 86400);
  const hh = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d >= 7 && d % 7 === 0 && !hh && !m && !s) return `${d / 7} w`;
  if (d) return hh ? `${d} d ${hh} h` : `${d} d`;
  if (hh) return m ? `${hh} h ${m} min` : `${hh} h`;
  if (m) return s ? `${m} min ${s} s` : `${m} min`;
  return `${s} s`;
}

const pad = (n) => String(n).padStart(2, '0');

/** The countdown shown on a message: "0:09", "4:59", "1:02:03", "2 d 3 h". */
export function countdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(total / 86400);
  if (d >= 1) {
    const hh = Math.floor((total % 86400) / 3600);
    return hh ? `${d} d ${hh} h` : `${d} d`;
  }
  const hh = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return hh ? `${hh}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** Words for a screen reader: "4 minutes 59 seconds". */
export function countdownWords(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const parts = [];
  const units = [[86400, 'day'], [3600, 'hour'], [60, 'minute'], [1, 'second']];
  let rest = total;
  for (const [n, name] of units) {
    const v = Math.floor(rest / n);
    rest %= n;
    if (v) parts.push(`${v} ${name}${v === 1 ? '' : 's'}`);
    if (parts.length === 2) break;
  }
  return parts.length ? parts.join(' ') : '0 seconds';
}

export function formatSize(bytes) {
  if (!Number.isFinite(bytes)) return '';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(bytes < 10240 ? 1 : 0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function formatTime(ms) {
  const d = new Date(ms);
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

/** "12345 67890 …" in lines of four groups, for display. */
export function fingerprintLines(numeric) {
  const groups = String(numeric || '').trim().split(/\s+/).filter(Boolean);
  const lines = [];
  for (let i = 0; i < groups.length; i += 4) lines.push(groups.slice(i, i + 4).join(' '));
  return lines;
}

/** Digits only, for comparing typed fingerprints. */
export function digitsOnly(s) {
  return String(s || '').replace(/\D/g, '');
}

/**
 * A sentence for an error of the SDK (err.code, err.api) or the browser,
 * without stack traces or internals.
 */
export function errorText(err) {
  if (!err) return 'Something went wrong.';
  const msg = err.message || String(err);
  switch (err.code) {
    case 'key-changed': return 'This contact’s identity key changed. Sending is blocked until you review and accept the new key.';
    case 'mismatch': return 'The fingerprints do not match. Do not trust this key until you have checked it with your contact in person.';
    case 'server-key': return 'The server’s key is not the one the code was made for. Someone may be intercepting the connection: do not continue. (' + msg + ')';
    case 'other-server': return 'This code is for another QRTalk server; this app talks to this server only. (' + msg + ')';
    case 'exists': return 'This browser already has an account.';
    case 'no-contact': return 'No such contact. Add them first.';
    case 'no-group': return 'No such group.';
    case 'ttl': return 'The lifetime must be whole seconds from 1 second to 7 days.';
    case 'link-expired': return 'The link code expired. Make a new one on the other device.';
    case 'link-used': return 'This link code was already used. Make a new one on the other device.';
    case 'link-failed': return 'Linking failed: ' + msg;
    case 'api': {
      const a = err.api || {};
      const text = a.error || msg;
      return a.hint ? `${text}. ${a.hint}` : `The server refused: ${text}`;
    }
  }
  if (err.name === 'NotAllowedError') return 'The browser did not allow this: ' + msg;
  if (err.name === 'QuotaExceededError') return 'The browser’s storage for this site is full.';
  if (err instanceof TypeError && /fetch|network/i.test(msg)) return 'Cannot reach the server. Check your connection and try again.';
  return msg;
}
