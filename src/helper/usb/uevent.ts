/**
 * Kernel kobject uevents, as the native monitor delivers them: "ACTION@DEVPATH" then
 * KEY=VALUE lines (the kernel's NUL separators turned into "\n").
 */

export interface Uevent {
  action: string;
  devpath: string;
  env: Record<string, string>;
}

/** A USB device (not an interface) arriving or leaving. */
export interface UsbDeviceUevent {
  action: 'add' | 'remove';
  devpath: string;
  /** The sysfs name, last part of DEVPATH: "1-3.1". */
  id: string;
  /** From PRODUCT="46d/c52b/1211", padded to 4 lowercase hex digits. */
  vendorId?: string;
  productId?: string;
  busnum?: number;
  devnum?: number;
  seqnum?: number;
}

/**
 * Parses one message; null when it is not a kernel uevent. udev re-broadcasts events
 * with a binary "libudev" header: those are udev's, never the kernel's.
 */
export function parseUevent(msg: string): Uevent | null {
  if (msg.startsWith('libudev')) return null;
  const lines = msg.split('\n');
  const head = /^([a-z]+)@(\/\S*)$/.exec(lines[0] ?? '');
  if (!head) return null;
  const env: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const eq = line.indexOf('=');
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  const action = head[1] as string;
  const devpath = head[2] as string;
  // The header and the body describe the same event; a mismatch is not the kernel's.
  if ((env.ACTION ?? action) !== action || (env.DEVPATH ?? devpath) !== devpath) return null;
  return { action, devpath, env };
}

const decimal = (s: string | undefined): number | undefined => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);
const hex4 = (s: string | undefined): string | undefined => (s !== undefined && /^[0-9a-f]{1,4}$/i.test(s) ? s.toLowerCase().padStart(4, '0') : undefined);

/**
 * Only whole USB devices arriving or leaving: interfaces, bind/unbind, change and
 * other subsystems (the storage stack behind a flash drive) are null.
 */
export function parseUsbDeviceUevent(msg: string): UsbDeviceUevent | null {
  const ev = parseUevent(msg);
  if (!ev || (ev.action !== 'add' && ev.action !== 'remove')) return null;
  if (ev.env.SUBSYSTEM !== 'usb' || ev.env.DEVTYPE !== 'usb_device') return null;
  const id = ev.devpath.slice(ev.devpath.lastIndexOf('/') + 1);
  if (!/^\d+-\d+(\.\d+)*$/.test(id)) return null; // root hubs ("usb1") are never passed to a VM
  const [vendor, product] = (ev.env.PRODUCT ?? '').split('/');
  const out: UsbDeviceUevent = { action: ev.action, devpath: ev.devpath, id };
  const vendorId = hex4(vendor);
  const productId = hex4(product);
  if (vendorId && productId) Object.assign(out, { vendorId, productId });
  const busnum = decimal(ev.env.BUSNUM);
  const devnum = decimal(ev.env.DEVNUM);
  const seqnum = decimal(ev.env.SEQNUM);
  if (busnum !== undefined) out.busnum = busnum;
  if (devnum !== undefined) out.devnum = devnum;
  if (seqnum !== undefined) out.seqnum = seqnum;
  return out;
}
