// run.mjs: the protocol module (web/app/js/proto) in a real browser, as
// TestProtoInChromium (web/protobrowser_test.go) serves it: every vector of
// the keys, certificates, revocations, envelopes, channels, URIs, blobs and
// resumptions sections, the link known answers, device keys kept non-extractable through IndexedDB, and a 10 MiB
// blob. It reports on the console: "SMOKE FAIL ..." lines, then
// "SMOKE DONE pass=N fail=M".
import * as proto from "/app/js/proto/index.js";
import { clientSessionFromSecret } from "/app/js/proto/channel.js";
import { acceptResumeWithRandom } from "/app/js/proto/resume.js";
let pass = 0, fail = 0;
const log = (...a) => console.log("SMOKE", ...a);
async function check(name, fn) {
  try { await fn(); pass++; } catch (e) { fail++; log("FAIL", name, e && e.stack || e); }
}
async function refuses(code, fn) {
  try { await fn(); } catch (e) { if (e.code === code) return; throw new Error(`got ${e.code} ${e.message}, want ${code}`); }
  throw new Error(`succeeded, want ${code}`);
}
const eq = (a, b, what) => { if (proto.toHex(a) !== proto.toHex(b)) throw new Error(`${what} differs`); };
let v;
try {
  v = await (await fetch("/testdata/vectors.json")).json();
} catch (e) {
  log(`DONE pass=0 fail=1 (vectors: ${e})`);
  throw e;
}
const b64 = (s) => (s ? proto.fromBase64(s) : new Uint8Array(0));
const pubs = {}, privs = {};
for (const kv of v.keys) await check(`key ${kv.name}`, async () => {
  if (kv.error) return refuses(kv.error, () => proto.parsePublicKey(b64(kv.public_spki)));
  pubs[kv.name] = proto.parsePublicKey(b64(kv.public_spki));
  if ((await proto.identityFingerprint(pubs[kv.name])).toString() !== kv.identity_fingerprint) throw new Error("fp");
  if (kv.private_pkcs8) { privs[kv.name] = await proto.parsePrivateKey(b64(kv.private_pkcs8), { extractable: true }); eq(await privs[kv.name].bytes(), b64(kv.private_pkcs8), "pkcs8"); }
});
for (const cv of v.certificates) await check(`cert ${cv.name}`, async () => {
  const run = async () => { const c = proto.parseDeviceCert(b64(cv.data)); await c.verify(pubs[cv.identity_key]); return c; };
  if (cv.error) return refuses(cv.error, run);
  const c = await run(); if (c.user !== cv.user) throw new Error("user");
});
for (const rv of v.revocations) await check(`revocation ${rv.name}`, async () => {
  const run = async () => { const r = proto.parseRevocation(b64(rv.data)); await r.verify(pubs[rv.identity_key]); return r; };
  if (rv.error) return refuses(rv.error, run);
  if ((await run()).revoked !== rv.time * 1000) throw new Error("time");
});
for (const uv of v.uris) await check(`uri ${uv.uri}`, async () => {
  const parse = uv.kind === "contact" ? proto.parseContactCard : proto.parseInvite;
  if (uv.error) return refuses(uv.error, () => parse(uv.uri));
  if (parse(uv.uri).server !== uv.server) throw new Error("server");
});
await check("link known answers (PROTOCOL.md 17.9)", async () => {
  const seq = (n, from) => Uint8Array.from({ length: n }, (_, i) => from + i);
  const code = new proto.LinkCode({ server: "https://chat.example.org", serverFP: await proto.serverFingerprint(pubs.server), user: v.certificates[0].user, mailbox: seq(16, 1), secret: seq(32, 0x20) });
  if ((await code.responseMailbox()) !== "fbd7e293be63249fadcf0448ff599499") throw new Error("response mailbox");
});
for (const ev of v.envelopes) await check(`envelope ${ev.name}`, async () => {
  const run = () => proto.open(proto.parseEnvelope(b64(ev.envelope)), { user: ev.recipient_user, device: ev.recipient_device, key: privs[ev.recipient_key] }, ev.sender_identity_key ? pubs[ev.sender_identity_key] : null, ev.now_ms);
  if (ev.error) return refuses(ev.error, run);
  const { message, status } = await run();
  if (status !== ev.status) throw new Error("status"); eq(message.body, b64(ev.body), "body");
});
for (const cv of v.channels) await check(`channel ${cv.name}`, async () => {
  const accept = (cache) => proto.acceptSession(proto.parseChannelSetup(b64(cv.setup)), privs[cv.server_key], pubs[cv.device_auth_key], cache, cv.lifetime_s * 1000, cv.now_ms);
  const cache = new proto.MemoryReplayCache();
  if (cv.error) { if (cv.error === "replay") await accept(cache); return refuses(cv.error, () => accept(cache)); }
  const { session, confirm } = await accept(cache);
  eq(confirm, b64(cv.confirm), "confirm");
  const c = await clientSessionFromSecret(proto.fromHex(cv.secret), b64(cv.setup), cv.now_ms);
  await c.confirm(confirm, cv.now_ms);
  for (const fv of cv.frames) {
    const run = async () => fv.kind === "request" ? (await session.openRequest(fv.method, fv.path, b64(fv.frame), fv.now_ms)).body
      : fv.kind === "response" ? c.openResponse(fv.request_counter, fv.method, fv.path, b64(fv.frame), fv.now_ms) : c.openPush(b64(fv.frame), fv.now_ms);
    if (fv.error) await refuses(fv.error, run); else eq(await run(), b64(fv.body), "frame body");
  }
});
for (const bv of v.blobs) await check(`blob ${bv.name}`, async () => {
  const key = proto.fromHex(bv.key);
  if (bv.error) return refuses(bv.error, () => proto.decryptBlob(new Blob([b64(bv.encrypted)]), key));
  eq(await proto.decryptBlob(new Blob([b64(bv.encrypted)]), key), b64(bv.plaintext), "plaintext");
  eq((await proto.encryptBlob(new Blob([b64(bv.plaintext)]).stream(), key)).data, b64(bv.encrypted), "blob");
});
for (const rv of v.resumptions) await check(`resumption ${rv.name}`, async () => {
  const tk = await proto.newTicketKeys(privs[rv.server_key]);
  const cache = new proto.MemoryReplayCache();
  const random = rv.server_random ? proto.fromHex(rv.server_random) : new Uint8Array(32);
  const accept = async () => { const q = proto.parseResume(b64(rv.resume)); await tk.check(q, rv.now_ms); return acceptResumeWithRandom(q, cache, rv.lifetime_s * 1000, rv.now_ms, random); };
  if (rv.error === "replay") await accept();
  if (rv.error) return refuses(rv.error, accept);
  eq((await accept()).answer, b64(rv.answer), "answer");
});
await check("device keys in IndexedDB, non-extractable, still working", async () => {
  const { encryption, auth } = await proto.generateDeviceKeys();
  const db = await new Promise((ok, ko) => { const r = indexedDB.open("smoke", 1); r.onupgradeneeded = () => r.result.createObjectStore("k"); r.onsuccess = () => ok(r.result); r.onerror = () => ko(r.error); });
  const put = (k, val) => new Promise((ok, ko) => { const t = db.transaction("k", "readwrite"); t.objectStore("k").put(val, k); t.oncomplete = ok; t.onerror = () => ko(t.error); });
  const get = (k) => new Promise((ok, ko) => { const r = db.transaction("k").objectStore("k").get(k); r.onsuccess = () => ok(r.result); r.onerror = () => ko(r.error); });
  await put("enc", await encryption.toStorage()); await put("auth", await auth.toStorage());
  const enc2 = proto.privateKeyFromStorage(await get("enc")); const auth2 = proto.privateKeyFromStorage(await get("auth"));
  if ((await enc2.cryptoKey("decrypt")).extractable) throw new Error("extractable after storage");
  const user = proto.newUserID(), dev = proto.newDeviceID();
  const env = proto.parseEnvelope(await proto.seal({ contentType: "text/plain", body: new TextEncoder().encode("hi") }, { user, device: dev, identity: null }, [{ user, device: proto.newDeviceID(), key: enc2.public() }], { ttl: 60000, unsigned: true }));
  const { message } = await env.open({ user, device: env.devices[0].device, key: enc2 }, null, Date.now());
  if (new TextDecoder().decode(message.body) !== "hi") throw new Error("round trip");
  const { session, setup } = await proto.newClientSession({ user, device: dev, authKey: auth2 }, pubs.server, Date.now());
  const { confirm } = await proto.acceptSession(proto.parseChannelSetup(setup), privs.server, auth2.public(), new proto.MemoryReplayCache(), 0, Date.now());
  await session.confirm(confirm, Date.now());
});
await check("10 MiB blob", async () => {
  const key = proto.newBlobKey();
  const plain = new Uint8Array(10 * 1024 * 1024 + 5);
  const t0 = performance.now();
  const { data, sha256 } = await proto.encryptBlob(new Blob([plain]), key);
  const back = await proto.decryptBlob(new Blob([data]), key, { sha256 });
  if (back.length !== plain.length) throw new Error("size");
  log("10 MiB round trip ms", Math.round(performance.now() - t0));
});
log(`DONE pass=${pass} fail=${fail}`);
