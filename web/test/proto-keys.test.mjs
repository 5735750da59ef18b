// Keys, fingerprints and IDs (docs/PROTOCOL.md §4, §5, §6) against the
// shared test vectors and the rules the vectors hold no case for.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as proto from "../app/js/proto/index.js";
import { b64, rejectsWith, testKeysDER, vectorKeys, vectors } from "./proto-helpers.mjs";

test("vectors: keys", async (t) => {
  for (const kv of vectors.keys) {
    await t.test(kv.name, async () => {
      const der = b64(kv.public_spki);
      if (kv.error) {
        await rejectsWith(kv.error, () => proto.parsePublicKey(der), kv.name);
        return;
      }
      const pub = proto.parsePublicKey(der);
      assert.deepEqual(pub.bytes(), der);
      assert.equal(der.length, 422);
      const fp = await proto.identityFingerprint(pub);
      assert.equal(fp.toString(), kv.identity_fingerprint);
      assert.equal(fp.numeric(), kv.identity_fingerprint_numeric);
      assert.ok(fp.matchesNumeric(kv.identity_fingerprint_numeric));
      assert.ok(fp.matchesNumeric(kv.identity_fingerprint_numeric.replace(/ /g, "-")));
      assert.ok(!fp.matchesNumeric(kv.identity_fingerprint_numeric.replace(/.$/, (d) => String((Number(d) + 1) % 10))));
      assert.ok(!fp.matchesNumeric(kv.identity_fingerprint_numeric + "x"));
      assert.equal((await proto.serverFingerprint(pub)).toString(), kv.server_fingerprint);
      assert.ok(proto.parseFingerprint(kv.identity_fingerprint).equal(fp));
      if (kv.private_pkcs8) {
        const pkcs8 = b64(kv.private_pkcs8);
        const priv = await proto.parsePrivateKey(pkcs8, { extractable: true });
        assert.ok(priv.public().equal(pub));
        assert.deepEqual(await priv.bytes(), pkcs8, "export gives the canonical PKCS #8 back");
      }
    });
  }
});

test("public keys: canonical DER only", async () => {
  const { pubs } = await vectorKeys();
  const der = pubs["alice-identity"].bytes();
  await rejectsWith("too_large", () => proto.parsePublicKey(new Uint8Array(1025)));
  await rejectsWith("malformed", () => proto.parsePublicKey(new Uint8Array(0)));
  await rejectsWith("malformed", () => proto.parsePublicKey(der.subarray(0, 421)), "truncated");
  await rejectsWith("malformed", () => proto.parsePublicKey(Uint8Array.of(...der, 0)), "trailing data");
  // A long-form length where the short form would do is BER, not DER.
  const ber = Uint8Array.of(0x30, 0x83, 0x00, 0x01, 0xa2, ...der.subarray(4));
  await rejectsWith("malformed", () => proto.parsePublicKey(ber), "BER length");
  // The modulus with a superfluous leading zero byte.
  const n = der.subarray(33, 417);
  const padded = proto.fromHex(
    "308201a3300d06092a864886f70d010101050003820190003082018b028201820000" + proto.toHex(n) + "0203010001",
  );
  await rejectsWith("malformed", () => proto.parsePublicKey(padded), "non-minimal integer");
  // Parameters other than NULL.
  const params = Uint8Array.of(...der);
  params[17] = 0x04; // NULL -> empty OCTET STRING
  await rejectsWith("malformed", () => proto.parsePublicKey(params), "parameters");
  // Not RSA: another OID.
  const oid = Uint8Array.of(...der);
  oid[14] = 0x02;
  await rejectsWith("malformed", () => proto.parsePublicKey(oid), "OID");
});

test("public keys: PEM", async () => {
  const { pubs } = await vectorKeys();
  const pub = pubs["bob-identity"];
  const pem = pub.pem();
  assert.ok(proto.parsePublicKeyPEM(pem).equal(pub));
  assert.ok(proto.parsePublicKeyPEM(`\n \u00a0\n${pem}\n\u3000`).equal(pub));
  assert.ok(proto.parsePublicKeyPEM(pem.replace(/\n/g, " \r\n")).equal(pub), "trailing spaces and CRs on lines");
  await rejectsWith("malformed", () => proto.parsePublicKeyPEM(" " + pem), "the BEGIN line must start a line");
  await rejectsWith("malformed", () => proto.parsePublicKeyPEM(pem.replace("-----END PUBLIC KEY-----", "-----END PUBLIC KEY-----x")), "text after END on its line");
  assert.ok(proto.parsePublicKeyPEM(new TextEncoder().encode(pem)).equal(pub));
  await rejectsWith("malformed", () => proto.parsePublicKeyPEM("x" + pem), "data before");
  await rejectsWith("malformed", () => proto.parsePublicKeyPEM(pem + "x"), "data after");
  await rejectsWith("malformed", () => proto.parsePublicKeyPEM(pem + pem), "two blocks");
  await rejectsWith("malformed", () => proto.parsePublicKeyPEM("-----BEGIN X-----\n" + pem), "a broken block before");
  await rejectsWith("malformed", () => proto.parsePublicKeyPEM(pem.replace(/PUBLIC KEY/g, "RSA PUBLIC KEY")), "type");
  await rejectsWith("malformed", () => proto.parsePublicKeyPEM(pem.replace("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n")), "headers");
  await rejectsWith("too_large", () => proto.parsePublicKeyPEM(pem + " ".repeat(2049 - pem.length)));
});

