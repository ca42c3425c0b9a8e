/**
 * Which VM a folder's devvm.json means: the file's `name`, else the folder's name made
 * into a VM name. A VM records the folder it was made from (VmSummary.origin), so a second
 * `up` finds it again whatever the name; a derived name taken by a VM of another folder
 * gets a short suffix from the folder's path (the same folder, the same suffix).
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { DevvmError } from '../errors';
import type { VmSummary } from '../types';

/** The folder's base name as a VM name: lowercase, other characters as dashes, at most 63. */
export function folderVmName(dir: string): string {
  const slug = path
    .basename(dir)
    .normalize('NFKD')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return slug || 'devvm';
}

function suffixed(base: string, dir: string): string {
  const tag = createHash('sha256').update(dir).digest('hex').slice(0, 6);
  return `${base.slice(0, 63 - tag.length - 1).replace(/-+$/, '')}-${tag}`;
}

/** The folder's VMs, the one made from the current file first, then the newest. */
export function vmsOf(dir: string, vms: readonly VmSummary[], manifestHash?: string): VmSummary[] {
  return vms
    .filter((s) => s.origin?.dir === dir)
    .sort((a, b) => Number(b.origin?.manifestHash === manifestHash) - Number(a.origin?.manifestHash === manifestHash));
}

/**
 * The name for a new VM of `dir`. `wanted` (the file's name) is used as it is and must be
 * free; a derived name steps aside for another folder's VM.
 */
export function newVmName(dir: string, wanted: string | undefined, vms: readonly VmSummary[]): string {
  const taken = (n: string) => vms.some((s) => s.name === n);
  if (wanted !== undefined) {
    if (taken(wanted)) {
      const other = vms.find((s) => s.name === wanted)!;
      throw new DevvmError('already-exists', `a VM named "${wanted}" already exists${other.origin ? ` for ${other.origin.dir}` : ''}`, 'change "name" in devvm.json, or delete that VM');
    }
    return wanted;
  }
  const base = folderVmName(dir);
  if (!taken(base)) return base;
  const alt = suffixed(base, dir);
  if (!taken(alt)) return alt;
  throw new DevvmError('already-exists', `the names "${base}" and "${alt}" are taken by other VMs`, 'set "name" in devvm.json');
}

/** A rebuild's name while the old VM still exists: the old name and a "-2" twin take turns. */
export function rebuildName(old: string, vms: readonly VmSummary[]): string {
  const twin = old.endsWith('-2') ? old.slice(0, -2) : `${old.slice(0, 61).replace(/-+$/, '')}-2`;
  if (vms.some((s) => s.name === twin)) throw new DevvmError('already-exists', `a VM named "${twin}" already exists`, `delete it first (devvm delete ${twin}), or set another "name" in devvm.json`);
  return twin;
}
