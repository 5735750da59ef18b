// interop.mjs: the JavaScript side of web/interop_test.go. It reads one JSON
// request per line on stdin, runs it with the protocol module
// (web/app/js/proto) and answers one JSON line on stdout:
//   {"id": n, "op": "...", ...}  ->  {"id": n, ...result} or {"id": n, "error": {"code", "message"}}
// Binary values are standard base64 (Go's encoding of []byte); times are
// Unix milliseconds. State that spans requests (keys, channel sessions,
// link codes) is kept here under names the Go side chooses.
import { createInterface } from "node:readline";
import * as proto from "../app/js/proto/index.js";
import { sealPlaintext } from "../app/js/proto/envelope.js";
import { sealLinkMessage } from "../app/js/proto/provision.js";

const b64 = (s) => (s ? proto.fromBase64(s) : new Uint8Array(0));
const enc = (b) => proto.toBase64(b);

const privs = new Map(); // PKCS #8 base64 -> PrivateKey
async function priv(pkcs8) {
  if (!privs.has(pkcs8)) privs.set(pkcs8, await proto.parsePrivateKey(b64(pkcs8), { extractable: true }));
  return privs.get(pkcs8);
}
const pub = (spki) => proto.parsePublicKey(b64(spki));
const state = new Map();
const replayCache = new proto.MemoryReplayCache(); // one server's memory of setups and tickets
const ticketKeyCache = new Map();
async function ticketKeys(pkcs8) {
  if (!ticketKeyCache.has(pkcs8)) ticketKeyCache.set(pkcs8, await proto.newTicketKeys(await priv(pkcs8)));
  return ticketKeyCache.get(pkcs8);
}

function messageIn(m) {
  return {
    contentType: m.content_type,
    groupID: m.group_id ? b64(m.group_id) : null,
    body: b64(m.body),
    attachments: (m.attachments ?? []).map((a) => ({ blobID: b64(a.blob_id), key: b64(a.key), sha256: b64(a.sha256), size: a.size, name: a.name, mediaType: a.media_type })),
  };
}

function messageOut(m) {
  return {
    content_type: m.contentType,
    group_id: m.groupID ? enc(m.groupID) : null,
    body: enc(m.body),
    attachments: m.attachments.map((a) => ({ blob_id: enc(a.blobID), key: enc(a.key), sha256: enc(a.sha256), size: Number(a.size), name: a.name, media_type: a.mediaType })),
  };
}

