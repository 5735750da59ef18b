// Session resumption (docs/PROTOCOL.md §18) against the shared test vectors
// (section `resumptions`, checked as §18.11 says), and both ends round trip.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as proto from "../app/js/proto/index.js";
import { channelKeys, resumptionSecret } from "../app/js/proto/channel.js";
import { acceptResumeWithRandom, buildResume, resumedKeys, ticketKey, ticketPeriod } from "../app/js/proto/resume.js";
import { b64, bytes, hex, rejectsWith, vectorKeys, vectors } from "./proto-helpers.mjs";

const resumptions = vectors.resumptions ?? [];

test("vectors: resumptions are there", () => {
  assert.ok(resumptions.length >= 10, "vectors.json lost its resumptions section");
});

test("vectors: resumptions", async (t) => {
  const { privs } = await vectorKeys();
  for (const rv of resumptions) {
    await t.test(rv.name, async () => {
      const tk = await proto.newTicketKeys(privs[rv.server_key]);
      const cache = new proto.MemoryReplayCache();
      const random = rv.server_random ? proto.fromHex(rv.server_random) : new Uint8Array(32);
      const accept = async () => {
        const q = proto.parseResume(b64(rv.resume));
        await tk.check(q, rv.now_ms);
        return acceptResumeWithRandom(q, cache, rv.lifetime_s * 1000, rv.now_ms, random);
      };
      if (rv.error === "replay") await accept();
      if (rv.error) return void (await rejectsWith(rv.error, accept, rv.name));

      const server = privs[rv.server_key];
      const fp = (await proto.serverFingerprint(server.public())).bytes();
      assert.equal(ticketPeriod(rv.now_ms), rv.ticket_key_period);
      assert.equal(hex(await ticketKey(await server.bytes(), fp, rv.ticket_key_period)), rv.ticket_key);
      const rs = proto.fromHex(rv.resumption_secret);
      assert.deepEqual(await resumptionSecret(proto.fromHex(rv.origin_secret), proto.fromHex(rv.origin_session_id)), rs);

      const { session, answer } = await accept();
      assert.equal(session.id, rv.session_id);
      assert.equal(session.expires, rv.expires_ms);
      assert.deepEqual(answer, b64(rv.answer), "the answer, byte for byte");
      const { id, secret } = await resumedKeys(b64(rv.resume), random, rs);
      assert.equal(hex(id), rv.session_id);
      assert.equal(hex(secret), rv.secret);
      const keys = await channelKeys(secret, id);
      assert.equal(hex(keys.c2s), rv.client_to_server_key);
      assert.equal(hex(keys.s2c), rv.server_to_client_key);
      assert.equal(hex(await resumptionSecret(secret, id)), rv.next_resumption_secret);

      // The device's side (§18.7), with the ticket's secret. Its message,
      // given the client random, is the vector's byte for byte.
      const msg = b64(rv.resume);
      const q = proto.parseResume(msg);
      const owner = { user: proto.userIDBytes(q.user), device: proto.deviceIDBytes(q.device), serverFP: q.serverFP.bytes() };
      assert.deepEqual(await buildResume(owner, q.time, msg.subarray(66, 98), msg.subarray(98, 220), rs), msg);
      const device = await new proto.Resumption(msg, q.time, rs.slice(), owner).finish(b64(rv.answer), rv.now_ms);
      assert.equal(device.id, rv.session_id);
      assert.equal(device.expires, rv.expires_ms);
      // The next ticket holds what it should.
      const next = await tk.open(b64(rv.next_ticket));
      assert.equal(next.user, rv.ticket_user);
      assert.equal(next.device, rv.ticket_device);
      assert.equal(Number(next.authTime), rv.ticket_auth_time_ms);
      assert.equal(next.expires, rv.ticket_expires_ms);
      assert.equal(hex(next.secret), rv.next_resumption_secret);
      // The same session's ticket sealed here holds the same.
      const mine = await tk.open(await tk.issueTicket(session, rv.now_ms));
      assert.deepEqual([mine.user, mine.device, mine.authTime, mine.expires, hex(mine.secret)], [next.user, next.device, next.authTime, next.expires, hex(next.secret)]);
      await rejectsWith("malformed", () => tk.issueTicket(session, rv.now_ms), "one ticket per session");
    });
  }
});

