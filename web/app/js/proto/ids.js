// ids.js: the identifiers of QRTalk protocol v1 (docs/PROTOCOL.md §4).
//
// In this module's API an ID is its canonical text form, a string: a user ID
// is 26 lowercase base32 characters, a device ID 16 and a message ID 32
// lowercase hex characters. Strings compare with === and key a Map, as Go's
// ID arrays do. The *Bytes functions turn text into the 8 or 16 bytes the
// wire carries, the *String functions turn bytes back into text.

import { fail } from "./errors.js";
import { checkBytes, fromHex, isZero, toHex } from "./wire.js";
import { randomBytes } from "./primitives.js";

export const USER_ID_SIZE = 16;
export const DEVICE_ID_SIZE = 8;
export const MESSAGE_ID_SIZE = 16;

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** The text form of 16 user ID bytes (no check that they are not zero). */
export function userIDString(b) {
  checkBytes(b, "user ID");
  if (b.length !== USER_ID_SIZE) throw new TypeError(`user ID must be ${USER_ID_SIZE} bytes`);
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const x of b) {
    acc = ((acc << 8) | x) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32[(acc >> bits) & 31];
    }
  }
  if (bits > 0) out += BASE32[(acc << (5 - bits)) & 31];
  return out;
}

/**
 * Parses a user ID as people type it: '-' and ' ' are removed and ASCII
 * capitals lowered (ASCII only: the Kelvin sign is not a k); the rest must
 * be 26 canonical base32 characters of a non-zero ID. Returns the canonical
 * text form.
 */
export function parseUserID(s) {
  return userIDString(userIDBytes(s));
}

/** The 16 bytes of a user ID given in text (parsed as parseUserID does). */
export function userIDBytes(s) {
  if (typeof s !== "string") fail("malformed", "user ID must be a string");
  const t = s.replace(/[- ]/g, "").replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
  if (t.length !== 26) fail("malformed", `user ID must be 26 base32 characters, got ${t.length}`);
  const id = new Uint8Array(USER_ID_SIZE);
  let acc = 0;
  let bits = 0;
  let n = 0;
  for (const c of t) {
    const v = BASE32.indexOf(c);
    if (v < 0) fail("malformed", "user ID is not valid base32");
    acc = ((acc << 5) | v) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      id[n++] = (acc >> bits) & 0xff;
    }
  }
  // The last character carries 2 unused bits, which must be zero.
  if ((acc & ((1 << bits) - 1)) !== 0) fail("malformed", "user ID is not canonical base32");
  if (isZero(id)) fail("malformed", "user ID is zero");
  return id;
}

function hexIDBytes(s, size, what) {
  if (typeof s !== "string" || s.length !== 2 * size) fail("malformed", `${what} must be ${2 * size} hexadecimal characters`);
  const id = fromHex(s, what);
  if (isZero(id)) fail("malformed", `${what} is zero`);
  return id;
}

function hexIDString(b, size, what) {
  checkBytes(b, what);
  if (b.length !== size) throw new TypeError(`${what} must be ${size} bytes`);
  return toHex(b);
}

/** Checks a device ID's text form (16 lowercase hex characters, not zero) and returns it. */
export function parseDeviceID(s) {
  hexIDBytes(s, DEVICE_ID_SIZE, "device ID");
  return s;
}
export const deviceIDBytes = (s) => hexIDBytes(s, DEVICE_ID_SIZE, "device ID");
export const deviceIDString = (b) => hexIDString(b, DEVICE_ID_SIZE, "device ID");

/** Checks a message ID's text form (32 lowercase hex characters, not zero) and returns it. */
export function parseMessageID(s) {
  hexIDBytes(s, MESSAGE_ID_SIZE, "message ID");
  return s;
}
export const messageIDBytes = (s) => hexIDBytes(s, MESSAGE_ID_SIZE, "message ID");
export const messageIDString = (b) => hexIDString(b, MESSAGE_ID_SIZE, "message ID");

// fresh returns size random bytes that are not all zero (a zero ID is never
// valid; with 64 or 128 random bits this loop runs once).
function fresh(size) {
  for (;;) {
    const b = randomBytes(size);
    if (!isZero(b)) return b;
  }
}

/** A fresh random user ID, as text. */
export const newUserID = () => userIDString(fresh(USER_ID_SIZE));
/** A fresh random device ID, as text. */
export const newDeviceID = () => toHex(fresh(DEVICE_ID_SIZE));
/** A fresh random message ID, as text. */
export const newMessageID = () => toHex(fresh(MESSAGE_ID_SIZE));
