// The secure channel (docs/PROTOCOL.md §11) against the shared test
// vectors: both ends open every frame, the confirmation and the client's
// and server's frames are sealed byte for byte, and the derived checks of
// §15 ("Checks derived from the vectors") hold.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as proto from "../app/js/proto/index.js";
import { channelKeys, clientSessionFromSecret } from "../app/js/proto/channel.js";
import { unwrapKey, LABEL } from "../app/js/proto/primitives.js";
import { labeled } from "../app/js/proto/wire.js";
import { b64, bytes, hex, rejectsWith, vectorKeys, vectors } from "./proto-helpers.mjs";

const transcript = vectors.channels.find((c) => c.name === "transcript");

async function accept(cv, cache = new proto.MemoryReplayCache()) {
  const { pubs, privs } = await vectorKeys();
  const setup = proto.parseChannelSetup(b64(cv.setup));
  return proto.acceptSession(setup, privs[cv.server_key], pubs[cv.device_auth_key], cache, cv.lifetime_s * 1000, cv.now_ms);
}

async function client(cv) {
  const c = await clientSessionFromSecret(proto.fromHex(cv.secret), b64(cv.setup), cv.now_ms);
  assert.equal(c.expires, cv.now_ms + 3600 * 1000, "until confirmed, the session ends one hour after the setup");
  await c.confirm(b64(cv.confirm), cv.now_ms);
  assert.equal(c.expires, cv.expires_ms);
  return c;
}

test("vectors: channels", async (t) => {
  const { privs } = await vectorKeys();
  for (const cv of vectors.channels) {
    await t.test(cv.name, async () => {
      if (cv.error) {
        const cache = new proto.MemoryReplayCache();
        if (cv.error === "replay") await accept(cv, cache);
        await rejectsWith(cv.error, () => accept(cv, cache), cv.name);
        return;
      }
      const { session: server, confirm } = await accept(cv);
      assert.equal(server.id, cv.session_id);
      assert.equal(server.expires, cv.expires_ms);
      assert.deepEqual(confirm, b64(cv.confirm), "the confirmation is deterministic");
      const setup = b64(cv.setup);
      const secret = await unwrapKey(privs[cv.server_key], labeled(LABEL.chWrap, setup.subarray(66, 82)), setup.subarray(82, 466));
      assert.equal(hex(secret), cv.secret);
      const keys = await channelKeys(secret, proto.fromHex(cv.session_id));
      assert.equal(hex(keys.c2s), cv.client_to_server_key);
      assert.equal(hex(keys.s2c), cv.server_to_client_key);
      const c = await client(cv);
      assert.equal(c.id, cv.session_id);
      for (const [i, fv] of cv.frames.entries()) {
        const frame = b64(fv.frame);
        const run = async () => {
          switch (fv.kind) {
            case "request":
              return (await server.openRequest(fv.method, fv.path, frame, fv.now_ms)).body;
            case "response":
              return c.openResponse(fv.request_counter, fv.method, fv.path, frame, fv.now_ms);
            case "push":
              return c.openPush(frame, fv.now_ms);
          }
          throw new Error(`frame kind ${fv.kind}`);
        };
        if (fv.error) await rejectsWith(fv.error, run, `frame ${i}`);
        else assert.deepEqual(await run(), b64(fv.body), `frame ${i}`);
      }
    });
  }
});

test("channels: frames sealed byte for byte", async () => {
  const cv = transcript;
  const find = (kind, body) => b64(cv.frames.find((f) => f.kind === kind && f.body === proto.toBase64(bytes(body))).frame);
  // The client, in the order the transcript's client sealed its requests.
  const c = await client(cv);
  const r1 = await c.sealRequest("POST", "/v1/send", bytes('{"hello":"server"}'));
  const r2 = await c.sealRequest("POST", "/v1/keys", bytes("second request"));
  const r3 = await c.sealRequest("POST", "/v1/send", bytes("late"));
  assert.deepEqual([r1.counter, r2.counter, r3.counter], [0, 1, 2]);
  assert.deepEqual(r1.frame, find("request", '{"hello":"server"}'));
  assert.deepEqual(r2.frame, find("request", "second request"));
  assert.deepEqual(r3.frame, find("request", "late"));
  // The server, likewise.
  const { session: s } = await accept(cv);
  assert.deepEqual(await s.sealResponse(1, "POST", "/v1/keys", bytes("second response")), find("response", "second response"));
  assert.deepEqual(await s.sealResponse(0, "POST", "/v1/send", bytes('{"status":"ok"}')), find("response", '{"status":"ok"}'));
  assert.deepEqual(await s.sealPush(bytes("pushed delivery")), find("push", "pushed delivery"));
  const header = proto.parseFrameHeader(r2.frame);
  assert.equal(header.sessionID, cv.session_id);
  assert.equal(header.counter, 1);
});

