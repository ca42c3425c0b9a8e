/** The QGA client against a fake agent on a unix socket: resync, stale replies, garbage, silence, errors. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import { QemuAgent } from '../../src/helper/driver/qemuagent';
import { QgaClient, qgaExecute } from '../../src/helper/qemu/qga';
import type { Qmp } from '../../src/helper/qemu/qmp';

const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-qga-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

type Msg = { execute: string; arguments?: Record<string, unknown> };
/** A fake agent: `reply` gets each request (0xFF bytes stripped) and writes what it likes. */
async function fakeAgent(reply: (m: Msg, sock: net.Socket) => void): Promise<{ file: string; seen: Msg[]; maxBusy: number; close(): void }> {
  const file = path.join(dir, `qga${n++}.sock`);
  const seen: Msg[] = [];
  /** Connections that have sent something and are still open. */
  const busy = new Set<net.Socket>();
  const state = { file, seen, maxBusy: 0, close: () => server.close() };
  const server = net.createServer((sock) => {
    // A failing test must not keep the process alive.
    sock.unref();
    sock.on('close', () => busy.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    sock.on('data', (c) => {
      busy.add(sock);
      state.maxBusy = Math.max(state.maxBusy, busy.size);
      buf += c.toString('latin1').replace(/\xff/g, '');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const m = JSON.parse(buf.slice(0, nl)) as Msg;
        buf = buf.slice(nl + 1);
        seen.push(m);
        reply(m, sock);
      }
    });
  });
  await new Promise<void>((r) => server.listen(file, r));
  server.unref();
  return state;
}

const synced = (m: Msg, sock: net.Socket) => {
  if (m.execute !== 'guest-sync-delimited') return false;
  sock.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(`${JSON.stringify({ return: m.arguments!.id })}\n`)]));
  return true;
};

test('resync: garbage and a stale reply before the delimiter, a stale sync after it: all skipped, the command answered', async () => {
  const a = await fakeAgent((m, sock) => {
    if (m.execute === 'guest-sync-delimited') {
      // Left over from an earlier caller that timed out, then the agent's delimiter, then an older sync's reply.
      sock.write('{"return": {"stale": true}}\nnot json at all\n');
      sock.write(Buffer.concat([Buffer.from([0xff]), Buffer.from('{"return": 7}\n\n{garbage\n'), Buffer.from(`${JSON.stringify({ return: m.arguments!.id })}\n`)]));
    } else if (m.execute === 'guest-get-host-name') {
      // Split across writes: the client reads lines, not chunks.
      sock.write('{"return": {"host-');
      setTimeout(() => sock.write('name": "box"}}\n'), 10);
    }
  });
  const r = await qgaExecute<{ 'host-name': string }>(a.file, { command: 'guest-get-host-name' }, 2000);
  assert.deepEqual(r, { 'host-name': 'box' });
  assert.equal(a.seen[0]!.execute, 'guest-sync-delimited');
  assert.ok(Number.isInteger(a.seen[0]!.arguments!.id), 'a numeric id');
  assert.equal(a.seen[1]!.execute, 'guest-get-host-name');
  a.close();
});

test('sync ids are random: two calls do not reuse one', async () => {
  const a = await fakeAgent((m, sock) => synced(m, sock) || sock.write('{"return": {}}\n'));
  await qgaExecute(a.file, { command: 'guest-ping' }, 2000);
  await qgaExecute(a.file, { command: 'guest-ping' }, 2000);
  const ids = a.seen.filter((m) => m.execute === 'guest-sync-delimited').map((m) => m.arguments!.id);
  assert.equal(ids.length, 2);
  assert.notEqual(ids[0], ids[1]);
  a.close();
});

test('an agent that never answers (a port no guest reads): timeout, on time, with the one-line error', async () => {
  const a = await fakeAgent(() => {});
  const t0 = Date.now();
  await assert.rejects(qgaExecute(a.file, { command: 'guest-ping' }, 300), (e: DevvmError) => e.code === 'timeout' && /did not answer guest-ping within 300 ms/.test(e.message));
  const took = Date.now() - t0;
  assert.ok(took >= 290 && took < 1500, `${took} ms`);
  a.close();
});

