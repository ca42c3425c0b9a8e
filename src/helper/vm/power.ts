/**
 * Starting a VM (cold boot or resume from a saved RAM state) and suspending one, inside
 * an operation that holds the VM's lock (a start, or the last step of restore, create
 * --start and clone --start). A stop --force aborts the operation's signal: the start
 * kills what it launched and fails with the way out.
 */
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { bootSize } from '../../shared/display';
import { DevvmError } from '../../shared/errors';
import { seedFile } from '../devvmseed';
import { need, requireFeature, type Instance } from '../driver/driver';
import type { Progress } from '../images';
import { log } from '../log';
import { freePort, portIsFree } from '../ports';
import { writeJsonAtomic } from '../store';
import type { LaunchRecord, MachineShares, RamState, VmConfig } from '../vmconfig';
import type { Shares } from './shares';
import { instanceFiles, type VmContext } from './context';
import type { LayerView } from './layerview';
import type { Op } from './oplock';
import type { ProvisionWatch } from './provisionwatch';
import { launchRecord } from './sshready';

/**
 * Sets a resumed guest's clock to the host's through its agent. Best effort: a guest
 * without an agent keeps today's behaviour (timesyncd corrects it later). Waits until the
 * agent has taken the time, not for its RTC write.
 */
export async function syncGuestClock(name: string, inst: Instance): Promise<void> {
  const agent = inst.agent;
  if (!agent) return;
  const t0 = performance.now();
  const since = () => `${Math.round(performance.now() - t0)} ms`;
  try {
    if (!(await agent.connected())) return;
    const { applied } = await agent.setClock(() => (performance.timeOrigin + performance.now()) * 1e6, CLOCK_TIMEOUT_MS);
    log.info(`${name}: guest clock set to the host's (the agent took it after ${since()})`);
    applied.then(
      () => log.info(`${name}: the guest agent confirmed the clock and wrote the RTC after ${since()}`),
      (e: Error) => log.warn(`${name}: the guest agent did not confirm the clock: ${e.message}`),
    );
  } catch (e) {
    log.warn(`${name}: could not set the guest's clock through its agent (${since()}): ${(e as Error).message}`);
  }
}

/** For the agent to answer a resync after a resume: a guest just resumed on a loaded host can take seconds. */
const CLOCK_TIMEOUT_MS = 15_000;

export interface PowerDeps {
  layers: LayerView;
  watch: ProvisionWatch;
  /** Takes over a launched instance: watched from now on, its end handled; resolves once a resumed guest's display is back at its size. */
  adopt(name: string, inst: Instance): Promise<void>;
  dropUsedSeed(name: string): void;
  clearError(name: string): void;
  writeSshConfig(): void;
  usedPorts(): Set<number>;
  shares: Shares;
}

export class Power {
  constructor(
    private readonly ctx: VmContext,
    private readonly d: PowerDeps,
  ) {}

  private get home() {
    return this.ctx.home;
  }
  private get images() {
    return this.ctx.images;
  }
  private get pool() {
    return this.ctx.pool;
  }
  private get driver() {
    return this.ctx.driver;
  }
  private get store() {
    return this.ctx.store;
  }
  private config(name: string): VmConfig {
    return this.ctx.store.read(name);
  }

