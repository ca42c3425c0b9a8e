/** The read-only NBD export of one of a VM's frozen layers (qemu-nbd, see ../exports.ts). */
import { existsSync, rmSync } from 'node:fs';
import type { NbdExport } from '../../shared/types';
import { exportAlive, publicExport, serveExport, stopExport, type ExportFiles, type ExportRecord } from '../exports';
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

  private files(name: string): ExportFiles {
    const f = this.ctx.home.vm(name);
    return { socket: f.nbdSocket, tlsDir: f.nbdTlsDir, pidFile: f.nbdPid, logFile: f.nbdLog };
  }

  /** The VM's running export, if any (derived from the qemu-nbd process). */
  current(name: string): ExportRecord | null {
    const f = this.ctx.home.vm(name);
    if (!existsSync(f.nbdExport)) return null;
    const rec = readJson<ExportRecord>(f.nbdExport);
    // Records from before unix exports name no file: match them by the layer's.
    const full = { ...rec, file: rec.file ?? this.ctx.pool.file(rec.layer) };
    return exportAlive(full, f.nbdPid) ? full : null;
  }

  stop(name: string): void {
    stopExport(this.current(name), this.files(name));
    rmSync(this.ctx.home.vm(name).nbdExport, { force: true });
  }

  /** Serves a snapshot's layer (or the current disk, frozen now) read-only: a 0600 unix socket, or TLS-PSK on 127.0.0.1. */
  async export(name: string, snapshot: string | undefined, tcp: boolean, progress: Progress): Promise<NbdExport> {
    admit(this.ctx, 'exportDisk', name);
    const cfg = this.ctx.store.read(name);
    poolOverlay(cfg);
    const snap = snapshot === undefined ? null : findSnapshot(cfg, snapshot);
    return this.ctx.locks.run(name, 'exporting', async () => {
      const layer = snap ? snap.layer : (await this.snapshots.freeze(name, undefined, null, progress)).layer;
      this.stop(name);
      const rec = await serveExport({ file: this.ctx.pool.file(layer), exportName: snap ? `${name}-${snap.name}` : `${name}-${layer}`, layer, files: this.files(name), tcp });
      writeJsonAtomic(this.ctx.home.vm(name).nbdExport, rec);
      log.info(`${name}: exporting layer ${layer} at ${rec.uri}`);
      return publicExport(name, rec);
    });
  }

  /** Under the VM's lock, so an export being set up is not ended half-way. */
  async unexport(name: string): Promise<void> {
    admit(this.ctx, 'unexportDisk', name);
    await this.ctx.locks.run(name, 'exporting', async () => this.stop(name));
  }
}
