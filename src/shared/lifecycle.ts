/**
 * The one lifecycle table: for every operation on a VM, the states that allow it. The
 * helper refuses through `refusal()` (one message shape: the state, what was expected,
 * and the way out), the extension's menus and the CLI derive from the same table.
 *
 * States are what really happens: `creating` and `deleting` while those run, the
 * transitional states while QEMU is started, saved or stopped, and `error` when the VM's
 * QEMU ended without being asked to (a crash, a kill, the host's OOM killer); the reason
 * is in `VmSummary.error` until the next start, stop or delete. Operations that leave
 * the state as it is (snapshots, clones, attaching devices) hold the VM's lock too; a
 * second operation meanwhile is refused as `busy` with what runs.
 */
import { DevvmError } from './errors';
import type { VmState } from './types';

export const OPERATIONS = {
  /** Cold boot, or resume a suspended VM; on a running VM only waits for SSH when asked. */
  start: ['stopped', 'error', 'suspended', 'running'],
  /** Only a suspended VM resumes (a running one is refused: `devvm resume` has always said so). */
  resume: ['suspended'],
  /** A stopped VM stays stopped (no-op); `error` is cleared. */
  stop: ['running', 'stopped', 'error', 'suspended'],
  /** Kills QEMU whatever it is doing, a start or a save included. */
  forceStop: ['running', 'starting', 'stopping', 'suspending', 'stopped', 'error', 'suspended'],
  suspend: ['running'],
  delete: ['stopped', 'error', 'suspended'],
  /** delete --force: stops it first. */
  forceDelete: ['stopped', 'error', 'suspended', 'running', 'starting', 'stopping', 'suspending'],
  snapshot: ['stopped', 'error', 'running', 'suspended'],
  snapshotRam: ['running', 'suspended'],
  deleteSnapshot: ['stopped', 'error', 'running', 'suspended'],
  restore: ['stopped', 'error', 'running', 'suspended'],
  clone: ['stopped', 'error', 'running', 'suspended'],
  exportDisk: ['stopped', 'error', 'running', 'suspended'],
  unexportDisk: ['stopped', 'error', 'running', 'suspended'],
  attachDisk: ['running'],
  detachDisk: ['running'],
  attachUsb: ['running'],
  detachUsb: ['running'],
  /** Reading the serial console: while QEMU runs. */
  console: ['starting', 'running', 'stopping', 'suspending'],
  ssh: ['running'],
  /** The screen: resize it, look at it. */
  display: ['running'],
  screenshot: ['running'],
  /** Changing the machine (devvm set): a suspended VM's saved state needs the machine it was saved from. */
  set: ['stopped', 'error'],
  /**
   * Shared folders: kept in the configuration, mounted live on a running VM where the
   * transport allows; a suspended VM's saved state has no device for a new one.
   */
  share: ['stopped', 'error', 'running'],
  unshare: ['stopped', 'error', 'running'],
  /** Static forwards: kept in the configuration, added to QEMU's user network live (hostfwd_add). */
  portAdd: ['stopped', 'error', 'running', 'suspended'],
  portRemove: ['stopped', 'error', 'running', 'suspended'],
} as const satisfies Record<string, readonly VmState[]>;

export type Operation = keyof typeof OPERATIONS;

/** What a user calls the operation in a refusal ("cannot suspend VM ..."). */
const VERBS: Record<Operation, string> = {
  start: 'start', resume: 'resume', stop: 'stop', forceStop: 'force-stop', suspend: 'suspend',
  delete: 'delete', forceDelete: 'delete', snapshot: 'snapshot', snapshotRam: 'take a RAM snapshot of',
  deleteSnapshot: 'delete a snapshot of', restore: 'restore', clone: 'clone', exportDisk: 'export the disk of',
  unexportDisk: 'stop the export of', attachDisk: 'attach a disk to', detachDisk: 'detach a disk from',
  attachUsb: 'attach a USB device to', detachUsb: 'detach a USB device from', console: 'open the console of', ssh: 'connect to',
  display: 'use the display of', screenshot: 'take a screenshot of', set: 'change',
  share: 'share a folder with', unshare: 'unshare a folder of', portAdd: 'add a port forward to', portRemove: 'remove a port forward of',
};

export function allows(op: Operation, state: VmState): boolean {
  return (OPERATIONS[op] as readonly VmState[]).includes(state);
}

/** The way out of `state` towards one that allows `op`. */
function wayOut(op: Operation, name: string, state: VmState): string {
  switch (state) {
    case 'creating':
    case 'starting':
    case 'stopping':
    case 'suspending':
    case 'deleting':
      return op === 'delete' ? `wait for it to finish, or use "devvm delete ${name} --force"` : op === 'stop' ? `wait for it to finish, or use "devvm stop ${name} --force"` : 'wait for it to finish';
    case 'stopped':
    case 'error':
      return `start it first: devvm start ${name}`;
    case 'suspended':
      if (op === 'set') return `its saved state needs the machine it was saved from: resume and stop it, or drop the state with "devvm start ${name} --discard-state" and stop it`;
      return op === 'suspend' ? 'it is suspended already' : `resume it first: devvm resume ${name}`;
    case 'running':
      if (op === 'resume') return 'it is running already';
      if (op === 'delete') return `stop it first, or use "devvm delete ${name} --force"`;
      return `stop it first: devvm stop ${name}`;
  }
}

/** The refusal when `op` does not fit `state`; null when it does. */
export function refusal(op: Operation, name: string, state: VmState): DevvmError | null {
  if (allows(op, state)) return null;
  const expected = (OPERATIONS[op] as readonly VmState[]).filter((s) => s !== 'error');
  return new DevvmError('invalid-state', `cannot ${VERBS[op]} VM "${name}": it is ${state}`, `expected ${expected.join(' or ')}; ${wayOut(op, name, state)}`);
}

/** Throws the refusal when `op` does not fit `state`. */
export function assertAllowed(op: Operation, name: string, state: VmState): void {
  const r = refusal(op, name, state);
  if (r) throw r;
}

/** The refusal for a VM whose lock another operation holds. */
export function busy(name: string, running: string): DevvmError {
  return new DevvmError('busy', `VM "${name}" is busy (${running})`, 'wait for it to finish');
}