const ops = {
  async seal(r) {
    const from = { user: r.user, device: r.device, identity: r.identity ? await priv(r.identity) : null };
    const to = r.to.map((d) => ({ user: d.user, device: d.device, key: pub(d.key) }));
    return { envelope: enc(await proto.seal(messageIn(r.message), from, to, { ttl: r.ttl_ms, sent: r.sent_ms, unsigned: r.unsigned })) };
  },
  async open(r) {
    const env = proto.parseEnvelope(b64(r.envelope));
    const { message, status } = await env.open({ user: r.user, device: r.device, key: await priv(r.key) }, r.sender_identity ? pub(r.sender_identity) : null, r.now_ms);
    return { status, message: messageOut(message), message_id: env.id, devices: env.devices, delivered: env.devices.map((_, i) => enc(env.forDevice(i))) };
  },
  async certify(r) {
    const c = await proto.certifyDevice(await priv(r.identity), r.user, r.device, pub(r.enc), pub(r.auth), r.created_ms);
    return { cert: enc(c.bytes()) };
  },
  async revoke(r) {
    return { revocation: enc((await proto.revokeDevice(await priv(r.identity), r.user, r.device, r.at_ms)).bytes()) };
  },
  async device_list(r) {
    const list = await proto.verifyDeviceList(pub(r.identity), r.user, r.certs.map(b64), r.revocations.map(b64));
    return { devices: list.map((c) => ({ device: c.device, created_ms: c.created, enc: enc(c.encryptionKey.bytes()), auth: enc(c.authKey.bytes()) })) };
  },
  async fingerprints(r) {
    const k = pub(r.key);
    const id = await proto.identityFingerprint(k);
    return { identity: id.toString(), numeric: id.numeric(), server: (await proto.serverFingerprint(k)).toString() };
  },
  async contact_card(r) {
    const c = proto.parseContactCard(r.uri);
    await c.verify(pub(r.identity));
    const mine = new proto.ContactCard({ server: c.server, serverFP: c.serverFP, user: c.user, identity: c.identity });
    return { server: c.server, server_fp: c.serverFP.toString(), user: c.user, identity: c.identity.toString(), uri: mine.uri() };
  },
  async encrypt_blob(r) {
    const { data, sha256, size } = await proto.encryptBlob(b64(r.plaintext), b64(r.key));
    return { blob: enc(data), sha256: enc(sha256), size };
  },
  async decrypt_blob(r) {
    return { plaintext: enc(await proto.decryptBlob(new Blob([b64(r.blob)]), b64(r.key), { sha256: b64(r.sha256) })) };
  },
  // The channel, client end in JS.
  async client_setup(r) {
    const { session, setup } = await proto.newClientSession({ user: r.user, device: r.device, authKey: await priv(r.auth) }, pub(r.server), r.now_ms);
    state.set(r.name, session);
    return { setup: enc(setup), session_id: session.id };
  },
  async client_confirm(r) {
    const s = state.get(r.name);
    await s.confirm(b64(r.frame), r.now_ms);
    return { expires_ms: s.expires };
  },
  async client_request(r) {
    const { frame, counter } = await state.get(r.name).sealRequest(r.method, r.path, b64(r.body));
    return { frame: enc(frame), counter };
  },
  async client_response(r) {
    return { body: enc(await state.get(r.name).openResponse(r.counter, r.method, r.path, b64(r.frame), r.now_ms)) };
  },
  async client_push(r) {
    return { body: enc(await state.get(r.name).openPush(b64(r.frame), r.now_ms)) };
  },
  // The channel, server end in JS.
  async server_accept(r) {
    const setup = proto.parseChannelSetup(b64(r.setup));
    const { session, confirm } = await proto.acceptSession(setup, await priv(r.server), pub(r.auth), replayCache, r.lifetime_ms, r.now_ms);
    state.set(r.name, session);
    return { confirm: enc(confirm), session_id: session.id, expires_ms: session.expires };
  },
  async server_request(r) {
    const { body, counter } = await state.get(r.name).openRequest(r.method, r.path, b64(r.frame), r.now_ms);
    return { body: enc(body), counter };
  },
  async server_response(r) {
    return { frame: enc(await state.get(r.name).sealResponse(r.counter, r.method, r.path, b64(r.body))) };
  },
  // A plaintext sealed as it is, however malformed, in an unsigned envelope:
  // the differential test's way to feed both decoders of section 9.3.
  async encode_message(r) {
    return { plaintext: enc(proto.encodeMessage(messageIn(r.message))) };
  },
  async seal_plaintext(r) {
    const env = await sealPlaintext(
      b64(r.plaintext),
      { user: proto.userIDBytes(r.user), device: proto.deviceIDBytes(r.device) },
      [{ user: proto.userIDBytes(r.to_user), device: proto.deviceIDBytes(r.to_device), key: pub(r.to_key) }],
      [proto.userIDBytes(r.to_user)],
      { id: proto.randomBytes(16), sent: r.sent_ms, ttl: 60000, unsigned: true },
    );
    return { envelope: enc(env) };
  },
  async seal_link_plain(r) {
    return { message: enc(await sealLinkMessage(proto.parseLinkCode(r.uri), r.type, b64(r.plaintext))) };
  },
  // Resumption, device in JS.
  async client_ticket(r) {
    const t = await state.get(r.name).ticket(b64(r.ticket), r.now_ms);
    state.set(`${r.name}/ticket`, t.toBytes());
    return { expires_ms: t.expires, user: t.user, device: t.device };
  },
  async client_resume(r) {
    const { resumption, message } = await proto.resume(proto.parseTicket(state.get(`${r.name}/ticket`)), r.now_ms);
    state.set(`${r.name}/resumption`, resumption);
    return { message: enc(message) };
  },
  async client_resume_finish(r) {
    const session = await state.get(`${r.name}/resumption`).finish(b64(r.answer), r.now_ms);
    state.set(r.name, session);
    return { session_id: session.id, expires_ms: session.expires };
  },
  // Resumption, server in JS.
  async server_issue(r) {
    return { ticket: enc(await (await ticketKeys(r.server)).issueTicket(state.get(r.name), r.now_ms)) };
  },
  async server_resume(r) {
    const q = proto.parseResume(b64(r.resume));
    await (await ticketKeys(r.server)).check(q, r.now_ms);
    const { session, answer } = await proto.acceptResume(q, replayCache, r.lifetime_ms, r.now_ms);
    state.set(r.name, session);
    return { answer: enc(answer), session_id: session.id, expires_ms: session.expires };
  },
  // Provisioning: B (the new device) in JS.
  async link_b_request(r) {
    const code = proto.parseLinkCode(r.uri);
    const req = { device: r.device, encryptionKey: pub(r.enc), authKey: pub(r.auth) };
    state.set(r.name, { code, req });
    return { request: enc(await proto.sealLinkRequest(code, req)), request_mailbox: code.requestMailbox(), response_mailbox: await code.responseMailbox() };
  },
  async link_b_response(r) {
    const { code, req } = state.get(r.name);
    const resp = await proto.openLinkResponse(code, req, b64(r.response), { extractable: true });
    return { user: resp.user, identity: enc(await resp.identity.bytes()), cert: enc(resp.cert.bytes()) };
  },
  // Provisioning: A (the existing device) in JS.
  async link_a_code(r) {
    const code = proto.newLinkCode(r.server, proto.parseFingerprint(r.server_fp), r.user);
    state.set(r.name, { code });
    return { uri: code.uri(), request_mailbox: code.requestMailbox(), response_mailbox: await code.responseMailbox() };
  },
  async link_a_answer(r) {
    const { code } = state.get(r.name);
    const req = await proto.openLinkRequest(code, b64(r.request));
    const identity = await priv(r.identity);
    const cert = await proto.certifyDevice(identity, code.user, req.device, req.encryptionKey, req.authKey, r.created_ms);
    return { device: req.device, response: enc(await proto.sealLinkResponse(code, req, { user: code.user, identity, cert })) };
  },
};

