/** The display's rules and logic: sizes and limits, the tab's debounce, the helper's per-VM resize lane, set, and saved states. */
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { test } from 'node:test';
import { VncClient } from '../../src/helper/qemu/vnc';
import { qemuArgs, type QemuSpec } from '../../src/helper/qemu/args';
import { displaySize, guestSizeFor, ResizeDebouncer, TAB_DEBOUNCE, type Clock, type Size } from '../../src/shared/display';
import type { DevvmError } from '../../src/shared/errors';
import { createParams, noProgress, rig } from './vms-fake';

test('displaySize: auto, WxH and {width, height} within 640x480..2560x1600; anything else one clear line', () => {
  assert.equal(displaySize('auto'), 'auto');
  assert.deepEqual(displaySize('1280x800'), { width: 1280, height: 800 });
  assert.deepEqual(displaySize({ width: 640, height: 480 }), { width: 640, height: 480 });
  assert.deepEqual(displaySize('2560x1600'), { width: 2560, height: 1600 });
  for (const bad of ['639x480', '2561x1600', '1280x', 'x800', '1280X800', ' 1280x800', '01280x800', 1280, null, { width: 1280 }, { width: 1280, height: 800, x: 1 }, { width: 1280.5, height: 800 }]) {
    assert.throws(() => displaySize(bad), (e: DevvmError) => e.code === 'invalid-argument' && /^invalid display size /.test(e.message) && /from 640x480 to 2560x1600/.test(e.hint ?? ''), String(bad));
  }
});

test('guestSizeFor: CSS pixels floored, held to the limits, the width a multiple of 8', () => {
  assert.deepEqual(guestSizeFor({ width: 1023.7, height: 640.9 }), { width: 1016, height: 640 });
  assert.deepEqual(guestSizeFor({ width: 100, height: 50 }), { width: 640, height: 480 });
  assert.deepEqual(guestSizeFor({ width: 5000, height: 3000 }), { width: 2560, height: 1600 });
  assert.deepEqual(guestSizeFor({ width: 1280, height: 800 }), { width: 1280, height: 800 });
});

/** A clock whose time moves only when told. */
function fakeClock(): Clock & { advance(ms: number): Promise<void> } {
  let now = 0;
  let timers: Array<{ at: number; fn: () => void; id: number }> = [];
  let ids = 0;
  return {
    now: () => now,
    setTimeout: (fn, ms) => {
      const id = ++ids;
      timers.push({ at: now + ms, fn, id });
      return id;
    },
    clearTimeout: (h) => {
      timers = timers.filter((t) => t.id !== h);
    },
    async advance(ms) {
      const end = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at);
        const next = timers[0];
        if (!next || next.at > end) break;
        timers.shift();
        now = next.at;
        next.fn();
        // Let the sender's promise settle.
        for (let i = 0; i < 5; i++) await Promise.resolve();
      }
      now = end;
    },
  };
}

const sz = (width: number, height: number): Size => ({ width, height });

test('debounce: a drag of 40 sizes over 2 s sends at most 4 a second, the last size last, each within 600 ms', async () => {
  const clock = fakeClock();
  const sent: Array<{ at: number; s: Size }> = [];
  const d = new ResizeDebouncer(async (s) => void sent.push({ at: clock.now(), s }), TAB_DEBOUNCE, clock);
  for (let i = 0; i < 40; i++) {
    d.request(sz(800 + i * 10, 600));
    await clock.advance(50);
  }
  await clock.advance(1000);
  assert.ok(sent.length >= 3 && sent.length <= 9, `${sent.length} sent`);
  for (let i = 1; i < sent.length; i++) assert.ok(sent[i]!.at - sent[i - 1]!.at >= TAB_DEBOUNCE.minIntervalMs);
  // In any second, at most 1000 / minIntervalMs requests.
  for (const a of sent) assert.ok(sent.filter((b) => b.at >= a.at && b.at < a.at + 1000).length <= 4);
  assert.deepEqual(sent.at(-1)!.s, sz(1190, 600));
  // During the drag the guest was never more than maxWaitMs behind.
  assert.ok(sent[0]!.at <= TAB_DEBOUNCE.maxWaitMs);
});

