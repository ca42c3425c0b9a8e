/**
 * RPC server: one vscode-jsonrpc connection per client socket. Every handler validates
 * its parameters (clients are untrusted), maps errors to a ResponseError carrying the
 * DevvmError code, and never lets a bad message take the helper down.
 */
import net from 'node:net';
import { createMessageConnection, MessageConnection, ResponseError, SocketMessageReader, SocketMessageWriter } from 'vscode-jsonrpc/node';
import { asDevvmError, DevvmError } from '../shared/errors';
import { Notify, Rpc, RPC_ERROR, WithProgress, type ImageImportParams } from '../shared/rpc';
import type { HelperInfo } from '../shared/types';
import * as v from '../shared/validate';
import type { AccelChoice } from './accel';
import { doctor, usbMonitorCheck } from './doctor';
import type { Home } from './filenames';
import type { Images, Progress } from './images';
import { log } from './log';
import { ensureInclude } from './sshconfig';
import { matchDevice, type UsbMonitor } from './usb/monitor';
import { listUsbDevices } from './usb/sysfs';
import type { Vms } from './vms';

export interface ServerDeps {
  home: Home;
  vms: Vms;
  images: Images;
  info: HelperInfo;
  qemuBinary: string;
  accelerator: () => Promise<AccelChoice>;
  shutdown: (stopVms: boolean) => void;
  /** Host USB hot-plug monitor; null when unavailable (then devices are read from sysfs on request). */
  usb: UsbMonitor | null;
  /** Why `usb` is null: the monitor's start error. */
  usbUnavailable?: string;
  usbSysfsRoot: string;
}

function obj(p: unknown): Record<string, unknown> {
  if (p === null || p === undefined) return {};
  if (typeof p !== 'object' || Array.isArray(p)) throw new DevvmError('invalid-argument', 'parameters must be an object');
  return p as Record<string, unknown>;
}

function optBool(p: Record<string, unknown>, key: string): boolean | undefined {
  const x = p[key];
  if (x === undefined) return undefined;
  if (typeof x !== 'boolean') throw new DevvmError('invalid-argument', `${key} must be true or false`);
  return x;
}

function optString(p: Record<string, unknown>, key: string): string | undefined {
  const x = p[key];
  if (x === undefined) return undefined;
  if (typeof x !== 'string') throw new DevvmError('invalid-argument', `${key} must be text`);
  return x;
}

export class Server {
  private conns = new Set<MessageConnection>();

  constructor(private readonly d: ServerDeps) {
    d.vms.on('changed', (s) => this.broadcast((c) => c.sendNotification(Notify.vmChanged, s)));
    d.vms.on('removed', (name: string) => this.broadcast((c) => c.sendNotification(Notify.vmRemoved, { name })));
    d.usb?.on('add', (device) => {
      const runningVms = d.vms.runningNames();
      if (runningVms.length) this.broadcast((c) => c.sendNotification(Notify.usb, { action: 'add', device, runningVms }));
    });
    d.usb?.on('remove', (device) => {
      // Unplugged while attached: QEMU already lost it; drop the record so the view updates.
      const owner = d.vms.usbOwner(device.id);
      const done = owner ? d.vms.usbDetach(owner, device.id, true).catch((e: Error) => log.warn(`usb detach after unplug: ${e.message}`)) : Promise.resolve();
      void done.then(() => this.broadcast((c) => c.sendNotification(Notify.usb, { action: 'remove', device, runningVms: d.vms.runningNames() })));
    });
  }

  private usbDevices() {
    const list = this.d.usb?.running ? this.d.usb.devices() : listUsbDevices(this.d.usbSysfsRoot);
    return list.map((x) => {
      const owner = this.d.vms.usbOwner(x.id);
      return owner ? { ...x, attachedTo: owner } : x;
    });
  }

  private broadcast(f: (c: MessageConnection) => Promise<void>): void {
    for (const c of this.conns) f(c).catch(() => {});
  }

