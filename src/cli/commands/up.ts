/** `devvm up [DIR]` and `devvm down [DIR]`: a folder's devvm.json VM (src/shared/devvmjson/up.ts does the work). */
import path from 'node:path';
import { shellQuote } from '../../shared/devvmjson/shell';
import { down, up, type UpResult } from '../../shared/devvmjson/up';
import type { Command, Context } from '../command';

/** Output arrives in chunks; the progress line redraws over the current line, so only whole lines are written while it shows. */
export function lineWriter(ctx: Pick<Context, "step" | "output">): { write(text: string): void; flush(): void } {
  let pending = '';
  return {
    write(text) {
      pending += text;
      const end = pending.lastIndexOf('\n');
      if (end < 0) return;
      ctx.step();
      ctx.output(pending.slice(0, end + 1));
      pending = pending.slice(end + 1);
    },
    flush() {
      if (pending) ctx.output(`${pending}\n`);
      pending = '';
    },
  };
}

export function connectText(r: UpResult): string {
  return [
    `VM ${r.name} is ready${r.created ? ' (new)' : ''}${r.replaced ? `; it replaced ${r.replaced}` : ''}.`,
    ...(r.unsupported ? [`not set up (this helper does not support them yet): ${r.unsupported.join(', ')}`] : []),
    ...(r.changed.length && !r.created ? [`devvm.json differs from the VM in: ${r.changed.join(', ')}`] : []),
    `connect: ssh ${r.sshHost}   (or: devvm ssh ${r.name}; for plain ssh, once: devvm ssh-config --include)`,
    `VS Code: code --remote ssh-remote+${r.sshHost} ${/^[A-Za-z0-9_.\/@:+,=-]+$/.test(r.guestPath) ? r.guestPath : shellQuote(r.guestPath)}`,
  ].join('\n');
}

export const upCommands: Command[] = [
  {
    name: 'up',
    usage: '[DIR] [--rebuild | --apply]',
    summary: "make, start and provision DIR's devvm.json VM\n(default DIR: the current folder)",
    options: { rebuild: { type: 'boolean' }, apply: { type: 'boolean' } },
    positionals: [0, 1],
    async run(ctx, { values, positionals }) {
      const dir = path.resolve(positionals[0] ?? '.');
      const conn = await ctx.connection();
      const { progressToken } = ctx.withToken({});
      const out = lineWriter(ctx);
      let r: UpResult;
      try {
        // Running `devvm up` in a folder is the user's trust in it.
        r = await up(conn, { dir, trusted: true, rebuild: Boolean(values.rebuild), apply: Boolean(values.apply), progressToken }, { step: (m) => ctx.step(m), output: (t) => out.write(t) });
      } finally {
        out.flush();
        ctx.step();
      }
      ctx.print(r, () => connectText(r));
    },
  },
  {
    name: 'down',
    usage: '[DIR]',
    summary: "stop DIR's devvm.json VM",
    positionals: [0, 1],
    async run(ctx, { positionals }) {
      const name = await down(await ctx.connection(), path.resolve(positionals[0] ?? '.'));
      ctx.print({ name, state: 'stopped' }, () => `stopped ${name}`);
    },
  },
];
