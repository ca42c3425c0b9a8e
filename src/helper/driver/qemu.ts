/**
 * The QEMU driver: the one place that builds QEMU command lines (qemu/args.ts) and
 * speaks QMP (qemu/qmp.ts, machine.ts, ramstate.ts). Everything the VM manager asks of
 * a running VM goes through the Instance below.
 */
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { DISPLAY_MIN, type Size } from '../../shared/display';
import { DevvmError } from '../../shared/errors';
import type { AccelChoice } from '../accel';
import { loadNative } from '../native';
import { protocolNode } from '../nbd';
import { log } from '../log';
import { run } from '../proc';
import { HOTPLUG_PORTS, MACHINE_LAYOUT, qemuArgs } from '../qemu/args';
import { livePid, Machine } from '../qemu/machine';
import type { Qmp } from '../qemu/qmp';
import { loadRamState, saveRamState } from '../qemu/ramstate';
import { VncClient } from '../qemu/vnc';
import { reapDaemons, readRecord, killDaemon } from '../qemu/virtiofsd';
import { QemuAgent } from './qemuagent';
import { QemuPorts } from './qemuports';
import { QemuShares, startBootDaemons, type VirtiofsdChoice } from './qemushares';
import type { DeviceOps, DiskAttachSpec, DisplayOps, Driver, ExitInfo, FingerprintParts, Instance, InstanceFiles, LaunchSpec, LayerOps, RamStateOps, ShareOps } from './driver';

const machineFiles = (f: InstanceFiles) => ({ qmpSocket: f.control, pidFile: f.pidFile, qemuLog: f.log });

/** The screen: sizes through an RFB connection of our own (qemu/vnc.ts), pictures through QMP screendump. */
class QemuDisplay implements DisplayOps {
  private client: Promise<VncClient> | null = null;
  private dumping: Promise<unknown> = Promise.resolve();
  /** The last size asked for: the guest gets it again when it changes mode on its own. */
  private wanted: Size | null = null;
  private reappliedAt = 0;

  constructor(
    private readonly qmp: Qmp,
    private readonly files: InstanceFiles,
  ) {}

  private async vnc(): Promise<VncClient> {
    const c = await (this.client ??= VncClient.connect(this.files.displaySocket).then(
      (c) => {
        c.onGuestResize((s) => this.guestResized(c, s));
        return c;
      },
      (e: unknown) => {
        this.client = null;
        throw e;
      },
    ));
    if (c.alive) return c;
    this.client = null;
    return this.vnc();
  }

  async size(): Promise<Size> {
    return (await this.vnc()).current;
  }

  async resize(want: Size, timeoutMs: number): Promise<{ size: Size; applied: boolean }> {
    this.wanted = want;
    return (await this.vnc()).resize(want, timeoutMs);
  }

  async reassert(want: Size): Promise<void> {
    this.wanted = want;
    const c = await this.vnc();
    if (c.current.width === want.width && c.current.height === want.height) return;
    // The guest sets a mode only when its preferred one changes: a step 8 pixels aside, then back.
    await c.resize({ width: want.width > DISPLAY_MIN.width ? want.width - 8 : want.width + 8, height: want.height }, 1000, 100);
    await c.resize(want, 2000);
  }

  /**
   * A size asked for before the guest's driver was up (it boots in VGA text mode), or
   * lost to a reboot, is asked for again when the guest next sets a mode: at most once a
   * second, so a guest that cannot take it is never pestered.
   */
  private guestResized(c: VncClient, s: Size): void {
    const w = this.wanted;
    if (!w || (w.width === s.width && w.height === s.height) || Date.now() - this.reappliedAt < 1000) return;
    this.reappliedAt = Date.now();
    void c.resize(w, 2000).catch(() => {});
  }

