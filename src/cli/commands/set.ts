/** `devvm set`: a VM's display (while stopped), idle suspend and autostart (any time). */
import { displaySize } from '../../shared/display';
import { idleSetting, idleText, type IdleSetting } from '../../shared/idle';
import { vmStateLine } from '../../shared/format';
import { Rpc } from '../../shared/rpc';
import { choice, str, UsageError } from '../args';
import type { Command } from '../command';
import { displayText } from './display';

/** `--idle-suspend MIN|off|default` (create takes no "default": it is what leaving it out means). */
export function idleArg(s: unknown, allowDefault = true): IdleSetting | undefined {
  if (s === undefined) return undefined;
  try {
    const x = idleSetting(s);
    if (x === 'default' && !allowDefault) throw new Error();
    return x;
  } catch {
    throw new UsageError(`--idle-suspend must be minutes (1-10080)${allowDefault ? ', off or default' : ' or off'}, got ${JSON.stringify(s)}`);
  }
}

export const setCommands: Command[] = [
  {
    name: 'set',
    usage: 'NAME [--display on|off] [--display-size WxH|auto]\n[--idle-suspend MIN|off|default] [--autostart on|off]',
    summary: 'change a VM. While stopped: its display (auto:\nfollows the Display tab; WxH: keeps that size).\nAny time: suspend after MIN minutes without SSH\nor console; start it when the helper starts',
    options: { display: { type: 'string' }, 'display-size': { type: 'string' }, 'idle-suspend': { type: 'string' }, autostart: { type: 'string' } },
    positionals: 1,
    async run(ctx, { values, positionals }) {
      const on = choice('--display', values.display, ['on', 'off'] as const);
      const ds = str(values['display-size']);
      const idle = idleArg(values['idle-suspend']);
      const auto = choice('--autostart', values.autostart, ['on', 'off'] as const);
      const s = await ctx.call(Rpc.vmSet, {
        name: positionals[0]!,
        ...(on ? { display: on === 'on' } : {}),
        ...(ds !== undefined ? { displaySize: displaySize(ds) } : {}),
        ...(idle !== undefined ? { idleSuspend: idle } : {}),
        ...(auto ? { autostart: auto === 'on' } : {}),
      });
      ctx.print(s, () => `${vmStateLine(s)}; display ${displayText(s.display)}; ${idleText(s.idleSuspendMin)}; autostart ${s.autostart ? 'on' : 'off'}`);
    },
  },
];
