/**
 * Wake on SSH: `devvm ssh-proxy` (the ProxyCommand of every Host block) asks for the VM to
 * run before it relays ssh's connection. A running VM whose SSH has worked answers at once;
 * a stopped or suspended one is started (resumed) through the normal start with waitSsh;
 * one that another operation holds (a start from a second ssh, an idle suspend under way)
 * is waited for, then looked at again.
 */
import { DevvmError } from '../../shared/errors';
import type { Progress } from '../images';
import type { WakePlan } from '../../shared/rpc';
import type { VmContext } from './context';
import { knownIdent, launchRecord } from './sshready';

export interface WakeDeps {
  /** The VM manager's start with waitSsh. */
  start(name: string, progress: Progress): Promise<unknown>;
  waitSsh(name: string, progress: Progress): Promise<void>;
  sleep?(ms: number): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function wake(ctx: VmContext, d: WakeDeps, name: string, progress: Progress): Promise<void> {
  for (let round = 0; ; round++) {
    const cfg = ctx.store.read(name);
    if (!cfg.ssh) throw new DevvmError('invalid-state', `SSH is disabled for VM "${name}"`, 'it was created with --no-ssh; use the serial console');
    const held = ctx.locks.get(name);
    if (held) {
      if (held.phase === 'deleting') throw new DevvmError('invalid-state', `VM "${name}" is being deleted`);
      progress(`waiting for ${held.phase} to finish`);
      await held.done;
      continue;
    }
    const state = ctx.state(name);
    if (state === 'running') {
      if (launchRecord(ctx, name).sshReady) return;
      await d.waitSsh(name, progress);
      return;
    }
    if (state === 'stopped' || state === 'suspended' || state === 'error') {
      try {
        progress(state === 'suspended' ? 'resuming' : 'booting');
        await d.start(name, progress);
        return;
      } catch (e) {
        // Another client's start or an idle suspend took the lock between our look and our start.
        if (e instanceof DevvmError && e.code === 'busy' && round < 100) continue;
        throw e;
      }
    }
    // creating: its build holds no lock we can wait on until vm.json exists.
    if (round > 1200) throw new DevvmError('timeout', `VM "${name}" stayed ${state}`);
    await (d.sleep ?? sleep)(500);
  }
}

/** Whether wake will answer at once, and the identification line ssh-proxy may send ssh meanwhile. */
export function wakePlan(ctx: VmContext, name: string): WakePlan {
  const cfg = ctx.store.read(name);
  const ready = ctx.state(name) === 'running' && !ctx.locks.get(name) && launchRecord(ctx, name).sshReady === true;
  return { ready, ident: cfg.ssh ? knownIdent(ctx, name) : null };
}
