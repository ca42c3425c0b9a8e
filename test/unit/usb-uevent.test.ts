import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseUevent, parseUsbDeviceUevent } from '../../src/helper/usb/uevent';
import { recordedUevents } from '../usbfixture';

const stream = recordedUevents().all;
const DEVPATH = '/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3.1';

test('the recorded stream has kernel and udev messages', () => {
  assert.equal(stream.length, 34);
  assert.equal(stream.filter((m) => m.startsWith('libudev')).length, 6);
});

test('parseUevent: header, action, devpath and properties', () => {
  const ev = parseUevent(stream[0]!);
  assert.ok(ev);
  assert.equal(ev.action, 'add');
  assert.equal(ev.devpath, DEVPATH);
  assert.equal(ev.env.SUBSYSTEM, 'usb');
  assert.equal(ev.env.DEVTYPE, 'usb_device');
  assert.equal(ev.env.DEVNAME, 'bus/usb/001/005');
  assert.equal(ev.env.SEQNUM, '4101');
  // A value may hold "=" (MODALIAS does not, but nothing forbids it).
  assert.equal(parseUevent('change@/devices/x\nACTION=change\nDEVPATH=/devices/x\nK=a=b')?.env.K, 'a=b');
});

test('parseUevent rejects udev re-broadcasts and malformed or inconsistent messages', () => {
  for (const m of stream.filter((s) => s.startsWith('libudev'))) assert.equal(parseUevent(m), null);
  assert.equal(parseUevent(''), null);
  assert.equal(parseUevent('ACTION=add\nDEVPATH=/devices/x'), null);
  assert.equal(parseUevent('add@devices/x\nACTION=add'), null, 'devpath must be absolute');
  assert.equal(parseUevent('add@/devices/x\nACTION=remove\nDEVPATH=/devices/x'), null);
  assert.equal(parseUevent('add@/devices/x\nACTION=add\nDEVPATH=/devices/y'), null);
});

test('parseUsbDeviceUevent keeps only whole USB devices arriving and leaving', () => {
  const kept = stream.map(parseUsbDeviceUevent).filter((e) => e !== null);
  assert.deepEqual(kept, [
    { action: 'add', devpath: DEVPATH, id: '1-3.1', vendorId: '0781', productId: '5581', busnum: 1, devnum: 5, seqnum: 4101 },
    { action: 'remove', devpath: DEVPATH, id: '1-3.1', vendorId: '0781', productId: '5581', busnum: 1, devnum: 5, seqnum: 4133 },
  ]);
});

test('parseUsbDeviceUevent: interfaces, bind, root hubs and other subsystems are ignored', () => {
  const base = (action: string, p: string, ...props: string[]) => [`${action}@${p}`, `ACTION=${action}`, `DEVPATH=${p}`, ...props].join('\n');
  assert.equal(parseUsbDeviceUevent(base('add', `${DEVPATH}/1-3.1:1.0`, 'SUBSYSTEM=usb', 'DEVTYPE=usb_interface')), null);
  assert.equal(parseUsbDeviceUevent(base('bind', DEVPATH, 'SUBSYSTEM=usb', 'DEVTYPE=usb_device')), null);
  assert.equal(parseUsbDeviceUevent(base('change', DEVPATH, 'SUBSYSTEM=usb', 'DEVTYPE=usb_device')), null);
  assert.equal(parseUsbDeviceUevent(base('add', '/devices/pci0000:00/0000:00:14.0/usb2', 'SUBSYSTEM=usb', 'DEVTYPE=usb_device')), null);
  assert.equal(parseUsbDeviceUevent(base('add', `${DEVPATH}/block/sdb`, 'SUBSYSTEM=block', 'DEVTYPE=disk')), null);
  // Short PRODUCT fields are padded; missing numbers are left out rather than guessed.
  assert.deepEqual(parseUsbDeviceUevent(base('add', '/devices/pci0000:00/0000:00:14.0/usb1/1-2', 'SUBSYSTEM=usb', 'DEVTYPE=usb_device', 'PRODUCT=46d/c52b/1211')), {
    action: 'add',
    devpath: '/devices/pci0000:00/0000:00:14.0/usb1/1-2',
    id: '1-2',
    vendorId: '046d',
    productId: 'c52b',
  });
});
