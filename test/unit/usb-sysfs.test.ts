import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, realpathSync, rmSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { compareUsbIds, devnodeOf, listUsbDevices, readUsbDevice } from '../../src/helper/usb/sysfs';

const SYSFS = path.resolve(__dirname, '..', 'fixtures', 'usb', 'sysfs');
const ROOT = path.join(SYSFS, 'bus', 'usb', 'devices');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-usb-sysfs-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const RECEIVER = {
  id: '1-2',
  busnum: 1,
  devnum: 2,
  vendorId: '046d',
  productId: 'c52b',
  manufacturer: 'Logitech',
  product: 'USB Receiver',
  devnode: '/dev/bus/usb/001/002',
};
const FLASH = {
  id: '1-3.1',
  busnum: 1,
  devnum: 5,
  vendorId: '0781',
  productId: '5581',
  manufacturer: 'USB',
  product: 'SanDisk 3.2Gen1',
  serial: '0401bd1c7a2b9e5f0c3d',
  devnode: '/dev/bus/usb/001/005',
};

test('listUsbDevices: the receiver and the flash drive; no root hub, hub or interface', () => {
  assert.deepEqual(listUsbDevices(ROOT), [RECEIVER, FLASH]);
});

test('readUsbDevice: one device by id; hubs, root hubs, interfaces and odd names are null', () => {
  assert.deepEqual(readUsbDevice(ROOT, '1-3.1'), FLASH);
  for (const id of ['usb1', '1-3', '1-2:1.0', '1-9', '../1-2', '', '1-2/..']) assert.equal(readUsbDevice(ROOT, id), null, id);
});

test('a missing root (no USB bus, as on this machine) lists nothing', () => {
  assert.deepEqual(listUsbDevices(path.join(tmp, 'absent')), []);
});

test('a half-removed device (files vanishing during unplug) is skipped, never thrown', () => {
  const copy = path.join(tmp, 'sysfs');
  cpSync(SYSFS, copy, { recursive: true, verbatimSymlinks: true });
  const root = path.join(copy, 'bus', 'usb', 'devices');
  const flashDir = realpathSync(path.join(root, '1-3.1'));
  for (const gone of ['serial', 'product', 'manufacturer']) unlinkSync(path.join(flashDir, gone));
  // Strings are optional (many devices have no serial), so it is still listed, without them.
  const { manufacturer, product, serial, ...bare } = FLASH;
  assert.deepEqual(readUsbDevice(root, '1-3.1'), bare);
  for (const gone of ['bDeviceClass', 'devnum', 'idProduct']) {
    unlinkSync(path.join(flashDir, gone));
    assert.equal(readUsbDevice(root, '1-3.1'), null, `without ${gone}`);
    assert.deepEqual(listUsbDevices(root), [RECEIVER]);
  }
  rmSync(flashDir, { recursive: true });
  assert.deepEqual(listUsbDevices(root), [RECEIVER], 'a dangling link');
});

test('ids sort by bus and port numbers, parents first', () => {
  assert.deepEqual(['1-10', '2-1', '1-3.1', '1-2', '1-3', '1-3.10', '1-3.2'].sort(compareUsbIds), ['1-2', '1-3', '1-3.1', '1-3.2', '1-3.10', '1-10', '2-1']);
  assert.equal(devnodeOf(3, 117), '/dev/bus/usb/003/117');
});