test("private keys: canonical, consistent PKCS #8 only", async () => {
  const der = b64(vectors.keys[0].private_pkcs8);
  await rejectsWith("too_large", () => proto.parsePrivateKey(new Uint8Array(4097)));
  await rejectsWith("malformed", () => proto.parsePrivateKey(Uint8Array.of(...der, 0)), "trailing data");
  await rejectsWith("malformed", () => proto.parsePrivateKey(der.subarray(0, der.length - 1)), "truncated");
  // Change one byte of qInv (the last integer): inconsistent CRT values.
  const bad = Uint8Array.of(...der);
  bad[bad.length - 1] ^= 1;
  await rejectsWith("malformed", () => proto.parsePrivateKey(bad), "inconsistent");
  // A public key is not a private key.
  await rejectsWith("malformed", () => proto.parsePrivateKey(b64(vectors.keys[0].public_spki)));
  // The fixed test keys of internal/testkeys parse, and export as they were.
  for (const k of testKeysDER()) assert.deepEqual(await (await proto.parsePrivateKey(k, { extractable: true })).bytes(), k);
});

// derInt and derSeq build DER by hand, to make keys that no library would.
function derLen(n) {
  return n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
}
function derInt(v) {
  let h = v.toString(16);
  if (h.length % 2) h = "0" + h;
  if (parseInt(h.slice(0, 2), 16) & 0x80) h = "00" + h;
  const b = proto.fromHex(h);
  return Uint8Array.of(0x02, ...derLen(b.length), ...b);
}
function derTLV(tag, parts) {
  const body = parts.reduce((a, p) => Uint8Array.of(...a, ...p), new Uint8Array(0));
  return Uint8Array.of(tag, ...derLen(body.length), ...body);
}
function pkcs8(n, e, d, p, q, dP, dQ, qInv) {
  const rsa = derTLV(0x30, [derInt(0n), ...[n, e, d, p, q, dP, dQ, qInv].map(derInt)]);
  return derTLV(0x30, [derInt(0n), proto.fromHex("300d06092a864886f70d0101010500"), derTLV(0x04, [rsa])]);
}
const mod = (a, m) => ((a % m) + m) % m;
function inverse(a, m) {
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1, s0, s1] = [r1, r0 - q * r1, s1, s0 - q * s1];
  }
  return r0 === 1n ? mod(s0, m) : null;
}
const bigOf = (s) => BigInt("0x" + proto.toHex(proto.fromBase64URL(s)));

test("private keys: consistency (§5.2), and size and exponent judged last", async () => {
  let crafted = 0;
  for (const der of testKeysDER()) {
    const jwk = await crypto.subtle.exportKey("jwk", await crypto.subtle.importKey("pkcs8", der, { name: "RSA-PSS", hash: "SHA-256" }, true, ["sign"]));
    const [n, e, d, p, q, dP, dQ, qInv] = ["n", "e", "d", "p", "q", "dp", "dq", "qi"].map((f) => bigOf(jwk[f]));
    assert.deepEqual(pkcs8(n, e, d, p, q, dP, dQ, qInv), der, "the hand-made DER is the canonical encoding");
    await rejectsWith("malformed", () => proto.parsePrivateKey(pkcs8(n, e, d + 1n, p, q, dP, dQ, qInv)), "d does not match dP");
    await rejectsWith("malformed", () => proto.parsePrivateKey(pkcs8(n, e, d + n, p, q, dP, dQ, qInv)), "d above n");
    // p = 2P with every CRT value made to agree: p·q = 2n, which crypto/rsa
    // once let through (it checks p·q ≡ 0 mod n).
    const p2 = 2n * p;
    const [dP2, dQ2, qInv2, m] = [inverse(e, p2 - 1n), inverse(e, q - 1n), inverse(q, p2), inverse(p2 - 1n, q - 1n)];
    if (!dP2 || !dQ2 || !qInv2 || !m) continue;
    const d2 = dP2 + (p2 - 1n) * mod((dQ2 - dP2) * m, q - 1n);
    if (d2 >= n || d2 < 1n << 1536n) continue;
    crafted++;
    await rejectsWith("malformed", () => proto.parsePrivateKey(pkcs8(n, e, d2, p2, q, dP2, dQ2, qInv2)), "p·q = 2n");
  }
  assert.ok(crafted > 0, "no crafted key: the test checks nothing");
  // A consistent, canonical key of another size is key_size.
  const small = await crypto.subtle.generateKey({ name: "RSA-PSS", hash: "SHA-256", modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1) }, true, ["sign", "verify"]);
  const smallDER = new Uint8Array(await crypto.subtle.exportKey("pkcs8", small.privateKey));
  await rejectsWith("key_size", () => proto.parsePrivateKey(smallDER));
  await rejectsWith("malformed", () => proto.parsePrivateKey(Uint8Array.of(...smallDER, 0)), "trailing data comes first");
});

