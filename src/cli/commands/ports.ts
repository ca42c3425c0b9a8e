/** Port forwards: automatic ones (every TCP port a guest process listens on) and static ones. */
import { parsePortSpec, portNumber, portSpecText } from '../../shared/portspec';
import { portsText } from '../../shared/format';
import { Rpc } from '../../shared/rpc';
import { DevvmError } from '../../shared/errors';
import { UsageError } from '../args';
import type { Command } from '../command';

/** A spec from the command line: usage errors for what cannot be a forward at all. */
export function portArg(text: string, udp: boolean): ReturnType<typeof parsePortSpec> {
  try {
    return parsePortSpec(text, udp);
  } catch (e) {
    if (e instanceof DevvmError) throw new UsageError(e.hint ? `${e.message} (${e.hint})` : e.message);
    throw e;
  }
}

export const portCommands: Command[] = [
  {
    name: 'ports',
    usage: 'NAME',
    summary: 'every forward: automatic (guest listeners) and static',
    positionals: 1,
    async run(ctx, { positionals }) {
      const s = await ctx.call(Rpc.vmPortStatus, { name: positionals[0]! });
      ctx.print(s.ports, () => portsText(s.ports, s.auto));
    },
  },
  {
    name: 'port add',
    usage: 'NAME [ADDR:]HOSTPORT:GUESTPORT [--udp]',
    summary: 'a static forward (kept; live on a running VM)',
    options: { udp: { type: 'boolean' } },
    positionals: 2,
    async run(ctx, { values, positionals }) {
      const spec = portArg(positionals[1]!, Boolean(values.udp));
      const f = await ctx.call(Rpc.vmPortAdd, { name: positionals[0]!, ...spec });
      ctx.print(f, () => `forwarding ${portSpecText(f)}${f.active ? '' : ' (when the VM runs)'}${f.note ? `; ${f.note}` : ''}`);
    },
  },
  {
    name: 'port remove',
    usage: 'NAME HOSTPORT [--udp]',
    summary: 'drop a static forward',
    options: { udp: { type: 'boolean' } },
    positionals: 2,
    async run(ctx, { values, positionals }) {
      let hostPort: number;
      try {
        hostPort = portNumber('the host port', positionals[1]);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      const protocol = values.udp ? 'udp' : 'tcp';
      await ctx.call(Rpc.vmPortRemove, { name: positionals[0]!, protocol, hostPort });
      ctx.print({ removed: { protocol, hostPort } }, () => `removed the forward of host port ${hostPort}${protocol === 'udp' ? '/udp' : ''}`);
    },
  },
];