test('debounce: one change goes out after the quiet time; the same size again is not sent; reset() sends it again', async () => {
  const clock = fakeClock();
  const sent: Size[] = [];
  const d = new ResizeDebouncer(async (s) => void sent.push(s), TAB_DEBOUNCE, clock);
  d.request(sz(1024, 640));
  await clock.advance(TAB_DEBOUNCE.quietMs - 1);
  assert.equal(sent.length, 0);
  await clock.advance(1);
  assert.deepEqual(sent, [sz(1024, 640)]);
  d.request(sz(1024, 640));
  await clock.advance(1000);
  assert.equal(sent.length, 1);
  d.reset();
  d.request(sz(1024, 640));
  await clock.advance(1000);
  assert.equal(sent.length, 2);
  d.dispose();
  d.request(sz(800, 600));
  await clock.advance(1000);
  assert.equal(sent.length, 2, 'nothing after dispose');
});

test('debounce: one request at a time; what came in meanwhile goes after it, once', async () => {
  const clock = fakeClock();
  const sent: Size[] = [];
  let release!: () => void;
  const d = new ResizeDebouncer((s) => {
    sent.push(s);
    return new Promise<void>((r) => (release = r));
  }, TAB_DEBOUNCE, clock);
  d.request(sz(1000, 700));
  await clock.advance(200);
  d.request(sz(1100, 700));
  d.request(sz(1200, 700));
  await clock.advance(2000);
  assert.deepEqual(sent, [sz(1000, 700)], 'the first is still in flight');
  release();
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await clock.advance(1000);
  assert.deepEqual(sent, [sz(1000, 700), sz(1200, 700)]);
});

const spec: QemuSpec = {
  name: 'dev', accel: 'tcg', cpus: 2, memoryMiB: 1024,
  disks: { base: { file: '/b', format: 'qcow2' }, cache: '/c', layers: [{ id: 'l1', file: '/l1' }] },
  kernel: null, initrd: null, seed: null, sshPort: null, mac: '52:54:00:00:00:01', display: null,
  qmpSocket: '/vm/qmp.sock', serialSocket: '/vm/serial.sock', serialLog: '/vm/serial.log', pidFile: '/vm/pid', agentSocket: '/vm/qga.sock',
};

test('QEMU arguments: no display, no VGA; a display is virtio-vga at the boot size, a tablet, VNC on the unix socket only', () => {
  const plain = qemuArgs(spec);
  assert.ok(plain.includes('-vga') && !plain.includes('-vnc') && !plain.some((a) => a.includes('virtio-vga')));
  const shown = qemuArgs({ ...spec, display: { width: 1920, height: 1200 }, vncSocket: '/v,m/vnc.sock' });
  assert.ok(shown.includes('virtio-vga,id=video0,addr=0x1,xres=1920,yres=1200'));
  assert.ok(shown.includes('usb-tablet,id=tablet0,bus=xhci.0'));
  // The comma in the path is escaped: it cannot add VNC options (a TCP listener, say).
  assert.equal(shown[shown.indexOf('-vnc') + 1], 'unix:/v,,m/vnc.sock');
  assert.equal(shown.filter((a) => a === '-vnc').length, 1);
});

test('the resize lane: a burst of requests gives at most two resizes, the newest last; older callers learn they were superseded', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  r.driver.resizeMs = 30;
  await r.vms.create(createParams('dev', { display: true }), noProgress);
  await r.vms.start('dev', {}, noProgress);
  const results = await Promise.all([1000, 1104, 1200, 1304].map((w) => r.vms.displayResize('dev', sz(w, 700))));
  assert.deepEqual(r.driver.resizes, [sz(1000, 700), sz(1304, 700)]);
  assert.deepEqual(results.map((x) => [x.requested.width, x.applied, x.superseded ?? false]), [[1000, true, false], [1104, false, true], [1200, false, true], [1304, true, false]]);
  assert.deepEqual(results.map((x) => x.size), [sz(1000, 700), sz(1304, 700), sz(1304, 700), sz(1304, 700)]);
  // A size the guest cannot take: not applied, and what it shows instead.
  r.driver.displayLimit = sz(1600, 1000);
  const big = await r.vms.displayResize('dev', sz(2000, 1104));
  assert.deepEqual([big.applied, big.size, big.requested], [false, sz(1304, 700), sz(2000, 1104)]);
  const info = await r.vms.display('dev');
  assert.deepEqual([info.display, info.size, info.bootSize, info.socket], ['auto', sz(1304, 700), sz(1920, 1200), path.join(r.home.vm('dev').dir, 'vnc.sock')]);
  const shot = await r.vms.screenshot('dev');
  assert.deepEqual([shot.width, shot.height], [1304, 700]);
});

