/**
 * The VM manager: owns every state change of every VM and orchestrates through the
 * driver (driver/driver.ts), never QMP. State is derived when read (vm.json + whether
 * the VM's process runs + the operation holding its lock); requests that do not fit
 * are refused through the one lifecycle table (src/shared/lifecycle.ts). The jobs live
 * in vm/: store, lock, build, snapshots, devices, exports, provisioning watch, SSH.
 */
import { EventEmitter } from 'node:events';
import { existsSync, rmSync } from 'node:fs';
import { DevvmError } from '../shared/errors';
import { allows, assertAllowed, busy, type Operation } from '../shared/lifecycle';
import type { Size } from '../shared/display';
import type { CreateParams, ProvisionParams, SetParams, SshTarget, WakePlan } from '../shared/rpc';
import type { AttachedDisk, DisplayInfo, DisplayResizeResult, HostUsbDevice, ProvisionResult, Screenshot, LayerInfo, LayerNode, NbdExport, SnapshotInfo, VmInfo, VmState, VmSummary } from '../shared/types';
import type { ExportRecord } from './exports';
import * as v from '../shared/validate';
import type { AccelChoice } from './accel';
import { requireFeature, type Driver, type Instance } from './driver/driver';
import { QemuDriver } from './driver/qemu';
import type { Home } from './filenames';
import type { Images, Progress } from './images';
import { LayerPool } from './layerpool';
import { layerInfo } from './layers';
import { log } from './log';
import { sshHostAlias, sshProxyArgv, writeSshConfig, type CliRunner } from './sshconfig';
import type { VmConfig } from './vmconfig';
import { admit, instanceFiles, poolOverlay, type VmContext } from './vm/context';
import { Builder, realProvisioner, type Provisioner } from './vm/create';
import { removeAttachKeys } from './tlspsk';
import { Displays } from './vm/display';
import { Devices, publicDisk, type AttachedRecord, type UsbRecord } from './vm/devices';
import { Exports } from './vm/exports';
import { LayerView } from './vm/layerview';
import { isState, OpLocks } from './vm/oplock';
import { ProvisionWatch } from './vm/provisionwatch';
import { findSnapshot, snapshotInfo, snapshotRamFile, Snapshots } from './vm/snapshots';
import { guestAgentInfo } from './vm/agent';
import { launchRecord, waitSsh } from './vm/sshready';
import { Making } from './vm/making';
import { Power } from './vm/power';
import { VmStore } from './vm/store';
import { IdleWatch, procTables } from './vm/idle';
import { applySettings, autostart, idleLimit } from './vm/settings';
import { wake, wakePlan } from './vm/wake';
import { provision } from './vm/guestrun';
import { Shares } from './vm/shares';
import { chooseTransport, probeHost, type HostProbe, type TransportChoice } from './shares/host';
import type { ShareInfo } from '../shared/types';
import { PortForwards } from './vm/ports';

export interface VmsOptions {
  qemuBinary: string;
  accelerator: () => Promise<AccelChoice>;
  /** Graceful shutdown budget before a hard stop. */
  stopTimeoutMs: number;
  /** The engine; default: QEMU with `qemuBinary` and `accelerator`. */
  driver?: Driver;
  /** ssh-keygen, openssl, genisoimage; unit tests pass a fake. */
  provisioner?: Provisioner;
  /** How ssh runs devvm's CLI for the Host blocks' ProxyCommand (wake on SSH); absent: none. */
  cliRunner?: CliRunner;
  /** Idle suspend minutes for VMs without their own setting (DEVVM_IDLE_SUSPEND); null: off. */
  idleDefaultMin?: number | null;
  /** What the share transport is chosen from; default: this host (shares/host.ts). */
  shareHost?: HostProbe;
  /** How often a running guest's listening ports are read (default 1 s). */
  portPollMs?: number;
}