test('an agent that answers the sync but never the command: timeout too', async () => {
  const a = await fakeAgent((m, sock) => synced(m, sock));
  await assert.rejects(qgaExecute(a.file, { command: 'guest-fsfreeze-freeze' }, 300), (e: DevvmError) => e.code === 'timeout');
  a.close();
});

test('garbage only (no delimiter, binary, endless lines): skipped until the deadline, never a crash', async () => {
  const a = await fakeAgent((_m, sock) => {
    sock.write(Buffer.from([0x00, 0x01, 0xfe, 0x7b, 0x0a]));
    sock.write('{"return": 1}\n'.repeat(100));
  });
  await assert.rejects(qgaExecute(a.file, { command: 'guest-ping' }, 300), (e: DevvmError) => e.code === 'timeout');
  a.close();
});

test('after the sync, garbage lines and non-objects are skipped; the real reply counts', async () => {
  const a = await fakeAgent((m, sock) => synced(m, sock) || sock.write('%%%\nnull\n42x\n{"return": 3}\n'));
  assert.equal(await qgaExecute(a.file, { command: 'guest-fsfreeze-thaw' }, 2000), 3);
  a.close();
});

test('an error reply rejects with what the agent said', async () => {
  const a = await fakeAgent((m, sock) => synced(m, sock) || sock.write('{"error": {"class": "GenericError", "desc": "hwclock failed"}}\n'));
  await assert.rejects(qgaExecute(a.file, { command: 'guest-set-time', args: { time: 1 } }, 2000), (e: DevvmError) => e.code === 'process-failed' && /refused guest-set-time: hwclock failed/.test(e.message));
  assert.deepEqual(a.seen[1], { execute: 'guest-set-time', arguments: { time: 1 } });
  a.close();
});

test('guest-shutdown answers nothing: resolved once sent; an agent closing the channel counts as done too', async () => {
  const quiet = await fakeAgent((m, sock) => synced(m, sock));
  await qgaExecute(quiet.file, { command: 'guest-shutdown', noReply: true }, 2000);
  assert.equal(quiet.seen[1]!.execute, 'guest-shutdown');
  quiet.close();
  const closing = await fakeAgent((m, sock) => synced(m, sock) || sock.destroy());
  await qgaExecute(closing.file, { command: 'guest-shutdown', noReply: true }, 2000);
  closing.close();
});

test('no socket (the VM is gone): a quick io error, not a hang', async () => {
  await assert.rejects(qgaExecute(path.join(dir, 'none.sock'), { command: 'guest-ping' }, 5000), (e: DevvmError) => e.code === 'io');
});

test('one client at a time (QEMU serves one connection): calls queue, and the deadline counts the wait', async () => {
  const a = await fakeAgent((m, sock) => synced(m, sock) || setTimeout(() => sock.write('{"return": {}}\n'), 100));
  const c = new QgaClient(a.file);
  await Promise.all([c.execute({ command: 'guest-ping' }, 2000), c.execute({ command: 'guest-ping' }, 2000), c.execute({ command: 'guest-ping' }, 2000)]);
  assert.equal(a.maxBusy, 1, 'each call starts after the one before it has closed its connection');
  // Queued behind three slow calls with a budget shorter than their sum: it times out.
  const slow = [1, 2, 3].map(() => c.execute({ command: 'guest-ping' }, 2000));
  await assert.rejects(c.execute({ command: 'guest-ping' }, 150), (e: DevvmError) => e.code === 'timeout');
  await Promise.all(slow);
  a.close();
});

// The driver's freeze on one session: what the guest stalls for is freeze, the switch, thaw; nothing else.
const qmpStub = { execute: async () => [{ label: 'qga0', 'frontend-open': true }] } as unknown as Qmp;
const answering = (freeze: (sock: net.Socket) => void) => (m: Msg, sock: net.Socket) => {
  if (synced(m, sock)) return;
  if (m.execute === 'guest-fsfreeze-freeze') freeze(sock);
  else sock.write('{"return": 1}\n');
};

