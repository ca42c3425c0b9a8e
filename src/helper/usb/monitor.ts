/**
 * Host USB hot-plug: kernel uevents (from the native addon, or any injected source)
 * turned into 'add' / 'remove' of whole devices read from sysfs. Remove reports the
 * device as last seen, since its sysfs directory is already gone by then.
 */
import { EventEmitter } from 'node:events';
import { DevvmError } from '../../shared/errors';
import type { HostUsbDevice } from '../../shared/types';
import { loadNative } from '../native';
import { SYSFS_USB_DEVICES, USB_DEVICE_ID, compareUsbIds, listUsbDevices, readUsbDevice } from './sysfs';
import { parseUsbDeviceUevent } from './uevent';

export interface UeventSource {
  /** Where events come from, for `devvm doctor`. */
  readonly name: string;
  /**
   * Starts delivering raw uevent messages; returns the stop function. Throws when it
   * cannot start. `onTrouble` with code ENOBUFS: events were lost (the monitor
   * rescans); any other error: the source has stopped.
   */
  start(onMessage: (msg: string) => void, onTrouble?: (err: NodeJS.ErrnoException) => void): () => void;
}

/** The native addon's netlink monitor. */
export const nativeUeventSource: UeventSource = {
  name: 'netlink kernel uevents (native addon)',
  start(onMessage, onTrouble) {
    const { addon, detail } = loadNative();
    if (!addon) throw new DevvmError('missing-dependency', `USB hot-plug monitor unavailable: ${detail}`);
    try {
      const m = addon.ueventMonitor(onMessage, onTrouble);
      return () => m.stop();
    } catch (e) {
      const why = (e as Error).message.replace(/^ueventMonitor: /, '');
      throw new DevvmError('missing-dependency', `USB hot-plug monitor unavailable: ${why}`);
    }
  },
};

export interface UsbMonitorOptions {
  source?: UeventSource;
  sysfsRoot?: string;
}

export interface UsbMonitor {
  on(event: 'add' | 'remove', listener: (device: HostUsbDevice) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  emit(event: 'add' | 'remove', device: HostUsbDevice): boolean;
  emit(event: 'error', err: Error): boolean;
}

export class UsbMonitor extends EventEmitter {
  private readonly source: UeventSource;
  private readonly root: string;
  private readonly known = new Map<string, HostUsbDevice>();
  private stopSource: (() => void) | null = null;
  /** Why the source ended after starting (doctor shows it); null while running or never started. */
  stoppedBy: string | null = null;

  constructor(opts: UsbMonitorOptions = {}) {
    super();
    this.source = opts.source ?? nativeUeventSource;
    this.root = opts.sysfsRoot ?? SYSFS_USB_DEVICES;
  }

  get running(): boolean {
    return this.stopSource !== null;
  }

  get sourceName(): string {
    return this.source.name;
  }

  /** Devices present now (as of the last event or scan), sorted by id. */
  devices(): HostUsbDevice[] {
    return [...this.known.values()].sort((a, b) => compareUsbIds(a.id, b.id));
  }

  /**
   * Takes the present devices as known (no 'add' for them) and starts listening.
   * Throws DevvmError('missing-dependency', 'USB hot-plug monitor unavailable: ...').
   */
  start(): void {
    if (this.stopSource) return;
    this.stoppedBy = null;
    this.known.clear();
    for (const d of listUsbDevices(this.root)) this.known.set(d.id, d);
    this.stopSource = this.source.start(
      (msg) => this.onMessage(msg),
      (err) => this.onTrouble(err),
    );
  }

  stop(): void {
    const stop = this.stopSource;
    this.stopSource = null;
    stop?.();
  }

  /** Brings the known set in line with sysfs, emitting what changed (after lost events). */
  rescan(): void {
    const now = new Map(listUsbDevices(this.root).map((d) => [d.id, d]));
    for (const [id, old] of [...this.known]) {
      const cur = now.get(id);
      if (!cur || cur.devnode !== old.devnode) this.removed(id);
    }
    for (const d of now.values()) if (!this.known.has(d.id)) this.added(d);
  }

  private onMessage(msg: string): void {
    const ev = parseUsbDeviceUevent(msg);
    if (!ev) return;
    if (ev.action === 'remove') {
      this.removed(ev.id);
      return;
    }
    // Gone again already, or a hub: nothing to offer.
    const dev = readUsbDevice(this.root, ev.id);
    if (!dev) return;
    const old = this.known.get(ev.id);
    if (old && old.devnode === dev.devnode) return;
    if (old) this.removed(ev.id); // re-enumerated while its remove was lost
    this.added(dev);
  }

  private onTrouble(err: NodeJS.ErrnoException): void {
    if (err.code === 'ENOBUFS') {
      this.rescan();
      return;
    }
    this.stop(); // the source has ended: free what it holds
    this.stoppedBy = err.message;
    // An unhandled 'error' would throw from inside the source's callback.
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private added(d: HostUsbDevice): void {
    this.known.set(d.id, d);
    this.emit('add', d);
  }

  private removed(id: string): void {
    const d = this.known.get(id);
    if (!d) return; // a hub, or something never offered
    this.known.delete(id);
    this.emit('remove', d);
  }
}

/**
 * Resolves a user's DEV argument against the present devices. Accepted forms:
 * - the sysfs id (bus-port path): "1-3.1"
 * - VENDOR:PRODUCT in hex: "0781:5581" (an error when several devices match)
 * - BUS/DEV as lsusb numbers them: "1/5" or "001/005", or the node "/dev/bus/usb/001/005"
 */
export function matchDevice(devices: readonly HostUsbDevice[], spec: string): HostUsbDevice {
  const s = spec.trim();
  let found: HostUsbDevice[];
  let m: RegExpExecArray | null;
  if (USB_DEVICE_ID.test(s)) {
    found = devices.filter((d) => d.id === s);
  } else if ((m = /^([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(s))) {
    const vendorId = (m[1] as string).toLowerCase().padStart(4, '0');
    const productId = (m[2] as string).toLowerCase().padStart(4, '0');
    found = devices.filter((d) => d.vendorId === vendorId && d.productId === productId);
    if (found.length > 1) {
      throw new DevvmError(
        'invalid-argument',
        `${vendorId}:${productId} matches ${found.length} USB devices: ${found.map((d) => d.id).join(', ')}`,
        'name one by its id',
      );
    }
  } else if ((m = /^(?:\/dev\/bus\/usb\/)?(\d{1,3})\/(\d{1,3})$/.exec(s))) {
    const busnum = Number(m[1]);
    const devnum = Number(m[2]);
    found = devices.filter((d) => d.busnum === busnum && d.devnum === devnum);
  } else {
    throw new DevvmError(
      'invalid-argument',
      `"${spec}" is not a USB device`,
      'use an id such as 1-3.1, VENDOR:PRODUCT such as 0781:5581, or BUS/DEV such as 1/5',
    );
  }
  const dev = found[0];
  if (!dev) throw new DevvmError('not-found', `no host USB device matches "${s}"`, 'see "devvm usb list"');
  return dev;
}
