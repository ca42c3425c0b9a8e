/** Hot-plugged disks and host USB devices of running VMs, through the driver's DeviceOps. */
import { closeSync, existsSync, rmSync } from 'node:fs';
import { DevvmError } from '../../shared/errors';
import type { AttachedDisk, HostUsbDevice } from '../../shared/types';
import { checkDiskSource } from '../disksource';
import { need, type DeviceOps } from '../driver/driver';
import { log } from '../log';
import { readJson, writeJsonAtomic } from '../store';
import { installPsk, readPskFile, tlsSourceOnly, type Psk } from '../tlspsk';
import { openUsbNode } from '../usb/access';
import { admit, type VmContext } from './context';

export type UsbRecord = HostUsbDevice & { qemuId: string };

/** A disk hot-plugged into the running VM, as remembered in vms/<name>/attached.json. */
export interface AttachedRecord extends AttachedDisk {
  /** The PCIe root port it sits on (virtio only). */
  port?: string;
}

/** What clients see of an attached disk (the root port is the helper's business). */
export function publicDisk({ port: _port, ...d }: AttachedRecord): AttachedDisk {
  return d;
}

export class Devices {
  constructor(
    private readonly ctx: VmContext,
    private readonly runningNames: () => string[],
  ) {}

  private ops(name: string, what: string): DeviceOps {
    const inst = this.ctx.instance(name);
    if (!inst) throw new DevvmError('internal', `VM "${name}" has no running instance`);
    return need(inst.devices, this.ctx.driver.name, what);
  }

  /** Disks hot-plugged into the running VM (none when it does not run). */
  attachedDisks(name: string): AttachedRecord[] {
    const f = this.ctx.home.vm(name);
    if (!this.ctx.instance(name)?.alive || !existsSync(f.attached)) return [];
    return readJson<AttachedRecord[]>(f.attached);
  }

  usbAttached(name: string): UsbRecord[] {
    const f = this.ctx.home.vm(name);
    if (!this.ctx.instance(name)?.alive || !existsSync(f.usb)) return [];
    return readJson<UsbRecord[]>(f.usb);
  }

  /** Which running VM has this host device. */
  usbOwner(id: string): string | undefined {
    return this.runningNames().find((n) => this.usbAttached(n).some((d) => d.id === id));
  }

  async attachDisk(name: string, o: { source: string; usb: boolean; readOnly: boolean; format?: 'qcow2' | 'raw'; tlsPskFile?: string }): Promise<AttachedDisk> {
    admit(this.ctx, 'attachDisk', name);
    let psk: Psk | null = null;
    if (o.tlsPskFile !== undefined) {
      tlsSourceOnly(o.source);
      psk = await readPskFile(o.tlsPskFile);
    }
    // Checked by identity (never one of devvm's own files writable) and format (raw only
    // when declared), and opened here: QEMU gets our descriptor, not the path.
    const src = await checkDiskSource(this.ctx.home, o.source, { readOnly: o.readOnly, format: o.format });
    try {
      return await this.ctx.locks.run(name, 'attaching', async () => {
        const dev = this.ops(name, 'hot-plug disks');
        const list = this.attachedDisks(name);
        let n = 1;
        while (list.some((d) => d.id === `xd${n}`)) n++;
        const id = `xd${n}`;
        // QEMU reads DIR/keys.psk: our copy of the checked key, in the VM's own directory.
        const tlsDir = this.ctx.home.vm(name).attachTls(id);
        if (psk) await installPsk(tlsDir, psk);
        let slot: string | undefined;
        try {
          const spec = { id, source: src.source, fd: src.fd ?? null, format: src.format, usb: o.usb, readOnly: o.readOnly, ...(psk ? { tls: { dir: tlsDir, identity: psk.identity } } : {}) };
          ({ slot } = await dev.attachDisk(spec, list.flatMap((d) => (d.port ? [d.port] : []))));
        } catch (e) {
          rmSync(tlsDir, { recursive: true, force: true });
          throw e;
        }
        const d: AttachedRecord = { id, source: src.source, bus: o.usb ? 'usb' : 'virtio', readOnly: o.readOnly, ...(slot ? { port: slot } : {}) };
        writeJsonAtomic(this.ctx.home.vm(name).attached, [...list, d]);
        log.info(`${name}: attached ${d.source} as ${d.id} (${d.bus}, ${src.format}${d.readOnly ? ', read-only' : ''})`);
        return publicDisk(d);
      });
    } finally {
      await src.close();
    }
  }

  async detachDisk(name: string, id: string): Promise<void> {
    admit(this.ctx, 'detachDisk', name);
    const d = this.attachedDisks(name).find((x) => x.id === id);
    if (!d) throw new DevvmError('not-found', `VM "${name}" has no attached disk "${id}"`, `see "devvm info ${name}"`);
    await this.ctx.locks.run(name, 'attaching', async () => {
      await this.ops(name, 'hot-unplug disks').detachDisk(d.id);
      rmSync(this.ctx.home.vm(name).attachTls(d.id), { recursive: true, force: true });
      writeJsonAtomic(this.ctx.home.vm(name).attached, this.attachedDisks(name).filter((x) => x.id !== id));
    });
    log.info(`${name}: detached ${id}`);
  }

  /** Passes a host USB device to the VM. */
  async usbAttach(name: string, dev: HostUsbDevice): Promise<HostUsbDevice> {
    admit(this.ctx, 'attachUsb', name);
    const owner = this.usbOwner(dev.id);
    if (owner) throw new DevvmError('busy', `USB device ${dev.id} is attached to VM "${owner}"`, `detach it first: devvm usb detach ${owner} ${dev.id}`);
    return this.ctx.locks.run(name, 'attaching', async () => {
      const ops = this.ops(name, 'pass host USB devices through');
      const list = this.usbAttached(name);
      let n = 1;
      while (list.some((d) => d.qemuId === `usb${n}`)) n++;
      const qemuId = `usb${n}`;
      const fd = openUsbNode(dev);
      try {
        await ops.attachUsb({ id: qemuId, fd, busnum: dev.busnum, devnum: dev.devnum, label: dev.id }).catch((e: Error) => {
          throw new DevvmError('process-failed', `cannot attach USB device ${dev.id} (${dev.vendorId}:${dev.productId}): ${e.message}`);
        });
      } finally {
        closeSync(fd);
      }
      writeJsonAtomic(this.ctx.home.vm(name).usb, [...list, { ...dev, qemuId }]);
      log.info(`${name}: attached USB ${dev.id} (${dev.vendorId}:${dev.productId}) as ${qemuId}`);
      return { ...dev, attachedTo: name };
    });
  }

  /** `gone`: unplugged already, the engine has dropped the device and only the record goes. */
  async usbDetach(name: string, id: string, gone = false): Promise<void> {
    admit(this.ctx, 'detachUsb', name);
    const d = this.usbAttached(name).find((x) => x.id === id);
    if (!d) throw new DevvmError('not-found', `USB device ${id} is not attached to VM "${name}"`, `see "devvm usb list"`);
    await this.ctx.locks.run(name, 'attaching', async () => {
      await this.ops(name, 'pass host USB devices through').detachUsb(d.qemuId, gone);
      writeJsonAtomic(this.ctx.home.vm(name).usb, this.usbAttached(name).filter((x) => x.id !== id));
    });
    log.info(`${name}: detached USB ${id}`);
  }
}