  screenshot(): Promise<Buffer> {
    // One at a time: they share the file QEMU writes.
    const next = this.dumping.then(async () => {
      const file = this.files.screendump;
      rmSync(file, { force: true });
      try {
        await this.qmp.execute('screendump', { filename: file, format: 'png' });
        return readFileSync(file);
      } finally {
        rmSync(file, { force: true });
      }
    });
    this.dumping = next.catch(() => {});
    return next;
  }

  close(): void {
    void this.client?.then((c) => c.close()).catch(() => {});
    this.client = null;
  }
}

class QemuInstance implements Instance {
  private detached = false;
  readonly ram: RamStateOps;
  readonly layers: LayerOps;
  readonly devices: DeviceOps;
  readonly display: QemuDisplay | null;
  readonly agent: QemuAgent | null;
  readonly shares: ShareOps;
  readonly ports: QemuPorts;

  constructor(
    private readonly m: Machine,
    readonly accelerator: string | null,
    files: InstanceFiles,
    hasDisplay: boolean,
    hasAgent: boolean,
    share: { daemon: VirtiofsdChoice | null; sharedMemory: boolean },
  ) {
    const qmp = m.qmp;
    this.display = hasDisplay ? new QemuDisplay(qmp, files) : null;
    this.agent = hasAgent ? new QemuAgent(qmp, files.agentSocket) : null;
    this.ports = new QemuPorts(qmp);
    this.shares = new QemuShares(qmp, files, share.daemon, share.sharedMemory, `${files.dir}/virtiofsd.log`);
    m.once('exit', () => {
      this.display?.close();
      // Each daemon exits when QEMU's connection closes; this makes sure none outlives the VM.
      if (!this.detached) reapDaemons(files.shareRecord);
    });
    this.ram = {
      save: (file) => saveRamState(qmp, file),
      load: (file) => loadRamState(qmp, file),
    };
    const prepared = new Set<string>();
    this.layers = {
      top: async () => {
        const blocks = await qmp.execute<Array<{ qdev?: string; inserted?: { 'node-name'?: string } }>>('query-block');
        return blocks.find((b) => b.qdev === 'disk0' || b.qdev?.startsWith('/machine/peripheral/disk0/'))?.inserted?.['node-name'];
      },
      prepare: async (next) => {
        // backing: null: the chain below is the running one, attached by blockdev-snapshot.
        await qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': next.id, file: { driver: 'file', filename: next.file, discard: 'unmap' }, discard: 'unmap', backing: null });
        prepared.add(next.id);
      },
      switchTop: async (current, next) => {
        if (!prepared.has(next.id)) await this.layers.prepare!(next);
        prepared.delete(next.id);
        await qmp.execute('blockdev-snapshot', { node: current, overlay: next.id });
      },
      drop: async (id) => {
        prepared.delete(id);
        await qmp.execute('blockdev-del', { 'node-name': id });
      },
    };
    this.devices = {
      attachDisk: (d, used) => attachDisk(this.m, d, used),
      detachDisk: (id) => detachDisk(this.m, id),
      attachUsb: async (o) => {
        // The node goes to QEMU as an fd set (QMP add-fd over SCM_RIGHTS) that usb-host opens
        // as /dev/fdset/N; without the addon QEMU opens the node by bus and address itself.
        const addon = loadNative().addon;
        let fdset: number | null = null;
        try {
          let where: Record<string, unknown> = { hostbus: o.busnum, hostaddr: o.devnum };
          if (addon) {
            fdset = (await qmp.executeWithFd<{ 'fdset-id': number }>('add-fd', { opaque: `usb ${o.label}` }, o.fd, addon.sendFd))['fdset-id'];
            where = { hostdevice: `/dev/fdset/${fdset}` };
          }
          await qmp.execute('device_add', { driver: 'usb-host', bus: 'xhci.0', id: o.id, ...where });
        } finally {
          // QEMU keeps its own duplicate while the device exists and closes the set after.
          if (fdset !== null) await qmp.execute('remove-fd', { 'fdset-id': fdset }).catch(() => {});
        }
      },
      detachUsb: async (id, gone) => {
        if (gone) {
          await qmp.execute('device_del', { id }).catch(() => {});
          return;
        }
        const deleted = qmp.waitEvent('DEVICE_DELETED', 10_000, (e) => e.data?.device === id);
        await qmp.execute('device_del', { id });
        await deleted;
      },
    };
  }

