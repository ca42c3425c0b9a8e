/**
 * RPC server: one vscode-jsonrpc connection per client socket. Every handler validates
 * its parameters (clients are untrusted), maps errors to a ResponseError carrying the
 * DevvmError code, and never lets a bad message take the helper down.
 */
import net from 'node:net';
import { MessageConnection, ResponseError } from 'vscode-jsonrpc/node';
import { socketConnection } from '../shared/rpcsocket';
import { asDevvmError } from '../shared/errors';
import { Notify, Rpc, RPC_ERROR, type Handlers, type RpcName } from '../shared/rpc';
import type { HelperInfo, PortForward } from '../shared/types';
import { staticPort } from '../shared/portspec';
import type { AccelChoice } from './accel';
import { doctor, shareCheck, usbMonitorCheck } from './doctor';
import type { Home } from './filenames';
import type { ImageMeta, Images, Progress } from './images';
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

/** What a handler gets besides its parameters. */
export interface RequestContext {
  progress: Progress;
  /** Output for the client (Notify.output with the request's progress token); dropped without one. */
  output: (text: string) => void;
}

export class Server {
  private conns = new Set<MessageConnection>();

  constructor(private readonly d: ServerDeps) {
    d.vms.on('changed', (s) => this.broadcast((c) => c.sendNotification(Notify.vmChanged, s)));
    d.vms.on('ports', (e: { name: string; ports: PortForward[] }) => this.broadcast((c) => c.sendNotification(Notify.ports, e)));
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
    const conn = socketConnection(sock);
    this.conns.add(conn);
    const drop = () => {
      if (!this.conns.delete(conn)) return;
      conn.dispose();
      sock.destroy();
    };
    sock.on('close', drop);
    sock.on('error', drop);
    // Malformed input (not JSON, bad headers): drop that client, keep serving others. A failed
    // write (the error comes with the message) is a client that went away: dropped quietly.
    conn.onError(([err, message]) => {
      if (message === undefined) log.warn(`dropping client after a malformed message: ${err.message}`);
      drop();
    });
    conn.onClose(drop);
    this.register(conn);
    conn.listen();
  }

