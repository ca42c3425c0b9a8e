/** Host USB devices handed to a running VM. */
import { table } from '../../shared/format';
import { Rpc } from '../../shared/rpc';
import type { Command } from '../command';

export const usbCommands: Command[] = [
  {
    name: 'usb list',
    usage: '',
    summary: "the host's USB devices and where they are attached",
    positionals: 0,
    async run(ctx) {
      const l = await ctx.call(Rpc.usbList);
      ctx.print(l, () => (l.length === 0 ? 'no USB devices on this host' : table([
        ['ID', 'VENDOR:PRODUCT', 'NAME', 'NODE', 'ATTACHED TO'],
        ...l.map((d) => [d.id, `${d.vendorId}:${d.productId}`, [d.manufacturer, d.product].filter(Boolean).join(' ') || '-', d.devnode, d.attachedTo ?? '-']),
      ])));
    },
  },
  {
    name: 'usb attach',
    usage: 'NAME DEV',
    summary: 'pass DEV through (1-2.3, VENDOR:PRODUCT, BUS/DEV)',
    positionals: 2,
    async run(ctx, { positionals }) {
      const params = { name: positionals[0]!, device: positionals[1]! };
      const d = await ctx.call(Rpc.usbAttach, params);
      ctx.print(d, () => `attached USB ${d.id} (${d.product ?? `${d.vendorId}:${d.productId}`}) to ${params.name}`);
    },
  },
  {
    name: 'usb detach',
    usage: 'NAME DEV',
    summary: 'give a device back to the host',
    positionals: 2,
    async run(ctx, { positionals }) {
      const params = { name: positionals[0]!, device: positionals[1]! };
      await ctx.call(Rpc.usbDetach, params);
      ctx.print({ detached: params.device }, () => `detached USB ${params.device} from ${params.name}`);
    },
  },
];