  accept(sock: net.Socket): void {
    const conn = createMessageConnection(new SocketMessageReader(sock), new SocketMessageWriter(sock));
    this.conns.add(conn);
    const drop = () => {
      if (!this.conns.delete(conn)) return;
      conn.dispose();
      sock.destroy();
    };
    sock.on('close', drop);
    sock.on('error', drop);
    // Malformed input (not JSON, bad headers): drop that client, keep serving others.
    conn.onError(([err]) => {
      log.warn(`dropping client after a malformed message: ${err.message}`);
      drop();
    });
    conn.onClose(drop);
    this.register(conn);
    conn.listen();
  }

  private register(conn: MessageConnection): void {
    const { vms, images, home } = this.d;
    const progressFor = (p: WithProgress): Progress => {
      const token = typeof p.progressToken === 'string' ? p.progressToken : null;
      return (message, fraction) => {
        if (token) conn.sendNotification(Notify.progress, { token, message, fraction }).catch(() => {});
      };
    };
    const handle = <P, R>(type: { method: string }, fn: (p: Record<string, unknown>) => Promise<R> | R) => {
      conn.onRequest(type.method, async (params: P) => {
        try {
          return await fn(obj(params));
        } catch (e) {
          const err = asDevvmError(e);
          if (err.code === 'internal') log.error(`${type.method}: ${(e as Error).stack ?? err.message}`);
          return new ResponseError(RPC_ERROR, err.message, { code: err.code, hint: err.hint });
        }
      });
    };

    handle(Rpc.ping, () => this.d.info);
    handle(Rpc.shutdown, (p) => {
      const stopVms = optBool(p, 'stopVms') ?? false;
      setTimeout(() => this.d.shutdown(stopVms), 10);
    });
    handle(Rpc.doctor, async () => doctor(home, this.d.qemuBinary, await this.d.accelerator(), usbMonitorCheck(this.d.usb, this.d.usbUnavailable)));

    handle(Rpc.vmList, () => vms.list());
    handle(Rpc.vmInfo, (p) => vms.info(v.vmName(p.name)));
    handle(Rpc.vmCreate, (p) => {
      const sshKeys = p.sshKeys;
      if (sshKeys !== undefined && (!Array.isArray(sshKeys) || sshKeys.some((k) => typeof k !== 'string'))) {
        throw new DevvmError('invalid-argument', 'sshKeys must be a list of public keys');
      }
      return vms.create(
        {
          name: v.vmName(p.name),
          image: v.imageName(p.image),
          user: v.userName(p.user),
          fullName: optString(p, 'fullName'),
          password: optString(p, 'password'),
          sshKeys: sshKeys as string[] | undefined,
          autologin: optBool(p, 'autologin'),
          ssh: optBool(p, 'ssh'),
          cpus: p.cpus === undefined ? undefined : v.cpus(p.cpus),
          memoryMiB: p.memoryMiB === undefined ? undefined : v.memoryMiB(p.memoryMiB),
          diskGiB: p.diskGiB === undefined ? undefined : v.diskGiB(p.diskGiB),
          start: optBool(p, 'start'),
          waitSsh: optBool(p, 'waitSsh'),
        },
        progressFor(p),
      );
    });
    handle(Rpc.vmStart, (p) => {
      const t = p.timeoutSec;
      if (t !== undefined && (typeof t !== 'number' || !(t > 0 && t <= 86400))) throw new DevvmError('invalid-argument', 'timeoutSec must be 1-86400');
      return vms.start(v.vmName(p.name), { waitSsh: optBool(p, 'waitSsh'), timeoutSec: t as number | undefined, discardState: optBool(p, 'discardState') }, progressFor(p));
    });
    handle(Rpc.vmSuspend, (p) => vms.suspend(v.vmName(p.name), progressFor(p)));
    handle(Rpc.vmStop, (p) => vms.stop(v.vmName(p.name), optBool(p, 'force') ?? false));
    handle(Rpc.vmDelete, (p) => vms.delete(v.vmName(p.name), optBool(p, 'force') ?? false));
    handle(Rpc.vmSshTarget, (p) => vms.sshTarget(v.vmName(p.name)));
    handle(Rpc.vmSnapshot, (p) => vms.snapshot(v.vmName(p.name), v.snapshotName(p.snapshot), optBool(p, 'ram') ?? false, progressFor(p)));
    handle(Rpc.vmRestore, (p) => vms.restore(v.vmName(p.name), v.snapshotName(p.snapshot), progressFor(p)));
    handle(Rpc.vmSnapshotDelete, (p) => vms.deleteSnapshot(v.vmName(p.name), v.snapshotName(p.snapshot)));
    handle(Rpc.vmClone, (p) =>
      vms.clone(
        { source: v.vmName(p.source), name: v.vmName(p.name), snapshot: p.snapshot === undefined ? undefined : v.snapshotName(p.snapshot), start: optBool(p, 'start') },
        progressFor(p),
      ),
    );
    handle(Rpc.layerTree, () => vms.layerTree());
    handle(Rpc.diskAttach, (p) =>
      vms.attachDisk(v.vmName(p.name), { source: v.diskSource(p.source), usb: optBool(p, 'usb') ?? false, readOnly: optBool(p, 'readOnly') ?? false }),
    );
    handle(Rpc.diskDetach, (p) => vms.detachDisk(v.vmName(p.name), v.diskId(p.id)));
    handle(Rpc.diskExport, (p) => vms.exportDisk(v.vmName(p.name), p.snapshot === undefined ? undefined : v.snapshotName(p.snapshot), progressFor(p)));
    handle(Rpc.diskUnexport, (p) => vms.unexportDisk(v.vmName(p.name)));
    handle(Rpc.usbList, () => this.usbDevices());
    const usbSpec = (p: Record<string, unknown>) => {
      const spec = optString(p, 'device');
      if (!spec || spec.length > 64) throw new DevvmError('invalid-argument', 'device must name a USB device: its id (1-2.3), VENDOR:PRODUCT or BUS/DEV');
      return spec;
    };
    handle(Rpc.usbAttach, (p) => vms.usbAttach(v.vmName(p.name), matchDevice(this.usbDevices(), usbSpec(p))));
    handle(Rpc.usbDetach, (p) => {
      const name = v.vmName(p.name);
      const spec = usbSpec(p);
      // The device may be unplugged already: match against what the VM has, too.
      const dev = matchDevice([...vms.usbAttached(name), ...this.usbDevices().filter((x) => !x.attachedTo)], spec);
      return vms.usbDetach(name, dev.id);
    });

    handle(Rpc.imageList, () => Promise.all(images.names().map((n) => images.info(n, vms.imageUsers(n)))));
    // build and pull differ only in where the base comes from.
    const fromRecipe = (make: 'build' | 'pull') => async (p: Record<string, unknown>) => {
      const recipe = optString(p, 'recipe');
      if (!recipe) throw new DevvmError('invalid-argument', 'recipe is required');
      const meta = await images[make](recipe, optString(p, 'name'), progressFor(p));
      this.broadcast((c) => c.sendNotification(Notify.imagesChanged));
      return images.info(meta.name, vms.imageUsers(meta.name));
    };
    handle(Rpc.imageBuild, fromRecipe('build'));
    handle(Rpc.imagePull, fromRecipe('pull'));
    handle(Rpc.imageImport, async (p) => {
      const name = v.imageName(p.name);
      const meta = await images.import(v.nonEmptyPath('file', p.file), name, optString(p, 'kernel'), optString(p, 'initrd'), progressFor(p), optBool(p, 'copy'), {
        format: optString(p, 'format') as ImageImportParams['format'], // checked by images.import
        flatten: optBool(p, 'flatten'),
      });
      this.broadcast((c) => c.sendNotification(Notify.imagesChanged));
      return images.info(meta.name, []);
    });
    handle(Rpc.imageDelete, (p) => {
      const name = v.imageName(p.name);
      images.delete(name, vms.imageUsers(name));
      this.broadcast((c) => c.sendNotification(Notify.imagesChanged));
    });
    handle(Rpc.sshInclude, (p) => ensureInclude(home.sshConfig, optString(p, 'userConfig')));

    // Unknown methods get JSON-RPC's MethodNotFound from vscode-jsonrpc itself.
  }

  closeAll(): void {
    for (const c of this.conns) c.dispose();
    this.conns.clear();
  }
}