  /** Every request's handler, typed against the protocol: a missing or mistyped one does not compile. */
  private handlers(): Handlers<RequestContext> {
    const { vms, images, home } = this.d;
    const imagesChanged = () => this.broadcast((c) => c.sendNotification(Notify.imagesChanged));
    // What a build or pull answers once the image is registered.
    const registered = (meta: ImageMeta) => {
      imagesChanged();
      return images.info(meta.name, vms.imageUsers(meta.name));
    };
    return {
      ping: () => this.d.info,
      shutdown: (p) => {
        setTimeout(() => this.d.shutdown(p.stopVms ?? false), 10);
      },
      doctor: async () => {
        const r = await doctor(home, this.d.qemuBinary, await this.d.accelerator(), usbMonitorCheck(this.d.usb, this.d.usbUnavailable));
        r.checks.push(shareCheck(vms.shareChoice));
        return r;
      },

      vmList: () => vms.list(),
      vmInfo: (p) => vms.info(p.name),
      vmCreate: ({ progressToken: _t, ...p }, { progress }) => vms.create(p, progress),
      vmStart: ({ name, progressToken: _t, ...o }, { progress }) => vms.start(name, o, progress),
      vmSuspend: (p, { progress }) => vms.suspend(p.name, progress),
      vmStop: (p) => vms.stop(p.name, p.force ?? false),
      vmDelete: (p) => vms.delete(p.name, p.force ?? false),
      vmSshTarget: (p) => vms.sshTarget(p.name),
      vmWake: (p, { progress }) => vms.wake(p.name, progress),
      vmWakePlan: (p) => vms.wakePlan(p.name),
      vmSnapshot: (p, { progress }) => vms.snapshot(p.name, p.snapshot, p.ram ?? false, progress),
      vmRestore: (p, { progress }) => vms.restore(p.name, p.snapshot, progress),
      vmSnapshotDelete: (p) => vms.deleteSnapshot(p.name, p.snapshot),
      vmClone: ({ progressToken: _t, ...p }, { progress }) => vms.clone(p, progress),
      layerTree: () => vms.layerTree(),
      vmSet: ({ name, ...p }) => vms.set(name, p),
      vmDisplay: (p) => vms.display(p.name),
      vmDisplayResize: (p) => vms.displayResize(p.name, { width: p.width, height: p.height }),
      vmScreenshot: (p) => vms.screenshot(p.name),
      vmProvision: ({ progressToken: _t, ...p }, { progress, output }) => vms.provision(p, progress, output),
      vmShare: ({ name, ...spec }) => vms.share(name, spec),
      vmUnshare: (p) => vms.unshare(p.name, p.guestPath),
      vmPorts: (p) => vms.forwards.list(p.name),
      vmPortStatus: (p) => vms.forwards.status(p.name),
      vmPortAdd: ({ name, ...p }) => vms.forwards.add(name, staticPort(p)),
      vmPortRemove: (p) => vms.forwards.remove(p.name, p.protocol ?? 'tcp', p.hostPort),

      diskAttach: (p) => vms.attachDisk(p.name, { source: p.source, usb: p.usb ?? false, readOnly: p.readOnly ?? false, format: p.format, tlsPskFile: p.tlsPskFile }),
      diskDetach: (p) => vms.detachDisk(p.name, p.id),
      diskExport: (p, { progress }) => vms.exportDisk(p.name, p.snapshot, p.tcp ?? false, progress),
      diskUnexport: (p) => vms.unexportDisk(p.name),

      usbList: () => this.usbDevices(),
      usbAttach: (p) => vms.usbAttach(p.name, matchDevice(this.usbDevices(), p.device)),
      // The device may be unplugged already: match against what the VM has, too.
      usbDetach: (p) => vms.usbDetach(p.name, matchDevice([...vms.usbAttached(p.name), ...this.usbDevices().filter((x) => !x.attachedTo)], p.device).id),

      imageList: () => Promise.all(images.names().map((n) => images.info(n, vms.imageUsers(n)))),
      imageBuild: async (p, { progress }) => registered(await images.build(p.recipe, p.name, progress, (n) => vms.imageUsers(n))),
      imagePull: async (p, { progress }) => registered(await images.pull(p.recipe, p.name, progress)),
      imageImport: async (p, { progress }) => {
        const meta = await images.import(p.file, p.name, p.kernel, p.initrd, progress, p.copy, { format: p.format, flatten: p.flatten });
        imagesChanged();
        return images.info(meta.name, []);
      },
      imageDelete: (p) => {
        images.delete(p.name, vms.imageUsers(p.name));
        imagesChanged();
      },
      sshInclude: (p) => ensureInclude(home.sshConfig, p.userConfig),
    };
  }

  private register(conn: MessageConnection): void {
    // Progress goes to this client while it is there. A client that went away (its CLI
    // killed, its window closed) loses its progress, never the operation: vscode-jsonrpc
    // throws synchronously on a disposed connection, which would abort the handler.
    const progressFor = (token: string | undefined): Progress => (message, fraction) => {
      if (!token || !this.conns.has(conn)) return;
      try {
        conn.sendNotification(Notify.progress, { token, message, fraction }).catch(() => {});
      } catch {
        // disposed between the check and the send
      }
    };
    const outputFor = (token: string | undefined) => (text: string) => {
      if (!token || !this.conns.has(conn)) return;
      try {
        conn.sendNotification(Notify.output, { token, text }).catch(() => {});
      } catch {
        // disposed between the check and the send
      }
    };
    const handlers = this.handlers();
    for (const key of Object.keys(Rpc) as RpcName[]) {
      const type = Rpc[key];
      const handler = handlers[key] as (p: unknown, ctx: RequestContext) => unknown;
      // vscode-jsonrpc passes the parameters (if any), then a cancellation token.
      conn.onRequest(type.method, async (...args: unknown[]) => {
        const raw = args.length > 1 ? args[0] : undefined;
        try {
          const params = type.params.parse(raw, 'params');
          const token = (params as { progressToken?: string } | undefined)?.progressToken;
          return await handler(params, { progress: progressFor(token), output: outputFor(token) });
        } catch (e) {
          const err = asDevvmError(e);
          if (err.code === 'internal') log.error(`${type.method}: ${(e as Error).stack ?? err.message}`);
          return new ResponseError(RPC_ERROR, err.message, { code: err.code, hint: err.hint });
        }
      });
    }
    // Unknown methods get JSON-RPC's MethodNotFound from vscode-jsonrpc itself.
  }

  closeAll(): void {
    for (const c of this.conns) c.dispose();
    this.conns.clear();
  }
}
