/** The helper daemon itself. */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Rpc } from '../../shared/rpc';
import { writeFileAtomic } from '../../helper/store';
import type { Command, Context } from '../command';
import { renderUnit, UNIT_NAME, unitFile } from '../systemd';

const NO_USER_BUS = 'systemctl --user does not work here (no systemd user session, as in most containers)';

/** systemctl --user ARGS; false when there is no user manager to ask. */
async function systemctl(ctx: Context, args: string[]): Promise<boolean> {
  return (await ctx.exec('systemctl', ['--user', ...args])) === 0;
}

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
      let gone = false;
      void closed.then(() => (gone = true));
      // The helper exits right after answering; under load its exit can win the race with
      // the answer. The socket closing is the answer this request wants.
      await ctx.call(Rpc.shutdown, { stopVms: Boolean(values['stop-vms']) }).catch(async (e: unknown) => {
        await new Promise((r) => setTimeout(r, 50));
        if (!gone) throw e;
      });
      await Promise.race([closed, new Promise((r) => setTimeout(r, 120_000).unref())]);
      ctx.print({ stopped: true }, () => 'helper stopped');
    },
  },
  {
    name: 'helper install',
    usage: '',
    summary: 'run the helper at login: a systemd user unit, enabled\n(VMs marked --autostart start with it)',
    positionals: 0,
    async run(ctx) {
      const file = unitFile();
      // dist/helper.js sits next to dist/cli.js; this node runs it.
      const text = renderUnit({ node: process.execPath, helper: path.join(__dirname, 'helper.js'), env: process.env });
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      writeFileAtomic(file, text);
      const enabled = (await systemctl(ctx, ['daemon-reload'])) && (await systemctl(ctx, ['enable', UNIT_NAME]));
      ctx.print({ unit: file, enabled }, () =>
        enabled
          ? `wrote ${file} and enabled it: the helper starts at your next login (this one keeps serving now)`
          : `wrote ${file}, but did not enable it: ${NO_USER_BUS}; where a user session runs: systemctl --user enable ${UNIT_NAME}`);
    },
  },
  {
    name: 'helper uninstall',
    usage: '',
    summary: 'remove that unit (a running helper keeps running)',
    positionals: 0,
    async run(ctx) {
      const file = unitFile();
      if (!existsSync(file)) {
        ctx.print({ unit: file, removed: false }, () => `no ${file}: nothing to remove`);
        return;
      }
      const disabled = await systemctl(ctx, ['disable', UNIT_NAME]);
      rmSync(file, { force: true });
      if (disabled) await systemctl(ctx, ['daemon-reload']);
      ctx.print({ unit: file, removed: true, disabled }, () => `removed ${file}${disabled ? ' and disabled it' : ` (${NO_USER_BUS}: nothing to disable)`}`);
    },
  },
];
