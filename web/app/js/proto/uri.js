// uri.js: qrtalk: URIs of QRTalk protocol v1 (docs/PROTOCOL.md §7): contact
// cards and invites, the server URL grammar and its canonical form, invite
// tokens. The link code of §17.2 (provision.js) uses the same parser.
//
// A URI is handled as a byte string (one character per byte of its UTF-8),
// as the reference implementation does, so that %XX is the byte XX whatever
// it is, and a non-ASCII byte is simply refused by the checks of step 8.

import { fail } from "./errors.js";
import { utf8 } from "./wire.js";
import { parseUserID } from "./ids.js";
import { Fingerprint, identityFingerprint, parseFingerprint } from "./fingerprint.js";

export const MAX_URI_SIZE = 2048;

// Unicode White_Space, trimmed from both ends (§7, step 2).
const WHITE_SPACE = "\t\n\v\f\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";

function trimWhiteSpace(s) {
  let i = 0;
  let j = s.length;
  while (i < j && WHITE_SPACE.includes(s[i])) i++;
  while (j > i && WHITE_SPACE.includes(s[j - 1])) j--;
  return s.slice(i, j);
}

const byteString = (s) => String.fromCharCode(...utf8(s));

// unescape decodes a form value: '+' is a space, %XX the byte XX.
function unescape(s) {
  if (/%(?![0-9A-Fa-f]{2})/.test(s)) fail("malformed", "URI has an invalid % escape");
  return s.replace(/%([0-9A-Fa-f]{2})|\+/g, (m, h) => (h ? String.fromCharCode(parseInt(h, 16)) : " "));
}

/** Escapes s as an HTML form value: space as '+', every byte but A-Z a-z 0-9 - _ . ~ as %XX. */
export function queryEscape(s) {
  let out = "";
  for (const b of utf8(s)) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (b === 0x20) out += "+";
    else out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/**
 * Parses a qrtalk:<kind>? URI by steps 1 to 7 of §7 and returns its
 * parameters (byte strings), each of keys exactly once, no others.
 */
export function parseURI(uri, kind, keys) {
  if (typeof uri !== "string") fail("malformed", "URI must be a string");
  if (utf8(uri).length > MAX_URI_SIZE) fail("too_large", `URI is ${utf8(uri).length} bytes, at most ${MAX_URI_SIZE}`);
  const s = byteString(trimWhiteSpace(uri));
  const prefix = `qrtalk:${kind}?`;
  if (!s.startsWith(prefix)) {
    if (s.startsWith("qrtalk:")) fail("malformed", `this is a qrtalk:${s.slice(7).split("?")[0]} code, not a qrtalk:${kind} code`);
    fail("malformed", `not a qrtalk:${kind} URI`);
  }
  const query = s.slice(prefix.length);
  if (query.includes(";")) fail("malformed", "URI query has a semicolon");
  const params = new Map();
  for (const piece of query.split("&")) {
    if (piece === "") continue;
    const eq = piece.indexOf("=");
    const key = unescape(eq < 0 ? piece : piece.slice(0, eq));
    const value = eq < 0 ? "" : unescape(piece.slice(eq + 1));
    if (!params.has(key)) params.set(key, []);
    params.get(key).push(value);
  }
  const v = params.get("v") ?? [];
  if (v.length !== 1 || v[0] !== "1") fail("version", `qrtalk:${kind} version ${JSON.stringify(v.join(","))}`);
  const out = {};
  for (const k of keys) {
    const vals = params.get(k) ?? [];
    if (vals.length !== 1) fail("malformed", `URI must have exactly one "${k}" parameter`);
    out[k] = vals[0];
  }
  if (params.size !== keys.length + 1) fail("malformed", "URI has unknown parameters");
  return out;
}

// isIPv6 reports whether s is an RFC 3986 IPv6address without a zone: 8
// groups of 1 to 4 hex digits (the last two possibly a dotted IPv4
// address), at most one "::" standing for one or more zero groups.
function isIPv6(s) {
  const octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
  const v4 = new RegExp(`(?:^|:)(?:${octet}\\.){3}${octet}$`).exec(s);
  let text = s;
  if (v4) text = s.slice(0, v4.index) + (v4[0].startsWith(":") ? ":" : "") + "0:0";
  const parts = text.split("::");
  if (parts.length > 2) return false;
  const groups = parts.flatMap((p) => (p === "" ? [] : p.split(":")));
  if (!groups.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  return parts.length === 2 ? groups.length <= 7 : groups.length === 8;
}

const asciiLower = (s) => s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));

/**
 * Checks a server URL, https://host[:port][/path], by the grammar of §7
 * and returns its canonical form: scheme and host letters in lower case,
 * the port as written, the path as written but for its trailing slashes.
 * Applied to a canonical form, it gives it back unchanged.
 */
