// Helpers of the SDK's Node tests (web/test/client*.test.mjs): build qrtalkd
// and qrtalk once, start a real qrtalkd on 127.0.0.1 with a free port and a
// temporary data directory, make invites, drive the CLI. Nothing here is a
// test; the runner lists this file as one because it lives in web/test/.

import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

// The server's certificate is self-signed: the secure channel, pinned by
// the invite's fingerprint, is what authenticates the server (as in the
// browser, which cannot pin TLS). For these tests only.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

/** goTool finds the go command, or returns null. */
export function goTool() {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'go'))) return join(dir, 'go');
  }
  if (process.env.GOROOT && existsSync(join(process.env.GOROOT, 'bin', 'go'))) return join(process.env.GOROOT, 'bin', 'go');
  if (existsSync('/usr/local/go/bin/go')) return '/usr/local/go/bin/go';
  return null;
}

/**
 * needs returns a reason to skip (null if none) for the tests that need Go
 * and a WebSocket; under CI=true a missing tool is a failure, not a skip.
 */
export function missing() {
  let why = null;
  if (!goTool()) why = 'go is not installed: the tests build and run a real qrtalkd';
  else if (typeof WebSocket !== 'function') why = 'no global WebSocket: run node with --experimental-websocket';
  if (why && process.env.CI === 'true') throw new Error(`${why} (CI=true: failing instead of skipping)`);
  return why;
}

let built = null;
/** build compiles qrtalkd and qrtalk once per test process; returns their directory. */
export function build() {
  built ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'qrtalk-webtest-bin-'));
    await run(goTool(), ['build', '-o', dir + '/', './cmd/qrtalkd', './cmd/qrtalk'], { cwd: repo, timeout: 300_000 });
    return dir;
  })();
  return built;
}

async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
    s.on('error', fail);
  });
}

/** A running qrtalkd. */
export class Server {
  static async start() {
    const bins = await build();
    const tmp = await mkdtemp(join(tmpdir(), 'qrtalk-webtest-'));
    const addr = `127.0.0.1:${await freePort()}`;
    const s = new Server(bins, tmp, addr);
    await s.#spawn();
    return s;
  }

  constructor(bins, tmp, addr) {
    this.bins = bins;
    this.tmp = tmp;
    this.addr = addr;
    this.data = join(tmp, 'server');
    this.url = `https://${addr}`;
    this.stderr = '';
  }

  async #spawn() {
    this.proc = spawn(join(this.bins, 'qrtalkd'), ['serve', '--data', this.data, '--listen', this.addr],
      { env: { HOME: this.tmp, PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((ok) => this.proc.on('exit', (code, sig) => ok({ code, sig })));
    let out = '';
    let started = false;
    await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`qrtalkd did not start in 60 s; stderr:\n${this.stderr}`)), 60_000);
      // Ready: the first start prints an invite; a restart only logs that it started.
      const check = () => {
        if (!started && (/qrtalk:invite\?/.test(out) || /msg="qrtalkd started"/.test(this.stderr))) {
          started = true;
          clearTimeout(timer);
          ok();
        }
      };
      this.proc.stderr.on('data', (d) => { this.stderr = (this.stderr + d).slice(-20000); check(); });
      this.proc.stdout.on('data', (d) => { out += d; check(); });
      this.exited.then(({ code }) => { clearTimeout(timer); fail(new Error(`qrtalkd exited (${code}); stderr:\n${this.stderr}`)); });
    });
    this.proc.stdout.resume();
  }

  /** invite makes an invite good for uses registrations. */
  async invite(uses = 10) {
    for (let attempt = 0; ; attempt++) {
      try {
        const { stdout } = await run(join(this.bins, 'qrtalkd'),
          ['invite', '--data', this.data, '--listen', this.addr, '--uses', String(uses), '--expires', '1h'],
          { env: { HOME: this.tmp, PATH: process.env.PATH }, timeout: 60_000 });
        return stdout.trim();
      } catch (e) {
        // The running server may hold the database's lock for a moment.
        if (attempt >= 20 || !/SQLITE_BUSY|database is locked/.test(String(e.stderr ?? e.message))) throw e;
        await new Promise((ok) => setTimeout(ok, 250));
      }
    }
  }

  /** restart stops the server and starts it again on the same address and data. */
  async restart() {
    await this.stop(false);
    await this.#spawn();
  }

  async stop(cleanup = true) {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 20_000);
      await this.exited;
      clearTimeout(t);
    }
    if (cleanup) await rm(this.tmp, { recursive: true, force: true });
  }
}

/** A qrtalk CLI user with its own --home. */
export class CLI {
  constructor(server, name) {
    this.bin = join(server.bins, 'qrtalk');
    this.home = join(server.tmp, 'cli-' + name);
    this.env = { HOME: server.tmp, PATH: process.env.PATH, TZ: 'UTC' };
  }
  async run(...args) {
    try {
      const { stdout } = await run(this.bin, ['--home', this.home, ...args], { env: this.env, timeout: 90_000, cwd: this.home.replace(/[^/]+$/, '') });
      return stdout;
    } catch (e) {
      throw new Error(`qrtalk ${args.join(' ')}: ${e.message}\n${e.stderr ?? ''}`);
    }
  }
  async json(...args) { return JSON.parse(await this.run(...args, '--json')); }
  /** jsonLines runs a command printing one JSON object a line. */
  async jsonLines(...args) {
    return (await this.run(...args, '--json')).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  }
}

