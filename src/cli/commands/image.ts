/** Base images: build, pull, import, list, delete. */
import path from 'node:path';
import { bytes, outdatedImageNote, table } from '../../shared/format';
import { Rpc } from '../../shared/rpc';
import { choice, str, UsageError } from '../args';
import type { Command } from '../command';

/** Paths are the caller's, relative to the caller's directory (the helper's is another); URIs pass as they are. */
export function absolute(p: unknown): string | undefined {
  return typeof p === 'string' && !p.includes('://') ? path.resolve(p) : str(p);
}

export const FORMATS = ['qcow2', 'raw'] as const;

function builder(sub: 'build' | 'pull'): Command {
  return {
    name: `image ${sub}`,
    usage: sub === 'build' ? 'debian-12|debian-12-desktop [--name N]' : 'debian-12 [--name N]',
    summary: sub === 'build' ? 'build a base image from Debian packages\n(-desktop: with an X session that follows the display)' : 'download the official cloud image (checksum verified)',
    options: { name: { type: 'string' } },
    positionals: 1,
    async run(ctx, { values, positionals }) {
      const i = await ctx.call(sub === 'build' ? Rpc.imageBuild : Rpc.imagePull, ctx.withToken({ recipe: positionals[0]!, name: str(values.name) }));
      ctx.print(i, () => `image ${i.name} ready: ${i.file} (${bytes(i.actualSize)}, sha256 ${i.sha256?.slice(0, 16)}…)${i.outdated ? `\n${outdatedImageNote(i)}` : ''}`);
    },
  };
}

export const imageCommands: Command[] = [
  builder('build'),
  builder('pull'),
  {
    name: 'image import',
    usage: 'FILE|nbd://H:P/E --name N [--format qcow2|raw] [--flatten]\n[--kernel K --initrd I] [--copy]',
    summary: 'register a disk as a base: qcow2 unless --format raw,\nwith a backing file only if --flatten; an nbd:// base\nis used in place (read once per VM) unless --copy',
    options: { name: { type: 'string' }, format: { type: 'string' }, flatten: { type: 'boolean' }, kernel: { type: 'string' }, initrd: { type: 'string' }, copy: { type: 'boolean' } },
    positionals: 1,
    async run(ctx, { values, positionals }) {
      if (!values.name) throw new UsageError('--name is required');
      const i = await ctx.call(Rpc.imageImport, ctx.withToken({
        file: absolute(positionals[0])!,
        name: values.name as string,
        format: choice('--format', values.format, FORMATS),
        flatten: values.flatten === true || undefined,
        kernel: absolute(values.kernel),
        initrd: absolute(values.initrd),
        copy: values.copy === true || undefined,
      }));
      ctx.print(i, () => (i.sha256 ? `image ${i.name} imported: ${i.file} sha256 ${i.sha256}` : `image ${i.name} uses the base served at ${i.file}; each VM reads it once into its cache layer`));
    },
  },
  {
    name: 'image list',
    usage: '',
    summary: 'base images, their size and users',
    positionals: 0,
    async run(ctx) {
      const l = await ctx.call(Rpc.imageList);
      ctx.print(l, () => (l.length === 0 ? 'no images (build one with: devvm image build debian-12)' : table([
        ['NAME', 'SIZE', 'VIRTUAL', 'USED BY', 'SOURCE'],
        ...l.map((i) => [i.name, bytes(i.actualSize), bytes(i.virtualSize), i.usedBy.join(',') || '-', i.outdated ? `${i.source} (older recipe)` : i.source]),
      ])));
    },
  },
  {
    name: 'image delete',
    usage: 'NAME',
    summary: 'remove a base no VM uses',
    positionals: 1,
    async run(ctx, { positionals }) {
      await ctx.call(Rpc.imageDelete, { name: positionals[0]! });
      ctx.print({ deleted: positionals[0] }, () => `deleted image ${positionals[0]}`);
    },
  },
];
