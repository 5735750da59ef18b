// Envelopes and message plaintexts (docs/PROTOCOL.md §9, §10) against the
// shared test vectors: every vector opened, the deterministic parts of
// sealing compared byte for byte, and round trips.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as proto from "../app/js/proto/index.js";
import { sealPlaintext } from "../app/js/proto/envelope.js";
import { b64, bytes, hex, rejectsWith, vectorKeys, vectors } from "./proto-helpers.mjs";

async function openVector(ev) {
  const { pubs, privs } = await vectorKeys();
  const env = proto.parseEnvelope(b64(ev.envelope));
  const sender = ev.sender_identity_key ? pubs[ev.sender_identity_key] : null;
  return proto.open(env, { user: ev.recipient_user, device: ev.recipient_device, key: privs[ev.recipient_key] }, sender, ev.now_ms);
}

function checkAttachments(got, want = []) {
  assert.equal(got.length, want.length);
  got.forEach((a, i) => {
    const w = want[i];
    assert.deepEqual(
      { blob_id: hex(a.blobID), key: hex(a.key), sha256: hex(a.sha256), size: String(a.size), name: a.name, media_type: a.mediaType },
      w,
    );
  });
}

test("vectors: envelopes", async (t) => {
  for (const ev of vectors.envelopes) {
    await t.test(ev.name, async () => {
      if (ev.error) return void (await rejectsWith(ev.error, () => openVector(ev), ev.name));
      const { message, status } = await openVector(ev);
      assert.equal(status, ev.status);
      assert.equal(message.contentType, ev.content_type);
      assert.deepEqual(message.body, b64(ev.body));
      assert.deepEqual(message.groupID, ev.group_id ? b64(ev.group_id) : null);
      checkAttachments(message.attachments, ev.attachments);
    });
  }
});

test("envelopes: parsed fields", async () => {
  const ev = vectors.envelopes.find((e) => e.name === "two-devices-group-with-attachment-bob");
  const env = proto.parseEnvelope(b64(ev.envelope));
  assert.match(env.id, /^[0-9a-f]{32}$/);
  assert.equal(env.ttl, 5 * 60 * 1000);
  assert.equal(env.expires(), env.sent + env.ttl);
  assert.ok(env.signed());
  assert.equal(env.recipients.length, 2);
  assert.ok(env.isRecipient(ev.recipient_user));
  assert.equal(env.devices.length, 2);
  assert.ok(env.devices.some((d) => d.user === ev.recipient_user && d.device === ev.recipient_device));
  assert.ok(Object.isFrozen(env));
});

test("envelopes: delivered form (§10.6) is the vector's, byte for byte", async () => {
  const ev = vectors.envelopes.find((e) => e.name === "two-devices-group-with-attachment-bob");
  const delivered = vectors.envelopes.find((e) => e.name === "two-devices-as-delivered-to-bob");
  const env = proto.parseEnvelope(b64(ev.envelope));
  const i = env.devices.findIndex((d) => d.user === ev.recipient_user && d.device === ev.recipient_device);
  assert.deepEqual(proto.forDevice(env, i), b64(delivered.envelope));
  const one = proto.parseEnvelope(proto.forDevice(env, i));
  assert.deepEqual(one.forDevice(0), one.bytes(), "a one-entry envelope is delivered as it is");
  assert.throws(() => env.forDevice(2), RangeError);
});

// Envelope layout offsets (§10.1) of the parts sealing computes without
// RSA randomness: header, nonce, commitment, ciphertext.
function parts(p) {
  const nu = (p[55] << 8) | p[56];
  const h = 57 + 16 * nu;
  const nd = (p[h] << 8) | p[h + 1];
  const t = h + 2 + 408 * nd;
  const c = new DataView(p.buffer, p.byteOffset).getUint32(t + 44);
  return { header: p.subarray(0, h), nonce: p.subarray(t, t + 12), commitment: p.subarray(t + 12, t + 44), ciphertext: p.subarray(t + 48, t + 48 + c), sigLength: p.length - (t + 48 + c) - 2 };
}