/** waitFor polls cond until it returns a truthy value or ms pass. */
export async function waitFor(what, cond, ms = 20_000, every = 100) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** nextEvent resolves with the detail of the next event of type on target matching pred. */
export function nextEvent(target, type, pred = () => true, ms = 20_000) {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => { target.removeEventListener(type, on); fail(new Error(`no ${type} event in ${ms} ms`)); }, ms);
    function on(e) {
      if (!pred(e.detail)) return;
      clearTimeout(timer);
      target.removeEventListener(type, on);
      ok(e.detail);
    }
    target.addEventListener(type, on);
  });
}

/**
 * storeChecks runs the same checks on any store of the interface of
 * store.js (memory.js in Node, idb.js in Chromium), and throws on the first
 * that fails. Self-contained (no imports, no closures): the browser test
 * sends its source to the page.
 */
export async function storeChecks(store) {
  const fail = (what, got, want) => { throw new Error(`store: ${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`); };
  const eq = (what, got, want) => { if (JSON.stringify(got) !== JSON.stringify(want)) fail(what, got, want); };
  const id = (c) => c.repeat(32);
  const msg = (i, conversation, sent, expires) => ({ id: id(i), conversation, outgoing: false, envelope: Uint8Array.of(1, 3, 9), sent, expires, state: '' });
  await store.clear();
  eq('no account', await store.getAccount(), null);
  const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt']);
  await store.putAccount({ version: 1, user: 'u', key, cert: Uint8Array.of(5) });
  const acc = await store.getAccount();
  if (!(acc.key instanceof CryptoKey) || acc.key.extractable !== false) fail('a stored CryptoKey', String(acc.key), 'a non-extractable CryptoKey');
  eq('bytes kept', [...acc.cert], [5]);

  await store.putContact({ user: 'u1', name: 'bob', identity: Uint8Array.of(1), verified: false, pending: null, added: 1 });
  await store.putContact({ user: 'u2', name: 'carol', identity: Uint8Array.of(2), verified: true, pending: null, added: 2 });
  eq('contact', (await store.getContact('u1')).name, 'bob');
  const c = await store.getContact('u1');
  c.verified = true;
  eq('records are copies', (await store.getContact('u1')).verified, false);
  await store.deleteContact('u2');
  eq('contacts', (await store.listContacts()).map((x) => x.user), ['u1']);
  eq('no contact', await store.getContact('u2'), null);

  await store.putGroup({ id: id('a'), name: 'team', members: ['u1', 'u'], version: 1 });
  await store.putGroup({ id: id('a'), name: 'team', members: ['u'], version: 2 });
  eq('group replaced', (await store.getGroup(id('a'))).version, 2);
  eq('groups', (await store.listGroups()).length, 1);

  eq('added', await store.addMessage(msg('b', 'u:x', 2000, 10_000)), true);
  eq('added', await store.addMessage(msg('a', 'u:x', 1000, 5_000)), true);
  eq('a second copy is refused', await store.addMessage(msg('a', 'u:x', 1000, 99_000)), false);
  await store.addMessage(msg('c', 'u:y', 1500, 7_000));
  eq('in send order', (await store.listMessages('u:x')).map((m) => m.sent), [1000, 2000]);
  eq('the first copy stays', (await store.getMessage(id('a'))).expires, 5_000);
  eq('conversations', (await store.listConversations()).sort(), ['u:x', 'u:y']);
  await store.setMessageState(id('b'), 'read');
  eq('state', (await store.getMessage(id('b'))).state, 'read');
  eq('envelope bytes', [...(await store.getMessage(id('b'))).envelope], [1, 3, 9]);

  await store.putBlob(id('a'), id('f'), Uint8Array.of(7), 5_000);
  eq('blob', [...(await store.getBlob(id('a'), id('f')))], [7]);
  eq('no blob', await store.getBlob(id('a'), id('e')), null);
  await store.addSeen(id('a'), 5_000);
  eq('seen', await store.hasSeen(id('a')), true);
  eq('not seen', await store.hasSeen(id('d')), false);

  eq('next expiry', await store.nextExpiry(), 5_000);
  eq('nothing expired yet', await store.deleteExpired(4_999), []);
  eq('expired', await store.deleteExpired(5_000), [id('a')]);
  eq('the message is gone', await store.getMessage(id('a')), null);
  eq('its attachment is gone', await store.getBlob(id('a'), id('f')), null);
  eq('its seen entry is gone', await store.hasSeen(id('a')), false);
  eq('next expiry after', await store.nextExpiry(), 7_000);
  eq('the rest', (await store.deleteExpired(20_000)).sort(), [id('b'), id('c')]);
  eq('empty', await store.nextExpiry(), null);
  eq('no conversations', await store.listConversations(), []);

  await store.clear();
  eq('cleared account', await store.getAccount(), null);
  eq('cleared contacts', await store.listContacts(), []);
  eq('cleared groups', await store.listGroups(), []);
  return 'ok';
}
