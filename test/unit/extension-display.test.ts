/**
 * The Display tab's host side without VS Code: strict parsing of the webview's messages,
 * and a DisplaySession against a real unix socket standing in for QEMU's VNC server (the
 * bytes are relayed both ways, per connection), the VM's states, reconnects and resizes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { MAX_DATA, parseFromDisplay, type ToDisplay } from '../../src/extension/displayProtocol';
import { DisplaySession, resizeNote, stateText } from '../../src/extension/displaySession';
import { DevvmError } from '../../src/shared/errors';
import type { Size } from '../../src/shared/display';
import type { DisplayInfo, DisplayResizeResult, VmSummary } from '../../src/shared/types';

test('messages from the display webview are parsed strictly', () => {
  const bytes = new Uint8Array([1, 2, 3]);
  assert.deepEqual(parseFromDisplay({ type: 'ready' }), { type: 'ready' });
  assert.deepEqual(parseFromDisplay({ type: 'size', width: 1280, height: 800 }), { type: 'size', width: 1280, height: 800 });
  assert.deepEqual(parseFromDisplay({ type: 'data', conn: 1, data: bytes }), { type: 'data', conn: 1, data: bytes });
  assert.deepEqual(parseFromDisplay({ type: 'data', conn: 2, data: 'AQID' }), { type: 'data', conn: 2, data: bytes }, 'base64 too');
  assert.deepEqual(parseFromDisplay({ type: 'close', conn: 3 }), { type: 'close', conn: 3 });
  assert.deepEqual(parseFromDisplay({ type: 'rfb', conn: 1, event: 'connect' }), { type: 'rfb', conn: 1, event: 'connect' });
  assert.deepEqual(parseFromDisplay({ type: 'desktop', conn: 1, width: 1024, height: 640 }), { type: 'desktop', conn: 1, width: 1024, height: 640 });
  const bad: unknown[] = [
    null, undefined, 'ready', 1, [], [{ type: 'ready' }], {}, { type: 'eval', code: 'x' }, { type: 'ready', extra: 1 },
    { type: 'size', width: 0, height: 800 }, { type: 'size', width: 1280.5, height: 800 }, { type: 'size', width: 70000, height: 800 },
    { type: 'size', width: '1280', height: 800 }, { type: 'size', width: 1280 }, { type: 'size', width: 1280, height: 800, dpr: 2 },
    { type: 'data', conn: 1 }, { type: 'data', conn: 0, data: bytes }, { type: 'data', conn: -1, data: bytes }, { type: 'data', conn: 1.5, data: bytes },
    { type: 'data', conn: 1, data: new Uint8Array(0) }, { type: 'data', conn: 1, data: new Uint8Array(MAX_DATA + 1) },
    { type: 'data', conn: 1, data: [1, 2, 3] }, { type: 'data', conn: 1, data: 'not base64!' }, { type: 'data', conn: 1, data: 'AQI' },
    { type: 'data', conn: 1, data: new Uint16Array(2) }, { type: 'data', conn: 1, data: bytes, to: '/tmp/x.sock' },
    { type: 'close' }, { type: 'close', conn: '1' }, { type: 'rfb', conn: 1, event: 'exec' }, { type: 'desktop', conn: 1, width: 0, height: 1 },
  ];
  for (const m of bad) assert.equal(parseFromDisplay(m), null, String(JSON.stringify(m)).slice(0, 80));
});

test('what the tab says', () => {
  assert.equal(stateText('web', 'stopped'), 'VM is stopped');
  assert.equal(stateText('web', 'suspended'), 'VM is suspended');
  assert.equal(stateText('web', 'nodisplay'), 'VM has no display (devvm set web --display on)');
  assert.equal(resizeNote({ requested: { width: 2000, height: 1300 }, size: { width: 1920, height: 1200 }, applied: false, ms: 30 }), "The guest kept 1920x1200 (its console's limit) instead of 2000x1300; scaled to fit.");
  assert.equal(resizeNote({ requested: { width: 1024, height: 640 }, size: { width: 1024, height: 640 }, applied: true, ms: 20 }), '');
});

// ---- a session against a socket -------------------------------------------------

const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-display-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, f: () => T | undefined | false, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A stand-in for QEMU's VNC socket: records what it got, can send and hang up. */
async function vncServer(name: string) {
  const file = path.join(dir, `${name}.sock`);
  const peers: net.Socket[] = [];
  const got: Buffer[] = [];
  let ended = 0;
  const srv = net.createServer((s) => {
    peers.push(s);
    s.on('data', (d) => got.push(d));
    s.on('close', () => ended++);
  });
  await new Promise<void>((r) => srv.listen(file, r));
  return { file, peers, got: () => Buffer.concat(got), ended: () => ended, close: () => new Promise<void>((r) => srv.close(() => r())) };
}

