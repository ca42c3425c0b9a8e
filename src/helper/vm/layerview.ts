/** The VMs' view of the layer pool: chains, who uses which layer, and what garbage collection keeps. */
import type { LayerNode } from '../../shared/types';
import type { LayerPool } from '../layerpool';
import { layerInfo } from '../layers';
import { log } from '../log';
import type { VmConfig } from '../vmconfig';
import type { VmFiles } from '../filenames';

export class LayerView {
  constructor(
    private readonly pool: LayerPool,
    private readonly configs: () => VmConfig[],
    private readonly files: (name: string) => VmFiles,
    /** Layers served by a running export. */
    private readonly exported: (name: string) => string | null,
  ) {}

  /** Pool layer ids of the VM's disk, bottom to top (the last is the writable overlay). */
  chain(c: VmConfig): string[] {
    return c.overlay ? this.pool.path(c.overlay) : [];
  }

  overlayFile(c: VmConfig): string {
    return c.overlay ? this.pool.file(c.overlay) : this.files(c.name).legacyOverlay;
  }

  /** For every pool layer, the VMs whose active chain runs through it. */
  users(): Map<string, string[]> {
    const users = new Map<string, string[]>();
    for (const c of this.configs()) {
      for (const id of this.chain(c)) users.set(id, [...(users.get(id) ?? []), c.name]);
    }
    return users;
  }

  /** Every layer in the pool with who uses it: the tree's edges are the parent links. */
  async tree(): Promise<LayerNode[]> {
    const users = this.users();
    const snaps = new Map<string, string[]>();
    for (const c of this.configs()) {
      for (const s of c.snapshots ?? []) snaps.set(s.layer, [...(snaps.get(s.layer) ?? []), `${c.name}/${s.name}`]);
    }
    return Promise.all(
      this.pool.all().map(async (l) => ({
        id: l.id,
        parent: l.parent,
        image: l.image,
        file: this.pool.file(l.id),
        actualSize: (await layerInfo('snapshot', this.pool.file(l.id), true, [])).actualSize,
        createdAt: l.createdAt,
        snapshots: snaps.get(l.id) ?? [],
        usedBy: users.get(l.id) ?? [],
      })),
    );
  }

  /** Drops pool layers no VM chain, snapshot, unfinished freeze, export or operation in flight refers to. */
  collect(): void {
    const roots: string[] = [];
    for (const c of this.configs()) {
      if (c.overlay) roots.push(c.overlay);
      if (c.pending) roots.push(c.pending.newOverlay);
      for (const s of c.snapshots ?? []) roots.push(s.layer);
      const ex = this.exported(c.name);
      if (ex) roots.push(ex);
    }
    const removed = this.pool.gc(roots);
    if (removed.length) log.info(`removed unused layers ${removed.join(', ')}`);
  }
}