// describe is the text the differential test compares an opened message by.
function describe(status, m) {
  const atts = m.attachments.map((a) => [proto.toHex(a.blobID), proto.toHex(a.key), proto.toHex(a.sha256), String(a.size), enc(new TextEncoder().encode(a.name)), a.mediaType].join(":"));
  return [status, m.contentType, enc(m.body), m.groupID ? proto.toHex(m.groupID) : "", ...atts].join("/");
}

// check runs one parser (and, where the object is signed or sealed, the
// opening) on input that may be anything, for the differential test: the
// answer is the error code, "" on success, and the canonical result of the
// string parsers.
const checks = {
  public_key: (r) => proto.parsePublicKey(b64(r.data)).bytes(),
  private_key: async (r) => (await proto.parsePrivateKey(b64(r.data))).public().bytes(),
  cert: async (r) => {
    const c = proto.parseDeviceCert(b64(r.data));
    await c.verify(pub(r.identity));
    return `${c.user}/${c.device}/${c.created}`;
  },
  revocation: async (r) => {
    const v = proto.parseRevocation(b64(r.data));
    await v.verify(pub(r.identity));
    return `${v.user}/${v.device}/${v.revoked}`;
  },
  envelope: async (r) => {
    const env = proto.parseEnvelope(b64(r.data));
    const { message, status } = await env.open({ user: r.user, device: r.device, key: await priv(r.key) }, r.identity ? pub(r.identity) : null, r.now_ms);
    return describe(status, message);
  },
  setup: async (r) => {
    const setup = proto.parseChannelSetup(b64(r.data));
    const { session } = await proto.acceptSession(setup, await priv(r.key), pub(r.identity), new proto.MemoryReplayCache(), 0, r.now_ms);
    return session.id;
  },
  blob: async (r) => enc(await proto.decryptBlob(b64(r.data), b64(r.key))),
  public_key_pem: (r) => proto.parsePublicKeyPEM(r.text).bytes(),
  private_key_pem: async (r) => (await proto.parsePrivateKeyPEM(r.text)).public().bytes(),
  frame: async (r) => {
    const setup = proto.parseChannelSetup(b64(r.setup));
    const { session } = await proto.acceptSession(setup, await priv(r.key), pub(r.identity), new proto.MemoryReplayCache(), 0, r.now_ms);
    const { body, counter } = await session.openRequest(r.method, r.path, b64(r.data), r.now_ms);
    return `${counter}/${enc(body)}`;
  },
  link_request: async (r) => {
    const req = await proto.openLinkRequest(proto.parseLinkCode(r.text), b64(r.data));
    return req.device;
  },
  resume: async (r) => {
    const q = proto.parseResume(b64(r.data));
    await (await ticketKeys(r.key)).check(q, r.now_ms);
    return `${q.user}/${q.device}`;
  },
  link_response: async (r) => {
    const req = { device: r.device, encryptionKey: pub(r.enc), authKey: pub(r.auth) };
    const resp = await proto.openLinkResponse(proto.parseLinkCode(r.text), req, b64(r.data));
    return `${resp.user}/${enc(resp.identity.public().bytes())}/${enc(resp.cert.bytes())}`;
  },
  contact: (r) => proto.parseContactCard(r.text).uri(),
  invite: (r) => proto.parseInvite(r.text).uri(),
  link: (r) => proto.parseLinkCode(r.text).uri(),
  server_url: (r) => proto.checkServerURL(r.text),
  user_id: (r) => proto.parseUserID(r.text),
  device_id: (r) => proto.parseDeviceID(r.text),
  message_id: (r) => proto.parseMessageID(r.text),
  link_mailbox: (r) => proto.parseLinkMailbox(r.text),
  token: (r) => proto.checkToken(r.text),
  fingerprint: (r) => proto.parseFingerprint(r.text).toString(),
};
ops.check = async (r) => {
  try {
    const out = await checks[r.kind](r);
    return { code: "", result: out instanceof Uint8Array ? enc(out) : String(out) };
  } catch (e) {
    if (e instanceof proto.ProtocolError) return { code: e.code };
    throw e;
  }
};

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let req;
  let out;
  try {
    req = JSON.parse(line);
    const op = ops[req.op];
    if (!op) throw new Error(`unknown op ${req.op}`);
    out = { id: req.id, ...(await op(req)) };
  } catch (e) {
    out = { id: req?.id, error: { code: e instanceof proto.ProtocolError ? e.code : "exception", message: String(e?.stack ?? e) } };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