export function checkServerURL(s) {
  const bad = (why) => fail("malformed", `server URL must be https://host[:port][/path]: ${why}`);
  if (typeof s !== "string") bad("not a string");
  if (s.length > MAX_URI_SIZE || utf8(s).length > MAX_URI_SIZE) bad("too long");
  if (/[?#@\\ \t\r\n]/.test(s)) bad("a query, fragment, user information or white space");
  if (!/^https:\/\//i.test(s)) bad("not https");
  const rest = s.slice(8);
  const slash = rest.indexOf("/");
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? "" : rest.slice(slash);
  let host;
  let port;
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0) bad("an unclosed IPv6 literal");
    if (!isIPv6(authority.slice(1, close))) bad("a malformed IPv6 literal");
    host = authority.slice(0, close + 1);
    port = authority.slice(close + 1);
    if (port !== "" && !port.startsWith(":")) bad("text after the IPv6 literal");
  } else {
    const colon = authority.indexOf(":");
    host = colon < 0 ? authority : authority.slice(0, colon);
    port = colon < 0 ? "" : authority.slice(colon);
    if (host === "") bad("no host");
    if (!/^[A-Za-z0-9\-._~!$&'()*+,;=]+$/.test(host)) bad("a character not allowed in a host name");
  }
  if (port === ":") bad("an empty port");
  if (port !== "" && !(/^:[1-9][0-9]{0,4}$/.test(port) && Number(port.slice(1)) <= 65535)) bad("a port outside 1 to 65535");
  if (/%(?![0-9A-Fa-f]{2})/.test(path)) bad("a malformed % escape");
  if (!/^[A-Za-z0-9\-._~!$&'()*+,;=:/[\]%]*$/.test(path)) bad("a character not allowed in a path");
  return "https://" + asciiLower(host) + port + path.replace(/\/+$/, "");
}

/** Checks the form of an invite token: 16 to 128 characters of [A-Za-z0-9_-]. */
export function checkToken(t) {
  if (typeof t !== "string" || !/^[A-Za-z0-9_-]{16,128}$/.test(t)) fail("malformed", "token must be 16 to 128 characters [A-Za-z0-9_-]");
  return t;
}

/**
 * A contact card, what a user shows as a QR code:
 * qrtalk:contact?v=1&s=<server>&sfp=<server fingerprint>&u=<user ID>&fp=<identity fingerprint>
 */
export class ContactCard {
  /** server: canonical URL; serverFP, identity: Fingerprints; user: user ID text. */
  constructor({ server, serverFP, user, identity }) {
    if (!(serverFP instanceof Fingerprint) || !(identity instanceof Fingerprint)) throw new TypeError("ContactCard fingerprints must be Fingerprints");
    Object.assign(this, { server, serverFP, user, identity });
    Object.freeze(this);
  }

  uri() {
    return `qrtalk:contact?v=1&s=${queryEscape(this.server)}&sfp=${this.serverFP}&u=${this.user}&fp=${this.identity}`;
  }

  /**
   * Checks, in constant time, that identityKey (a PublicKey) has the
   * card's fingerprint: the check that makes a scanned card an in-person
   * verification. mismatch otherwise.
   */
  async verify(identityKey) {
    if (!this.identity.equal(await identityFingerprint(identityKey))) fail("mismatch", "identity key does not match the scanned fingerprint");
  }
}

/** An invite: qrtalk:invite?v=1&s=<server>&sfp=<server fingerprint>&t=<token>. */
export class Invite {
  constructor({ server, serverFP, token }) {
    if (!(serverFP instanceof Fingerprint)) throw new TypeError("Invite serverFP must be a Fingerprint");
    Object.assign(this, { server, serverFP, token });
    Object.freeze(this);
  }

  uri() {
    return `qrtalk:invite?v=1&s=${queryEscape(this.server)}&sfp=${this.serverFP}&t=${queryEscape(this.token)}`;
  }
}

/** Parses a qrtalk:contact URI (§7). */
export function parseContactCard(uri) {
  const q = parseURI(uri, "contact", ["s", "sfp", "u", "fp"]);
  return new ContactCard({ server: checkServerURL(q.s), serverFP: parseFingerprint(q.sfp), user: parseUserID(q.u), identity: parseFingerprint(q.fp) });
}

/** Parses a qrtalk:invite URI (§7). */
export function parseInvite(uri) {
  const q = parseURI(uri, "invite", ["s", "sfp", "t"]);
  return new Invite({ server: checkServerURL(q.s), serverFP: parseFingerprint(q.sfp), token: checkToken(q.t) });
}
