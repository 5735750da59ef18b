// proto-bench.mjs: how long the protocol module's operations take, next to
// the WebCrypto RSA operations they are made of (the limit for the crypto).
// Run: node web/testdata/proto-bench.mjs  (about 20 s; fixed test keys).
import { readFileSync } from "node:fs";
import * as proto from "../app/js/proto/index.js";

const vectors = JSON.parse(readFileSync(new URL("../../protocol/testdata/vectors.json", import.meta.url), "utf8"));
const key = async (name) => proto.parsePrivateKey(proto.fromBase64(vectors.keys.find((k) => k.name === name).private_pkcs8), { extractable: true });
const [identity, enc, auth, server] = await Promise.all(["alice-identity", "bob-phone-enc", "alice-phone-auth", "server"].map(key));

async function bench(name, fn, { min = 20, ms = 1500 } = {}) {
  await fn(); // warm up: imports, caches
  let n = 0;
  const start = performance.now();
  while (n < min || performance.now() - start < ms) {
    await fn();
    n++;
    if (performance.now() - start > 10 * ms) break;
  }
  const per = (performance.now() - start) / n;
  console.log(`${name.padEnd(44)} ${per >= 1 ? per.toFixed(2) + " ms" : (per * 1000).toFixed(1) + " µs"}  (${n} runs)`);
  return per;
}

const subtle = crypto.subtle;
const msg = new Uint8Array(900);
const label = new Uint8Array(40);
const wrapped = await proto.encryptBlob(new Uint8Array(0), proto.newBlobKey()); // warm the AES path
void wrapped;
console.log("WebCrypto RSA-3072 itself:");
await bench("  RSA-PSS sign", async () => subtle.sign({ name: "RSA-PSS", saltLength: 32 }, await identity.cryptoKey("sign"), msg));
const sig = new Uint8Array(await subtle.sign({ name: "RSA-PSS", saltLength: 32 }, await identity.cryptoKey("sign"), msg));
await bench("  RSA-PSS verify", async () => subtle.verify({ name: "RSA-PSS", saltLength: 32 }, await identity.public().cryptoKey("verify"), sig, msg));
await bench("  RSA-OAEP encrypt (wrap)", async () => subtle.encrypt({ name: "RSA-OAEP", label }, await enc.public().cryptoKey("wrap"), new Uint8Array(32)));
const ct = await subtle.encrypt({ name: "RSA-OAEP", label }, await enc.public().cryptoKey("wrap"), new Uint8Array(32));
await bench("  RSA-OAEP decrypt (unwrap)", async () => subtle.decrypt({ name: "RSA-OAEP", label }, await enc.cryptoKey("decrypt"), ct));

console.log("The protocol module:");
const alice = proto.newUserID();
const bob = proto.newUserID();
const from = { user: alice, device: proto.newDeviceID(), identity };
const m = { contentType: "text/plain; charset=utf-8", body: new TextEncoder().encode("Meet at the north gate at noon.") };
const one = [{ user: bob, device: proto.newDeviceID(), key: enc.public() }];
const ten = Array.from({ length: 10 }, () => ({ user: bob, device: proto.newDeviceID(), key: enc.public() }));
await bench("  seal, signed, 1 device (1 sign + 1 wrap)", () => proto.seal(m, from, one, { ttl: 3600000 }));
await bench("  seal, signed, 10 devices (1 sign + 10 wraps)", () => proto.seal(m, from, ten, { ttl: 3600000 }));
const sealed = proto.parseEnvelope(await proto.seal(m, from, one, { ttl: 3600000 }));
const me = { user: bob, device: one[0].device, key: enc };
await bench("  open, verified (1 verify + 1 unwrap)", () => sealed.open(me, identity.public(), Date.now()));
await bench("  parseEnvelope", async () => proto.parseEnvelope(sealed.bytes()));
await bench("  certifyDevice + parse", () => proto.certifyDevice(identity, alice, proto.newDeviceID(), enc.public(), auth.public(), Date.now()));
await bench("  newClientSession (1 wrap + 1 sign)", () => proto.newClientSession({ user: alice, device: from.device, authKey: auth }, server.public(), Date.now()));
const { session: c, setup } = await proto.newClientSession({ user: alice, device: from.device, authKey: auth }, server.public(), Date.now());
const { session: s, confirm } = await proto.acceptSession(proto.parseChannelSetup(setup), server, auth.public(), new proto.MemoryReplayCache(), 0, Date.now());
await c.confirm(confirm, Date.now());
const body = new Uint8Array(1024);
await bench("  request frame, 1 KiB: seal + open", async () => {
  const { frame } = await c.sealRequest("POST", "/v1/send", body);
  await s.openRequest("POST", "/v1/send", frame, Date.now());
});
const tk = await proto.newTicketKeys(server);
let ticket = await c.ticket(await tk.issueTicket(s, Date.now()), Date.now());
await bench("  resume, both ends (no RSA)", async () => {
  const { resumption, message } = await proto.resume(ticket, Date.now());
  const q = proto.parseResume(message);
  await tk.check(q, Date.now());
  const r = await proto.acceptResume(q, new proto.MemoryReplayCache(), 0, Date.now());
  const c2 = await resumption.finish(r.answer, Date.now());
  ticket = await c2.ticket(await tk.issueTicket(r.session, Date.now()), Date.now());
});
const big = new Uint8Array(10 * 1024 * 1024);
const blobKey = proto.newBlobKey();
const enc10 = await proto.encryptBlob(big, blobKey);
await bench("  encryptBlob 10 MiB", () => proto.encryptBlob(big, blobKey), { min: 3 });
await bench("  decryptBlob 10 MiB (SHA-256 checked)", () => proto.decryptBlob(enc10.data, blobKey, { sha256: enc10.sha256 }), { min: 3 });
