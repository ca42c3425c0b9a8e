/** `devvm share` / `devvm unshare`: host folders in the guest (kept in the VM's configuration). */
import path from 'node:path';
import { Rpc } from '../../shared/rpc';
import { guestPath } from '../../shared/shares';
import type { ShareInfo } from '../../shared/types';
import type { Command } from '../command';

/** One share as `info` and `share` print it. */
export function shareText(s: ShareInfo): string {
  const how = s.transport ?? 'transport not decided';
  const state = s.mounted ? 'mounted' : `not mounted${s.problem ? `: ${s.problem}` : ''}`;
  return `${s.hostPath} -> ${s.guestPath} (${how}${s.readOnly ? ', read-only' : ''}; ${state})`;
}

export const shareCommands: Command[] = [
  {
    name: 'share',
    usage: 'NAME HOSTDIR [GUESTDIR] [--read-only]',
    summary: 'share a host folder into the guest (default: at\nthe same path); mounted now when the VM runs and\nthe transport allows, else at the next boot',
    options: { 'read-only': { type: 'boolean' } },
    positionals: [2, 3],
    async run(ctx, { values, positionals }) {
      const [name, host, guest] = positionals as [string, string, string | undefined];
      const s = await ctx.call(Rpc.vmShare, {
        name,
        // The helper's working directory is not ours: relative host paths are resolved here.
        hostPath: path.resolve(host),
        ...(guest !== undefined ? { guestPath: guestPath(guest) } : {}),
        readOnly: Boolean(values['read-only']),
      });
      ctx.print(s, () => `shared ${shareText(s)}`);
    },
  },
  {
    name: 'unshare',
    usage: 'NAME GUESTDIR',
    summary: 'unmount a shared folder and forget it',
    positionals: 2,
    async run(ctx, { positionals }) {
      const [name, guest] = positionals as [string, string];
      await ctx.call(Rpc.vmUnshare, { name, guestPath: guest });
      ctx.print({ unshared: guest }, () => `unshared ${guest} from ${name}`);
    },
  },
];
