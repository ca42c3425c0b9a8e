import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { usbMonitorCheck } from '../../src/helper/doctor';
import { nativeUeventSource, UsbMonitor } from '../../src/helper/usb/monitor';
import { socketUeventSource, splitUevents } from '../../src/helper/usb/socketsource';
import type { HostUsbDevice } from '../../src/shared/types';
import { recordedUevents, sendUevents, sysfsCopy } from '../usbfixture';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-usb-socket-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const { all, plugging, unplugging } = recordedUevents();

test('splitUevents: blank-line framing across chunk boundaries', () => {
  assert.deepEqual(splitUevents(''), { messages: [], rest: '' });
  assert.deepEqual(splitUevents('add@/a\nK=1'), { messages: [], rest: 'add@/a\nK=1' });
  assert.deepEqual(splitUevents('add@/a\nK=1\n\nremove@/b\n'), { messages: ['add@/a\nK=1'], rest: 'remove@/b\n' });
  // The rest of one chunk plus the next completes a message; extra blank lines are no messages.
  assert.deepEqual(splitUevents('remove@/b\n' + '\n\n\n\nadd@/c\n\n'), { messages: ['remove@/b', 'add@/c'], rest: '' });
  // The recorded stream, cut into 7-byte chunks, comes out whole and in order.
  const text = `${all.join('\n\n')}\n\n`;
  let rest = '';
  const got: string[] = [];
  for (let i = 0; i < text.length; i += 7) {
    const r = splitUevents(rest + text.slice(i, i + 7));
    got.push(...r.messages);
    rest = r.rest;
  }
  assert.deepEqual(got, all);
  assert.equal(rest, '');
});

const next = (m: UsbMonitor, ev: 'add' | 'remove') => new Promise<HostUsbDevice>((resolve) => m.once(ev, resolve));

test('a socket source feeds the monitor like netlink: plug, unplug, and the last message needs no blank line after it', async () => {
  const fs = sysfsCopy(path.join(tmp, 'sysfs'));
  fs.pull();
  const sock = path.join(tmp, 'uevents.sock');
  // A socket left by a killed helper: the new one replaces it.
  spawnSync(process.execPath, ['-e', 'require("net").createServer().listen(process.argv[1], () => process.exit(0))', sock]);
  assert.ok(statSync(sock).isSocket());
  const m = new UsbMonitor({ source: socketUeventSource(sock), sysfsRoot: fs.root });
  const events: string[] = [];
  m.on('add', (d) => events.push(`add ${d.id}`));
  m.on('remove', (d) => events.push(`remove ${d.id}`));
  m.start(); // listening once this returns: a unix socket binds synchronously
  assert.match(m.sourceName, /^test events from .*uevents\.sock \(DEVVM_USB_UEVENT_SOCKET\), not the kernel$/);
  assert.deepEqual(usbMonitorCheck(m), { name: 'usb monitor', ok: true, detail: `running: ${m.sourceName}` });

  fs.plug();
  let added = next(m, 'add');
  await sendUevents(sock, plugging);
  assert.equal((await added).id, '1-3.1');
  assert.deepEqual(m.devices().map((d) => d.id), ['1-2', '1-3.1']);

  fs.pull();
  const removed = next(m, 'remove');
  await sendUevents(sock, unplugging);
  assert.equal((await removed).product, 'SanDisk 3.2Gen1');
  assert.deepEqual(m.devices().map((d) => d.id), ['1-2']);

  // What is no USB device event (garbage, another subsystem) changes nothing.
  await sendUevents(sock, ['hello', 'add@/devices/x\nACTION=add']);
  fs.plug();
  added = next(m, 'add');
  await sendUevents(sock, plugging.slice(0, 1));
  assert.equal((await added).id, '1-3.1');
  assert.deepEqual(events, ['add 1-3.1', 'remove 1-3.1', 'add 1-3.1']);

  m.stop();
  assert.equal(existsSync(sock), false, 'stop removes the socket');
});

test('a path that is not a socket is left alone: the monitor stops and doctor says why', async () => {
  const file = path.join(tmp, 'not-a-socket');
  writeFileSync(file, 'keep me\n');
  const m = new UsbMonitor({ source: socketUeventSource(file), sysfsRoot: path.join(tmp, 'none') });
  const failed = new Promise<Error>((resolve) => m.once('error', resolve));
  m.start();
  assert.match((await failed).message, /EADDRINUSE/);
  assert.equal(m.running, false);
  assert.equal(statSync(file).size, 8);
  const c = usbMonitorCheck(m);
  assert.equal(c.ok, false);
  assert.match(c.detail, /^stopped: listen EADDRINUSE.* \(was test events from /);
  assert.match(c.fix ?? '', /not offered to running VMs/);
});

test('doctor: the netlink monitor running, and the reason it is not available', () => {
  const m = new UsbMonitor({ source: nativeUeventSource });
  assert.deepEqual(usbMonitorCheck({ running: true, sourceName: m.sourceName, stoppedBy: null }), {
    name: 'usb monitor',
    ok: true,
    detail: 'running: netlink kernel uevents (native addon)',
  });
  const c = usbMonitorCheck(null, 'USB hot-plug monitor unavailable: disabled by DEVVM_NO_NATIVE=1');
  assert.equal(c.ok, false);
  assert.equal(c.detail, 'not available: disabled by DEVVM_NO_NATIVE=1');
  assert.match(c.fix ?? '', /"devvm usb list" and "usb attach" still work/);
});
