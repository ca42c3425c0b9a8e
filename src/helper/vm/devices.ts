/** Hot-plugged disks and host USB devices of running VMs, through the driver's DeviceOps. */
import { closeSync, existsSync } from 'node:fs';
import { DevvmError } from '../../shared/errors';
import type { AttachedDisk, HostUsbDevice } from '../../shared/types';
import * as disks from '../disks';
import { need, type DeviceOps } from '../driver/driver';
import { log } from '../log';
import { readJson, writeJsonAtomic } from '../store';
import { openUsbNode } from '../usb/access';
import { admit, type VmContext } from './context';

export type UsbRecord = HostUsbDevice & { qemuId: string };

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
  attachedDisks(name: string): disks.AttachedRecord[] {
    const f = this.ctx.home.vm(name);
    if (!this.ctx.instance(name)?.alive || !existsSync(f.attached)) return [];
    return readJson<disks.AttachedRecord[]>(f.attached);
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

  async attachDisk(name: string, o: { source: string; usb: boolean; readOnly: boolean }): Promise<AttachedDisk> {
    admit(this.ctx, 'attachDisk', name);
    const format = await disks.checkSource(o.source, this.ctx.home.root, o.readOnly);
    if (format !== 'raw' && format !== 'qcow2') throw new DevvmError('invalid-argument', `unsupported disk format ${format}`);
    return this.ctx.locks.run(name, 'attaching', async () => {
      const dev = this.ops(name, 'hot-plug disks');
      const list = this.attachedDisks(name);
      let n = 1;
      while (list.some((d) => d.id === `xd${n}`)) n++;
      const id = `xd${n}`;
      const { slot } = await dev.attachDisk({ id, source: o.source, format, usb: o.usb, readOnly: o.readOnly }, list.flatMap((d) => (d.port ? [d.port] : [])));
      const d: disks.AttachedRecord = { id, source: o.source, bus: o.usb ? 'usb' : 'virtio', readOnly: o.readOnly, ...(slot ? { port: slot } : {}) };
      writeJsonAtomic(this.ctx.home.vm(name).attached, [...list, d]);
      log.info(`${name}: attached ${d.source} as ${d.id} (${d.bus}${d.readOnly ? ', read-only' : ''})`);
      return disks.publicDisk(d);
    });
  }

  async detachDisk(name: string, id: string): Promise<void> {
    admit(this.ctx, 'detachDisk', name);
    const d = this.attachedDisks(name).find((x) => x.id === id);
    if (!d) throw new DevvmError('not-found', `VM "${name}" has no attached disk "${id}"`, `see "devvm info ${name}"`);
    await this.ctx.locks.run(name, 'attaching', async () => {
      await this.ops(name, 'hot-unplug disks').detachDisk(d.id);
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
