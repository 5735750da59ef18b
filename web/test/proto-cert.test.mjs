// Certificates, revocations and device lists (docs/PROTOCOL.md §8), and
// qrtalk: URIs (§7), against the shared test vectors and the text.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as proto from "../app/js/proto/index.js";
import { b64, rejectsWith, vectorKeys, vectors } from "./proto-helpers.mjs";

test("vectors: certificates", async (t) => {
  const { pubs } = await vectorKeys();
  for (const cv of vectors.certificates) {
    await t.test(cv.name, async () => {
      const run = async () => {
        const c = proto.parseDeviceCert(b64(cv.data));
        await c.verify(pubs[cv.identity_key]);
        return c;
      };
      if (cv.error) return void (await rejectsWith(cv.error, run, cv.name));
      const c = await run();
      assert.equal(c.user, cv.user);
      assert.equal(c.device, cv.device);
      assert.equal(c.created, cv.time * 1000);
      assert.ok(c.encryptionKey.equal(pubs[cv.encryption_key]));
      assert.ok(c.authKey.equal(pubs[cv.auth_key]));
      assert.deepEqual(c.bytes(), b64(cv.data));
    });
  }
});

test("vectors: revocations", async (t) => {
  const { pubs } = await vectorKeys();
  for (const rv of vectors.revocations) {
    await t.test(rv.name, async () => {
      const run = async () => {
        const r = proto.parseRevocation(b64(rv.data));
        await r.verify(pubs[rv.identity_key]);
        return r;
      };
      if (rv.error) return void (await rejectsWith(rv.error, run, rv.name));
      const r = await run();
      assert.equal(r.user, rv.user);
      assert.equal(r.device, rv.device);
      assert.equal(r.revoked, rv.time * 1000);
    });
  }
});

test("certificates: sealing side", async () => {
  const { pubs, privs } = await vectorKeys();
  const cv = vectors.certificates.find((c) => c.name === "alice-phone");
  const want = b64(cv.data);
  const c = await proto.certifyDevice(privs["alice-identity"], cv.user, cv.device, pubs[cv.encryption_key], pubs[cv.auth_key], cv.time * 1000 + 999);
  // RSA-PSS signatures are randomized: the signed part is byte for byte the
  // vector's, and the signature verifies.
  assert.equal(c.bytes().length, 1266);
  assert.deepEqual(c.bytes().subarray(0, 882), want.subarray(0, 882));
  await c.verify(pubs["alice-identity"]);
  await rejectsWith("bad_signature", () => c.verify(pubs["bob-identity"]));
  await rejectsWith("malformed", () => proto.certifyDevice(privs["alice-identity"], "a".repeat(26), cv.device, pubs[cv.encryption_key], pubs[cv.auth_key], 0));
  await rejectsWith("malformed", () => proto.certifyDevice(privs["alice-identity"], cv.user, "0".repeat(16), pubs[cv.encryption_key], pubs[cv.auth_key], 0));

  const rv = vectors.revocations.find((r) => r.name === "alice-laptop");
  const r = await proto.revokeDevice(privs["alice-identity"], rv.user, rv.device, rv.time * 1000);
  assert.deepEqual(r.bytes().subarray(0, 34), b64(rv.data).subarray(0, 34));
  await r.verify(pubs["alice-identity"]);
  await rejectsWith("malformed", () => proto.revokeDevice(privs["alice-identity"], rv.user, "0".repeat(16), 0));
});

test("revocations: derived checks (§8.2)", async () => {
  const data = b64(vectors.revocations[0].data);
  const v2 = Uint8Array.of(2, ...data.subarray(1), 0);
  await rejectsWith("version", () => proto.parseRevocation(v2), "version 2 of the wrong size");
  await rejectsWith("malformed", () => proto.parseRevocation(new Uint8Array(0)));
  const wrongType = data.slice();
  wrongType[1] = 1;
  await rejectsWith("malformed", () => proto.parseRevocation(wrongType));
  const zeroUser = data.slice();
  zeroUser.fill(0, 2, 18);
  await rejectsWith("malformed", () => proto.parseRevocation(zeroUser));
  const zeroDevice = data.slice();
  zeroDevice.fill(0, 18, 26);
  await rejectsWith("malformed", () => proto.parseRevocation(zeroDevice));
  const cert = b64(vectors.certificates[0].data);
  await rejectsWith("too_large", () => proto.parseDeviceCert(new Uint8Array(2471)));
  await rejectsWith("malformed", () => proto.parseDeviceCert(Uint8Array.of(1)));
  const zeroCertUser = cert.slice();
  zeroCertUser.fill(0, 2, 18);
  await rejectsWith("malformed", () => proto.parseDeviceCert(zeroCertUser));
});