test("private keys: WebCrypto uses, storage, extractability", async () => {
  const der = b64(vectors.keys[0].private_pkcs8);
  const signOnly = await proto.parsePrivateKey(der, { uses: ["sign"] });
  assert.ok(signOnly.can("sign"));
  assert.ok(!signOnly.can("decrypt"));
  assert.throws(() => signOnly.cryptoKey("decrypt"), TypeError);
  await assert.rejects(signOnly.bytes(), TypeError, "a non-extractable key does not export");
  const stored = await signOnly.toStorage();
  assert.equal(stored.decrypt, null);
  assert.equal(stored.sign.extractable, false);
  const back = proto.privateKeyFromStorage(structuredClone(stored));
  assert.ok(back.public().equal(signOnly.public()));
  assert.ok(back.can("sign"));
  // An extractable key can do both: it re-imports itself for the other algorithm.
  const both = await proto.parsePrivateKey(der, { extractable: true, uses: ["sign"] });
  assert.ok(both.can("decrypt"));
  const ck = await both.cryptoKey("decrypt");
  assert.equal(ck.algorithm.name, "RSA-OAEP");
  assert.equal(ck.extractable, false);
});

test("generated keys", async () => {
  const { encryption, auth } = await proto.generateDeviceKeys();
  for (const k of [encryption, auth]) {
    assert.equal(k.extractable, false);
    assert.equal(k.public().bytes().length, 422);
    proto.parsePublicKey(k.public().bytes());
  }
  assert.ok(encryption.can("decrypt") && !encryption.can("sign"));
  assert.ok(auth.can("sign") && !auth.can("decrypt"));
  assert.equal((await encryption.cryptoKey("decrypt")).extractable, false);
  assert.equal((await auth.cryptoKey("sign")).extractable, false);
  assert.ok(!encryption.public().equal(auth.public()));
});

test("IDs: text forms (§4)", () => {
  const bytes = Uint8Array.from({ length: 16 }, (_, i) => i * 17);
  const text = proto.userIDString(bytes);
  assert.equal(text.length, 26);
  assert.match(text, /^[a-z2-7]{26}$/);
  assert.deepEqual(proto.userIDBytes(text), bytes);
  assert.equal(proto.parseUserID(text.toUpperCase().replace(/(.{5})/g, "$1-")), text);
  assert.equal(proto.parseUserID(text.slice(0, 13) + " " + text.slice(13)), text);
  const kelvin = text.replace(/[a-z]/, "\u212a");
  if (kelvin !== text) assert.throws(() => proto.parseUserID(kelvin), { code: "malformed" });
  assert.throws(() => proto.parseUserID("a".repeat(26)), { code: "malformed" }, "zero");
  assert.throws(() => proto.parseUserID(text.slice(0, 25) + "b"), { code: "malformed" }, "unused bits set");
  assert.throws(() => proto.parseUserID(text.slice(0, 25)), { code: "malformed" });
  assert.throws(() => proto.parseUserID(text + "a"), { code: "malformed" });
  assert.throws(() => proto.parseUserID(text.replace(/.$/, "1")), { code: "malformed" });
  const dev = proto.newDeviceID();
  assert.match(dev, /^[0-9a-f]{16}$/);
  assert.equal(proto.parseDeviceID(dev), dev);
  assert.equal(proto.deviceIDString(proto.deviceIDBytes(dev)), dev);
  assert.throws(() => proto.parseDeviceID(dev.toUpperCase().replace(/^./, "A")), { code: "malformed" });
  assert.throws(() => proto.parseDeviceID("0".repeat(16)), { code: "malformed" });
  assert.throws(() => proto.parseDeviceID(dev + "0"), { code: "malformed" });
  const msg = proto.newMessageID();
  assert.match(msg, /^[0-9a-f]{32}$/);
  assert.equal(proto.parseMessageID(msg), msg);
  assert.throws(() => proto.parseMessageID("0".repeat(32)), { code: "malformed" });
  assert.match(proto.newUserID(), /^[a-z2-7]{26}$/);
});

test("fingerprints: text forms (§6)", () => {
  const fp = new proto.Fingerprint(Uint8Array.from({ length: 32 }, (_, i) => 255 - i));
  assert.equal(proto.parseFingerprint(fp.toString()).toString(), fp.toString());
  assert.throws(() => proto.parseFingerprint(fp.toString().slice(1)), { code: "malformed" });
  assert.throws(() => proto.parseFingerprint(fp.toString() + "A"), { code: "malformed" });
  assert.throws(() => proto.parseFingerprint(fp.toString().replace(/^./, "+")), { code: "malformed" });
  // The last character carries 2 unused bits.
  const last = fp.toString().at(-1);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const bumped = fp.toString().slice(0, 42) + alphabet[alphabet.indexOf(last) | 1];
  if (bumped !== fp.toString()) assert.throws(() => proto.parseFingerprint(bumped), { code: "malformed" });
  assert.match(fp.numeric(), /^\d{5}( \d{5}){7}$/);
});
