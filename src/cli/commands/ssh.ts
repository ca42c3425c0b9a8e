/** SSH into a VM, and the ssh_config the helper writes for them. */
import path from 'node:path';
import { Rpc } from '../../shared/rpc';
import type { HelperInfo } from '../../shared/types';
import { str } from '../args';
import type { Command } from '../command';

/** The helper's ssh_config. A helper that predates `HelperInfo.sshConfig` keeps it in its home. */
function sshConfigOf(i: HelperInfo): string {
  return i.sshConfig ?? path.join(i.home, 'ssh_config');
}

export const sshCommands: Command[] = [
  {
    name: 'ssh',
    usage: 'NAME [-- CMD...]',
    summary: 'a shell (or CMD) in the VM as its user; a stopped\nor suspended VM is started or resumed first',
    positionals: 1,
    passThrough: true,
    async run(ctx, { positionals, rest }) {
      // This CLI wakes the VM itself (a stopped or suspended one starts, with its progress
      // line) and ssh then connects straight to its port: the config's ProxyCommand would
      // start a second node process and relay every byte through it.
      const t = await ctx.call(Rpc.vmWake, ctx.withToken({ name: positionals[0]! }));
      return ctx.exec('ssh', ['-F', t.configFile, '-o', 'ProxyCommand=none', t.host, ...(rest.length ? ['--', ...rest] : [])]);
    },
  },
  {
    name: 'ssh-proxy',
    usage: 'NAME',
    summary: "ssh's ProxyCommand in devvm's ssh_config: starts or\nresumes the VM, then relays to its SSH port",
    positionals: 1,
    async run(ctx, { positionals }) {
      const name = positionals[0]!;
      // ssh waits ConnectTimeout (VS Code's Remote-SSH: 15 s) for the server's identification
      // line and no longer, and a boot takes longer: a VM that is not ready gets the line its
      // sshd sent last time at once.
      const plan = await ctx.call(Rpc.vmWakePlan, { name });
      const early = plan.ready ? undefined : (plan.ident ?? undefined);
      if (early) ctx.output(`${early}\r\n`);
      const t = await ctx.call(Rpc.vmWake, ctx.withToken({ name }));
      return ctx.relay('127.0.0.1', t.port, early);
    },
  },
  {
    name: 'ssh-config',
    usage: '[--include [--user-config FILE]]',
    summary: "devvm's ssh_config; --include adds it to ~/.ssh/config",
    options: { include: { type: 'boolean' }, 'user-config': { type: 'string' } },
    positionals: 0,
    async run(ctx, { values }) {
      const file = sshConfigOf(await ctx.call(Rpc.ping));
      if (!values.include) {
        ctx.print({ file }, () => `${file}\nadd it to your ssh config with: devvm ssh-config --include`);
        return;
      }
      const r = await ctx.call(Rpc.sshInclude, { userConfig: str(values['user-config']) });
      ctx.print(r, () => (r.changed ? `added "Include ${file}" to ${r.file}${r.backup ? ` (backup: ${r.backup})` : ''}` : `${r.file} already includes ${file}`));
    },
  },
];