export class Vms extends EventEmitter {
  private readonly instances = new Map<string, Instance>();
  readonly pool: LayerPool;
  private readonly driver: Driver;
  private readonly store: VmStore;
  private readonly locks: OpLocks;
  private readonly ctx: VmContext;
  private readonly layers: LayerView;
  private readonly snaps: Snapshots;
  private readonly devices: Devices;
  private readonly exports: Exports;
  private readonly watch: ProvisionWatch;
  private readonly builder: Builder;
  private readonly power: Power;
  private readonly making: Making;
  private readonly displays: Displays;
  private readonly shares: Shares;
  /** Port forwards of running VMs and the static ones of all (vm/ports.ts). */
  readonly forwards: PortForwards;
  readonly idle: IdleWatch;
  /** How this host shares folders (decided once: it depends on the host, not the VM). */
  readonly shareChoice: TransportChoice;

  constructor(
    private readonly home: Home,
    private readonly images: Images,
    private readonly opts: VmsOptions,
  ) {
    super();
    this.pool = new LayerPool(home.layersDir);
    const probe = opts.shareHost ?? probeHost();
    this.shareChoice = chooseTransport(probe);
    const choice = this.shareChoice;
    const daemon = choice.virtiofsd ? { binary: choice.virtiofsd, rust: choice.virtiofsd === probe.rustVirtiofsd, root: probe.uid === 0 } : null;
    this.driver = opts.driver ?? new QemuDriver(opts.qemuBinary, opts.accelerator, () => daemon);
    this.store = new VmStore(home);
    this.locks = new OpLocks((name) => this.changed(name));
    this.ctx = {
      home,
      images,
      pool: this.pool,
      store: this.store,
      driver: this.driver,
      locks: this.locks,
      instance: (name) => {
        const i = this.instances.get(name);
        return i?.alive ? i : undefined;
      },
      state: (name) => this.state(name),
      changed: (name) => this.changed(name),
      collectLayers: () => this.layers.collect(),
    };
    this.shares = new Shares(this.ctx, () => choice);
    this.snaps = new Snapshots(this.ctx, (name, savedAt) => this.power.ramStateNow(name, savedAt), {
      before: (name) => this.shares.beforeSave(name, 'take a RAM snapshot of'),
      after: (name) => this.shares.remount(name, []),
    });
    this.exports = new Exports(this.ctx, this.snaps);
    this.layers = new LayerView(this.pool, () => this.configs(), (n) => home.vm(n), (n) => this.exports.current(n)?.layer ?? null);
    this.devices = new Devices(this.ctx, () => this.runningNames());
    this.watch = new ProvisionWatch(this.ctx);
    const usedPorts = () => new Set(this.configs().map((c) => c.sshPort));
    this.builder = new Builder(this.ctx, opts.provisioner ?? realProvisioner, usedPorts);
    this.power = new Power(this.ctx, {
      layers: this.layers,
      watch: this.watch,
      adopt: (n, i) => this.adopt(n, i),
      dropUsedSeed: (n) => this.dropUsedSeed(n),
      clearError: (n) => this.clearError(n),
      writeSshConfig: () => this.writeSshConfig(),
      usedPorts,
      shares: this.shares,
    });
    this.displays = new Displays(this.ctx);
    this.forwards = new PortForwards(this.ctx, {
      reserved: () => new Set(this.configs().map((c) => c.sshPort)),
      // ProxyCommand=none: a relayed connection must never wake or boot the VM.
      sshArgv: (n, target) => (this.config(n).ssh ? ['-F', home.sshConfig, '-o', 'ProxyCommand=none', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', '-W', target, sshHostAlias(n)] : null),
      changed: (n, ports) => this.emit('ports', { name: n, ports }),
      pollMs: opts.portPollMs,
    });
    this.idle = new IdleWatch({
      now: () => Date.now(),
      vms: () =>
        this.runningNames()
          .filter((n) => !this.locks.get(n))
          .map((n) => {
            const c = this.config(n);
            const f = home.vm(n);
            return { name: n, limitMin: idleLimit(c, this.idleDefault), sshPort: c.ssh ? c.sshPort : null, consoles: [f.serial, f.vnc], ownClients: this.displays.ownClients(n) };
          }),
      ...procTables,
      suspend: (n) => this.suspend(n, () => {}),
      log: (m) => log.info(m),
    });
    this.making = new Making(this.ctx, { builder: this.builder, power: this.power, snaps: this.snaps, writeSshConfig: () => this.writeSshConfig(), shares: this.shares });
  }

  // ---- reading -------------------------------------------------------------

  names(): string[] {
    return [...new Set([...this.store.names(), ...this.locks.names()])].sort();
  }

  config(name: string): VmConfig {
    return this.store.read(name);
  }

  state(name: string): VmState {
    const held = this.locks.state(name);
    if (held) return held;
    if (this.ctx.instance(name)) return 'running';
    if (!this.store.exists(name)) return 'creating';
    const c = this.store.read(name);
    if (c.crashed) return 'error';
    return c.suspended && existsSync(this.home.vm(name).suspendState) ? 'suspended' : 'stopped';
  }

  summary(name: string): VmSummary {
    const held = this.locks.get(name);
    if (held && !this.store.exists(name)) {
      // Being built (or its directory already gone while it is deleted).
      return { name, state: this.state(name), image: '', user: '', sshHost: sshHostAlias(name), sshPort: null, cpus: 0, memoryMiB: 0 };
    }
    const c = this.store.read(name);
    const s: VmSummary = { name, state: this.state(name), image: c.image, user: c.user, sshHost: sshHostAlias(name), sshPort: c.ssh ? c.sshPort : null, cpus: c.cpus, memoryMiB: c.memoryMiB, diskGiB: c.diskGiB };
    if (c.display) s.display = c.display;
    const idle = idleLimit(c, this.idleDefault);
    if (idle) s.idleSuspendMin = idle;
    if (c.autostart) s.autostart = true;
    if (c.origin) s.origin = c.origin;
    const error = s.state === 'error' ? c.crashed?.reason : c.provisionError;
    if (error) s.error = error;
    return s;
  }

  list(): VmSummary[] {
    return this.names().map((n) => this.summary(n));
  }

  /** Every VM that exists on disk (not one still being built). */
  private configs(): VmConfig[] {
    return this.store.names().map((n) => this.store.read(n));
  }

  /** Which VMs' chains use each base image. */
  imageUsers(image: string): string[] {
    return this.configs().filter((c) => c.image === image).map((c) => c.name);
  }

  async info(name: string): Promise<VmInfo> {
    const c = this.config(name);
    const f = this.home.vm(name);
    const img = this.images.get(c.image);
    const snaps = c.snapshots ?? [];
    const frozen = this.layers.chain(c).slice(0, -1).reverse();
    const users = this.layers.users();
    const layers: LayerInfo[] = await Promise.all([
      layerInfo('overlay', this.layers.overlayFile(c), false, [name]),
      ...frozen.map((id) =>
        layerInfo('snapshot', this.pool.file(id), true, users.get(id) ?? []).then((l) => ({ ...l, id, snapshots: snaps.filter((s) => s.layer === id).map((s) => s.name) })),
      ),
      layerInfo('cache', f.cache, false, [name]),
      // A base that cannot be read now (NBD server down, file gone) still lists from its record.
      layerInfo('base', img.file, true, this.imageUsers(c.image)).catch(() => ({
        role: 'base' as const, file: img.file, format: img.format, virtualSize: img.virtualSize, actualSize: 0, readOnly: true, sharedBy: this.imageUsers(c.image),
      })),
    ]);
    const inst = this.ctx.instance(name);
    return {
      ...this.summary(name),
      diskGiB: c.diskGiB,
      fullName: c.fullName,
      autologin: c.autologin,
      ssh: c.ssh,
      provisioned: c.provisioned,
      accelerator: inst?.accelerator ?? null,
      pid: inst?.pid ?? null,
      dir: f.dir,
      serialLog: f.serialLog,
      createdAt: c.createdAt,
      layers,
      snapshots: snaps.map(snapshotInfo),
      disks: this.attachedDisks(name).map(publicDisk),
      usb: this.usbAttached(name).map(({ qemuId: _q, ...d }) => ({ ...d, attachedTo: name })),
      shares: await this.shares.info(name),
      ports: this.forwards.list(name),
      autoPorts: this.forwards.autoState(name),
      ...(inst ? { agent: await guestAgentInfo(inst, c.mac) } : {}),
    };
  }

  sshTarget(name: string): SshTarget {
    const c = this.config(name);
    if (!c.ssh) throw new DevvmError('invalid-state', `SSH is disabled for VM "${name}"`, 'it was created with --no-ssh; use the serial console');
    return { configFile: this.home.sshConfig, host: sshHostAlias(name), user: c.user, port: c.sshPort };
  }

  /** ssh-proxy: the VM runs and SSH answers when this resolves (vm/wake.ts). */
  async wake(name: string, progress: Progress): Promise<SshTarget> {
    await wake(this.ctx, { start: (n, pr) => this.start(n, { waitSsh: true }, pr), waitSsh: (n, pr) => this.waitSsh(n, 900, pr) }, name, progress);
    // The proxy connects next: an idle suspend must not fall in between.
    this.idle.touch(name);
    return this.sshTarget(name);
  }

  wakePlan(name: string): WakePlan {
    return wakePlan(this.ctx, name);
  }

  private get idleDefault(): number | null {
    return this.opts.idleDefaultMin ?? null;
  }

  /** At helper start: VMs marked autostart that are not running are started (a suspended one resumes). */
  autostart(): Promise<void> {
    return autostart(this.ctx, this.configs(), (n) => this.start(n, {}, () => {}));
  }

  layerTree(): Promise<LayerNode[]> {
    return this.layers.tree();
  }

  runningNames(): string[] {
    return this.names().filter((n) => this.ctx.instance(n));
  }

  // ---- helper start-up -----------------------------------------------------

  /** Re-attach to VMs still running from an earlier helper; clean up after dead ones and half-built ones. */
  async reattach(): Promise<void> {
    for (const gone of this.store.cleanLeftovers()) log.info(`removed ${gone} (left by a helper that stopped mid-way)`);
    for (const name of this.store.names()) {
      const f = this.home.vm(name);
      const inst = await this.driver.attach(instanceFiles(f));
      if (inst) {
        log.info(`reattached to ${name} (pid ${inst.pid})`);
        void this.adopt(name, inst);
        if (!this.config(name).provisioned) this.watch.watch(name, 0);
        this.shares.reattached(name);
      } else {
        removeAttachKeys(f);
        const why = this.driver.reap(instanceFiles(f));
        if (why) {
          log.warn(`${name}: ${why}`);
          this.store.update(name, (c) => ({ ...c, crashed: { reason: why, at: new Date().toISOString() } }));
        }
      }
      await this.snaps.settlePending(name);
      await this.snaps.settleFrozen(name);
    }
    this.layers.collect();
    this.writeSshConfig();
  }

  /** Resolves once a resumed guest's display is back at its size. */
  private adopt(name: string, inst: Instance): Promise<void> {
    this.instances.set(name, inst);
    const shown = this.displays.adopted(name, inst);
    this.forwards.adopted(name, inst);
    inst.onExit((info) => {
      if (this.instances.get(name) !== inst) return;
      this.instances.delete(name);
      this.forwards.ended(name);
      this.watch.stop(name);
      const f = this.home.vm(name);
      rmSync(f.pid, { force: true });
      rmSync(f.attached, { force: true });
      removeAttachKeys(f);
      rmSync(f.usb, { force: true });
      // Ended after its RAM state was saved (suspend's own stop, or a kill just then): nothing is lost.
      if (!info.expected && this.store.exists(name) && !this.config(name).suspended) {
        log.warn(`${name}: ${info.reason}`);
        this.store.update(name, (c) => ({ ...c, crashed: { reason: info.reason, at: new Date().toISOString() } }));
      } else {
        log.info(`${name}: the VM's process ended`);
      }
      this.dropUsedSeed(name);
      this.changed(name);
    });
    return shown;
  }

  /**
   * The seed holds the password hash and the host key's private half: deleted once first
   * setup is done and no process (running, or saved in a RAM state) still has it attached.
   */
  private dropUsedSeed(name: string): void {
    if (!this.store.exists(name)) return;
    const cfg = this.config(name);
    const needed = cfg.suspended?.seed || (cfg.snapshots ?? []).some((s) => s.ram?.seed);
    if (cfg.provisioned && !needed) {
      rmSync(this.home.vm(name).seed, { force: true });
      rmSync(this.home.vm(name).devvmSeed, { force: true });
    }
  }

  private changed(name: string): void {
    try {
      if (this.store.exists(name) || this.locks.get(name)) this.emit('changed', this.summary(name));
    } catch (e) {
      log.warn(`cannot summarize ${name}: ${(e as Error).message}`);
    }
  }

  /** Clears a recorded crash: the next start, stop or delete is the way out of `error`. */
  private clearError(name: string): void {
    if (this.store.exists(name) && this.config(name).crashed) this.store.update(name, (c) => ({ ...c, crashed: undefined }));
  }

  /**
   * stop --force / delete --force while a start, stop or save runs: kill the VM's process,
   * let that operation roll back, and wait for it to end. Another kind of operation is busy.
   */
  private async interrupt(name: string, op: Operation): Promise<void> {
    const held = this.locks.get(name);
    if (!held) return;
    if (!isState(held.phase) || !allows(op, held.phase)) throw busy(name, held.phase);
    log.info(`${name}: ${op} interrupts ${held.phase}`);
    held.abort.abort();
    const inst = held.instance ?? this.instances.get(name);
    await inst?.stop(true, 0).catch(() => {});
    await held.done;
  }

  // ---- create and clone ----------------------------------------------------

  async create(p: CreateParams, progress: Progress): Promise<VmSummary> {
    await this.making.create(p, progress);
    if (p.start && p.waitSsh) await this.waitSsh(p.name, 900, progress);
    return this.summary(p.name);
  }

  async clone(p: { source: string; name: string; snapshot?: string; start?: boolean }, progress: Progress): Promise<VmSummary> {
    await this.making.clone(p, progress);
    return this.summary(p.name);
  }

  writeSshConfig(): void {
    const entries = this.configs()
      .filter((c) => c.ssh)
      .map((c) => {
        const proxy = this.opts.cliRunner ? sshProxyArgv(this.opts.cliRunner, c.name) : null;
        return { vm: c.name, port: c.sshPort, user: c.user, identityFile: this.home.privateKey, knownHostsFile: this.home.knownHosts(c.name), ...(proxy ? { proxy } : {}) };
      });
    writeSshConfig(this.home.sshConfig, entries);
  }

  // ---- start / stop / suspend ----------------------------------------------

  async start(name: string, o: { waitSsh?: boolean; timeoutSec?: number; discardState?: boolean }, progress: Progress): Promise<VmSummary> {
    const cfg = this.config(name);
    if (o.waitSsh && !cfg.ssh) throw new DevvmError('invalid-state', `SSH is disabled for VM "${name}"`, 'start it without --wait-ssh');
    assertAllowed('start', name, this.state(name));
    const how = this.state(name) !== 'running' ? await this.locks.run(name, 'starting', (op) => this.power.startUnderLock(name, op, o, progress)) : 'running';
    // A guest restored from a state saved while its SSH worked has sshd listening already:
    // a probe would cost a sshd child in the guest (about 130 ms under TCG) on wake's path.
    const sshUp = how === 'restored' && launchRecord(this.ctx, name).sshReady === true;
    if (o.waitSsh && !sshUp) await this.waitSsh(name, o.timeoutSec ?? 900, progress);
    return this.summary(name);
  }

  /** Pause, write RAM and device state beside the layers, end the VM's process: `start` resumes from it. */
  async suspend(name: string, progress: Progress): Promise<VmSummary> {
    admit(this.ctx, 'suspend', name);
    requireFeature(this.driver, 'ramState', 'save RAM state');
    if (this.attachedDisks(name).length) throw new DevvmError('invalid-state', `VM "${name}" has hot-plugged disks; a saved state cannot restore them`, 'detach them first');
    await this.locks.run(name, 'suspending', () => this.power.suspendUnderLock(name, progress));
    return this.summary(name);
  }

  async stop(name: string, force: boolean): Promise<VmSummary> {
    this.config(name);
    if (force) {
      assertAllowed('forceStop', name, this.state(name));
      await this.interrupt(name, 'forceStop');
    } else {
      assertAllowed('stop', name, this.state(name));
    }
    const held = this.locks.get(name);
    if (!this.ctx.instance(name)) {
      // Nothing runs: a no-op that leaves `error` (unless another operation is under way).
      if (!held) {
        this.clearError(name);
        this.changed(name);
      }
      return this.summary(name);
    }
    if (held) throw busy(name, held.phase);
    await this.locks.run(name, 'stopping', async () => {
      this.clearError(name);
      await this.ctx.instance(name)?.stop(force, this.opts.stopTimeoutMs);
    });
    return this.summary(name);
  }

  async delete(name: string, force: boolean): Promise<void> {
    this.config(name);
    if (force) {
      assertAllowed('forceDelete', name, this.state(name));
      await this.interrupt(name, 'forceDelete');
    } else {
      admit(this.ctx, 'delete', name);
    }
    await this.locks.run(name, 'deleting', async () => {
      // delete --force: stop and delete under one lock, nothing can start it in between.
      await this.ctx.instance(name)?.stop(true, 0);
      this.exports.stop(name);
      this.store.remove(name);
      rmSync(this.home.knownHosts(name), { force: true });
    });
    this.layers.collect();
    this.writeSshConfig();
    this.emit('removed', name);
  }

  waitSsh(name: string, timeoutSec: number, progress: Progress): Promise<void> {
    return waitSsh(this.ctx, name, timeoutSec, () => this.watch.has(name), progress);
  }

  /** vm/provision (vm/guestrun.ts): steps over SSH in the running guest. */
  provision(p: Omit<ProvisionParams, 'progressToken'>, progress: Progress, output: (text: string) => void): Promise<ProvisionResult> {
    return provision(this.ctx, p, progress, output);
  }

  // ---- snapshots -------------------------------------------------------------

  async snapshot(name: string, snapshot: string, ram: boolean, progress: Progress): Promise<SnapshotInfo & { pauseMs: number }> {
    const cfg = this.config(name);
    const snap = v.snapshotName(snapshot);
    poolOverlay(cfg);
    if ((cfg.snapshots ?? []).some((s) => s.name === snap)) throw new DevvmError('already-exists', `VM "${name}" already has a snapshot "${snap}"`, 'pick another name or delete it first');
    admit(this.ctx, ram ? 'snapshotRam' : 'snapshot', name);
    if (ram) requireFeature(this.driver, 'ramState', 'save RAM state');
    if (ram && this.state(name) === 'running' && this.attachedDisks(name).length) {
      throw new DevvmError('invalid-state', `VM "${name}" has hot-plugged disks; a RAM state cannot restore them`, 'detach them first, or take a disk-only snapshot');
    }
    const { pauseMs } = await this.locks.run(name, 'snapshotting', () => this.snaps.take(name, snap, ram, progress));
    const saved = findSnapshot(this.config(name), snap);
    log.info(`${name}: snapshot ${snap} (layer ${saved.layer}${saved.ram ? ', with RAM' : ''}), guest stalled ${pauseMs.toFixed(1)} ms`);
    return { ...snapshotInfo(saved), pauseMs };
  }

  /**
   * Back to a snapshot: a fresh overlay on its layer (what was written since is dropped).
   * With RAM the VM becomes suspended at that moment, and a VM that was running resumes.
   * Stop, switch and start run under one lock.
   */
  async restore(name: string, snapshot: string, progress: Progress): Promise<VmSummary> {
    const snap = findSnapshot(this.config(name), snapshot);
    const ramFile = snapshotRamFile(this.home.vm(name), snap.name);
    if (snap.ram && !existsSync(ramFile)) throw new DevvmError('not-found', `the RAM file of snapshot "${snap.name}" is missing: ${ramFile}`);
    admit(this.ctx, 'restore', name);
    await this.locks.run(name, 'restoring', async (op) => {
      const inst = this.ctx.instance(name);
      if (inst) {
        progress('stopping');
        await inst.stop(true, 0);
      }
      await this.snaps.restoreStopped(name, snap, progress);
      if (inst) await this.power.startUnderLock(name, op, {}, progress);
    });
    return this.summary(name);
  }

  async deleteSnapshot(name: string, snapshot: string): Promise<void> {
    const snap = findSnapshot(this.config(name), snapshot);
    admit(this.ctx, 'deleteSnapshot', name);
    await this.locks.run(name, 'snapshotting', async () => this.snaps.forget(name, snap));
  }

  // ---- devices and exports (vm/devices.ts, vm/exports.ts) -----------------

  attachedDisks(name: string): AttachedRecord[] {
    return this.devices.attachedDisks(name);
  }

  usbAttached(name: string): UsbRecord[] {
    return this.devices.usbAttached(name);
  }

  usbOwner(id: string): string | undefined {
    return this.devices.usbOwner(id);
  }

  usbAttach(name: string, dev: HostUsbDevice): Promise<HostUsbDevice> {
    return this.devices.usbAttach(name, dev);
  }

  usbDetach(name: string, id: string, gone = false): Promise<void> {
    return this.devices.usbDetach(name, id, gone);
  }

  attachDisk(name: string, o: { source: string; usb: boolean; readOnly: boolean; format?: 'qcow2' | 'raw'; tlsPskFile?: string }): Promise<AttachedDisk> {
    return this.devices.attachDisk(name, o);
  }

  detachDisk(name: string, id: string): Promise<void> {
    return this.devices.detachDisk(name, id);
  }

  nbdExport(name: string): ExportRecord | null {
    return this.exports.current(name);
  }

  exportDisk(name: string, snapshot: string | undefined, tcp: boolean, progress: Progress): Promise<NbdExport> {
    return this.exports.export(name, snapshot, tcp, progress);
  }

  unexportDisk(name: string): Promise<void> {
    return this.exports.unexport(name);
  }

  // ---- shared folders (vm/shares.ts) ---------------------------------------

  share(name: string, spec: { hostPath: string; guestPath?: string; readOnly?: boolean }): Promise<ShareInfo> {
    return this.shares.add(name, spec);
  }

  unshare(name: string, guestPath: string): Promise<void> {
    return this.shares.remove(name, guestPath);
  }

  // ---- the machine and its display (vm/display.ts) -------------------------

  async set(name: string, p: Omit<SetParams, 'name'>): Promise<VmSummary> {
    await applySettings(this.ctx, this.displays, name, p);
    return this.summary(name);
  }

  display(name: string): Promise<DisplayInfo> {
    return this.displays.info(name);
  }

  displayResize(name: string, size: Size): Promise<DisplayResizeResult> {
    return this.displays.resize(name, size);
  }

  screenshot(name: string): Promise<Screenshot> {
    return this.displays.screenshot(name);
  }

  /** For helper shutdown in tests: leave VMs running unless asked. */
  async shutdown(stopVms: boolean): Promise<void> {
    this.watch.stopAll();
    this.idle.stop();
    for (const [name, inst] of this.instances) {
      this.instances.delete(name);
      this.forwards.ended(name, false);
      if (stopVms) await inst.stop(true, 0);
      else inst.detach();
    }
  }
}