test("channels: derived checks (§11.6, §11.7, §11.4)", async () => {
  const cv = transcript;
  const fresh = () => clientSessionFromSecret(proto.fromHex(cv.secret), b64(cv.setup), cv.now_ms);
  const push = b64(cv.frames.find((f) => f.kind === "push").frame);
  const c0 = await fresh();
  await rejectsWith("malformed", () => c0.openPush(push, cv.now_ms), "push before the confirmation");
  await rejectsWith("malformed", () => c0.openResponse(0, "POST", "/v1/send", push, cv.now_ms), "response before the confirmation");
  await rejectsWith("malformed", () => c0.sealRequest("GET", "/", new Uint8Array(0)), "request before the confirmation");
  await rejectsWith("decrypt", () => c0.confirm(push, cv.now_ms), "a push is not a confirmation");
  await c0.confirm(b64(cv.confirm), cv.now_ms);
  await rejectsWith("replay", () => c0.confirm(new Uint8Array(3), cv.now_ms + 10 * 3600 * 1000), "a second confirmation, even garbage after the end");
  const c = await client(cv);
  const long = "x".repeat(1025);
  const after = cv.now_ms + 2 * 3600 * 1000;
  await rejectsWith("too_large", () => c.openResponse(0, long, "/", push, after), "method of 1025 bytes, after the end");
  await rejectsWith("too_large", () => c.openResponse(0, "POST", long, push, after), "path of 1025 bytes");
  await rejectsWith("too_large", () => c.sealRequest("POST", long, new Uint8Array(0)));
  await rejectsWith("decrypt", () => c.openResponse(0, "POST", "/" + "x".repeat(1023), push, cv.now_ms), "a path of exactly 1024 bytes is accepted");
  await rejectsWith("expired", () => c.openPush(push, cv.expires_ms));
  assert.deepEqual(await c.openPush(push, cv.expires_ms - 1), bytes("pushed delivery"));
  await rejectsWith("replay", () => c.openPush(push, cv.now_ms));
  await rejectsWith("too_large", () => c.openPush(new Uint8Array(proto.MAX_FRAME_SIZE + 1), cv.now_ms));

  const setup = b64(cv.setup);
  await rejectsWith("version", () => proto.parseChannelSetup(Uint8Array.of(2, ...setup.subarray(1, 100))), "a setup of version 2 and the wrong size");
  await rejectsWith("malformed", () => proto.parseChannelSetup(new Uint8Array(0)));
  const wrongType = setup.slice();
  wrongType[1] = 5;
  await rejectsWith("malformed", () => proto.parseChannelSetup(wrongType));
});

test("channels: replay window (§11.8)", () => {
  const w = new proto.ReplayWindow();
  assert.ok(w.accept(5n));
  assert.ok(w.accept(3n), "out of order within the window");
  assert.ok(!w.accept(3n));
  assert.ok(w.accept(2000n));
  assert.ok(!w.fresh(976n), "1024 below the top");
  assert.ok(w.accept(977n), "1023 below the top");
  assert.ok(!w.accept(977n));
  assert.ok(!w.fresh(1n << 63n));
  assert.ok(w.accept(2001n + 5000n));
  assert.ok(!w.fresh(2000n));
});

test("channels: a session end to end", async () => {
  const { pubs, privs } = await vectorKeys();
  const user = proto.newUserID();
  const device = proto.newDeviceID();
  const now = Date.now();
  const { session: c, setup } = await proto.newClientSession({ user, device, authKey: privs["alice-phone-auth"] }, pubs.server, now);
  assert.equal(setup.length, 850);
  assert.ok(!c.confirmed);
  const parsed = proto.parseChannelSetup(setup);
  assert.equal(parsed.user, user);
  assert.equal(parsed.device, device);
  assert.equal(parsed.time, now);
  assert.ok(parsed.serverFP.equal(await proto.serverFingerprint(pubs.server)));
  const cache = new proto.MemoryReplayCache();
  await rejectsWith("bad_signature", () => proto.acceptSession(parsed, privs.server, pubs["bob-phone-auth"], cache, 0, now));
  await rejectsWith("mismatch", () => proto.acceptSession(parsed, privs["bob-identity"], pubs["alice-phone-auth"], cache, 0, now));
  await rejectsWith("clock_skew", () => proto.acceptSession(parsed, privs.server, pubs["alice-phone-auth"], cache, 0, now + 300001));
  const { session: s, confirm } = await proto.acceptSession(parsed, privs.server, pubs["alice-phone-auth"], cache, 600 * 1000, new Date(now + 300000));
  await rejectsWith("replay", () => proto.acceptSession(parsed, privs.server, pubs["alice-phone-auth"], cache, 0, now));
  assert.equal(s.id, c.id);
  assert.equal(s.user, user);
  await c.confirm(confirm, now);
  assert.ok(c.confirmed);
  assert.equal(c.expires, now + 300000 + 600000);
  // Concurrent requests get distinct counters; responses may come in any order.
  const reqs = await Promise.all([1, 2, 3].map((i) => c.sealRequest("POST", `/v1/r${i}`, bytes(`req ${i}`))));
  assert.deepEqual(reqs.map((r) => r.counter).sort(), [0, 1, 2]);
  for (const [i, r] of [...reqs.entries()].reverse()) {
    const got = await s.openRequest("POST", `/v1/r${i + 1}`, r.frame, now);
    assert.deepEqual(got.body, bytes(`req ${i + 1}`));
    const resp = await s.sealResponse(got.counter, "POST", `/v1/r${i + 1}`, bytes(`resp ${i + 1}`));
    await rejectsWith("decrypt", () => c.openResponse(got.counter, "POST", "/v1/other", resp, now), "bound to the path");
    assert.deepEqual(await c.openResponse(r.counter, "POST", `/v1/r${i + 1}`, resp, now), bytes(`resp ${i + 1}`));
  }
  await rejectsWith("replay", () => s.openRequest("POST", "/v1/r1", reqs[0].frame, now));
});