test('refusals: no display, a fixed size, not running; set only while stopped, with the way out', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('plain'), noProgress);
  await r.vms.create(createParams('fixed', { displaySize: { width: 1280, height: 800 } }), noProgress);
  assert.deepEqual(r.vms.summary('fixed').display, { width: 1280, height: 800 });
  assert.equal(r.vms.summary('plain').display, undefined);
  await assert.rejects(r.vms.screenshot('plain'), (e: DevvmError) => e.message === 'VM "plain" has no display' && e.hint === 'stop it and turn one on: devvm set plain --display on');
  await assert.rejects(r.vms.screenshot('fixed'), (e: DevvmError) => e.message === 'cannot take a screenshot of VM "fixed": it is stopped');
  await r.vms.start('fixed', {}, noProgress);
  assert.deepEqual(r.driver.launched.at(-1)!.spec.display, { width: 1280, height: 800 }, 'boots at its fixed size');
  await assert.rejects(r.vms.displayResize('fixed', sz(1024, 640)), /keeps its display at 1280x800/);
  assert.equal(r.driver.resizes.length, 0, 'a fixed size is never resized');
  await assert.rejects(r.vms.set('fixed', { display: false }), (e: DevvmError) => e.message === 'cannot change VM "fixed": it is running' && /stop it first/.test(e.hint ?? ''));
  await r.vms.suspend('fixed', noProgress);
  await assert.rejects(r.vms.set('fixed', { display: false }), (e: DevvmError) => /it is suspended/.test(e.message) && /its saved state needs the machine it was saved from/.test(e.hint ?? ''));
  await assert.rejects(r.vms.set('plain', {}), /nothing to change/);
  await assert.rejects(r.vms.set('plain', { displaySize: 'auto' }), /VM "plain" has no display/);
  await assert.rejects(r.vms.set('plain', { display: false, displaySize: 'auto' }), /a display size was given for a VM without a display/);
  assert.equal((await r.vms.set('plain', { display: true })).display, 'auto');
  assert.deepEqual((await r.vms.set('plain', { displaySize: { width: 800, height: 600 } })).display, { width: 800, height: 600 });
  assert.equal((await r.vms.set('plain', { display: false })).display, undefined);
});

test('a RAM state saved with a display restores only with one: the refusal says which and how to get it back', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev', { display: true }), noProgress);
  await r.vms.start('dev', {}, noProgress);
  await r.vms.snapshot('dev', 'shown', true, noProgress);
  await r.vms.stop('dev', true);
  await r.vms.set('dev', { display: false });
  await r.vms.restore('dev', 'shown', noProgress);
  await assert.rejects(r.vms.start('dev', {}, noProgress), (e: DevvmError) => e.message === 'the saved state of VM "dev" was saved with a display; the VM now has none' && /--discard-state/.test(e.hint ?? ''));
});

test('the resize of a resumed VM: the new instance is asked for the size the old one had, before the resume returns', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev', { display: true }), noProgress);
  await r.vms.start('dev', {}, noProgress);
  await r.vms.displayResize('dev', sz(1152, 720));
  await r.vms.suspend('dev', noProgress);
  r.driver.resizeMs = 200;
  await r.vms.start('dev', {}, noProgress);
  assert.deepEqual((await r.vms.display('dev')).size, sz(1152, 720));
});

