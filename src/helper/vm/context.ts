/** What the VM manager's parts share: files, the pool, the driver, the locks, the running instances. */
import { DevvmError } from '../../shared/errors';
import { assertAllowed, busy, type Operation } from '../../shared/lifecycle';
import type { VmState } from '../../shared/types';
import type { Driver, Instance, InstanceFiles } from '../driver/driver';
import type { Home, VmFiles } from '../filenames';
import type { Images } from '../images';
import type { LayerPool } from '../layerpool';
import type { VmConfig } from '../vmconfig';
import type { OpLocks } from './oplock';
import type { VmStore } from './store';

export const GiB = 1024 ** 3;

export interface VmContext {
  readonly home: Home;
  readonly images: Images;
  readonly pool: LayerPool;
  readonly store: VmStore;
  readonly driver: Driver;
  readonly locks: OpLocks;
  /** The VM's running instance, if its process lives. */
  instance(name: string): Instance | undefined;
  state(name: string): VmState;
  changed(name: string): void;
  /** Drops pool layers nothing refers to (reservations of operations in flight are kept). */
  collectLayers(): void;
}

export function instanceFiles(f: VmFiles): InstanceFiles {
  return { control: f.qmp, serialSocket: f.serial, serialLog: f.serialLog, pidFile: f.pid, log: f.qemuLog, displaySocket: f.vnc, screendump: f.screendump, agentSocket: f.qga, dir: f.dir, shareRecord: f.shareRecord };
}

/**
 * The one admission check: the lifecycle table first (a refusal names the state and the
 * way out), then the lock (busy names what runs).
 */
export function admit(ctx: VmContext, op: Operation, name: string): void {
  ctx.store.read(name);
  assertAllowed(op, name, ctx.state(name));
  const held = ctx.locks.get(name);
  if (held) throw busy(name, held.phase);
}

export function poolOverlay(c: VmConfig): string {
  if (!c.overlay) throw new DevvmError('invalid-state', `VM "${c.name}" was made by an older devvm and has no layer pool`, 'recreate it to use snapshots and clones');
  return c.overlay;
}