  get pid(): number {
    return this.m.pid;
  }

  get alive(): boolean {
    return this.m.alive;
  }

  onExit(listener: (info: ExitInfo) => void): void {
    this.m.once('exit', (info: ExitInfo) => {
      if (!this.detached) listener(info);
    });
  }

  stop(force: boolean, gracefulMs: number): Promise<void> {
    const agent = this.agent;
    // A guest that ignores the ACPI button (or has no handler for it) still powers off cleanly through its agent.
    return this.m.stop(force, gracefulMs, agent ? async () => {
      if (!(await agent.connected())) return false;
      await agent.shutdown(5000);
      return true;
    } : undefined);
  }

  async pause(): Promise<void> {
    await this.m.qmp.execute('stop');
  }

  async resume(): Promise<void> {
    await this.m.qmp.execute('cont');
  }

  async runState(): Promise<string> {
    return (await this.m.qmp.execute<{ status: string }>('query-status')).status;
  }

  detach(): void {
    this.detached = true;
    this.display?.close();
    this.m.qmp.close();
  }
}

/** Hot-plugs `d` (virtio-blk on a free PCIe root port, or usb-storage); resolves once QEMU has the device. */
async function attachDisk(m: Machine, d: DiskAttachSpec, usedSlots: string[]): Promise<{ slot?: string }> {
  const qmp = m.qmp;
  let slot: string | undefined;
  if (!d.usb) {
    slot = HOTPLUG_PORTS.find((p) => !usedSlots.includes(p));
    if (!slot) throw new DevvmError('busy', `all ${HOTPLUG_PORTS.length} hot-plug slots are in use`, 'detach a disk first, or attach as --usb');
  }
  // A checked file arrives as our descriptor (QMP add-fd, SCM_RIGHTS): QEMU opens
  // /dev/fdset/N, so nothing swapped in at the path since the check is ever opened.
  const addon = loadNative().addon;
  let fdset: number | null = null;
  let proto = protocolNode(d.source, `${d.id}-proto`, d.readOnly);
  const tlsId = `${d.id}-tls`;
  if (d.tls) {
    // QEMU 7.2's tls-creds-psk reads DIR/keys.psk and offers `username` as the identity.
    await qmp.execute('object-add', { 'qom-type': 'tls-creds-psk', id: tlsId, endpoint: 'client', dir: d.tls.dir, username: d.tls.identity });
    proto = { ...proto, 'tls-creds': tlsId };
  }
  const dropTls = async () => {
    if (d.tls) await qmp.execute('object-del', { id: tlsId }).catch(() => {});
  };
  if (d.fd !== null && addon) {
    fdset = (await qmp.executeWithFd<{ 'fdset-id': number }>('add-fd', { opaque: `disk ${d.id}` }, d.fd, addon.sendFd))['fdset-id'];
    proto = { driver: 'file', filename: `/dev/fdset/${fdset}`, 'node-name': `${d.id}-proto`, 'read-only': d.readOnly };
  } else if (d.fd !== null) {
    // Without the addon: the same open file through /proc, never the path again.
    proto = { driver: 'file', filename: `/proc/${process.pid}/fd/${d.fd}`, 'node-name': `${d.id}-proto`, 'read-only': d.readOnly };
  }
  try {
    await qmp.execute('blockdev-add', proto);
  } catch (e) {
    await dropTls();
    throw e;
  } finally {
    // QEMU keeps its own duplicate while the node exists and closes the set after.
    if (fdset !== null) await qmp.execute('remove-fd', { 'fdset-id': fdset }).catch(() => {});
  }
  try {
    // The declared driver, never a probe; backing: null, so a qcow2 header a guest wrote
    // can never make QEMU open a host file it names.
    const format = d.format === 'qcow2' ? { driver: 'qcow2', backing: null } : { driver: 'raw' };
    await qmp.execute('blockdev-add', { ...format, file: `${d.id}-proto`, 'node-name': d.id, 'read-only': d.readOnly });
    try {
      await qmp.execute(
        'device_add',
        d.usb ? { driver: 'usb-storage', bus: 'xhci.0', drive: d.id, id: d.id, removable: true } : { driver: 'virtio-blk-pci', bus: slot, drive: d.id, id: d.id },
      );
    } catch (e) {
      await qmp.execute('blockdev-del', { 'node-name': d.id }).catch(() => {});
      throw e;
    }
  } catch (e) {
    await qmp.execute('blockdev-del', { 'node-name': `${d.id}-proto` }).catch(() => {});
    await dropTls();
    throw e;
  }
  return slot ? { slot } : {};
}