const summary = (over: Partial<VmSummary> = {}): VmSummary => ({ name: 'web', state: 'running', image: 'debian-12', user: 'al', sshHost: 'devvm-web', sshPort: 2222, cpus: 2, memoryMiB: 2048, display: 'auto', ...over });

function harness(socket: string, over: { display?: DisplayInfo['display']; resize?: (s: Size) => Promise<DisplayResizeResult> } = {}) {
  const posts: ToDisplay[] = [];
  const logs: string[] = [];
  const resizes: Size[] = [];
  let running = true;
  const session = new DisplaySession(
    {
      vm: 'web',
      display: async (name) => ({
        name, state: running ? 'running' : 'stopped', display: over.display === undefined ? 'auto' : over.display, socket: running ? socket : null,
        size: null, bootSize: null, limits: { min: { width: 640, height: 480 }, max: { width: 2560, height: 1600 } },
      }),
      resize: async (_name, s) => {
        resizes.push(s);
        return over.resize ? over.resize(s) : { requested: s, size: s, applied: true, ms: 1 };
      },
      post: (m) => posts.push(m),
      log: (m) => logs.push(m),
      debounce: { quietMs: 10, maxWaitMs: 40, minIntervalMs: 20 },
    },
    summary(over.display === null ? { display: undefined } : over.display && over.display !== 'auto' ? { display: over.display } : {}),
  );
  return {
    session, posts, logs, resizes,
    setRunning: (r: boolean) => (running = r),
    last: <T extends ToDisplay['type']>(type: T) => posts.filter((p): p is Extract<ToDisplay, { type: T }> => p.type === type).at(-1),
  };
}

test('after ready, the session connects to the socket the helper names and relays bytes both ways, per connection', async () => {
  const srv = await vncServer('relay');
  const h = harness(srv.file);
  await sleep(20);
  assert.equal(srv.peers.length, 0, 'nothing before the webview is ready');
  h.session.onMessage({ type: 'ready' });
  const open = await until('open', () => h.last('open'));
  assert.deepEqual(open, { type: 'open', conn: 1 });
  assert.equal(h.last('status')?.text, '');
  srv.peers[0]!.write('RFB 003.008\n');
  const data = await until('data', () => h.last('data'));
  assert.equal(data.conn, 1);
  assert.equal(Buffer.from(data.data).toString(), 'RFB 003.008\n');
  h.session.onMessage({ type: 'data', conn: 1, data: new Uint8Array(Buffer.from('RFB 003.008\n')) });
  h.session.onMessage({ type: 'data', conn: 7, data: new Uint8Array([9, 9]) }); // a stale connection's bytes
  h.session.onMessage({ type: 'data', conn: 1, data: 'AQI=' });
  await until('bytes at the server', () => srv.got().length === 14);
  assert.deepEqual([...srv.got().subarray(12)], [1, 2]);
  h.session.onMessage({ type: 'exec', cmd: 'rm -rf /' });
  assert.match(h.logs.at(-1)!, /ignored a malformed message from the webview \(type exec\)/);
  h.session.dispose();
  await until('the socket closed by dispose', () => srv.ended() === 1);
  await srv.close();
});

test('auto: the view sizes become few resize requests, the last size wins; a kept size shows a note', async () => {
  const srv = await vncServer('resize');
  const h = harness(srv.file, { resize: async (s) => ({ requested: s, size: { width: 1920, height: 1200 }, applied: s.width <= 1920, ms: 5 }) });
  h.session.onMessage({ type: 'ready' });
  await until('open', () => h.last('open'));
  for (let w = 1000; w <= 1100; w += 10) h.session.onMessage({ type: 'size', width: w, height: 700 });
  await until('a resize', () => h.resizes.length > 0);
  await sleep(60);
  assert.deepEqual(h.resizes, [{ width: 1100, height: 700 }], 'one request for a burst');
  assert.equal(h.last('note')?.text, '');
  h.session.onMessage({ type: 'size', width: 2200, height: 1300 });
  await until('the note', () => h.last('note')?.text.includes('kept 1920x1200'));
  h.session.dispose();
  await srv.close();
});