/** A VNC server that speaks just enough RFB: the handshake, then answers SetDesktopSize as QEMU does. */
function fakeVnc(file: string, onResize: (w: number, h: number, reply: (x: number, w: number, h: number) => void) => void): Promise<net.Server> {
  const server = net.createServer((s) => {
    s.write('RFB 003.008\n');
    let buf = Buffer.alloc(0);
    let stage = 0;
    const rect = (x: number, w: number, h: number) => {
      const b = Buffer.alloc(4 + 12 + 4 + 16);
      b.writeUInt16BE(1, 2);
      b.writeUInt16BE(x, 4);
      b.writeUInt16BE(w, 8);
      b.writeUInt16BE(h, 10);
      b.writeInt32BE(-308, 12);
      b.writeUInt8(1, 16);
      s.write(b);
    };
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (stage === 0 && buf.length >= 12) {
          buf = buf.subarray(12);
          s.write(Buffer.from([1, 1]));
          stage = 1;
        } else if (stage === 1 && buf.length >= 1) {
          buf = buf.subarray(1);
          s.write(Buffer.alloc(4));
          stage = 2;
        } else if (stage === 2 && buf.length >= 1) {
          buf = buf.subarray(1);
          const init = Buffer.alloc(24 + 4);
          init.writeUInt16BE(1920, 0);
          init.writeUInt16BE(1200, 2);
          init.writeUInt32BE(4, 20);
          init.write('test', 24);
          s.write(init);
          stage = 3;
        } else if (stage === 3 && buf.length >= 4 && buf[0] === 2) {
          const n = buf.readUInt16BE(2);
          if (buf.length < 4 + 4 * n) break;
          buf = buf.subarray(4 + 4 * n);
        } else if (stage === 3 && buf.length >= 8 && buf[0] === 251) {
          const size = 8 + buf[6]! * 16;
          if (buf.length < size) break;
          const w = buf.readUInt16BE(2);
          const h = buf.readUInt16BE(4);
          buf = buf.subarray(size);
          onResize(w, h, rect);
        } else break;
      }
    });
  });
  return new Promise((r) => server.listen(file, () => r(server)));
}

test('the RFB client: QEMU\'s immediate "forwarded" answer is not the guest\'s; the guest\'s own change is; silence is a kept size', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-vnc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'vnc.sock');
  let guest = { w: 1920, h: 1200 };
  const server = await fakeVnc(file, (w, h, reply) => {
    reply(1, guest.w, guest.h); // forwarded, old size
    if (w <= 1920 && h <= 1200) setTimeout(() => ((guest = { w, h }), reply(0, w, h)), 40);
    else if (w === 2000) setTimeout(() => ((guest = { w: 1920, h: 1200 }), reply(0, 1920, 1200)), 40); // the guest picks what fits
  });
  t.after(() => server.close());
  const c = await VncClient.connect(file);
  t.after(() => c.close());
  assert.deepEqual(c.current, sz(1920, 1200));
  assert.deepEqual(await c.resize(sz(1024, 640), 2000), { size: sz(1024, 640), applied: true });
  assert.deepEqual(await c.resize(sz(1024, 640), 2000), { size: sz(1024, 640), applied: true }, 'no request for the size it has');
  const t0 = Date.now();
  assert.deepEqual(await c.resize(sz(2000, 1100), 2000, 100), { size: sz(1920, 1200), applied: false });
  assert.ok(Date.now() - t0 < 1000, 'a different answer settles quickly, not at the timeout');
  assert.deepEqual(await c.resize(sz(2400, 1500), 300), { size: sz(1920, 1200), applied: false }, 'no answer: the size it kept');
  const seen: Size[] = [];
  c.onGuestResize((s) => seen.push(s));
  await c.resize(sz(800, 600), 2000);
  assert.deepEqual(seen, [], 'our own resizes are not the guest\'s');
});

test('the RFB client refuses what is not a VNC server, or one that wants a password, with one line', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-vnc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'x.sock');
  const server = net.createServer((s) => s.end('HTTP/1.1 400\r\n\r\n'));
  await new Promise<void>((r) => server.listen(file, r));
  t.after(() => server.close());
  await assert.rejects(VncClient.connect(file), (e: DevvmError) => /^cannot talk to the VM's display: not a VNC server/.test(e.message));
  const file2 = path.join(dir, 'y.sock');
  const auth = net.createServer((s) => {
    s.write('RFB 003.008\n');
    s.once('data', () => s.write(Buffer.from([1, 2])));
  });
  await new Promise<void>((r) => auth.listen(file2, r));
  t.after(() => auth.close());
  await assert.rejects(VncClient.connect(file2), /wants authentication \(types 2\)/);
});
