/** The helper daemon itself. */
import { Rpc } from '../../shared/rpc';
import type { Command } from '../command';

export const helperCommands: Command[] = [
  {
    name: 'helper status',
    usage: '',
    summary: 'the helper of this DEVVM_HOME (started if none runs)',
    positionals: 0,
    async run(ctx) {
      const i = await ctx.call(Rpc.ping);
      ctx.print(i, () => `helper ${i.pid} (devvm ${i.version}) serving ${i.home} since ${i.startedAt}`);
    },
  },
  {
    name: 'helper stop',
    usage: '[--stop-vms]',
    summary: 'stop the helper (VMs keep running unless --stop-vms)',
    options: { 'stop-vms': { type: 'boolean' } },
    positionals: 0,
    async run(ctx, { values }) {
      // Return only once the helper is gone (its socket closes as it exits), so a caller
      // may remove DEVVM_HOME or start another helper right after.
      const { closed } = await ctx.untilClosed();
      await ctx.call(Rpc.shutdown, { stopVms: Boolean(values['stop-vms']) });
      await Promise.race([closed, new Promise((r) => setTimeout(r, 120_000).unref())]);
      ctx.print({ stopped: true }, () => 'helper stopped');
    },
  },
];