test("resumption: full setup, ticket, resume, ticket, resume", async () => {
  const { pubs, privs } = await vectorKeys();
  const tk = await proto.newTicketKeys(privs.server);
  const cache = new proto.MemoryReplayCache();
  const user = proto.newUserID();
  const device = proto.newDeviceID();
  let now = Date.now();
  const { session: c0, setup } = await proto.newClientSession({ user, device, authKey: privs["alice-phone-auth"] }, pubs.server, now);
  const { session: s0, confirm } = await proto.acceptSession(proto.parseChannelSetup(setup), privs.server, pubs["alice-phone-auth"], cache, 0, now);
  await rejectsWith("malformed", () => c0.ticket(new Uint8Array(122), now), "no ticket before the confirmation");
  await c0.confirm(confirm, now);
  const sealed0 = await tk.issueTicket(s0, now);
  let ticket = await c0.ticket(sealed0, now);
  assert.equal(ticket.user, user);
  assert.equal(ticket.expires, now + proto.TICKET_LIFETIME, "a chain ends 24 hours after its full setup");
  assert.ok(!JSON.stringify(ticket).includes(proto.toBase64(ticket.toBytes()).slice(-20)), "JSON hides the secret");
  await rejectsWith("malformed", () => c0.ticket(sealed0, now), "a session pairs one ticket");
  await rejectsWith("expired", () => proto.resume(proto.parseTicket(ticket.toBytes()), ticket.expires));
  for (let round = 0; round < 2; round++) {
    now += 60000;
    ticket = proto.parseTicket(ticket.toBytes()); // as a device keeps it across restarts
    const { resumption, message } = await proto.resume(ticket, now);
    assert.equal(message.length, proto.RESUME_SIZE);
    assert.ok(proto.isResume(message) && !proto.isResume(setup));
    await rejectsWith("malformed", () => proto.resume(ticket, now), "a ticket is good once");
    const q = proto.parseResume(message);
    await tk.check(q, now);
    const { session: s, answer } = await proto.acceptResume(q, cache, 600000, now);
    const c = await resumption.finish(answer, now);
    assert.equal(c.id, s.id);
    assert.equal(c.expires, now + 600000);
    await rejectsWith("replay", () => resumption.finish(answer, now));
    const { frame, counter } = await c.sealRequest("POST", "/v1/send", bytes(`round ${round}`));
    const got = await s.openRequest("POST", "/v1/send", frame, now);
    assert.deepEqual(got.body, bytes(`round ${round}`));
    assert.equal(got.counter, counter);
    // The same message again: its ticket is spent.
    const again = proto.parseResume(message);
    await tk.check(again, now);
    await rejectsWith("replay", () => proto.acceptResume(again, cache, 0, now));
    ticket = await c.ticket(await tk.issueTicket(s, now), now);
    assert.equal(ticket.expires, now - 60000 * (round + 1) + proto.TICKET_LIFETIME, "resumed sessions inherit the auth time");
  }
  // A changed server random gives another session: the confirmation does not open.
  const { resumption, message } = await proto.resume(ticket, now);
  const q = proto.parseResume(message);
  await tk.check(q, now);
  const { session: sLast, answer } = await proto.acceptResume(q, cache, 0, now);
  const changed = answer.slice();
  changed[5] ^= 1;
  await rejectsWith("mismatch", () => resumption.finish(changed, now));
  await rejectsWith("malformed", () => resumption.finish(answer.subarray(0, 83), now));
  await rejectsWith("version", () => resumption.finish(Uint8Array.of(2), now));
  const c = await resumption.finish(answer, now);
  assert.ok(c.confirmed);
  // A ticket that expired is not used.
  const last = await c.ticket(await tk.issueTicket(sLast, now), now);
  await rejectsWith("expired", () => proto.resume(last, last.expires));
});