test('whileFrozen: one session (one resync), freeze, then the work, then thaw; the stall is measured', async () => {
  const a = await fakeAgent(answering((sock) => sock.write('{"return": 2}\n')));
  const agent = new QemuAgent(qmpStub, a.file);
  assert.equal(await agent.connected(), true);
  const order: string[] = [];
  const r = await agent.whileFrozen(async () => {
    order.push(`switch after ${a.seen.map((m) => m.execute).join(',')}`);
    return 'done';
  }, 2000);
  assert.deepEqual(order, ['switch after guest-sync-delimited,guest-fsfreeze-freeze']);
  assert.deepEqual(a.seen.map((m) => m.execute), ['guest-sync-delimited', 'guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
  assert.equal(r.value, 'done');
  assert.ok(r.frozen && r.thawed && r.problem === undefined);
  assert.ok(r.frozenMs >= 0 && r.frozenMs < 1000);
  a.close();
});

test('whileFrozen: a refused freeze still runs the work and still thaws; the work failing still thaws and rejects with its error', async () => {
  const refusing = await fakeAgent(answering((sock) => sock.write('{"error": {"class": "GenericError", "desc": "fsfreeze is already frozen"}}\n')));
  const r = await new QemuAgent(qmpStub, refusing.file).whileFrozen(async () => 7, 2000);
  assert.equal(r.value, 7);
  assert.equal(r.frozen, false);
  assert.match(r.problem ?? '', /freeze: .*already frozen/);
  assert.equal(refusing.seen.at(-1)!.execute, 'guest-fsfreeze-thaw');
  refusing.close();
  const a = await fakeAgent(answering((sock) => sock.write('{"return": 1}\n')));
  await assert.rejects(new QemuAgent(qmpStub, a.file).whileFrozen(async () => {
    throw new Error('switch failed');
  }, 2000), /switch failed/);
  assert.equal(a.seen.at(-1)!.execute, 'guest-fsfreeze-thaw');
  a.close();
});

test('whileFrozen: a freeze that never answers times out, the work runs, and the thaw goes over a new session', async () => {
  const a = await fakeAgent(answering(() => {}));
  let ran = false;
  const r = await new QemuAgent(qmpStub, a.file).whileFrozen(async () => {
    ran = true;
  }, 300);
  assert.ok(ran);
  assert.equal(r.frozen, false);
  assert.equal(r.thawed, true);
  assert.deepEqual(a.seen.map((m) => m.execute), ['guest-sync-delimited', 'guest-fsfreeze-freeze', 'guest-sync-delimited', 'guest-fsfreeze-thaw']);
  a.close();
});

test('readFiles: whole files over one session (open, read until eof, close); an unopenable one is null; it yields to a call queued meanwhile', async () => {
  const files: Record<string, string> = { '/proc/net/tcp': 'x'.repeat(700 << 10), '/proc/net/tcp6': 'six' };
  const handles = new Map<number, { data: Buffer; at: number }>();
  let next = 1;
  let slowReads = false;
  const a = await fakeAgent((m, sock) => {
    if (synced(m, sock)) return;
    const send = (v: unknown) => sock.write(`${JSON.stringify(v)}\n`);
    const args = m.arguments ?? {};
    if (m.execute === 'guest-file-open') {
      const f = files[args.path as string];
      if (f === undefined) return send({ error: { class: 'GenericError', desc: 'No such file' } });
      handles.set(next, { data: Buffer.from(f), at: 0 });
      return send({ return: next++ });
    }
    if (m.execute === 'guest-file-read') {
      const h = handles.get(args.handle as number)!;
      const chunk = h.data.subarray(h.at, h.at + (args.count as number));
      h.at += chunk.length;
      const answer = () => send({ return: { count: chunk.length, 'buf-b64': chunk.toString('base64'), eof: h.at >= h.data.length } });
      return slowReads ? setTimeout(answer, 100) : answer();
    }
    if (m.execute === 'guest-file-close' || m.execute === 'guest-ping') send({ return: {} });
    return undefined;
  });
  after(a.close);
  const agent = new QemuAgent(null as unknown as Qmp, a.file);
  const [tcp, tcp6, none] = await agent.readFiles(['/proc/net/tcp', '/proc/net/tcp6', '/nope'], 2 << 20, 5000);
  assert.equal(tcp?.length, 700 << 10, 'read in chunks until eof');
  assert.equal(tcp6?.toString(), 'six');
  assert.equal(none, null);
  assert.equal(a.seen.filter((m) => m.execute === 'guest-file-close').length, 2, 'every opened file closed');
  assert.equal(a.seen.filter((m) => m.execute === 'guest-sync-delimited').length, 1, 'one session');
  await assert.rejects(agent.readFiles(['/proc/net/tcp'], 1000, 5000), /larger than 1000 bytes/);

  // A ping queued while a slow read runs gets the agent after one command, not after the whole read.
  slowReads = true;
  files['/proc/net/tcp'] = 'y'.repeat(3 << 20);
  const reading = agent.readFiles(['/proc/net/tcp', '/proc/net/tcp6'], 4 << 20, 10_000);
  await new Promise((r) => setTimeout(r, 30));
  const t0 = Date.now();
  await agent.ping(2000);
  assert.ok(Date.now() - t0 < 1000, `the ping waited ${Date.now() - t0} ms`);
  await assert.rejects(reading, (e: unknown) => e instanceof DevvmError && e.code === 'busy');
});

test('setClock: the time is read once the agent has answered the resync, and it resolves before the slow RTC write is confirmed', async () => {
  let syncedAt = 0;
  const a = await fakeAgent((m, sock) => {
    if (m.execute === 'guest-sync-delimited') {
      // An agent slow to answer after a resume: a time read before this would be 300 ms stale.
      setTimeout(() => ((syncedAt = Date.now()), synced(m, sock)), 300);
    } else setTimeout(() => sock.write('{"return": {}}\n'), 400); // qemu-ga's hwclock -w
  });
  const agent = new QemuAgent(qmpStub, a.file);
  const asked = Date.now();
  const { applied } = await agent.setClock(() => Date.now() * 1e6, 5000);
  const tookMs = Date.now() - asked;
  assert.ok(tookMs >= 300 && tookMs < 600, `resolved when sent (${tookMs} ms), not after the reply`);
  await applied;
  assert.ok(Date.now() - asked >= 700, 'applied waits for the reply');
  const sent = a.seen.find((m) => m.execute === 'guest-set-time')!;
  assert.ok(Number(sent.arguments!.time) / 1e6 >= syncedAt, 'the time was read after the sync answered');
  a.close();
});

test('setClock: an agent that never answers the resync rejects within the deadline; one refusing the command rejects applied', async () => {
  const silent = await fakeAgent(() => {});
  await assert.rejects(new QemuAgent(qmpStub, silent.file).setClock(() => 1, 300), (e: DevvmError) => e.code === 'timeout');
  silent.close();
  const refusing = await fakeAgent((m, sock) => synced(m, sock) || sock.write('{"error": {"class": "GenericError", "desc": "hwclock failed"}}\n'));
  const { applied } = await new QemuAgent(qmpStub, refusing.file).setClock(() => 1, 2000);
  await assert.rejects(applied, /hwclock failed/);
  refusing.close();
});

test('a resync the agent never answers is tried again on a new connection (seen after a resume): the clock is set in the second window', async () => {
  let connections = 0;
  const a = await fakeAgent((m, sock) => {
    if (m.execute === 'guest-sync-delimited' && !(sock as net.Socket & { n?: number }).n) (sock as net.Socket & { n?: number }).n = ++connections;
    if ((sock as net.Socket & { n?: number }).n === 1) return; // the first connection is never answered
    synced(m, sock) || sock.write('{"return": {}}\n');
  });
  const t0 = Date.now();
  const { applied } = await new QemuAgent(qmpStub, a.file).setClock(() => Date.now() * 1e6, 15_000);
  await applied;
  const took = Date.now() - t0;
  assert.ok(took >= 450 && took < 2000, `set after ${took} ms, not at the 15 s deadline`);
  assert.equal(connections, 2);
  a.close();
});

test('a silent agent: new connections until the deadline, then the one-line timeout naming the whole wait', async () => {
  const a = await fakeAgent(() => {});
  const t0 = Date.now();
  await assert.rejects(qgaExecute(a.file, { command: 'guest-ping' }, 5000), (e: DevvmError) => e.code === 'timeout' && /did not answer guest-ping within 5000 ms/.test(e.message));
  const took = Date.now() - t0;
  assert.ok(took >= 4900 && took < 6000, `${took} ms`);
  assert.equal(a.seen.filter((m) => m.execute === 'guest-sync-delimited').length, 4, 'windows of 0.5, 1 and 2 s, then the 1.5 s left');
  a.close();
});
