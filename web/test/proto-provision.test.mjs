// Linking a device (docs/PROTOCOL.md §17): the known answers of §17.9, the
// link code's URI, both roles round trip, and the refusals of §17.6.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as proto from "../app/js/proto/index.js";
import { linkKey, sealLinkMessage } from "../app/js/proto/provision.js";
import { concat, var16 } from "../app/js/proto/wire.js";
import { hex, rejectsWith, testKeysDER, vectorKeys, vectors } from "./proto-helpers.mjs";

const seq = (n, from) => Uint8Array.from({ length: n }, (_, i) => from + i);

async function fixture() {
  const { pubs, privs } = await vectorKeys();
  const serverFP = await proto.serverFingerprint(pubs.server);
  const user = vectors.certificates[0].user;
  const code = new proto.LinkCode({ server: "https://chat.example.org:8443", serverFP, user, mailbox: seq(16, 1), secret: seq(32, 0x20) });
  return { pubs, privs, serverFP, user, code };
}

test("provisioning: known answers (§17.9)", async () => {
  const { code } = await fixture();
  assert.equal(code.requestMailbox(), "0102030405060708090a0b0c0d0e0f10");
  assert.equal(await code.responseMailbox(), "fbd7e293be63249fadcf0448ff599499");
  assert.equal(hex(await linkKey(code, 7)), "b09a399ffb70163b48ec74ec3cc02968ea6ccdeb691a31185e33a0411393f613");
  assert.equal(hex(await linkKey(code, 8)), "1a9693fe57152be65a47ed00807703a2598b6ceb88b21ff9241aa9ac4f451115");
  const [, k1, k2] = await Promise.all(testKeysDER().slice(0, 3).map((d) => proto.parsePrivateKey(d, { uses: ["sign"] })));
  const plain = concat(seq(8, 0x11), var16(k1.public().bytes()), var16(k2.public().bytes()));
  const msg = await sealLinkMessage(code, 7, plain, seq(12, 0xa0));
  assert.equal(msg.length, 886);
  assert.equal(hex(new Uint8Array(await crypto.subtle.digest("SHA-256", msg))), "1d3d7725eff0b88790c956dcede71d28483501cbb286b56f143ff4a34e3dae8f");
  const req = await proto.openLinkRequest(code, msg);
  assert.equal(req.device, "1112131415161718");
  assert.ok(req.encryptionKey.equal(k1.public()));
  assert.ok(req.authKey.equal(k2.public()));
});

test("provisioning: link codes (§17.2)", async () => {
  const { serverFP, user, code } = await fixture();
  const uri = code.uri();
  assert.equal(uri, `qrtalk:link?v=1&s=https%3A%2F%2Fchat.example.org%3A8443&sfp=${serverFP}&u=${user}&m=AQIDBAUGBwgJCgsMDQ4PEA&k=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8`);
  const back = proto.parseLinkCode(uri);
  assert.equal(back.uri(), uri);
  assert.equal(await back.responseMailbox(), await code.responseMailbox());
  assert.ok(!String(code).includes("AQID") && !JSON.stringify({ code }).includes("AQID"), "string forms hide the mailbox and the secret");
  const fresh = proto.newLinkCode("HTTPS://Chat.Example.org/", serverFP, user);
  assert.equal(fresh.server, "https://chat.example.org");
  assert.notEqual(fresh.requestMailbox(), code.requestMailbox());
  assert.notEqual(await fresh.responseMailbox(), fresh.requestMailbox());
  for (const [what, bad] of [
    ["m too short", uri.replace("&m=AQIDBAUGBwgJCgsMDQ4PEA", "&m=AQIDBAUGBwgJCgsMDQ4PE")],
    ["m not canonical", uri.replace("&m=AQIDBAUGBwgJCgsMDQ4PEA", "&m=AQIDBAUGBwgJCgsMDQ4PEB")],
    ["m zero", uri.replace("&m=AQIDBAUGBwgJCgsMDQ4PEA", "&m=AAAAAAAAAAAAAAAAAAAAAA")],
    ["k padded", uri.replace(/&k=[^&]+/, (k) => k + "=")],
    ["k missing", uri.replace(/&k=[^&]+/, "")],
    ["another kind", uri.replace("qrtalk:link?", "qrtalk:contact?")],
    ["unknown parameter", uri + "&x=1"],
  ]) {
    await rejectsWith("malformed", () => proto.parseLinkCode(bad), what);
  }
  await rejectsWith("version", () => proto.parseLinkCode(uri.replace("v=1", "v=2")));
  assert.equal(proto.parseLinkMailbox(code.requestMailbox()), code.requestMailbox());
  for (const bad of ["0".repeat(32), "A".repeat(32), "ab"]) await rejectsWith("malformed", () => proto.parseLinkMailbox(bad), bad);
});

