import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import type { HostUsbDevice } from '../../src/shared/types';
import { matchDevice, UsbMonitor, type UeventSource } from '../../src/helper/usb/monitor';
import { recordedUevents, sysfsCopy as sysfsFixture, USB_FIXTURES } from '../usbfixture';

const REPO = path.resolve(__dirname, '..', '..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-usb-monitor-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const { plugging, unplugging } = recordedUevents();

const RECEIVER: HostUsbDevice = {
  id: '1-2', busnum: 1, devnum: 2, vendorId: '046d', productId: 'c52b',
  manufacturer: 'Logitech', product: 'USB Receiver', devnode: '/dev/bus/usb/001/002',
};
const FLASH: HostUsbDevice = {
  id: '1-3.1', busnum: 1, devnum: 5, vendorId: '0781', productId: '5581',
  manufacturer: 'USB', product: 'SanDisk 3.2Gen1', serial: '0401bd1c7a2b9e5f0c3d', devnode: '/dev/bus/usb/001/005',
};

/** Replays messages by hand; records starts and stops. */
class FakeSource implements UeventSource {
  readonly name = 'replayed by the test';
  onMessage: ((m: string) => void) | null = null;
  onTrouble: ((e: NodeJS.ErrnoException) => void) | null = null;
  stops = 0;
  start(onMessage: (m: string) => void, onTrouble?: (e: NodeJS.ErrnoException) => void) {
    this.onMessage = onMessage;
    this.onTrouble = onTrouble ?? null;
    return () => {
      this.stops++;
      this.onMessage = null;
    };
  }
  feed(msgs: string[]) {
    for (const m of msgs) this.onMessage!(m);
  }
  trouble(code: string) {
    this.onTrouble!(Object.assign(new Error(`ueventMonitor: ${code}`), { code }));
  }
}

const sysfsCopy = (name: string) => sysfsFixture(path.join(tmp, name));

function record(m: UsbMonitor) {
  const events: [string, HostUsbDevice][] = [];
  m.on('add', (d) => events.push(['add', d]));
  m.on('remove', (d) => events.push(['remove', d]));
  return events;
}

test('a recorded plug and unplug: one add, one remove carrying the identity; interfaces and udev ignored', () => {
  const fs = sysfsCopy('replay');
  fs.pull();
  const source = new FakeSource();
  const m = new UsbMonitor({ source, sysfsRoot: fs.root });
  const events = record(m);
  m.start();
  assert.ok(m.running);
  assert.deepEqual(m.devices(), [RECEIVER], 'present devices are known, not announced');
  assert.deepEqual(events, []);

  fs.plug();
  source.feed(plugging);
  assert.deepEqual(events, [['add', FLASH]]);
  assert.deepEqual(m.devices(), [RECEIVER, FLASH]);

  fs.pull(); // sysfs is gone before the remove uevent arrives
  source.feed(unplugging);
  assert.deepEqual(events, [['add', FLASH], ['remove', FLASH]]);
  assert.deepEqual(m.devices(), [RECEIVER]);

  m.stop();
  m.stop();
  assert.equal(source.stops, 1);
  assert.equal(m.running, false);
});

test('a device present at start is reported on removal; hubs and unknown devices are not', () => {
  const fs = sysfsCopy('present');
  const source = new FakeSource();
  const m = new UsbMonitor({ source, sysfsRoot: fs.root });
  const events = record(m);
  m.start();
  const hub = (action: string) =>
    [`${action}@/devices/pci0000:00/0000:00:14.0/usb1/1-3`, `ACTION=${action}`, 'DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-3',
      'SUBSYSTEM=usb', 'DEVTYPE=usb_device', 'PRODUCT=5e3/610/9226', 'BUSNUM=001', 'DEVNUM=003'].join('\n');
  source.feed([hub('add'), hub('remove')]);
  assert.deepEqual(events, []);
  source.feed(plugging.slice(0, 1)); // a duplicate add of a known device
  assert.deepEqual(events, []);
  fs.pull();
  source.feed(unplugging);
  source.feed(unplugging); // twice: nothing more to remove
  assert.deepEqual(events, [['remove', FLASH]]);
  m.stop();
});

test('an add for a known id with a new address means the remove was lost: remove, then add', () => {
  const fs = sysfsCopy('reenumerated');
  const source = new FakeSource();
  const m = new UsbMonitor({ source, sysfsRoot: fs.root });
  const events = record(m);
  m.start();
  // Re-plugged: same port, next device number.
  const dir = realpathSync(path.join(fs.root, '1-3.1'));
  writeFileSync(path.join(dir, 'devnum'), '6\n');
  source.feed(plugging);
  const again = { ...FLASH, devnum: 6, devnode: '/dev/bus/usb/001/006' };
  assert.deepEqual(events, [['remove', FLASH], ['add', again]]);
  m.stop();
});

test('lost events (ENOBUFS) trigger a rescan; another error stops the source and is emitted', () => {
  const fs = sysfsCopy('overflow');
  fs.pull();
  const source = new FakeSource();
  const m = new UsbMonitor({ source, sysfsRoot: fs.root });
  const events = record(m);
  m.start();
  fs.plug();
  source.trouble('ENOBUFS');
  assert.deepEqual(events, [['add', FLASH]]);
  fs.pull();
  source.trouble('ENOBUFS');
  assert.deepEqual(events, [['add', FLASH], ['remove', FLASH]]);
  assert.ok(m.running);

  const errors: Error[] = [];
  m.on('error', (e) => errors.push(e));
  source.trouble('EIO');
  assert.equal(errors.length, 1);
  assert.equal(m.running, false);
  assert.equal(source.stops, 1);

  // Without an 'error' listener, a dying source does not throw into its caller.
  const m2 = new UsbMonitor({ source, sysfsRoot: fs.root });
  m2.start();
  assert.doesNotThrow(() => source.trouble('EIO'));
  assert.equal(m2.running, false);
});

/** Runs the real (native) source from sources in a child, so DEVVM_NO_NATIVE applies from the start. */
function child(env: NodeJS.ProcessEnv) {
  const code = `const { UsbMonitor } = require(process.argv[1]);
    const m = new UsbMonitor({ sysfsRoot: process.argv[2] });
    try { m.start(); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); process.exit(0); }
    console.log(JSON.stringify({ running: m.running, devices: m.devices().map((d) => d.id) }));
    m.stop();`;
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '-e', code, path.join(REPO, 'src', 'helper', 'usb', 'monitor.ts'), path.join(USB_FIXTURES, 'sysfs', 'bus', 'usb', 'devices')],
    { cwd: REPO, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30000 },
  );
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