/** A PCIe unplug waits for the guest (Linux takes about 5 s after the attention button); USB goes at once. */
async function detachDisk(m: Machine, id: string, timeoutMs = 30_000): Promise<void> {
  const qmp = m.qmp;
  // device_del of usb-storage sends two DEVICE_DELETED events: wait for the one naming our id.
  const gone = qmp.waitEvent('DEVICE_DELETED', timeoutMs, (e) => e.data?.device === id);
  await qmp.execute('device_del', { id });
  await gone;
  await qmp.execute('blockdev-del', { 'node-name': id });
  await qmp.execute('blockdev-del', { 'node-name': `${id}-proto` });
  // Only disks attached with TLS have credentials; the others have nothing to drop.
  const objects = await qmp.execute<Array<{ name: string }>>('qom-list', { path: '/objects' });
  if (objects.some((o) => o.name === `${id}-tls`)) await qmp.execute('object-del', { id: `${id}-tls` });
}

export class QemuDriver implements Driver {
  readonly name = 'qemu';
  readonly features = { ramState: true, liveLayerSwitch: true, hotplugDisks: true, usbPassthrough: true, display: true, portForward: true };
  private accel: AccelChoice | null = null;
  private version: Promise<string> | null = null;

  constructor(
    private readonly binary: string,
    private readonly accelerator: () => Promise<AccelChoice>,
    /** The virtiofsd this host can run (null: virtiofs is not available, shares use 9p). */
    private readonly virtiofsd: () => VirtiofsdChoice | null = () => null,
  ) {}

  async launch(s: LaunchSpec): Promise<Instance> {
    this.accel ??= await this.accelerator();
    const daemon = this.virtiofsd();
    const shares = s.shares ?? { sharedMemory: false, devices: [] };
    if (shares.devices.some((d) => d.transport === 'virtiofs') && (!daemon || !shares.sharedMemory)) throw new DevvmError('internal', 'a virtiofs share needs a virtiofsd and shared memory');
    const daemons = await startBootDaemons(daemon!, s.files, shares.devices, `${s.files.dir}/virtiofsd.log`);
    const ninep = shares.devices.filter((d) => d.transport === '9p').map(({ tag, hostPath, readOnly }) => ({ tag, hostPath, readOnly }));
    try {
      return await this.launchQemu(s, { sharedMemory: shares.sharedMemory, ninep, virtiofs: daemons.map(({ tag, socket, port }) => ({ tag, socket, port })) }, daemon);
    } catch (e) {
      daemons.forEach(killDaemon);
      reapDaemons(s.files.shareRecord);
      throw e;
    }
  }

