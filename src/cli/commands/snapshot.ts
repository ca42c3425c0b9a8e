/** Disk history: snapshots, restore, clone, and the layer tree they make. */
import { layerTreeLines, table } from '../../shared/format';
import { Rpc } from '../../shared/rpc';
import { str, UsageError } from '../args';
import type { Command } from '../command';

export const snapshotCommands: Command[] = [
  {
    name: 'snapshot',
    usage: 'NAME SNAP [--ram] [--delete]',
    summary: 'freeze the disk (--ram: also RAM); --delete drops it',
    options: { ram: { type: 'boolean' }, delete: { type: 'boolean' } },
    positionals: 2,
    async run(ctx, { values, positionals }) {
      const [name, snapshot] = positionals as [string, string];
      if (values.delete) {
        if (values.ram) throw new UsageError('--ram and --delete do not go together');
        await ctx.call(Rpc.vmSnapshotDelete, { name, snapshot });
        ctx.print({ deleted: snapshot }, () => `deleted snapshot ${snapshot} of ${name}`);
        return;
      }
      const r = await ctx.call(Rpc.vmSnapshot, ctx.withToken({ name, snapshot, ram: Boolean(values.ram) }));
      ctx.print(r, () => `snapshot ${r.name} of ${name} taken (layer ${r.layer}${r.ram ? ', with RAM' : ''}); restore with: devvm restore ${name} ${r.name}`);
    },
  },
  {
    name: 'snapshots',
    usage: 'NAME',
    summary: "a VM's snapshots",
    positionals: 1,
    async run(ctx, { positionals }) {
      const i = await ctx.call(Rpc.vmInfo, { name: positionals[0]! });
      ctx.print(i.snapshots, () => (i.snapshots.length === 0 ? `${i.name} has no snapshots (take one with: devvm snapshot ${i.name} NAME)` : table([
        ['NAME', 'RAM', 'LAYER', 'TAKEN'],
        ...i.snapshots.map((s) => [s.name, s.ram ? 'yes' : 'no', s.layer, s.createdAt]),
      ])));
    },
  },
  {
    name: 'restore',
    usage: 'NAME SNAP',
    summary: 'go back to a snapshot (a new overlay on its layer)',
    positionals: 2,
    async run(ctx, { positionals }) {
      const s = await ctx.call(Rpc.vmRestore, ctx.withToken({ name: positionals[0]!, snapshot: positionals[1]! }));
      ctx.print(s, () => `${s.name} restored to ${positionals[1]} (${s.state})`);
    },
  },
  {
    name: 'clone',
    usage: 'SRC DST [--snapshot SNAP] [--start]',
    summary: 'a new VM on the disk of another (no copy)',
    options: { snapshot: { type: 'string' }, start: { type: 'boolean' } },
    positionals: 2,
    async run(ctx, { values, positionals }) {
      const s = await ctx.call(Rpc.vmClone, ctx.withToken({ source: positionals[0]!, name: positionals[1]!, snapshot: str(values.snapshot), start: Boolean(values.start) }));
      ctx.print(s, () => `cloned ${positionals[0]} to ${s.name} (${s.state}, SSH port ${s.sshPort ?? '-'})`);
    },
  },
  {
    name: 'layers',
    usage: '',
    summary: 'the layer tree of every VM',
    positionals: 0,
    async run(ctx) {
      const nodes = await ctx.call(Rpc.layerTree);
      const lines = layerTreeLines(nodes);
      ctx.print(nodes, () => (lines.length ? lines.join('\n') : 'no layers'));
    },
  },
];
