/** qcow2 layer files: creation and inspection through qemu-img. */
import { run } from './proc';
import { fsyncPath } from './store';
import type { LayerInfo, LayerRole } from '../shared/types';

export interface ImgInfo {
  format: string;
  virtualSize: number;
  actualSize: number;
  backingFile: string | null;
}

/**
 * `format`: what the file is known to be (passed as -f, so qemu does not probe). Give it
 * for every file a user supplied; without it qemu guesses from the bytes.
 */
export async function imgInfo(file: string, format?: string): Promise<ImgInfo> {
  // -U: a running VM holds a write lock on its layers; reading metadata is still safe.
  const { stdout } = await run('qemu-img', ['info', '-U', ...(format ? ['-f', format] : []), '--output=json', file]);
  const j = JSON.parse(stdout) as {
    format: string;
    'virtual-size': number;
    'actual-size'?: number;
    'full-backing-filename'?: string;
    'backing-filename'?: string;
  };
  return {
    format: j.format,
    virtualSize: j['virtual-size'],
    actualSize: j['actual-size'] ?? 0,
    backingFile: j['full-backing-filename'] ?? j['backing-filename'] ?? null,
  };
}

/** A new qcow2 on top of `backing`. O(1): only a header and empty tables are written. */
export async function createLayer(file: string, backing: string, backingFormat: string, sizeBytes?: number): Promise<void> {
  const args = ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', '-b', backing, '-F', backingFormat, file];
  if (sizeBytes !== undefined) args.push(String(sizeBytes));
  await run('qemu-img', args);
  // Flushed before any metadata names it.
  fsyncPath(file);
}

export async function layerInfo(role: LayerRole, file: string, readOnly: boolean, sharedBy: string[]): Promise<LayerInfo> {
  const i = await imgInfo(file);
  return { role, file, format: i.format, virtualSize: i.virtualSize, actualSize: i.actualSize, readOnly, sharedBy };
}
