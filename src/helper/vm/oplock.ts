/**
 * The per-VM operation lock. One operation at a time per VM; a compound operation
 * (restore of a running VM, delete --force, create --start) holds it throughout and
 * moves through phases, so nothing else runs in a gap between its steps. The phase is
 * the VM's state while it is a transitional one (starting, stopping...), or a label for
 * work that leaves the state as it is (snapshotting...).
 */
import { busy } from '../../shared/lifecycle';
import { VM_STATES, type VmState } from '../../shared/types';
import type { Instance } from '../driver/driver';

export type OpLabel = 'snapshotting' | 'restoring' | 'cloning' | 'attaching' | 'exporting' | 'configuring';
export type Phase = VmState | OpLabel;

export function isState(p: Phase): p is VmState {
  return (VM_STATES as readonly string[]).includes(p);
}

export interface Op {
  readonly phase: Phase;
  /** Moves the operation to its next step (emits a change). */
  set(phase: Phase): void;
  /** Aborted by stop --force / delete --force: the operation rolls back and ends. */
  readonly signal: AbortSignal;
  /** A VM process this operation launched and has not handed over yet (a start under way). */
  instance?: Instance;
}

interface Held extends Op {
  abort: AbortController;
  /** Settles (never rejects) when the operation has ended. */
  done: Promise<void>;
}

export class OpLocks {
  private readonly held = new Map<string, Held>();

  constructor(private readonly changed: (name: string) => void) {}

  get(name: string): Held | undefined {
    return this.held.get(name);
  }

  names(): string[] {
    return [...this.held.keys()];
  }

  /** The state the VM is in because of its operation, if that is a transitional state. */
  state(name: string): VmState | undefined {
    const p = this.held.get(name)?.phase;
    return p !== undefined && isState(p) ? p : undefined;
  }

  /** Runs `fn` holding the VM's lock; refused as busy when another operation holds it. */
  async run<T>(name: string, phase: Phase, fn: (op: Op) => Promise<T>): Promise<T> {
    const other = this.held.get(name);
    if (other) throw busy(name, other.phase);
    let finish!: () => void;
    const abort = new AbortController();
    const op: Held = {
      phase,
      abort,
      signal: abort.signal,
      done: new Promise<void>((r) => (finish = r)),
      set: (p: Phase) => {
        (op as { phase: Phase }).phase = p;
        this.changed(name);
      },
    };
    this.held.set(name, op);
    this.changed(name);
    try {
      return await fn(op);
    } finally {
      this.held.delete(name);
      finish();
      this.changed(name);
    }
  }
}