test("device lists (§8.3)", async () => {
  const { pubs, privs } = await vectorKeys();
  const alice = vectors.certificates.find((c) => c.name === "alice-phone");
  const bob = vectors.certificates.find((c) => c.name === "bob-phone");
  const rev = vectors.revocations.find((r) => r.name === "alice-laptop");
  const identity = pubs["alice-identity"];
  const laptop = await proto.certifyDevice(privs["alice-identity"], alice.user, rev.device, pubs["alice-laptop-enc"], pubs["alice-phone-auth"], 0);
  const list = await proto.verifyDeviceList(identity, alice.user, [b64(alice.data), laptop.bytes()], [b64(rev.data)]);
  assert.deepEqual(list.map((c) => c.device), [alice.device], "the revoked laptop is dropped");
  const both = await proto.verifyDeviceList(identity, alice.user, [b64(alice.data), laptop.bytes()], []);
  assert.deepEqual(both.map((c) => c.device), [alice.device, rev.device]);
  await rejectsWith("mismatch", () => proto.verifyDeviceList(identity, alice.user, [b64(alice.data), b64(bob.data)], []));
  await rejectsWith("bad_signature", () => proto.verifyDeviceList(pubs["bob-identity"], alice.user, [b64(alice.data)], []));
  await rejectsWith("malformed", () => proto.verifyDeviceList(identity, alice.user, [b64(alice.data), b64(alice.data)], []), "listed twice");
  await rejectsWith("mismatch", () => proto.verifyDeviceList(pubs["bob-identity"], bob.user, [b64(bob.data)], [b64(rev.data)]));
  await rejectsWith("bad_signature", () => proto.verifyDeviceList(identity, alice.user, [], [b64(vectors.revocations.find((r) => r.name === "tampered-time").data)]));
});

test("vectors: uris", async (t) => {
  for (const uv of vectors.uris) {
    await t.test(`${uv.kind} ${uv.uri.slice(0, 60)}`, async () => {
      const parse = uv.kind === "contact" ? proto.parseContactCard : proto.parseInvite;
      if (uv.error) return void (await rejectsWith(uv.error, () => parse(uv.uri), uv.uri));
      const got = parse(uv.uri);
      assert.equal(got.server, uv.server);
      assert.equal(got.serverFP.toString(), uv.server_fingerprint);
      if (uv.kind === "contact") {
        assert.equal(got.user, uv.user);
        assert.equal(got.identity.toString(), uv.identity_fingerprint);
      } else {
        assert.equal(got.token, uv.token);
      }
      // Writers emit canonical URIs: parsing what we write gives the same.
      assert.equal(parse(got.uri()).uri(), got.uri());
    });
  }
  const contact = vectors.uris.find((u) => u.kind === "contact" && !u.error);
  assert.equal(proto.parseContactCard(contact.uri).uri(), contact.uri, "the card's URI is the Go writer's, byte for byte");
  const invite = vectors.uris.find((u) => u.kind === "invite" && !u.error);
  assert.equal(proto.parseInvite(invite.uri).uri(), invite.uri);
});

test("uris: derived checks (§7)", async () => {
  const { pubs } = await vectorKeys();
  const contact = vectors.uris.find((u) => u.kind === "contact" && !u.error);
  const card = proto.parseContactCard(contact.uri);
  await card.verify(pubs["alice-identity"]);
  await rejectsWith("mismatch", () => card.verify(pubs["bob-identity"]));
  assert.equal(proto.parseContactCard(` \u3000${contact.uri}\n`).user, card.user, "Unicode white space is trimmed");
  await rejectsWith("too_large", () => proto.parseContactCard(contact.uri + "&" + "x".repeat(2048)));
  await rejectsWith("malformed", () => proto.parseContactCard(contact.uri.replace("qrtalk:", "QRTALK:")));
  await rejectsWith("malformed", () => proto.parseContactCard(contact.uri + ";"));
  await rejectsWith("malformed", () => proto.parseContactCard(contact.uri + "&x=%zz"));
  await rejectsWith("malformed", () => proto.parseContactCard(contact.uri + "&u=" + card.user), "u twice");
  await rejectsWith("version", () => proto.parseContactCard(contact.uri + "&v=1"), "v twice");
  await rejectsWith("version", () => proto.parseContactCard(contact.uri.replace("v=1", "v=01")));
  await rejectsWith("malformed", () => proto.parseContactCard(contact.uri.replace(/&u=[^&]+/, "&u=" + card.user.replace(/[a-z]/, "\u212a"))), "Kelvin sign");
  const upper = contact.uri.replace(/&u=([^&]+)/, (m, u) => "&u=" + u.toUpperCase());
  assert.equal(proto.parseContactCard(upper).user, card.user, "capital letters in a user ID are accepted");
  const ok = {
    "HTTPS://Chat.Example.ORG:8443/qrtalk/": "https://chat.example.org:8443/qrtalk",
    "https://chat.example.org//": "https://chat.example.org",
    "https://[2001:DB8::1]/x": "https://[2001:db8::1]/x",
    "https://[::ffff:192.0.2.1]:443": "https://[::ffff:192.0.2.1]:443",
    "https://a/%2F%2f/./..": "https://a/%2F%2f/./..",
    "https://h:65535": "https://h:65535",
  };
  for (const [url, want] of Object.entries(ok)) {
    assert.equal(proto.checkServerURL(url), want, url);
    assert.equal(proto.checkServerURL(want), want, `${want} is canonical`);
  }
  for (const url of ["http://a", "https://", "https://a:", "https://a:0", "https://a:08443", "https://a:65536", "https://a?", "https://a#", "https://u@a",
    "https://a\\b", "https://a b", "https://a/\t", "https://[1::2::3]", "https://[fe80::1%25eth0]", "https://[::1]x", "https://a/%zz", "https://a/é", "https://[1:2:3:4:5:6:7::8]", "https://a:+443", "https://[::1]:+80"]) {
    await rejectsWith("malformed", () => proto.checkServerURL(url), url);
  }
  for (const tok of ["short", "x".repeat(129), "a".repeat(15) + "!"]) await rejectsWith("malformed", () => proto.checkToken(tok), tok);
  assert.equal(proto.checkToken("A-b_0".repeat(4)), "A-b_0".repeat(4));
});