test("envelopes: sealing side, byte for byte where deterministic", async (t) => {
  const { pubs, privs } = await vectorKeys();
  for (const ev of vectors.envelopes.filter((e) => !e.error && e.message_key && !e.name.includes("delivered"))) {
    await t.test(ev.name, async () => {
      const want = b64(ev.envelope);
      const env = proto.parseEnvelope(want);
      const { message } = await openVector(ev);
      // The plaintext encoding and padding (§9) is Go's, byte for byte.
      assert.deepEqual(proto.encodeMessage(message), b64(ev.plaintext));
      // With the vector's message key and nonce, the header, commitment and
      // ciphertext are Go's too; the wrapped keys and the signature are
      // randomized (RSA-OAEP, RSA-PSS), so they must only open and verify.
      const keyFor = { [ev.recipient_user]: pubs[ev.recipient_key] };
      const devices = env.devices.map((d) => ({ user: proto.userIDBytes(d.user), device: proto.deviceIDBytes(d.device), key: keyFor[d.user] ?? pubs["alice-laptop-enc"] }));
      const users = env.recipients.map(proto.userIDBytes);
      const sealed = await sealPlaintext(
        b64(ev.plaintext),
        { user: proto.userIDBytes(env.sender), device: proto.deviceIDBytes(env.senderDevice), identity: privs["alice-identity"] },
        devices,
        users,
        { id: proto.fromHex(env.id), sent: env.sent, ttl: env.ttl, unsigned: !env.signed() },
        { key: proto.fromHex(ev.message_key), nonce: parts(want).nonce.slice() },
      );
      const got = parts(sealed);
      const exp = parts(want);
      assert.deepEqual(got.header, exp.header);
      assert.deepEqual(got.nonce, exp.nonce);
      assert.deepEqual(got.commitment, exp.commitment);
      assert.deepEqual(got.ciphertext, exp.ciphertext);
      assert.equal(got.sigLength, exp.sigLength);
      assert.equal(sealed.length, want.length);
      const reopened = await proto.open(proto.parseEnvelope(sealed), { user: ev.recipient_user, device: ev.recipient_device, key: privs[ev.recipient_key] }, pubs["alice-identity"], ev.now_ms);
      assert.equal(reopened.status, env.signed() ? "verified" : "unsigned");
      assert.deepEqual(reopened.message, message);
    });
  }
});

test("envelopes: seal and open round trip", async () => {
  const { pubs, privs } = await vectorKeys();
  const alice = proto.newUserID();
  const bob = proto.newUserID();
  const [phone, laptop, bobPhone] = [proto.newDeviceID(), proto.newDeviceID(), proto.newDeviceID()];
  const from = { user: alice, device: phone, identity: privs["alice-identity"] };
  const to = [
    { user: bob, device: bobPhone, key: pubs["bob-phone-enc"] },
    { user: alice, device: laptop, key: pubs["alice-laptop-enc"] },
  ];
  const msg = {
    contentType: "text/plain; charset=utf-8",
    groupID: new Uint8Array(16).fill(7),
    body: bytes("héllo ✓"),
    attachments: [{ blobID: new Uint8Array(16).fill(1), key: new Uint8Array(32).fill(2), sha256: new Uint8Array(32).fill(3), size: 2 ** 40, name: "ünïcode.txt", mediaType: "text/plain" }],
  };
  const now = Date.now();
  const sealed = await proto.seal(msg, from, to, { sent: now, ttl: 3600 * 1000 });
  const env = proto.parseEnvelope(sealed);
  assert.deepEqual([...env.recipients].sort(), [alice, bob].sort());
  assert.equal(env.sender, alice);
  assert.equal(env.sent, now);
  for (const [me, key] of [[{ user: bob, device: bobPhone }, privs["bob-phone-enc"]], [{ user: alice, device: laptop }, privs["alice-laptop-enc"]]]) {
    const got = await env.open({ ...me, key }, pubs["alice-identity"], new Date(now + 1000));
    assert.equal(got.status, "verified");
    assert.deepEqual(got.message, msg);
    const delivered = proto.parseEnvelope(env.forDevice(env.devices.findIndex((d) => d.device === me.device)));
    assert.equal((await delivered.open({ ...me, key }, null, now)).status, "unchecked");
  }
  await rejectsWith("not_recipient", () => env.open({ user: alice, device: phone, key: privs["alice-phone-enc"] }, null, now));
  await rejectsWith("expired", () => env.open({ user: bob, device: bobPhone, key: privs["bob-phone-enc"] }, null, now + 3600 * 1000));
  await rejectsWith("decrypt", () => env.open({ user: bob, device: bobPhone, key: privs["alice-laptop-enc"] }, null, now), "another device's key");

  const unsigned = proto.parseEnvelope(await proto.seal({ contentType: "x/y" }, { user: alice, device: phone }, to, { unsigned: true, ttl: 10000, id: proto.newMessageID() }));
  assert.ok(!unsigned.signed());
  const got = await unsigned.open({ user: bob, device: bobPhone, key: privs["bob-phone-enc"] }, pubs["alice-identity"], Date.now());
  assert.equal(got.status, "unsigned");
  assert.deepEqual(got.message, { contentType: "x/y", groupID: null, body: new Uint8Array(0), attachments: [] });
});