  private async launchQemu(s: LaunchSpec, sh: { sharedMemory: boolean; ninep: Array<{ tag: string; hostPath: string; readOnly: boolean }>; virtiofs: Array<{ tag: string; socket: string; port: string }> }, daemon: VirtiofsdChoice | null): Promise<Instance> {
    const accel = this.accel!;
    const args = qemuArgs({
      name: s.name,
      accel: accel.name,
      cpus: s.cpus,
      memoryMiB: s.memoryMiB,
      disks: s.disks,
      kernel: s.kernel,
      initrd: s.initrd,
      seed: s.seed,
      provision: s.provision,
      sshPort: s.sshPort,
      mac: s.mac,
      display: s.display,
      vncSocket: s.files.displaySocket,
      agentSocket: s.files.agentSocket,
      qmpSocket: s.files.control,
      serialSocket: s.files.serialSocket,
      serialLog: s.files.serialLog,
      pidFile: s.files.pidFile,
      incoming: s.incoming,
      sharedMemory: sh.sharedMemory,
      ninep: sh.ninep,
      virtiofs: sh.virtiofs,
      root: process.getuid?.() === 0,
    });
    if (s.display) rmSync(s.files.displaySocket, { force: true });
    rmSync(s.files.agentSocket, { force: true });
    const m = await Machine.launch(this.binary, args, machineFiles(s.files), s.signal);
    // QEMU made them under the helper's 077 umask; 0600 exactly, as every socket of ours.
    const sockets: Array<[string, string]> = [['guest agent', s.files.agentSocket], ...(s.display ? [['VNC', s.files.displaySocket] as [string, string]] : [])];
    for (const [what, file] of sockets) {
      try {
        chmodSync(file, 0o600);
      } catch (e) {
        await m.stop(true, 0);
        throw new DevvmError('process-failed', `QEMU did not open its ${what} socket: ${(e as Error).message}`, `see ${s.files.log}`);
      }
    }
    return new QemuInstance(m, accel.name, s.files, s.display !== null, true, { daemon, sharedMemory: sh.sharedMemory });
  }

  async attach(files: InstanceFiles): Promise<Instance | null> {
    const m = await Machine.attach(machineFiles(files));
    // A QEMU an older helper started may have no agent channel.
    if (!m) return null;
    let sharedMemory = false;
    try {
      sharedMemory = readFileSync(`/proc/${m.pid}/cmdline`, 'utf8').includes('memory-backend-memfd');
    } catch {
      // no /proc: no live virtiofs
    }
    // Daemons of shares unplugged or ended while no helper watched: the record keeps only the live ones.
    const live = readRecord(files.shareRecord);
    if (live.length) log.info(`${files.dir}: ${live.length} virtiofsd daemon(s) still serve the running VM`);
    return new QemuInstance(m, this.accel?.name ?? null, files, existsSync(files.displaySocket), existsSync(files.agentSocket), { daemon: this.virtiofsd(), sharedMemory });
  }

  reap(files: InstanceFiles): string | null {
    reapDaemons(files.shareRecord);
    // QEMU removes its pid file when it exits in order; one left behind by a process that
    // is gone means it was killed or crashed.
    if (!existsSync(files.pidFile) || livePid(files.pidFile, files.control) !== null) return null;
    let pid = '?';
    try {
      pid = readFileSync(files.pidFile, 'utf8').trim();
    } catch {
      // unreadable: the reason still stands
    }
    rmSync(files.pidFile, { force: true });
    return `QEMU (pid ${pid}) ended while no helper watched it (killed or crashed)`;
  }

  async fingerprint(p: FingerprintParts): Promise<string> {
    this.version ??= run(this.binary, ['--version']).then((r) => r.stdout.trim().split('\n')[0] ?? '');
    this.accel ??= await this.accelerator();
    // Key order is part of the hash: kept as it was, so states saved before still restore.
    // A display, a devvm seed and share devices are added only when there are some, so states saved without keep their hash.
    const parts = { qemu: await this.version, accel: this.accel.name, cpus: p.cpus, memoryMiB: p.memoryMiB, image: p.image, kernel: p.kernel, seed: p.seed, ssh: p.ssh, layout: MACHINE_LAYOUT, ...(p.display ? { display: p.display } : {}), ...(p.provision ? { provision: p.provision } : {}), ...(p.sharedMemory ? { sharedMemory: true } : {}), ...(p.ninep?.length ? { ninep: p.ninep } : {}) };
    return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
  }
}