  /**
   * The start itself, inside an operation holding the lock (a start, or the last step of
   * restore/create/clone). Says whether the guest was booted or restored from saved RAM.
   */
  async startUnderLock(name: string, op: Op, o: { discardState?: boolean }, progress: Progress): Promise<'booted' | 'restored'> {
    op.set('starting');
    const t0 = performance.now();
    const marks: string[] = [];
    const mark = (what: string) => marks.push(`${what} at ${Math.round(performance.now() - t0)} ms`);
    this.d.clearError(name);
    let cfg = this.config(name);
    const f = this.home.vm(name);
    const img = await this.images.requireBase(cfg.image);
    // VMs made before the layer pool keep their one overlay (no snapshots for them).
    const layers = cfg.overlay ? this.d.layers.chain(cfg).map((id) => ({ id, file: this.pool.file(id) })) : [{ id: 'overlay', file: f.legacyOverlay }];
    for (const file of [f.cache, ...layers.map((l) => l.file)]) {
      if (!existsSync(file)) throw new DevvmError('not-found', `disk layer missing: ${file}`, `the VM cannot start; see "devvm info ${name}"`);
    }
    if (cfg.ssh && !(await portIsFree(cfg.sshPort))) {
      const old = cfg.sshPort;
      const port = await freePort(this.d.usedPorts());
      cfg = this.store.update(name, (c) => ({ ...c, sshPort: port }));
      this.d.writeSshConfig();
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
      if ((await this.fingerprint(cfg, saved.seed, saved.shares)) !== saved.fingerprint) {
        if ((saved.display ?? false) !== (cfg.display !== undefined)) {
          const was = saved.display ? 'with a display' : 'without a display';
          throw new DevvmError('invalid-state', `the saved state of VM "${name}" was saved ${was}; the VM now has ${cfg.display ? 'one' : 'none'}`, `set it back (devvm set ${name} --display ${saved.display ? 'on' : 'off'}), or start it with --discard-state to cold boot`);
        }
        throw new DevvmError('invalid-state', `the saved state of VM "${name}" does not fit its current configuration (QEMU, image, CPUs, memory, display or accelerator changed)`, 'start it with --discard-state to cold boot; the saved state is kept until then');
      }
    }
    if (!saved) this.d.dropUsedSeed(name);
    // A restore needs exactly the devices (and fw_cfg files) the state was saved with.
    const seedPath = seedFile(f, cfg.provision);
    const seed = saved ? (saved.seed ? seedPath : null) : !cfg.provisioned && existsSync(seedPath) ? seedPath : null;
    if (saved?.seed && !existsSync(seedPath)) throw new DevvmError('not-found', `the first-boot seed the saved state needs is missing: ${seedPath}`, 'start with --discard-state to cold boot');
    if (op.signal.aborted) throw this.cancelled(name);
    // A restore gets exactly the share devices (and memory backend) the state was saved with.
    const plan = saved ? this.d.shares.restorePlan(saved) : this.d.shares.bootPlan(cfg);
    progress(saved ? 'restoring saved RAM state' : 'booting');
    const serialStart = existsSync(f.serialLog) ? statSync(f.serialLog).size : 0;
    const inst = await this.driver
      .launch({
        name, cpus: cfg.cpus, memoryMiB: cfg.memoryMiB, disks: { base: { file: img.file, format: img.format }, cache: f.cache, layers },
        kernel: img.kernel, initrd: img.initrd, seed, provision: cfg.provision, sshPort: cfg.ssh ? cfg.sshPort : null, mac: cfg.mac, display: cfg.display ? bootSize(cfg.display) : null, files: instanceFiles(f), incoming: saved !== null, signal: op.signal, shares: plan.shares,
      })
      .catch((e: unknown) => {
        throw op.signal.aborted ? this.cancelled(name) : e;
      });
    op.instance = inst;
    try {
      // What this process was started with, for a later suspend (a restore needs the same devices).
      writeJsonAtomic(f.launch, { seed: seed !== null, sshReady: saved?.sshReady, shares: plan.record } satisfies LaunchRecord);
      if (saved) {
        try {
          mark('QEMU up');
          await need(inst.ram, this.driver.name, 'restore a saved RAM state').load(f.suspendState);
          mark('state loaded');
          await inst.resume();
        } catch (e) {
          if (op.signal.aborted) throw this.cancelled(name);
          throw new DevvmError('invalid-state', `the saved state of VM "${name}" cannot be restored: ${(e as Error).message}`, `start it with --discard-state to cold boot; the saved state is kept until then; see ${f.qemuLog}`);
        }
        // The guest has moved on: the state file no longer matches the disk.
        rmSync(f.suspendState, { force: true });
        this.store.update(name, (c) => ({ ...c, suspended: undefined }));
        // Its clock stood still while the state was on disk: set it now, not at timesyncd's next poll.
        await syncGuestClock(name, inst);
        mark('clock set');
        log.info(`${name}: restored (${marks.join(', ')})`);
      }
      if (op.signal.aborted || !inst.alive) throw this.cancelled(name);
    } catch (e) {
      await inst.stop(true, 0).catch(() => {});
      throw e;
    } finally {
      op.instance = undefined;
    }
    const shown = this.d.adopt(name, inst);
    if (seed && !this.config(name).provisioned) this.d.watch.watch(name, serialStart);
    // Mounted once the agent answers: waited for after a restore (the guest is up), in the background after a boot.
    await this.d.shares.started(name, plan, saved !== null).catch((e: Error) => log.warn(`${name}: shares: ${e.message}`));
    // A resume returns with the display at the size it had, not a moment before.
    if (saved) await shown;
    return saved ? 'restored' : 'booted';
  }