test('without the addon the monitor reports itself unavailable, with the reason', { timeout: 60000 }, () => {
  assert.deepEqual(child({ DEVVM_NO_NATIVE: '1' }), {
    code: 'missing-dependency',
    message: 'USB hot-plug monitor unavailable: disabled by DEVVM_NO_NATIVE=1',
  });
});

test('with the addon the real source starts, and stop() lets the process exit', { timeout: 60000 }, () => {
  const out = child({ DEVVM_NO_NATIVE: '' });
  if ('code' in out) {
    // No addon built, or netlink refused here: still the clear, classified error.
    assert.equal(out.code, 'missing-dependency');
    assert.match(String(out.message), /^USB hot-plug monitor unavailable: /);
    console.log(`# ${out.message}`);
    return;
  }
  assert.deepEqual(out, { running: true, devices: ['1-2', '1-3.1'] });
});

test('matchDevice: id, VENDOR:PRODUCT, BUS/DEV and device node', () => {
  const other: HostUsbDevice = { ...FLASH, id: '2-1', busnum: 2, devnum: 3, serial: 'AA55', devnode: '/dev/bus/usb/002/003' };
  const all = [RECEIVER, FLASH, other];
  assert.equal(matchDevice(all, '1-3.1'), FLASH);
  assert.equal(matchDevice(all, ' 1-2 '), RECEIVER);
  assert.equal(matchDevice(all, '046d:c52b'), RECEIVER);
  assert.equal(matchDevice(all, '46D:C52B'), RECEIVER);
  assert.equal(matchDevice([RECEIVER, FLASH], '0781:5581'), FLASH);
  assert.equal(matchDevice(all, '1/5'), FLASH);
  assert.equal(matchDevice(all, '002/003'), other);
  assert.equal(matchDevice(all, '/dev/bus/usb/001/002'), RECEIVER);

  assert.throws(
    () => matchDevice(all, '0781:5581'),
    (e: unknown) =>
      e instanceof DevvmError &&
      e.code === 'invalid-argument' &&
      e.message === '0781:5581 matches 2 USB devices: 1-3.1, 2-1' &&
      e.hint === 'name one by its id',
  );
  for (const spec of ['1-9', 'ffff:0001', '9/9', '/dev/bus/usb/001/009']) {
    assert.throws(() => matchDevice(all, spec), (e: unknown) => e instanceof DevvmError && e.code === 'not-found' && e.message.includes(spec), spec);
  }
  for (const spec of ['', 'sandisk', '1.5', '1-2:1.0', 'usb1', '0781:55810', '1/2/3', '/dev/sda']) {
    assert.throws(() => matchDevice(all, spec), (e: unknown) => e instanceof DevvmError && e.code === 'invalid-argument', spec);
  }
});