test('a fixed size is never resized, and the tab says it is fixed', async () => {
  const srv = await vncServer('fixed');
  const h = harness(srv.file, { display: { width: 1280, height: 800 } });
  h.session.onMessage({ type: 'ready' });
  await until('open', () => h.last('open'));
  h.session.onMessage({ type: 'size', width: 1000, height: 700 });
  await sleep(60);
  assert.deepEqual(h.resizes, []);
  const notes = h.posts.flatMap((p) => (p.type === 'note' ? [p.text] : []));
  assert.ok(notes.some((t) => /^Fixed size 1280x800, scaled to fit/.test(t)), notes.join(' | '));
  h.session.dispose();
  await srv.close();
});

test('the VM stops: the socket closes and the tab says so; it starts again: a new connection and the same size sent again', async () => {
  const srv = await vncServer('restart');
  const h = harness(srv.file);
  h.session.onMessage({ type: 'ready' });
  await until('open', () => h.last('open'));
  h.session.onMessage({ type: 'size', width: 1024, height: 640 });
  await until('a resize', () => h.resizes.length === 1);
  h.setRunning(false);
  h.session.vmChanged(summary({ state: 'stopping' }));
  await until('the socket closed', () => srv.ended() === 1);
  assert.deepEqual(h.last('closed'), { type: 'closed', conn: 1 });
  h.session.vmChanged(summary({ state: 'stopped' }));
  assert.equal(h.last('status')?.text, 'VM is stopped');
  h.session.vmChanged(summary({ state: 'suspended' }));
  assert.equal(h.last('status')?.text, 'VM is suspended');
  h.setRunning(true);
  h.session.vmChanged(summary({ state: 'running' }));
  assert.deepEqual(await until('a new open', () => h.last('open')?.conn === 2 && h.last('open')), { type: 'open', conn: 2 });
  await until('the size again', () => h.resizes.length === 2);
  assert.deepEqual(h.resizes[1], { width: 1024, height: 640 }, 'the debouncer was reset: the same size goes out again');
  // Bytes of the old connection are dropped.
  h.session.onMessage({ type: 'data', conn: 1, data: new Uint8Array([7]) });
  h.session.onMessage({ type: 'data', conn: 2, data: new Uint8Array([8]) });
  await until('bytes of connection 2 only', () => srv.got().length === 1);
  assert.deepEqual([...srv.got()], [8]);
  h.session.dispose();
  await srv.close();
});

test('QEMU hangs up while the VM is said to run: the session reconnects by itself', async () => {
  const srv = await vncServer('hangup');
  const h = harness(srv.file);
  h.session.onMessage({ type: 'ready' });
  await until('open', () => h.last('open'));
  srv.peers[0]!.destroy();
  await until('closed', () => h.last('closed'));
  assert.deepEqual(await until('a new open', () => h.last('open')?.conn === 2 && h.last('open')), { type: 'open', conn: 2 });
  h.session.dispose();
  await srv.close();
});

test('no display, no socket yet, or a failing helper: the tab says why, and nothing connects', async () => {
  const none = harness(path.join(dir, 'never.sock'), { display: null });
  none.session.onMessage({ type: 'ready' });
  assert.equal(none.last('status')?.text, 'VM has no display (devvm set web --display on)');
  none.session.dispose();

  // The summary says running but the socket is not there yet: retried, not a crash.
  const early = harness(path.join(dir, 'later.sock'));
  early.session.onMessage({ type: 'ready' });
  await until('a logged connect failure', () => early.logs.some((l) => /ENOENT/.test(l)));
  const srv = await vncServer('later');
  await until('open once the socket exists', () => early.last('open'), 5000);
  early.session.dispose();
  await srv.close();

  const posts: ToDisplay[] = [];
  const failing = new DisplaySession(
    {
      vm: 'web',
      display: async () => {
        throw new DevvmError('not-supported', 'vm/display is not supported by this helper', 'update devvm');
      },
      resize: async () => {
        throw new Error('unused');
      },
      post: (m) => posts.push(m),
      log: () => {},
    },
    summary(),
  );
  failing.onMessage({ type: 'ready' });
  await until('the error shown', () => posts.some((p) => p.type === 'status' && /not supported/.test(p.text)));
  failing.dispose();
});
