// message.js: the message plaintext of QRTalk protocol v1 (docs/PROTOCOL.md
// §9): content type, group ID, body and attachment references, padded with
// zeros to a multiple of 256 bytes. Envelopes (envelope.js) encrypt it.
//
// A Message is a plain object:
//   { contentType: string, groupID: Uint8Array(16) | null, body: Uint8Array,
//     attachments: [{ blobID: Uint8Array(16), key: Uint8Array(32),
//                     sha256: Uint8Array(32), size: Number, name: string,
//                     mediaType: string }] }
// size is a Number (a BigInt only above 2^53 - 1, which no real file reaches).

import { fail } from "./errors.js";
import { checkBytes, concat, decodeUTF8, isZero, printableASCII, Reader, u16, u64, utf8, var16, var32, var8 } from "./wire.js";

export const MAX_BODY_SIZE = 256 * 1024;
export const MAX_ATTACHMENTS = 32;
export const MAX_CONTENT_TYPE_LEN = 127;
export const MAX_NAME_LEN = 255;
export const GROUP_ID_SIZE = 16;
export const BLOB_ID_SIZE = 16;
export const BLOB_KEY_SIZE = 32;
const PAD_BLOCK = 256;
const MAX_ATTACHMENT_SIZE = BLOB_ID_SIZE + BLOB_KEY_SIZE + 32 + 8 + 2 + MAX_NAME_LEN + 1 + MAX_CONTENT_TYPE_LEN;
export const MAX_PLAINTEXT_SIZE = 1 + MAX_CONTENT_TYPE_LEN + 1 + GROUP_ID_SIZE + 4 + MAX_BODY_SIZE + 2 + MAX_ATTACHMENTS * MAX_ATTACHMENT_SIZE + PAD_BLOCK;

const U64_MAX = (1n << 64n) - 1n;

function fixedField(b, size, what) {
  checkBytes(b, what);
  if (b.length !== size) fail("malformed", `${what} must be ${size} bytes`);
  return b;
}

function checkSize(size) {
  if (typeof size === "number" && Number.isSafeInteger(size) && size >= 0) return size;
  if (typeof size === "bigint" && size >= 0n && size <= U64_MAX) return size;
  fail("malformed", "attachment size must be a non-negative integer below 2^64");
}

const isWellFormed = (s) => (typeof s.isWellFormed === "function" ? s.isWellFormed() : !/[\ud800-\udfff]/.test(s.replace(/[\ud800-\udbff][\udc00-\udfff]/g, "")));

/**
 * Encodes and pads a message (§9.1, §9.2), after checking the rules of
 * §9.1: malformed, or too_large for a body or attachment count over the limit.
 */
export function encodeMessage(m) {
  if (typeof m?.contentType !== "string") fail("malformed", "content type must be a string");
  const ct = utf8(m.contentType);
  if (ct.length === 0 || ct.length > MAX_CONTENT_TYPE_LEN || !printableASCII(ct)) fail("malformed", `content type must be 1 to ${MAX_CONTENT_TYPE_LEN} printable ASCII characters`);
  const group = m.groupID == null ? new Uint8Array(0) : checkBytes(m.groupID, "group ID");
  if (group.length !== 0 && group.length !== GROUP_ID_SIZE) fail("malformed", `group ID must be empty or ${GROUP_ID_SIZE} bytes`);
  const body = m.body == null ? new Uint8Array(0) : checkBytes(m.body, "body");
  if (body.length > MAX_BODY_SIZE) fail("too_large", `body is ${body.length} bytes, at most ${MAX_BODY_SIZE} (send larger content as an attachment)`);
  const atts = m.attachments ?? [];
  if (atts.length > MAX_ATTACHMENTS) fail("too_large", `${atts.length} attachments, at most ${MAX_ATTACHMENTS}`);
  const parts = [var8(ct), var8(group), var32(body), u16(atts.length)];
  for (const a of atts) {
    const name = a.name ?? "";
    if (typeof name !== "string" || !isWellFormed(name)) fail("malformed", "attachment name must be valid UTF-8");
    const nameBytes = utf8(name);
    if (nameBytes.length > MAX_NAME_LEN) fail("malformed", `attachment name must be at most ${MAX_NAME_LEN} bytes`);
    const media = utf8(a.mediaType ?? "");
    if (media.length > MAX_CONTENT_TYPE_LEN || !printableASCII(media)) fail("malformed", `attachment media type must be printable ASCII of at most ${MAX_CONTENT_TYPE_LEN} bytes`);
    parts.push(
      fixedField(a.blobID, BLOB_ID_SIZE, "blob ID"),
      fixedField(a.key, BLOB_KEY_SIZE, "blob key"),
      fixedField(a.sha256, 32, "blob SHA-256"),
      u64(checkSize(a.size)),
      var16(nameBytes),
      var8(media),
    );
  }
  const used = parts.reduce((n, p) => n + p.length, 0);
  const padded = Math.ceil(used / PAD_BLOCK) * PAD_BLOCK;
  return concat(...parts, new Uint8Array(padded - used));
}

/** Decodes a padded plaintext by the steps of §9.3. The result shares no memory with p. */
export function decodeMessage(p) {
  checkBytes(p, "plaintext");
  if (p.length > MAX_PLAINTEXT_SIZE) fail("too_large", `plaintext is ${p.length} bytes`);
  const r = new Reader(p, "message");
  const contentType = r.var8(MAX_CONTENT_TYPE_LEN);
  const groupID = r.var8(GROUP_ID_SIZE);
  const body = r.var32(MAX_BODY_SIZE);
  const count = r.u16();
  if (count > MAX_ATTACHMENTS) fail("malformed", `message: ${count} attachments`);
  const raw = [];
  for (let i = 0; i < count; i++) {
    raw.push({
      blobID: r.fixed(BLOB_ID_SIZE).slice(),
      key: r.fixed(BLOB_KEY_SIZE).slice(),
      sha256: r.fixed(32).slice(),
      size: r.u64(),
      name: r.var16(MAX_NAME_LEN),
      mediaType: r.var8(MAX_CONTENT_TYPE_LEN),
    });
  }
  const used = r.off;
  if (!isZero(r.fixed(r.remaining))) fail("malformed", "message padding is not zero");
  if (Math.ceil(used / PAD_BLOCK) * PAD_BLOCK !== p.length) fail("malformed", "message padding has the wrong length");
  if (contentType.length === 0 || !printableASCII(contentType)) fail("malformed", "content type must be printable ASCII");
  if (groupID.length !== 0 && groupID.length !== GROUP_ID_SIZE) fail("malformed", "group ID must be empty or 16 bytes");
  const attachments = raw.map((a) => {
    const name = decodeUTF8(a.name);
    if (name === null) fail("malformed", "attachment name is not valid UTF-8");
    if (!printableASCII(a.mediaType)) fail("malformed", "attachment media type must be printable ASCII");
    const size = a.size <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(a.size) : a.size;
    return { blobID: a.blobID, key: a.key, sha256: a.sha256, size, name, mediaType: decodeUTF8(a.mediaType) };
  });
  return {
    contentType: decodeUTF8(contentType),
    groupID: groupID.length ? groupID.slice() : null,
    body: body.slice(),
    attachments,
  };
}
