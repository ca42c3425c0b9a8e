/**
 * The VM manager: owns every state change of every VM and orchestrates through the
 * driver (driver/driver.ts), never QMP. State is derived when read (vm.json + whether
 * the VM's process runs + the operation holding its lock); requests that do not fit
 * are refused through the one lifecycle table (src/shared/lifecycle.ts). The jobs live
 * in vm/: store, lock, build, snapshots, devices, exports, provisioning watch, SSH.
 */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, renameSync, rmSync, statfsSync, statSync } from 'node:fs';
import os from 'node:os';
import { DevvmError } from '../shared/errors';
import { allows, assertAllowed, busy, type Operation } from '../shared/lifecycle';
import type { CreateParams, SshTarget } from '../shared/rpc';
import type { AttachedDisk, HostUsbDevice, LayerInfo, LayerNode, SnapshotInfo, VmInfo, VmState, VmSummary } from '../shared/types';
import * as v from '../shared/validate';
import type { AccelChoice } from './accel';
import * as disks from './disks';
import { need, requireFeature, type Driver, type Instance } from './driver/driver';
import { QemuDriver } from './driver/qemu';
import type { Home } from './filenames';
import type { Images, Progress } from './images';
import { LayerPool } from './layerpool';
import { layerInfo } from './layers';
import { log } from './log';
import { freePort, portIsFree } from './ports';
import { sshHostAlias, writeSshConfig } from './sshconfig';
import { writeJsonAtomic } from './store';
import type { LaunchRecord, RamState, VmConfig } from './vmconfig';
import { admit, GiB, instanceFiles, poolOverlay, type VmContext } from './vm/context';
import { Builder, realProvisioner, type Provisioner } from './vm/create';
import { Devices, type UsbRecord } from './vm/devices';
import { Exports } from './vm/exports';
import { LayerView } from './vm/layerview';
import { isState, OpLocks, type Op } from './vm/oplock';
import { ProvisionWatch } from './vm/provisionwatch';
import { findSnapshot, snapshotInfo, snapshotRamFile, Snapshots } from './vm/snapshots';
import { launchRecord, waitSsh } from './vm/sshready';
import { VmStore } from './vm/store';

const MIN_FREE_BYTES = 256 * 1024 * 1024;

export interface VmsOptions {
  qemuBinary: string;
  accelerator: () => Promise<AccelChoice>;
  /** Graceful shutdown budget before a hard stop. */
  stopTimeoutMs: number;
  /** The engine; default: QEMU with `qemuBinary` and `accelerator`. */
  driver?: Driver;
  /** ssh-keygen, openssl, genisoimage; unit tests pass a fake. */
  provisioner?: Provisioner;
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

