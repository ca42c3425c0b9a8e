/** `devvm set`: a VM's size and display (while stopped), idle suspend and autostart (any time). */
import { displaySize } from '../../shared/display';
import { idleSetting, idleText, type IdleSetting } from '../../shared/idle';
import { vmStateLine } from '../../shared/format';
import { Rpc } from '../../shared/rpc';
import type { VmSummary } from '../../shared/types';
import { choice, int, str, UsageError } from '../args';
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

/** `--disk GiB` or `--disk +GiB` (grow by that much): the helper only takes the new size. */
export function diskArg(s: unknown): { grow: boolean; gib: number } | undefined {
  if (s === undefined) return undefined;
  const m = typeof s === 'string' ? /^(\+?)(\d+)$/.exec(s.trim()) : null;
  if (!m) throw new UsageError(`--disk must be GiB or +GiB (grow by that much), got ${JSON.stringify(s)}`);
  return { grow: m[1] === '+', gib: Number(m[2]) };
}

/** "web: 2 CPUs, 1536 MiB, disk 30 GiB (grows at the next boot)": what the size change did. */
export function sizeLine(before: VmSummary, after: VmSummary): string {
  const parts: string[] = [];
  if (after.cpus !== before.cpus) parts.push(`${after.cpus} CPU${after.cpus === 1 ? '' : 's'}`);
  if (after.memoryMiB !== before.memoryMiB) parts.push(`${after.memoryMiB} MiB`);
  if (after.diskGiB !== before.diskGiB) parts.push(`disk ${after.diskGiB} GiB (grows at the next boot)`);
  if (parts.length) return `${after.name}: ${parts.join(', ')}`;
  return `${after.name}: size unchanged (${after.cpus} CPU${after.cpus === 1 ? '' : 's'}, ${after.memoryMiB} MiB, disk ${after.diskGiB} GiB)`;
}

export const setCommands: Command[] = [
  {
    name: 'set',
    usage: 'NAME [--cpus N] [--memory MiB] [--disk GiB|+GiB]\n[--display on|off] [--display-size WxH|auto]\n[--idle-suspend MIN|off|default] [--autostart on|off]',
    summary: 'change a VM. While stopped: its size (the disk\nonly grows; the guest\'s filesystem follows at the\nnext boot) and display (auto: follows the Display\ntab; WxH: keeps that size). Any time: suspend\nafter MIN minutes without SSH or console; start\nit when the helper starts',
    options: {
      cpus: { type: 'string' }, memory: { type: 'string' }, disk: { type: 'string' },
      display: { type: 'string' }, 'display-size': { type: 'string' }, 'idle-suspend': { type: 'string' }, autostart: { type: 'string' },
    },
    positionals: 1,
    async run(ctx, { values, positionals }) {
      const name = positionals[0]!;
      const cpus = int('--cpus', values.cpus);
      const memoryMiB = int('--memory', values.memory);
      const disk = diskArg(values.disk);
      const on = choice('--display', values.display, ['on', 'off'] as const);
      const ds = str(values['display-size']);
      const idle = idleArg(values['idle-suspend']);
      const auto = choice('--autostart', values.autostart, ['on', 'off'] as const);
      const sized = cpus !== undefined || memoryMiB !== undefined || disk !== undefined;
      // The size before, to say what changed (and what +GiB grows from).
      const before = sized ? (await ctx.call(Rpc.vmList)).find((s) => s.name === name) : undefined;
      const diskGiB = disk && (disk.grow ? (before?.diskGiB ?? 0) + disk.gib : disk.gib);
      const s = await ctx.call(Rpc.vmSet, {
        name,
        ...(cpus !== undefined ? { cpus } : {}),
        ...(memoryMiB !== undefined ? { memoryMiB } : {}),
        ...(diskGiB !== undefined ? { diskGiB } : {}),
        ...(on ? { display: on === 'on' } : {}),
        ...(ds !== undefined ? { displaySize: displaySize(ds) } : {}),
        ...(idle !== undefined ? { idleSuspend: idle } : {}),
        ...(auto ? { autostart: auto === 'on' } : {}),
      });
      const others = on !== undefined || ds !== undefined || idle !== undefined || auto !== undefined;
      const settings = `${vmStateLine(s)}; display ${displayText(s.display)}; ${idleText(s.idleSuspendMin)}; autostart ${s.autostart ? 'on' : 'off'}`;
      ctx.print(s, () => [...(sized && before ? [sizeLine(before, s)] : []), ...(others || !sized ? [settings] : [])].join('\n'));
    },
  },
];
