/** The read-only NBD export of one of a VM's frozen layers (qemu-nbd through disks.ts). */
import { existsSync, rmSync } from 'node:fs';
import * as disks from '../disks';
import type { Progress } from '../images';
import { log } from '../log';
import { readJson, writeJsonAtomic } from '../store';
import { admit, poolOverlay, type VmContext } from './context';
import { findSnapshot, type Snapshots } from './snapshots';

export class Exports {
  constructor(
    private readonly ctx: VmContext,
    private readonly snapshots: Snapshots,
  ) {}

  /** The VM's running export, if any (derived from the qemu-nbd process). */
  current(name: string): disks.ExportRecord | null {
    const f = this.ctx.home.vm(name);
    if (!existsSync(f.nbdExport)) return null;
    const rec = readJson<disks.ExportRecord>(f.nbdExport);
    return disks.exportAlive(rec, f.nbdPid, this.ctx.pool.file(rec.layer)) ? rec : null;
  }

  stop(name: string): void {
    const rec = this.current(name);
    if (rec) process.kill(rec.pid, 'SIGTERM');
    rmSync(this.ctx.home.vm(name).nbdExport, { force: true });
  }

  /** Serves a snapshot's layer (or the current disk, frozen now) read-only. */
  async export(name: string, snapshot: string | undefined, progress: Progress): Promise<{ vm: string; layer: string; uri: string }> {
    admit(this.ctx, 'exportDisk', name);
    const cfg = this.ctx.store.read(name);
    poolOverlay(cfg);
    const snap = snapshot === undefined ? null : findSnapshot(cfg, snapshot);
    return this.ctx.locks.run(name, 'exporting', async () => {
      const layer = snap ? snap.layer : (await this.snapshots.freeze(name, undefined, null, progress)).layer;
      this.stop(name);
      const f = this.ctx.home.vm(name);
      const rec = await disks.serveNbd({ file: this.ctx.pool.file(layer), exportName: snap ? `${name}-${snap.name}` : `${name}-${layer}`, pidFile: f.nbdPid, logFile: f.nbdLog, layer });
      writeJsonAtomic(f.nbdExport, rec);
      log.info(`${name}: exporting layer ${layer} at ${rec.uri}`);
      return { vm: name, layer, uri: rec.uri };
    });
  }

  unexport(name: string): void {
    this.ctx.store.read(name);
    this.stop(name);
  }
}
