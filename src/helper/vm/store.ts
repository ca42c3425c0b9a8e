/**
 * vm.json and the VM directories. A VM exists once vms/<name>/vm.json does. New VMs are
 * built in a staging directory no VM name can reach (vms/.new-<name>-<tag>) and renamed
 * into place last; a deleted VM is renamed out (vms/.del-<name>-<tag>) before its files
 * go. A helper killed half-way leaves only such dot-directories, removed at next start.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { DevvmError } from '../../shared/errors';
import * as v from '../../shared/validate';
import type { Home, VmFiles } from '../filenames';
import { fsyncDir, readJson, writeJsonAtomic } from '../store';
import type { VmConfig } from '../vmconfig';

const VM_DIR = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export class VmStore {
  constructor(private readonly home: Home) {}

  exists(name: string): boolean {
    return existsSync(this.home.vm(name).meta);
  }

  /** VMs on disk (names with a vm.json), sorted. */
  names(): string[] {
    if (!existsSync(this.home.vmsDir)) return [];
    return readdirSync(this.home.vmsDir).filter((n) => VM_DIR.test(n) && this.exists(n)).sort();
  }

  read(name: string): VmConfig {
    v.vmName(name);
    if (!this.exists(name)) throw new DevvmError('not-found', `no VM named "${name}"`, 'see "devvm list"');
    return readJson<VmConfig>(this.home.vm(name).meta);
  }

  save(cfg: VmConfig): void {
    writeJsonAtomic(this.home.vm(cfg.name).meta, cfg);
  }

  /** Changes vm.json from what it holds now (never from a copy read before an await). */
  update(name: string, change: (c: VmConfig) => VmConfig): VmConfig {
    const next = change(this.read(name));
    this.save(next);
    return next;
  }

  /** A fresh 0700 staging directory for a VM being built. */
  stage(name: string): VmFiles {
    mkdirSync(this.home.vmsDir, { recursive: true, mode: 0o700 });
    const f = this.home.vmStaging(name, randomBytes(4).toString('hex'));
    mkdirSync(f.dir, { mode: 0o700 });
    return f;
  }

  /** Renames a built VM into place: from here on it exists. */
  commit(staged: VmFiles, name: string): void {
    const target = this.home.vm(name).dir;
    if (existsSync(target)) throw new DevvmError('already-exists', `a VM named "${name}" already exists`, 'pick another name or delete it first');
    renameSync(staged.dir, target);
    fsyncDir(this.home.vmsDir);
  }

  discard(staged: VmFiles): void {
    rmSync(staged.dir, { recursive: true, force: true });
  }

  /** Removes a VM's directory: renamed out first, so a kill half-way leaves no half VM under its name. */
  remove(name: string): void {
    const dir = this.home.vm(name).dir;
    if (!existsSync(dir)) return;
    const aside = this.home.vmDeleting(name, randomBytes(4).toString('hex'));
    renameSync(dir, aside);
    fsyncDir(this.home.vmsDir);
    rmSync(aside, { recursive: true, force: true });
  }

  /**
   * What a killed helper left: staging and deleting directories, and VM directories
   * without vm.json (made by versions that built VMs in place). Returns what it removed.
   */
  cleanLeftovers(): string[] {
    if (!existsSync(this.home.vmsDir)) return [];
    const gone: string[] = [];
    for (const n of readdirSync(this.home.vmsDir)) {
      const leftover = n.startsWith('.new-') || n.startsWith('.del-') || (VM_DIR.test(n) && !this.exists(n));
      if (!leftover) continue;
      rmSync(path.join(this.home.vmsDir, n), { recursive: true, force: true });
      gone.push(n);
    }
    return gone;
  }
}