  private cancelled(name: string): DevvmError {
    return new DevvmError('invalid-state', `the start of VM "${name}" was cancelled by stop --force`, `start it again: devvm start ${name}`);
  }

  /** The record of a RAM state saved now from the running VM. */
  async ramStateNow(name: string, savedAt: string): Promise<RamState> {
    const { seed, sshReady, shares } = launchRecord(this.ctx, name);
    const cfg = this.config(name);
    const m = shares?.sharedMemory || shares?.ninep?.length ? { shares } : {};
    return { savedAt, seed, fingerprint: await this.fingerprint(cfg, seed, shares), sshReady, ...(cfg.display ? { display: true } : {}), cpus: cfg.cpus, memoryMiB: cfg.memoryMiB, ...m };
  }

  private fingerprint(cfg: VmConfig, seed: boolean, shares?: MachineShares): Promise<string> {
    const img = this.images.get(cfg.image);
    const ninep = shares?.ninep?.map((d) => ({ tag: d.tag, readOnly: d.readOnly }));
    return this.driver.fingerprint({ cpus: cfg.cpus, memoryMiB: cfg.memoryMiB, image: img.sha256, kernel: img.kernel, seed, ...(cfg.provision ? { provision: cfg.provision } : {}), ssh: cfg.ssh, display: cfg.display ?? null, sharedMemory: shares?.sharedMemory ?? false, ...(ninep?.length ? { ninep } : {}) });
  }

  /** Saves RAM and device state and ends the process (lock held, state checked). */
  async suspendUnderLock(name: string, progress: Progress): Promise<void> {
    const f = this.home.vm(name);
    const inst = this.ctx.instance(name);
    if (!inst) throw new DevvmError('invalid-state', `VM "${name}" stopped before it could be suspended`);
    const ram = need(inst.ram, this.driver.name, 'save RAM state');
    mkdirSync(f.ramDir, { recursive: true, mode: 0o700 });
    const tmp = `${f.suspendState}.partial`;
    // QEMU refuses to migrate with a mounted 9p export or a vhost-user-fs device: unmounted
    // (synced first) and unplugged here, or refused while a guest process holds a file there.
    progress('unmounting shared folders');
    const remount = await this.d.shares.beforeSave(name, 'suspend');
    // Made before the save, so that the state file and the record naming it appear in one
    // synchronous step: a QEMU killed after the save then leaves a suspended VM, not an error.
    const state = await this.ramStateNow(name, new Date().toISOString());
    progress('pausing and saving RAM state');
    await inst.pause();
    try {
      await ram.save(tmp);
    } catch (e) {
      rmSync(tmp, { force: true });
      await inst.resume().catch(() => {});
      await this.d.shares.remount(name, remount).catch(() => {});
      throw e;
    }
    renameSync(tmp, f.suspendState);
    this.store.update(name, (c) => ({ ...c, suspended: state }));
    await inst.stop(true, 0);
  }
}
