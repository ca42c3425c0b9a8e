/**
 * Snapshots: freezing the top layer (live through the driver when the VM runs), settling
 * a freeze a killed helper left half-done, restoring, forgetting. Callers hold the VM's
 * lock; every pool layer made here is reserved until the vm.json naming it is written.
 */
import { existsSync, linkSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { DevvmError } from '../../shared/errors';
import type { SnapshotInfo } from '../../shared/types';
import * as v from '../../shared/validate';
import { need, type AgentOps, type Instance } from '../driver/driver';
import type { VmFiles } from '../filenames';
import type { Progress } from '../images';
import { log } from '../log';
import type { RamState, SnapshotRecord } from '../vmconfig';
import { GiB, poolOverlay, type VmContext } from './context';

/** How long a freeze or thaw may take (qemu-ga syncs every filesystem first). */
const FREEZE_TIMEOUT_MS = 10_000;
/** How long the agent gets to answer before a snapshot goes ahead without the freeze. */
const AGENT_ANSWER_MS = 2000;

export function snapshotInfo(s: SnapshotRecord): SnapshotInfo {
  return { name: s.name, layer: s.layer, ram: !!s.ram, createdAt: s.createdAt };
}

export function findSnapshot(c: { name: string; snapshots?: SnapshotRecord[] }, snapshot: string): SnapshotRecord {
  const s = (c.snapshots ?? []).find((x) => x.name === v.snapshotName(snapshot));
  if (!s) throw new DevvmError('not-found', `VM "${c.name}" has no snapshot "${snapshot}"`, `see "devvm snapshots ${c.name}"`);
  return s;
}

/** A snapshot's RAM file: its own name, or the one older versions used (never the suspend state's). */
export function snapshotRamFile(f: VmFiles, snapshot: string): string {
  const now = f.snapshotRam(snapshot);
  if (existsSync(now) || snapshot === 'suspend') return now;
  return existsSync(f.legacySnapshotRam(snapshot)) ? f.legacySnapshotRam(snapshot) : now;
}

export class Snapshots {
  constructor(
    private readonly ctx: VmContext,
    /** The record of a RAM state saved now from the running VM. */
    private readonly ramStateNow: (name: string, savedAt: string) => Promise<RamState>,
    /** Around a RAM save of the running VM: shares unmounted and unplugged (or the save refused), then back. */
    private readonly aroundSave: { before(name: string): Promise<unknown>; after(name: string): Promise<void> } = { before: async () => [], after: async () => {} },
  ) {}

  /**
   * Freezes the VM's overlay as a read-only layer under a fresh overlay. With `ramFile`
   * the guest is paused around the switch and the RAM save, so state file and frozen disk
   * match. Returns the frozen layer and how long the guest stalled.
   */
  async freeze(name: string, snapshot: SnapshotRecord | undefined, ramFile: string | null, progress: Progress): Promise<{ layer: string; pauseMs: number }> {
    const { ctx } = this;
    const cfg = ctx.store.read(name);
    const old = poolOverlay(cfg);
    const img = ctx.images.get(cfg.image);
    const running = ctx.instance(name);
    const layers = running ? need(running.layers, ctx.driver.name, 'switch disk layers while the VM runs') : null;
    const ram = running && ramFile ? need(running.ram, ctx.driver.name, 'save RAM state') : null;
    const hold = ctx.pool.reserve();
    try {
      const next = await ctx.pool.create({ parent: old, baseFile: img.file, baseFormat: img.format, image: cfg.image, vm: name, sizeBytes: cfg.diskGiB * GiB }, hold);
      const inst = ctx.instance(name);
      if (!inst && ramFile) {
        // The VM ended between the request and now: there is no RAM left to save.
        ctx.pool.remove(next.id);
        throw new DevvmError('invalid-state', `VM "${name}" stopped before its RAM could be saved`, 'start it and take the snapshot again');
      }
      if (!inst || !layers) {
        ctx.store.update(name, (c) => ({ ...c, overlay: next.id, snapshots: snapshot ? [...(c.snapshots ?? []), snapshot] : c.snapshots }));
        return { layer: old, pauseMs: 0 };
      }
      // Journal first: a helper killed past this point is settled by settlePending on restart.
      ctx.store.update(name, (c) => ({ ...c, pending: { newOverlay: next.id, snapshot } }));
      let pauseMs = 0;
      // Without RAM the new layer starts from whatever the guest had written: its filesystems
      // are frozen around the switch (when its agent answers), so that is a clean disk.
      const fs = ram ? null : await this.agentFor(inst);
      const top = { id: next.id, file: ctx.pool.file(next.id) };
      let t0 = performance.now();
      try {
        // Opened first, so only the switch itself happens while the guest waits.
        await layers.prepare?.(top);
        t0 = performance.now();
        if (ram) {
          progress('pausing the guest');
          await inst.pause();
        }
        const t1 = performance.now();
        if (fs) {
          progress("freezing the guest's filesystems around the disk layer switch");
          ctx.store.update(name, (c) => ({ ...c, fsFrozen: new Date().toISOString() }));
          // Without the freeze the guest waits for the switch alone, not for an agent that did not answer.
          let switchMs = 0;
          const switchNow = async () => {
            const t2 = performance.now();
            const failed = await layers.switchTop(old, top).then(() => null, (e: unknown) => e as Error);
            switchMs = performance.now() - t2;
            return failed;
          };
          // A freeze that fails leaves a crash-consistent layer, as without an agent: not a reason to fail.
          const r = await fs.whileFrozen(switchNow, FREEZE_TIMEOUT_MS, AGENT_ANSWER_MS);
          pauseMs = r.frozen ? r.frozenMs : switchMs;
          if (r.problem) log.warn(`${name}: ${r.problem}`);
          if (r.thawed) ctx.store.update(name, (c) => ({ ...c, fsFrozen: undefined }));
          if (r.value) throw r.value;
          log.info(`${name}: layer switched ${r.frozen ? `with the guest's filesystems frozen for ${r.frozenMs.toFixed(1)} ms` : 'without a filesystem freeze'}`);
        } else {
          progress('freezing the disk layer');
          await layers.switchTop(old, top);
          pauseMs = performance.now() - t1;
        }
        if (ram && ramFile) {
          progress('saving RAM');
          await ram.save(`${ramFile}.partial`);
          renameSync(`${ramFile}.partial`, ramFile);
          pauseMs = performance.now() - t0;
        }
      } finally {
        await this.settlePending(name);
      }
      return { layer: old, pauseMs };
    } finally {
      hold.release();
    }
  }

  /**
   * The running VM's agent when a process in the guest holds its port; null: no freeze.
   * Whether it answers is found out by the freeze's own session (one resync fewer: a
   * round trip of the guest's is 30-80 ms under TCG).
   */
  private async agentFor(inst: Instance): Promise<AgentOps | null> {
    const agent = inst.agent;
    return agent && (await agent.connected().catch(() => false)) ? agent : null;
  }

  /** Thaws and clears the record; a thaw that fails is logged (the agent thaws on its own after a timeout, and the record makes the next helper try again). */
  async thaw(name: string, agent: AgentOps): Promise<void> {
    try {
      await agent.thaw(FREEZE_TIMEOUT_MS);
      this.ctx.store.update(name, (c) => ({ ...c, fsFrozen: undefined }));
    } catch (e) {
      log.warn(`${name}: thawing the guest's filesystems failed: ${(e as Error).message}`);
    }
  }

  /** At helper start: filesystems a killed helper left frozen are thawed. */
  async settleFrozen(name: string): Promise<void> {
    const cfg = this.ctx.store.read(name);
    if (!cfg.fsFrozen) return;
    const agent = this.ctx.instance(name)?.agent;
    if (agent) {
      await this.thaw(name, agent);
      log.info(`${name}: thawed the filesystems a freeze at ${cfg.fsFrozen} left frozen`);
    }
    // Not running: a new boot has nothing frozen.
    if (!this.ctx.instance(name)) this.ctx.store.update(name, (c) => ({ ...c, fsFrozen: undefined }));
  }

  /**
   * Finishes or undoes a live freeze: the driver says which layer is on top. With the VM
   * gone the switch is kept, which is right either way (an empty layer on top changes
   * nothing). A guest paused for a RAM save is resumed; a snapshot whose RAM file never
   * completed is dropped (its disk layer stays in the chain).
   */
  async settlePending(name: string): Promise<void> {
    const { ctx } = this;
    const cfg = ctx.store.read(name);
    if (!cfg.pending) return;
    const { newOverlay, snapshot } = cfg.pending;
    const inst = ctx.instance(name);
    let switched = true;
    if (inst?.layers) {
      try {
        switched = (await inst.layers.top()) === newOverlay;
        if (!switched) await inst.layers.drop(newOverlay).catch(() => {});
        const status = await inst.runState();
        if (status === 'paused' || status === 'postmigrate') await inst.resume();
      } catch (e) {
        log.warn(`${name}: the VM went away while settling a freeze: ${(e as Error).message}`);
        switched = true;
      }
    }
    const ram = snapshot?.ram ? ctx.home.vm(name).snapshotRam(snapshot.name) : null;
    if (ram) rmSync(`${ram}.partial`, { force: true });
    const keep = snapshot && switched && (!ram || existsSync(ram));
    if (switched) {
      ctx.store.update(name, (c) => ({ ...c, overlay: newOverlay, pending: undefined, snapshots: keep ? [...(c.snapshots ?? []), snapshot] : c.snapshots }));
    } else {
      ctx.store.update(name, (c) => ({ ...c, pending: undefined }));
      ctx.pool.remove(newOverlay);
    }
    log.info(`${name}: freeze ${switched ? 'kept' : 'undone'}${snapshot && !keep ? ` (snapshot "${snapshot.name}" dropped)` : ''}`);
  }

  /** A named snapshot (caller holds the lock and has checked the state). */
  async take(name: string, snap: string, withRam: boolean, progress: Progress): Promise<{ pauseMs: number }> {
    const { ctx } = this;
    const f = ctx.home.vm(name);
    const rec: SnapshotRecord = { name: snap, layer: poolOverlay(ctx.store.read(name)), createdAt: new Date().toISOString() };
    if (!withRam) return this.freeze(name, rec, null, progress);
    mkdirSync(f.ramDir, { recursive: true, mode: 0o700 });
    if (ctx.state(name) === 'suspended') {
      // The suspend file already is this disk's RAM: link it, no copy.
      linkSync(f.suspendState, f.snapshotRam(snap));
      try {
        return await this.freeze(name, { ...rec, ram: ctx.store.read(name).suspended }, null, progress);
      } catch (e) {
        rmSync(f.snapshotRam(snap), { force: true });
        throw e;
      }
    }
    progress('unmounting shared folders');
    await this.aroundSave.before(name);
    try {
      return await this.freeze(name, { ...rec, ram: await this.ramStateNow(name, rec.createdAt) }, f.snapshotRam(snap), progress);
    } finally {
      // The VM goes on: its shares are mounted again, whether the save worked or not.
      await this.aroundSave.after(name).catch(() => {});
    }
  }

  /** A fresh overlay on the snapshot's layer; with RAM the VM becomes suspended at that moment. VM stopped, lock held. */
  async restoreStopped(name: string, snap: SnapshotRecord, progress: Progress): Promise<void> {
    const { ctx } = this;
    const f = ctx.home.vm(name);
    const cfg = ctx.store.read(name);
    const img = ctx.images.get(cfg.image);
    progress(`restoring snapshot ${snap.name}`);
    const hold = ctx.pool.reserve();
    try {
      const next = await ctx.pool.create({ parent: snap.layer, baseFile: img.file, baseFormat: img.format, image: cfg.image, vm: name, sizeBytes: cfg.diskGiB * GiB }, hold);
      rmSync(f.suspendState, { force: true });
      if (snap.ram) {
        mkdirSync(f.ramDir, { recursive: true, mode: 0o700 });
        linkSync(snapshotRamFile(f, snap.name), f.suspendState);
      }
      // A RAM state needs the machine it was saved from: the size comes back with it (the
      // disk keeps its size, it only grows; the guest sees that at its next boot).
      const size = snap.ram?.cpus && snap.ram.memoryMiB ? { cpus: snap.ram.cpus, memoryMiB: snap.ram.memoryMiB } : {};
      const before = ctx.store.read(name);
      ctx.store.update(name, (c) => ({ ...c, overlay: next.id, suspended: snap.ram, ...size }));
      if (size.cpus !== undefined && (size.cpus !== before.cpus || size.memoryMiB !== before.memoryMiB)) {
        log.info(`${name}: back to ${size.cpus} CPUs and ${size.memoryMiB} MiB, the size snapshot "${snap.name}" was taken with`);
      }
    } finally {
      hold.release();
    }
    ctx.collectLayers();
  }

  /** Forgets a snapshot (lock held); its layer goes once no chain, snapshot or clone still needs it. */
  forget(name: string, snap: SnapshotRecord): void {
    const { ctx } = this;
    const f = ctx.home.vm(name);
    ctx.store.update(name, (c) => ({ ...c, snapshots: (c.snapshots ?? []).filter((s) => s.name !== snap.name) }));
    rmSync(f.snapshotRam(snap.name), { force: true });
    // The old location, except for "suspend": there it is the suspend state's own file.
    if (snap.name !== 'suspend') rmSync(f.legacySnapshotRam(snap.name), { force: true });
    ctx.collectLayers();
  }
}
