/**
 * The layer pool (DEVVM_HOME/layers): every qcow2 layer above a VM's cache, frozen
 * snapshot layers and writable overlays alike, named by id so that freezing, restoring
 * and cloning only change metadata and never rename a file QEMU holds open.
 *
 * Each layer's header names its parent layer file, and the lowest layer names the base
 * image itself, never a VM's cache: the cache only ever holds copies of base data, so
 * a frozen layer stays readable by any VM and any tool (qemu-img, NBD) whoever's cache
 * runs under it at run time (QEMU gets the real chain as explicit -blockdev nodes).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { DevvmError } from '../shared/errors';
import { run } from './proc';
import { fsyncPath, readJson, writeJsonAtomic } from './store';

/** A layer is writable exactly when it is some VM's `overlay` in vm.json; nothing else records it. */
export interface LayerMeta {
  id: string;
  /** null: directly on the base image. */
  parent: string | null;
  image: string;
  /** The VM that made it. */
  vm: string;
  createdAt: string;
}

const LAYER_ID = /^l[0-9a-f]{12}$/;

/**
 * Layers an operation under way needs before the vm.json that names them is written
 * (a new VM's overlay, a restore's fresh overlay, the parent a clone is made on): gc()
 * keeps them and their ancestors until `release()`, once that vm.json is written or the
 * operation has undone its work.
 */
export interface Reservation {
  add(id: string): void;
  release(): void;
}

export class LayerPool {
  /** Ids reserved by operations in flight (with a count: two may hold one parent). */
  private readonly reserved = new Map<string, number>();

  constructor(readonly dir: string) {}

  file(id: string): string {
    if (!LAYER_ID.test(id)) throw new DevvmError('internal', `bad layer id ${JSON.stringify(id)}`);
    return path.join(this.dir, `${id}.qcow2`);
  }

  private metaFile(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }

  has(id: string): boolean {
    return existsSync(this.metaFile(id));
  }

  get(id: string): LayerMeta {
    if (!this.has(id)) throw new DevvmError('not-found', `layer ${id} is missing from ${this.dir}`, 'the VM metadata refers to a layer that is gone');
    return readJson<LayerMeta>(this.metaFile(id));
  }

  ids(): string[] {
    if (!existsSync(this.dir)) return [];
    return readdirSync(this.dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -5))
      .filter((id) => LAYER_ID.test(id))
      .sort();
  }

  all(): LayerMeta[] {
    return this.ids().map((id) => this.get(id));
  }

  /** The chain from the bottom layer up to `id`, inclusive. */
  path(id: string): string[] {
    const out: string[] = [];
    for (let cur: string | null = id; cur; cur = this.get(cur).parent) {
      if (out.includes(cur)) throw new DevvmError('internal', `layer cycle at ${cur}`);
      out.unshift(cur);
    }
    return out;
  }

  /**
   * A new empty writable layer over `parent` (or over the base file when null), O(1).
   * `-u`: the parent may be held open by a running QEMU; its header is not needed since
   * the size is given.
   */
  reserve(): Reservation {
    const mine: string[] = [];
    let released = false;
    return {
      add: (id) => {
        if (released) throw new DevvmError('internal', 'layer reservation used after release');
        mine.push(id);
        this.reserved.set(id, (this.reserved.get(id) ?? 0) + 1);
      },
      release: () => {
        if (released) return;
        released = true;
        for (const id of mine) {
          const n = (this.reserved.get(id) ?? 1) - 1;
          if (n > 0) this.reserved.set(id, n);
          else this.reserved.delete(id);
        }
      },
    };
  }

  /**
   * A new empty writable layer over `parent` (or over the base file when null), O(1).
   * `-u`: the parent may be held open by a running QEMU; its header is not needed since
   * the size is given. Held by `hold` (its parent too) from before qemu-img runs; without
   * one it is held only while it is made.
   */
  async create(o: { parent: string | null; baseFile: string; baseFormat: string; image: string; vm: string; sizeBytes: number }, hold?: Reservation): Promise<LayerMeta> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const id = `l${randomBytes(6).toString('hex')}`;
    const own = hold ? null : this.reserve();
    const r = hold ?? own!;
    try {
      if (o.parent) {
        r.add(o.parent);
        // The parent may have gone between the caller's read and this reservation.
        this.get(o.parent);
      }
      r.add(id);
      const backing = o.parent ? this.file(o.parent) : o.baseFile;
      const backingFormat = o.parent ? 'qcow2' : o.baseFormat;
      await run('qemu-img', ['create', '-q', '-u', '-f', 'qcow2', '-o', 'cluster_size=65536', '-b', backing, '-F', backingFormat, this.file(id), String(o.sizeBytes)]);
      // Data before the metadata that names it: a layer with metadata always opens.
      fsyncPath(this.file(id));
      const meta: LayerMeta = { id, parent: o.parent, image: o.image, vm: o.vm, createdAt: new Date().toISOString() };
      writeJsonAtomic(this.metaFile(id), meta);
      return meta;
    } finally {
      own?.release();
    }
  }

  remove(id: string): void {
    // Metadata first: a layer file without metadata is garbage that gc() can find; the
    // reverse would be a layer that claims to exist and cannot be opened.
    rmSync(this.metaFile(id), { force: true });
    rmSync(this.file(id), { force: true });
  }

  /**
   * Removes every layer that nothing keeps: `roots` are the layers VMs use (chains and
   * snapshots); their ancestors are kept too. Returns the ids removed.
   */
  gc(roots: Iterable<string>): string[] {
    const keep = new Set<string>(this.reserved.keys());
    for (const r of [...roots, ...this.reserved.keys()]) {
      if (this.has(r)) for (const id of this.path(r)) keep.add(id);
    }
    const removed = this.ids().filter((id) => !keep.has(id));
    for (const id of removed) this.remove(id);
    // Layer files whose metadata never got written: a create cut short (a helper killed
    // while its qemu-img ran), unless an operation of this helper reserved it. One helper
    // owns a home at a time, so nothing else can be mid-create.
    if (existsSync(this.dir)) {
      for (const f of readdirSync(this.dir)) {
        const m = /^(l[0-9a-f]{12})\.qcow2$/.exec(f);
        if (m && !this.has(m[1]!) && !this.reserved.has(m[1]!)) rmSync(path.join(this.dir, f), { force: true });
      }
    }
    return removed;
  }
}
