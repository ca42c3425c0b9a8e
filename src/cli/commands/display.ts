/** A VM's screen from a terminal: look at it, resize it, attach a VNC viewer (turning it on or off: set.ts). */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { displaySize, sizeText, type DisplaySize, type Size } from '../../shared/display';
import { Rpc } from '../../shared/rpc';
import type { DisplayInfo } from '../../shared/types';
import { str, UsageError } from '../args';
import type { Command } from '../command';

/** "follows the view (boots at 1920x1200)" or "1280x800" or "none". */
export function displayText(d: DisplaySize | null | undefined): string {
  if (!d) return 'none';
  return d === 'auto' ? 'follows the view' : `fixed at ${sizeText(d)}`;
}

function infoText(i: DisplayInfo): string {
  if (!i.display) return `${i.name} has no display (turn one on while it is stopped: devvm set ${i.name} --display on)`;
  const lines = [`${i.name}: display ${displayText(i.display)}, boots at ${sizeText(i.bootSize!)}; ${i.size ? `now ${sizeText(i.size)}` : `the VM is ${i.state}`}`];
  if (i.socket) {
    lines.push(
      `VNC server: unix socket ${i.socket} (0600, no password: only you can open it)`,
      'In VS Code: "Dev VMs: Open Display". Any other VNC viewer, through a TCP port on 127.0.0.1:',
      `  socat TCP-LISTEN:5901,bind=127.0.0.1,reuseaddr,fork UNIX-CONNECT:${i.socket}`,
      '  vncviewer 127.0.0.1:5901',
      'While socat runs, every local user can reach that port: stop it when done.',
    );
  }
  return lines.join('\n');
}

function size(s: string | undefined): Size | undefined {
  if (s === undefined) return undefined;
  const d = displaySize(s);
  if (d === 'auto') throw new UsageError('--size takes WIDTHxHEIGHT');
  return d;
}

export const displayCommands: Command[] = [
  {
    name: 'display',
    usage: 'NAME [--size WxH]',
    summary: 'where its screen is and how to attach a VNC viewer;\n--size asks the guest for a resolution',
    options: { size: { type: 'string' } },
    positionals: 1,
    async run(ctx, { values, positionals }) {
      const name = positionals[0]!;
      const want = size(str(values.size));
      if (want) {
        const r = await ctx.call(Rpc.vmDisplayResize, { name, ...want });
        const info = await ctx.call(Rpc.vmDisplay, { name });
        ctx.print({ ...info, resize: r }, () => (r.applied ? `${name}: now ${sizeText(r.size)} (${r.ms} ms)` : `${name}: the guest shows ${sizeText(r.size)}, not ${sizeText(r.requested)} (it is still booting, or a text console cannot grow beyond the size it booted at; it gets the size when it next sets a mode)`));
        return;
      }
      const info = await ctx.call(Rpc.vmDisplay, { name });
      ctx.print(info, () => infoText(info));
    },
  },
  {
    name: 'screenshot',
    usage: 'NAME FILE.png',
    summary: 'save its screen as a PNG',
    positionals: 2,
    async run(ctx, { positionals }) {
      const [name, file] = positionals as [string, string];
      if (!file.toLowerCase().endsWith('.png')) throw new UsageError('the screenshot is a PNG: give a FILE.png');
      const shot = await ctx.call(Rpc.vmScreenshot, { name });
      writeFileSync(file, Buffer.from(shot.png, 'base64'));
      ctx.print({ file: path.resolve(file), width: shot.width, height: shot.height }, () => `wrote ${file} (${shot.width}x${shot.height})`);
    },
  },
];