  constructor(
    private readonly home: Home,
    private readonly images: Images,
    private readonly opts: VmsOptions,
  ) {
    super();
    this.pool = new LayerPool(home.layersDir);
    this.driver = opts.driver ?? new QemuDriver(opts.qemuBinary, opts.accelerator);
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
    this.snaps = new Snapshots(this.ctx, (name, savedAt) => this.ramStateNow(name, savedAt));
    this.exports = new Exports(this.ctx, this.snaps);
    this.layers = new LayerView(this.pool, () => this.configs(), (n) => home.vm(n), (n) => this.exports.current(n)?.layer ?? null);
    this.devices = new Devices(this.ctx, () => this.runningNames());
    this.watch = new ProvisionWatch(this.ctx);
    this.builder = new Builder(this.ctx, opts.provisioner ?? realProvisioner, () => new Set(this.configs().map((c) => c.sshPort)));
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
    const s: VmSummary = { name, state: this.state(name), image: c.image, user: c.user, sshHost: sshHostAlias(name), sshPort: c.ssh ? c.sshPort : null, cpus: c.cpus, memoryMiB: c.memoryMiB };
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
      disks: this.attachedDisks(name).map(disks.publicDisk),
      usb: this.usbAttached(name).map(({ qemuId: _q, ...d }) => ({ ...d, attachedTo: name })),
    };
  }

  sshTarget(name: string): SshTarget {
    const c = this.config(name);
    if (!c.ssh) throw new DevvmError('invalid-state', `SSH is disabled for VM "${name}"`, 'it was created with --no-ssh; use the serial console');
    return { configFile: this.home.sshConfig, host: sshHostAlias(name), user: c.user, port: c.sshPort };
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
        this.adopt(name, inst);
        if (!this.config(name).provisioned) this.watch.watch(name, 0);
      } else {
        const why = this.driver.reap(instanceFiles(f));
        if (why) {
          log.warn(`${name}: ${why}`);
          this.store.update(name, (c) => ({ ...c, crashed: { reason: why, at: new Date().toISOString() } }));
        }
      }
      await this.snaps.settlePending(name);
    }
    this.layers.collect();
    this.writeSshConfig();
  }

  private adopt(name: string, inst: Instance): void {
    this.instances.set(name, inst);
    inst.onExit((info) => {
      if (this.instances.get(name) !== inst) return;
      this.instances.delete(name);
      this.watch.stop(name);
      const f = this.home.vm(name);
      rmSync(f.pid, { force: true });
      rmSync(f.attached, { force: true });
      rmSync(f.usb, { force: true });
      if (!info.expected && this.store.exists(name)) {
        log.warn(`${name}: ${info.reason}`);
        this.store.update(name, (c) => ({ ...c, crashed: { reason: info.reason, at: new Date().toISOString() } }));
      } else {
        log.info(`${name}: the VM's process ended`);
      }
      this.dropUsedSeed(name);
      this.changed(name);
    });
  }

  /**
   * The seed holds the password hash and the host key's private half: deleted once first
   * setup is done and no process (running, or saved in a RAM state) still has it attached.
   */
  private dropUsedSeed(name: string): void {
    if (!this.store.exists(name)) return;
    const cfg = this.config(name);
    const needed = cfg.suspended?.seed || (cfg.snapshots ?? []).some((s) => s.ram?.seed);
    if (cfg.provisioned && !needed) rmSync(this.home.vm(name).seed, { force: true });
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

  private assertNameFree(name: string): void {
    if (this.store.exists(name) || this.locks.get(name) || existsSync(this.home.vm(name).dir)) {
      throw new DevvmError('already-exists', `a VM named "${name}" already exists`, 'pick another name or delete it first');
    }
  }

  async create(p: CreateParams, progress: Progress): Promise<VmSummary> {
    const name = v.vmName(p.name);
    const imageName = v.imageName(p.image);
    const user = v.userName(p.user);
    const fullName = p.fullName === undefined ? user : v.fullName(p.fullName);
    const password = p.password === undefined ? null : v.password(p.password);
    const sshKeys = (p.sshKeys ?? []).map(v.sshPublicKey);
    const cpus = v.cpus(p.cpus ?? 2);
    const memoryMiB = v.memoryMiB(p.memoryMiB ?? 2048, Math.floor(os.totalmem() / 1024 / 1024));
    const diskGiB = v.diskGiB(p.diskGiB ?? 20);
    this.assertNameFree(name);
    // Held from before the base is checked until the VM exists: `image delete` is refused meanwhile.
    const release = this.images.hold(imageName);
    try {
      const img = await this.images.requireBase(imageName);
      if (diskGiB * GiB < img.virtualSize) {
        throw new DevvmError('invalid-argument', `disk size ${diskGiB} GiB is smaller than the image (${Math.ceil(img.virtualSize / GiB)} GiB)`);
      }
      mkdirSync(this.home.vmsDir, { recursive: true, mode: 0o700 });
      const free = statfsSync(this.home.vmsDir);
      if (free.bavail * free.bsize < MIN_FREE_BYTES) {
        throw new DevvmError('io', `not enough free disk space in ${this.home.vmsDir} (${Math.round((free.bavail * free.bsize) / 2 ** 20)} MiB left)`, 'free at least 256 MiB');
      }
      await this.locks.run(name, 'creating', async (op) => {
        // Hashed while the disk layers and keys are made; awaited by the seed (a failure
        // before then must not surface as an unhandled rejection).
        const hashing = password === null ? Promise.resolve(null) : this.builder.provisioner.hashPassword(password);
        hashing.catch(() => {});
        await this.buildVm(
          name,
          { image: imageName, img, parent: null, diskGiB },
          (fresh) => ({ version: 1, ...fresh, image: imageName, user, fullName, autologin: p.autologin ?? false, ssh: p.ssh ?? true, cpus, memoryMiB, diskGiB }),
          async (cfg, clientKey) => ({ hostname: name, instanceId: cfg.instanceId, user, fullName, passwordHash: await hashing, autologin: cfg.autologin, ssh: cfg.ssh, authorizedKeys: [clientKey, ...sshKeys] }),
          progress,
        );
        log.info(`created ${name}`);
        release();
        if (p.start) await this.startUnderLock(name, op, {}, progress);
      });
    } finally {
      release();
    }
    if (p.start && p.waitSsh) await this.waitSsh(name, 900, progress);
    return this.summary(name);
  }

  /** Builds under the new VM's lock; its layers stay reserved until vm.json names them, or are collected when it fails. */
  private async buildVm(name: string, disk: Parameters<Builder['build']>[1], config: Parameters<Builder['build']>[2], seed: Parameters<Builder['build']>[3], progress: Progress): Promise<void> {
    const hold = this.pool.reserve();
    try {
      await this.builder.build(name, disk, config, seed, hold, progress);
    } catch (e) {
      hold.release();
      this.layers.collect();
      throw e;
    }
    hold.release();
    this.writeSshConfig();
  }

  /**
   * A new VM on a frozen layer of `source` (its current disk, frozen live, or a snapshot):
   * O(1) in disk size. The clone keeps the user and their files and gets its own identity:
   * instance id (cloud-init's per-instance setup runs again), host key, machine-id, MAC,
   * SSH port.
   */
  async clone(p: { source: string; name: string; snapshot?: string; start?: boolean }, progress: Progress): Promise<VmSummary> {
    const source = v.vmName(p.source);
    const name = v.vmName(p.name);
    const src = this.config(source);
    poolOverlay(src);
    this.assertNameFree(name);
    if (p.snapshot === undefined) admit(this.ctx, 'clone', source);
    const release = this.images.hold(src.image);
    const parent = this.pool.reserve();
    try {
      await this.locks.run(name, 'creating', async (op) => {
        let layer: string;
        if (p.snapshot !== undefined) {
          layer = findSnapshot(this.config(source), p.snapshot).layer;
          parent.add(layer);
        } else {
          layer = await this.locks.run(source, 'cloning', async () => {
            const frozen = (await this.snaps.freeze(source, undefined, null, progress)).layer;
            parent.add(frozen);
            return frozen;
          });
        }
        const s = this.config(source);
        await this.buildVm(
          name,
          { image: s.image, img: this.images.get(s.image), parent: layer, diskGiB: s.diskGiB },
          (fresh) => ({ ...s, ...fresh, provisionError: undefined, crashed: undefined, suspended: undefined, pending: undefined, snapshots: undefined, clonedFrom: { vm: source, layer } }),
          async (cfg, clientKey) => ({ hostname: name, instanceId: cfg.instanceId, user: cfg.user, fullName: cfg.fullName, passwordHash: null, autologin: cfg.autologin, ssh: cfg.ssh, authorizedKeys: [clientKey], clone: true }),
          progress,
        );
        parent.release();
        release();
        log.info(`cloned ${source} to ${name} on layer ${layer}`);
        if (p.start) await this.startUnderLock(name, op, {}, progress);
      });
    } finally {
      parent.release();
      release();
    }
    return this.summary(name);
  }

  writeSshConfig(): void {
    const entries = this.configs()
      .filter((c) => c.ssh)
      .map((c) => ({ vm: c.name, port: c.sshPort, user: c.user, identityFile: this.home.privateKey, knownHostsFile: this.home.knownHosts(c.name) }));
    writeSshConfig(this.home.sshConfig, entries);
  }

  // ---- start / stop / suspend ----------------------------------------------

  async start(name: string, o: { waitSsh?: boolean; timeoutSec?: number; discardState?: boolean }, progress: Progress): Promise<VmSummary> {
    const cfg = this.config(name);
    if (o.waitSsh && !cfg.ssh) throw new DevvmError('invalid-state', `SSH is disabled for VM "${name}"`, 'start it without --wait-ssh');
    assertAllowed('start', name, this.state(name));
    if (this.state(name) !== 'running') {
      await this.locks.run(name, 'starting', (op) => this.startUnderLock(name, op, o, progress));
    }
    if (o.waitSsh) await this.waitSsh(name, o.timeoutSec ?? 900, progress);
    return this.summary(name);
  }

  /** The start itself, inside an operation holding the lock (a start, or the last step of restore/create/clone). */
  private async startUnderLock(name: string, op: Op, o: { discardState?: boolean }, progress: Progress): Promise<void> {
    op.set('starting');
    this.clearError(name);
    let cfg = this.config(name);
    const f = this.home.vm(name);
    const img = await this.images.requireBase(cfg.image);
    // VMs made before the layer pool keep their one overlay (no snapshots for them).
    const layers = cfg.overlay ? this.layers.chain(cfg).map((id) => ({ id, file: this.pool.file(id) })) : [{ id: 'overlay', file: f.legacyOverlay }];
    for (const file of [f.cache, ...layers.map((l) => l.file)]) {
      if (!existsSync(file)) throw new DevvmError('not-found', `disk layer missing: ${file}`, `the VM cannot start; see "devvm info ${name}"`);
    }
    if (cfg.ssh && !(await portIsFree(cfg.sshPort))) {
      const old = cfg.sshPort;
      const port = await freePort(new Set(this.configs().map((c) => c.sshPort)));
      cfg = this.store.update(name, (c) => ({ ...c, sshPort: port }));
      this.writeSshConfig();
      log.info(`${name}: port ${old} is taken, using ${cfg.sshPort}`);
    }
    let saved = cfg.suspended && existsSync(f.suspendState) ? cfg.suspended : null;
    if (saved && o.discardState) {
      rmSync(f.suspendState, { force: true });
      cfg = this.store.update(name, (c) => ({ ...c, suspended: undefined }));
      saved = null;
      log.info(`${name}: saved RAM state discarded on request`);
    } else if (saved) {
      requireFeature(this.driver, 'ramState', 'restore a saved RAM state');
      if ((await this.fingerprint(cfg, saved.seed)) !== saved.fingerprint) {
        throw new DevvmError('invalid-state', `the saved state of VM "${name}" does not fit its current configuration (QEMU, image, CPUs, memory or accelerator changed)`, 'start it with --discard-state to cold boot; the saved state is kept until then');
      }
    }
    if (!saved) this.dropUsedSeed(name);
    // A restore needs exactly the devices the state was saved with.
    const seed = saved ? (saved.seed ? f.seed : null) : !cfg.provisioned && existsSync(f.seed) ? f.seed : null;
    if (saved?.seed && !existsSync(f.seed)) throw new DevvmError('not-found', `the first-boot seed the saved state needs is missing: ${f.seed}`, 'start with --discard-state to cold boot');
    if (op.signal.aborted) throw this.cancelled(name);
    progress(saved ? 'restoring saved RAM state' : 'booting');
    const serialStart = existsSync(f.serialLog) ? statSync(f.serialLog).size : 0;
    const inst = await this.driver
      .launch({
        name, cpus: cfg.cpus, memoryMiB: cfg.memoryMiB, disks: { base: { file: img.file, format: img.format }, cache: f.cache, layers },
        kernel: img.kernel, initrd: img.initrd, seed, sshPort: cfg.ssh ? cfg.sshPort : null, mac: cfg.mac, files: instanceFiles(f), incoming: saved !== null, signal: op.signal,
      })
      .catch((e: unknown) => {
        throw op.signal.aborted ? this.cancelled(name) : e;
      });
    op.instance = inst;
    try {
      // What this process was started with, for a later suspend (a restore needs the same devices).
      writeJsonAtomic(f.launch, { seed: seed !== null, sshReady: saved?.sshReady } satisfies LaunchRecord);
      if (saved) {
        try {
          await need(inst.ram, this.driver.name, 'restore a saved RAM state').load(f.suspendState);
          await inst.resume();
        } catch (e) {
          if (op.signal.aborted) throw this.cancelled(name);
          throw new DevvmError('invalid-state', `the saved state of VM "${name}" cannot be restored: ${(e as Error).message}`, `start it with --discard-state to cold boot; the saved state is kept until then; see ${f.qemuLog}`);
        }
        // The guest has moved on: the state file no longer matches the disk.
        rmSync(f.suspendState, { force: true });
        this.store.update(name, (c) => ({ ...c, suspended: undefined }));
      }
      if (op.signal.aborted || !inst.alive) throw this.cancelled(name);
    } catch (e) {
      await inst.stop(true, 0).catch(() => {});
      throw e;
    } finally {
      op.instance = undefined;
    }
    this.adopt(name, inst);
    if (seed && !this.config(name).provisioned) this.watch.watch(name, serialStart);
  }

  private cancelled(name: string): DevvmError {
    return new DevvmError('invalid-state', `the start of VM "${name}" was cancelled by stop --force`, `start it again: devvm start ${name}`);
  }

  /** The record of a RAM state saved now from the running VM. */
  private async ramStateNow(name: string, savedAt: string): Promise<RamState> {
    const { seed, sshReady } = launchRecord(this.ctx, name);
    return { savedAt, seed, fingerprint: await this.fingerprint(this.config(name), seed), sshReady };
  }

  private fingerprint(cfg: VmConfig, seed: boolean): Promise<string> {
    const img = this.images.get(cfg.image);
    return this.driver.fingerprint({ cpus: cfg.cpus, memoryMiB: cfg.memoryMiB, image: img.sha256, kernel: img.kernel, seed, ssh: cfg.ssh });
  }

  /** Pause, write RAM and device state beside the layers, end the VM's process: `start` resumes from it. */
  async suspend(name: string, progress: Progress): Promise<VmSummary> {
    admit(this.ctx, 'suspend', name);
    requireFeature(this.driver, 'ramState', 'save RAM state');
    if (this.attachedDisks(name).length) throw new DevvmError('invalid-state', `VM "${name}" has hot-plugged disks; a saved state cannot restore them`, 'detach them first');
    const f = this.home.vm(name);
    await this.locks.run(name, 'suspending', async () => {
      const inst = this.ctx.instance(name);
      if (!inst) throw new DevvmError('invalid-state', `VM "${name}" stopped before it could be suspended`);
      const ram = need(inst.ram, this.driver.name, 'save RAM state');
      mkdirSync(f.ramDir, { recursive: true, mode: 0o700 });
      const tmp = `${f.suspendState}.partial`;
      progress('pausing and saving RAM state');
      await inst.pause();
      try {
        await ram.save(tmp);
      } catch (e) {
        rmSync(tmp, { force: true });
        await inst.resume().catch(() => {});
        throw e;
      }
      renameSync(tmp, f.suspendState);
      const state = await this.ramStateNow(name, new Date().toISOString());
      this.store.update(name, (c) => ({ ...c, suspended: state }));
      await inst.stop(true, 0);
    });
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
      if (inst) await this.startUnderLock(name, op, {}, progress);
    });
    return this.summary(name);
  }

  async deleteSnapshot(name: string, snapshot: string): Promise<void> {
    const snap = findSnapshot(this.config(name), snapshot);
    admit(this.ctx, 'deleteSnapshot', name);
    await this.locks.run(name, 'snapshotting', async () => this.snaps.forget(name, snap));
  }

  // ---- devices and exports (vm/devices.ts, vm/exports.ts) -----------------

  attachedDisks(name: string): disks.AttachedRecord[] {
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

  attachDisk(name: string, o: { source: string; usb: boolean; readOnly: boolean }): Promise<AttachedDisk> {
    return this.devices.attachDisk(name, o);
  }

  detachDisk(name: string, id: string): Promise<void> {
    return this.devices.detachDisk(name, id);
  }

  nbdExport(name: string): disks.ExportRecord | null {
    return this.exports.current(name);
  }

  exportDisk(name: string, snapshot: string | undefined, progress: Progress): Promise<{ vm: string; layer: string; uri: string }> {
    return this.exports.export(name, snapshot, progress);
  }

  unexportDisk(name: string): void {
    this.exports.unexport(name);
  }

  /** For helper shutdown in tests: leave VMs running unless asked. */
  async shutdown(stopVms: boolean): Promise<void> {
    this.watch.stopAll();
    for (const [name, inst] of this.instances) {
      this.instances.delete(name);
      if (stopVms) await inst.stop(true, 0);
      else inst.detach();
    }
  }
}
