/**
 * Host USB devices from sysfs (/sys/bus/usb/devices/<id>/idVendor, ...). Files vanish
 * while a device is unplugged, so every read tolerates absence.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { HostUsbDevice } from '../../shared/types';

export const SYSFS_USB_DEVICES = '/sys/bus/usb/devices';

/** Device names are bus-port paths ("1-2", "1-3.1"); interfaces have ":cfg.intf", root hubs are "usbN". */
export const USB_DEVICE_ID = /^\d+-\d+(\.\d+)*$/;

const HUB_CLASS = '09';

function attr(dir: string, name: string): string | undefined {
  try {
    // The kernel ends each value with "\n"; some descriptors pad their strings with spaces.
    const v = readFileSync(path.join(dir, name), 'utf8').trim();
    return v === '' ? undefined : v;
  } catch {
    return undefined;
  }
}

/** Where usbfs device nodes live; tests point it at a fixture (there is no USB bus here). */
const DEV_ROOT = process.env.DEVVM_USB_DEVROOT || '/dev/bus/usb';

export function devnodeOf(busnum: number, devnum: number): string {
  return `${DEV_ROOT}/${String(busnum).padStart(3, '0')}/${String(devnum).padStart(3, '0')}`;
}

/**
 * One device that can be handed to a VM; null for hubs, root hubs, interfaces, names
 * that are not device ids, and devices gone (or going) from sysfs.
 */
export function readUsbDevice(root: string, id: string): HostUsbDevice | null {
  if (!USB_DEVICE_ID.test(id)) return null;
  const dir = path.join(root, id);
  const vendorId = attr(dir, 'idVendor')?.toLowerCase();
  const productId = attr(dir, 'idProduct')?.toLowerCase();
  const busnum = Number(attr(dir, 'busnum'));
  const devnum = Number(attr(dir, 'devnum'));
  if (!vendorId || !/^[0-9a-f]{4}$/.test(vendorId) || !productId || !/^[0-9a-f]{4}$/.test(productId)) return null;
  if (!Number.isInteger(busnum) || busnum <= 0 || !Number.isInteger(devnum) || devnum <= 0) return null;
  const cls = attr(dir, 'bDeviceClass');
  if (cls === undefined || cls === HUB_CLASS) return null; // no class: half-removed
  const dev: HostUsbDevice = { id, busnum, devnum, vendorId, productId, devnode: devnodeOf(busnum, devnum) };
  const manufacturer = attr(dir, 'manufacturer');
  const product = attr(dir, 'product');
  const serial = attr(dir, 'serial');
  if (manufacturer) dev.manufacturer = manufacturer;
  if (product) dev.product = product;
  if (serial) dev.serial = serial;
  return dev;
}

/** Sorted by id, bus-port aware: "1-2" < "1-10" and "1-3" < "1-3.1". A missing root (no USB here) is []. */
export function listUsbDevices(root: string = SYSFS_USB_DEVICES): HostUsbDevice[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  return names
    .filter((n) => USB_DEVICE_ID.test(n))
    .map((n) => readUsbDevice(root, n))
    .filter((d): d is HostUsbDevice => d !== null)
    .sort((a, b) => compareUsbIds(a.id, b.id));
}

export function compareUsbIds(a: string, b: string): number {
  const pa = a.split(/[-.]/).map(Number);
  const pb = b.split(/[-.]/).map(Number);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const d = pa[i] - pb[i];
    if (d !== 0) return d;
  }
  return pa.length - pb.length;
}
