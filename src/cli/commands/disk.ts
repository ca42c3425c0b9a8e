/** Extra disks on a running VM, and NBD exports of a VM's layers. */
import { Rpc } from '../../shared/rpc';
import { isNbdUri } from '../../shared/nbduri';
import type { NbdExport } from '../../shared/types';
import { choice } from '../args';
import type { Command } from '../command';
import { absolute, FORMATS } from './image';

function exportText(e: NbdExport): string {
  const lines = [`serving layer ${e.layer} of ${e.vm} read-only at ${e.uri}${e.tls ? '' : ` (try: qemu-img info ${e.uri})`}; stop with: devvm disk unexport ${e.vm}`];
  if (e.tls) lines.push(`TLS-PSK: identity ${e.tls.identity}, key file ${e.tls.pskFile} (give both to the client, e.g. qemu's tls-creds-psk)`);
  return lines.join('\n');
}

export const diskCommands: Command[] = [
  {
    name: 'disk attach',
    usage: 'NAME FILE|nbd://H:P/EXPORT [--format qcow2|raw] [--usb] [--read-only] [--tls-psk FILE]',
    summary: 'hot-plug a disk (a file is qcow2 unless --format raw;\n--tls-psk: the key file of a TLS-PSK nbd:// export)',
    options: { usb: { type: 'boolean' }, 'read-only': { type: 'boolean' }, format: { type: 'string' }, 'tls-psk': { type: 'string' } },
    positionals: 2,
    async run(ctx, { values, positionals }) {
      const [name, src] = positionals as [string, string];
      const d = await ctx.call(Rpc.diskAttach, {
        name,
        source: isNbdUri(src) ? src : absolute(src)!,
        usb: Boolean(values.usb),
        readOnly: Boolean(values['read-only']),
        format: choice('--format', values.format, FORMATS),
        tlsPskFile: absolute(values['tls-psk'] as string | undefined),
      });
      ctx.print(d, () => `attached ${d.source} to ${name} as ${d.id} (${d.bus}${d.readOnly ? ', read-only' : ''}); detach with: devvm disk detach ${name} ${d.id}`);
    },
  },
  {
    name: 'disk detach',
    usage: 'NAME ID',
    summary: 'unplug an attached disk',
    positionals: 2,
    async run(ctx, { positionals }) {
      await ctx.call(Rpc.diskDetach, { name: positionals[0]!, id: positionals[1]! });
      ctx.print({ detached: positionals[1] }, () => `detached ${positionals[1]} from ${positionals[0]}`);
    },
  },
  {
    name: 'disk export',
    usage: 'NAME [SNAP] [--tcp]',
    summary: 'serve a frozen layer read-only over NBD on a 0600\nunix socket (--tcp: 127.0.0.1 with TLS-PSK)',
    options: { tcp: { type: 'boolean' } },
    positionals: [1, 2],
    async run(ctx, { values, positionals }) {
      const e = await ctx.call(Rpc.diskExport, ctx.withToken({ name: positionals[0]!, snapshot: positionals[1], tcp: values.tcp === true || undefined }));
      ctx.print(e, () => exportText(e));
    },
  },
  {
    name: 'disk unexport',
    usage: 'NAME',
    summary: 'stop the NBD export',
    positionals: 1,
    async run(ctx, { positionals }) {
      await ctx.call(Rpc.diskUnexport, { name: positionals[0]! });
      ctx.print({ unexported: positionals[0] }, () => `stopped the NBD export of ${positionals[0]}`);
    },
  },
];
