/** What this host can do and what to fix. */
import { doctorLines } from '../../shared/format';
import { Rpc } from '../../shared/rpc';
import type { Command } from '../command';

export const doctorCommands: Command[] = [
  {
    name: 'doctor',
    usage: '',
    summary: 'accelerator, native addon, tools, what to fix',
    positionals: 0,
    async run(ctx) {
      const d = await ctx.call(Rpc.doctor);
      ctx.print(d, () => doctorLines(d).join('\n'));
    },
  },
];