test("envelopes: sealing refuses what §10.2 and §9.1 refuse", async () => {
  const { pubs, privs } = await vectorKeys();
  const from = { user: proto.newUserID(), device: proto.newDeviceID(), identity: privs["alice-identity"] };
  const bob = { user: proto.newUserID(), device: proto.newDeviceID(), key: pubs["bob-phone-enc"] };
  const msg = { contentType: "text/plain" };
  const ttl = 60000;
  await rejectsWith("malformed", () => proto.seal(msg, { ...from, identity: null }, [bob], { ttl }), "signed without identity");
  for (const bad of [0, 999, 1500, 7 * 24 * 3600 * 1000 + 1000, undefined]) await rejectsWith("malformed", () => proto.seal(msg, from, [bob], { ttl: bad }), `ttl ${bad}`);
  await rejectsWith("too_large", () => proto.seal(msg, from, [], { ttl }));
  await rejectsWith("malformed", () => proto.seal(msg, from, [bob, { ...bob }], { ttl }), "a device twice");
  await rejectsWith("malformed", () => proto.seal(msg, from, [{ ...bob, device: "0".repeat(16) }], { ttl }), "a zero device ID");
  await rejectsWith("malformed", () => proto.seal(msg, { ...from, user: "a".repeat(26) }, [bob], { ttl }), "a zero sender");
  await rejectsWith("too_large", () => proto.seal({ contentType: "a/b", body: new Uint8Array(262145) }, from, [bob], { ttl }));
  const att = { blobID: new Uint8Array(16), key: new Uint8Array(32), sha256: new Uint8Array(32), size: 1, name: "", mediaType: "" };
  await rejectsWith("too_large", () => proto.seal({ contentType: "a/b", attachments: Array(33).fill(att) }, from, [bob], { ttl }));
  await rejectsWith("malformed", () => proto.seal({ contentType: "" }, from, [bob], { ttl }));
  await rejectsWith("malformed", () => proto.seal({ contentType: "a\nb" }, from, [bob], { ttl }));
  await rejectsWith("malformed", () => proto.seal({ contentType: "a/b", groupID: new Uint8Array(15) }, from, [bob], { ttl }));
  await rejectsWith("malformed", () => proto.seal({ contentType: "a/b", attachments: [{ ...att, name: "\ud800" }] }, from, [bob], { ttl }));
  await rejectsWith("malformed", () => proto.seal({ contentType: "a/b", attachments: [{ ...att, name: "x".repeat(256) }] }, from, [bob], { ttl }));
  await rejectsWith("malformed", () => proto.seal({ contentType: "a/b", attachments: [{ ...att, mediaType: "é" }] }, from, [bob], { ttl }));
  // A body of exactly the limit is fine, and pads to a multiple of 256.
  const big = proto.encodeMessage({ contentType: "a/b", body: new Uint8Array(262144) });
  assert.equal(big.length % 256, 0);
  assert.equal(proto.decodeMessage(big).body.length, 262144);
});

test("envelopes: times outside what a Date holds are errors, not crashes", async () => {
  const { privs } = await vectorKeys();
  const ev = vectors.envelopes.find((e) => e.name === "unsigned");
  const me = { user: ev.recipient_user, device: ev.recipient_device, key: privs[ev.recipient_key] };
  for (const [sent, code] of [["8000000000000000", "expired"], ["7fffffffffffffff", "clock_skew"]]) {
    const data = b64(ev.envelope);
    data.set(proto.fromHex(sent), 42);
    await rejectsWith(code, () => proto.parseEnvelope(data).open(me, null, ev.now_ms), `sent ${sent}`);
  }
});

test("message plaintexts: decoding (§9.3)", async () => {
  const p = proto.encodeMessage({ contentType: "a/b", body: bytes("x") });
  assert.equal(p.length, 256);
  await rejectsWith("too_large", () => proto.decodeMessage(new Uint8Array(277688)));
  const nonZero = p.slice();
  nonZero[255] = 1;
  await rejectsWith("malformed", () => proto.decodeMessage(nonZero));
  await rejectsWith("malformed", () => proto.decodeMessage(proto.fromHex(proto.toHex(p) + "00".repeat(256))), "a block too many");
  await rejectsWith("malformed", () => proto.decodeMessage(p.subarray(0, 255)), "not a multiple of 256");
  await rejectsWith("malformed", () => proto.decodeMessage(new Uint8Array(256)), "empty content type");
});
