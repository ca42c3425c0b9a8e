/**
 * A stopped VM's size (devvm set --cpus/--memory/--disk). Everything is checked before
 * anything changes. Growing the disk is the only step that can fail half-way, so it runs
 * first and the one vm.json write that names the new size comes after it: a failure (or a
 * helper killed) in between leaves vm.json at the old size, and the same `set` again fixes
 * it (growing a qcow2 to the size it has already is a no-op).
 *
 * Only the writable overlay (the top of the VM's chain) grows: frozen layers below it
 * (snapshots, clone parents, other VMs' chains) are never written. A qcow2 may be larger
 * than its backing file; reads past the backing's end are zeros.
 */
import os from 'node:os';
import { DevvmError } from '../../shared/errors';
import { assertAllowed } from '../../shared/lifecycle';
import type { SetParams } from '../../shared/rpc';
import * as v from '../../shared/validate';
import { log } from '../log';
import { ProcessError, run } from '../proc';
import { fsyncPath } from '../store';
import type { VmConfig } from '../vmconfig';
import { admit, GiB, type VmContext } from './context';
import type { Displays } from './display';

export type SizeParams = Pick<SetParams, 'cpus' | 'memoryMiB' | 'diskGiB'>;
export type Size = Required<SizeParams>;

export interface HostLimits {
  cpus: number;
  memoryMiB: number;
}

/** What a VM may be given here: the host's CPUs and memory (as the Create form offers). */
export function hostLimits(): HostLimits {
  return { cpus: os.availableParallelism(), memoryMiB: Math.floor(os.totalmem() / 1048576) };
}

export function hasSize(p: SizeParams): boolean {
  return p.cpus !== undefined || p.memoryMiB !== undefined || p.diskGiB !== undefined;
}

/** The size `p` asks for from the VM's current one, checked: the host's limits, and a disk that only grows. */
export function plannedSize(cfg: Pick<VmConfig, 'name' | 'cpus' | 'memoryMiB' | 'diskGiB'>, p: SizeParams, host: HostLimits): Size {
  const cpus = p.cpus === undefined ? cfg.cpus : v.cpus(p.cpus, host.cpus);
  const memoryMiB = p.memoryMiB === undefined ? cfg.memoryMiB : v.memoryMiB(p.memoryMiB, host.memoryMiB);
  const diskGiB = p.diskGiB === undefined ? cfg.diskGiB : v.diskGiB(p.diskGiB);
  if (diskGiB < cfg.diskGiB) {
    throw new DevvmError('invalid-argument', `the disk of VM "${cfg.name}" is ${cfg.diskGiB} GiB and cannot shrink (asked for ${diskGiB} GiB)`, `give --disk ${cfg.diskGiB} or more`);
  }
  return { cpus, memoryMiB, diskGiB };
}

/** "2 CPUs, 1536 MiB, disk 30 GiB": the parts of `next` that differ from `before`. */
export function sizeChanges(before: Size, next: Size): string[] {
  const out: string[] = [];
  if (next.cpus !== before.cpus) out.push(`${next.cpus} CPU${next.cpus === 1 ? '' : 's'}`);
  if (next.memoryMiB !== before.memoryMiB) out.push(`${next.memoryMiB} MiB`);
  if (next.diskGiB !== before.diskGiB) out.push(`disk ${next.diskGiB} GiB`);
  return out;
}

/** The VM's writable top layer (a pool layer, or the overlay of a VM made before the pool). */
function overlayFile(ctx: VmContext, cfg: VmConfig): string {
  return cfg.overlay ? ctx.pool.file(cfg.overlay) : ctx.home.vm(cfg.name).legacyOverlay;
}

/**
 * Grows the overlay. qemu-img opens the chain below it read-only (shared locks, so VMs
 * running on those layers are not disturbed) and zero-fills the new area if a backing
 * layer were larger, so nothing below shows through. It takes the overlay's write lock:
 * a QEMU holding the file makes it fail, and nothing is changed.
 */
export async function growDisk(name: string, file: string, bytes: number): Promise<number> {
  const r = await run('qemu-img', ['resize', '-q', '-f', 'qcow2', file, String(bytes)]).catch((e: unknown) => {
    const why = e instanceof ProcessError ? (e.stderr.trim().split('\n').find((l) => l.trim()) ?? e.message).replace(/^qemu-img: /, '') : (e as Error).message;
    throw new DevvmError('process-failed', `cannot grow the disk of VM "${name}": ${why}`, `nothing was changed; if another program has ${file} open, close it and try again`);
  });
  fsyncPath(file);
  return r.ms;
}

/**
 * Changes the size (and the display, when asked in the same `set`) of a stopped VM under
 * its lock: a start meanwhile is refused as busy, and this is refused while one runs.
 */
export async function resize(ctx: VmContext, displays: Displays, name: string, size: SizeParams, display: Pick<SetParams, 'display' | 'displaySize'>, host: HostLimits = hostLimits()): Promise<void> {
  const withDisplay = display.display !== undefined || display.displaySize !== undefined;
  admit(ctx, 'set', name);
  if (withDisplay) displays.check(display);
  // Refused here, before the lock, so a bad value never makes the VM busy.
  plannedSize(ctx.store.read(name), size, host);
  await ctx.locks.run(name, 'configuring', async () => {
    // Read again under the lock: the checks above may predate another operation's end.
    assertAllowed('set', name, ctx.state(name));
    const cfg = ctx.store.read(name);
    const next = plannedSize(cfg, size, host);
    const screen = withDisplay ? displays.planned(name, display) : cfg.display;
    let ms = 0;
    if (next.diskGiB > cfg.diskGiB) ms = await growDisk(name, overlayFile(ctx, cfg), next.diskGiB * GiB);
    ctx.store.update(name, (c) => ({ ...c, ...next, display: screen }));
    const changes = sizeChanges(cfg, next);
    log.info(`${name}: ${changes.length ? changes.join(', ') : 'size unchanged'}${ms ? ` (disk grown in ${ms.toFixed(0)} ms; the guest's root filesystem follows at its next boot)` : ''}`);
    if (withDisplay) displays.logged(name, screen);
  });
}