test("provisioning: both roles, round trip", async () => {
  const { pubs, privs, user, code } = await fixture();
  // B: the new device, with keys of its own.
  const device = proto.newDeviceID();
  const req = { device, encryptionKey: pubs["bob-phone-enc"], authKey: pubs["bob-phone-auth"] };
  const sealedReq = await proto.sealLinkRequest(code, req);
  proto.checkLinkMessage(sealedReq);
  assert.notDeepEqual(await proto.sealLinkRequest(code, req), sealedReq, "a fresh nonce for every message");
  // A: opens the request, certifies the device, answers.
  const got = await proto.openLinkRequest(code, sealedReq);
  assert.equal(got.device, device);
  const identity = privs["alice-identity"];
  const cert = await proto.certifyDevice(identity, user, got.device, got.encryptionKey, got.authKey, Date.now());
  const sealedRsp = await proto.sealLinkResponse(code, got, { user, identity, cert });
  proto.checkLinkMessage(sealedRsp);
  // B: opens the answer to its own request.
  const resp = await proto.openLinkResponse(code, req, sealedRsp);
  assert.equal(resp.user, user);
  assert.ok(resp.identity.public().equal(identity.public()));
  assert.ok(!resp.identity.extractable);
  assert.ok(resp.identity.can("sign") && !resp.identity.can("decrypt"));
  assert.deepEqual(resp.cert.bytes(), cert.bytes());
  // The identity key B received signs what A's verifies.
  const c2 = await proto.certifyDevice(resp.identity, user, proto.newDeviceID(), pubs["bob-phone-enc"], pubs["bob-phone-auth"], 0);
  await c2.verify(identity.public());
  const extractable = await proto.openLinkResponse(code, req, sealedRsp, { extractable: true });
  assert.deepEqual(await extractable.identity.bytes(), await identity.bytes());

  // Refusals (§17.6).
  const other = proto.newLinkCode(code.server, code.serverFP, user);
  await rejectsWith("decrypt", () => proto.openLinkRequest(other, sealedReq), "another code");
  await rejectsWith("malformed", () => proto.openLinkRequest(code, sealedRsp), "a response is not a request");
  const relabeled = sealedRsp.slice();
  relabeled[1] = 7;
  await rejectsWith("decrypt", () => proto.openLinkRequest(code, relabeled), "relabeled as the other type");
  await rejectsWith("malformed", () => proto.openLinkRequest(code, new Uint8Array(0)), "empty");
  await rejectsWith("version", () => proto.checkLinkMessage(Uint8Array.of(2, 7, ...new Uint8Array(7000))), "version before size");
  await rejectsWith("version", () => proto.checkLinkMessage(Uint8Array.of(2, 7)));
  await rejectsWith("too_large", () => proto.checkLinkMessage(Uint8Array.of(1, 7, ...new Uint8Array(6615))));
  await rejectsWith("malformed", () => proto.checkLinkMessage(Uint8Array.of(1, 7, ...new Uint8Array(27))));
  await rejectsWith("malformed", () => proto.checkLinkMessage(Uint8Array.of(1, 9, ...new Uint8Array(28))));
  await rejectsWith("malformed", () => proto.sealLinkRequest(code, { device, encryptionKey: pubs["bob-phone-enc"], authKey: pubs["bob-phone-enc"] }), "one key for both");
  await rejectsWith("malformed", () => proto.sealLinkRequest(code, { ...req, device: "0".repeat(16) }));
  const same = await sealLinkMessage(code, 7, concat(new Uint8Array(8).fill(1), var16(pubs["bob-phone-enc"].bytes()), var16(pubs["bob-phone-enc"].bytes())));
  await rejectsWith("malformed", () => proto.openLinkRequest(code, same), "a request with one key for both");
  const zero = await sealLinkMessage(code, 7, concat(new Uint8Array(8), var16(pubs["bob-phone-enc"].bytes()), var16(pubs["bob-phone-auth"].bytes())));
  await rejectsWith("malformed", () => proto.openLinkRequest(code, zero), "a zero device ID");
  const trailing = await sealLinkMessage(code, 7, concat(new Uint8Array(8).fill(1), var16(pubs["bob-phone-enc"].bytes()), var16(pubs["bob-phone-auth"].bytes()), new Uint8Array(1)));
  await rejectsWith("malformed", () => proto.openLinkRequest(code, trailing));
  // A response that does not answer this request, or that lies.
  const otherReq = { device: proto.newDeviceID(), encryptionKey: req.encryptionKey, authKey: req.authKey };
  await rejectsWith("mismatch", () => proto.openLinkResponse(code, otherReq, sealedRsp), "another device");
  await rejectsWith("mismatch", () => proto.openLinkResponse(code, { ...req, authKey: pubs["alice-phone-auth"] }, sealedRsp), "other keys");
  const otherUser = new proto.LinkCode({ ...code, user: proto.newUserID(), mailbox: seq(16, 1), secret: seq(32, 0x20) });
  await rejectsWith("mismatch", () => proto.openLinkResponse(otherUser, req, sealedRsp), "another user");
  await rejectsWith("bad_signature", () => proto.sealLinkResponse(code, got, { user, identity: privs["bob-identity"], cert }), "a certificate another key signed");
  await rejectsWith("mismatch", () => proto.sealLinkResponse(code, otherReq, { user, identity, cert }));
  const lying = await sealLinkMessage(code, 8, concat(proto.userIDBytes(user), var16(await privs["bob-identity"].bytes()), var16(cert.bytes())));
  await rejectsWith("bad_signature", () => proto.openLinkResponse(code, req, lying), "an identity key that did not sign the certificate");
  const short = await sealLinkMessage(code, 8, new Uint8Array(5));
  await rejectsWith("malformed", () => proto.openLinkResponse(code, req, short));
});
