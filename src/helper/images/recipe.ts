/**
 * What an image recipe is, and its hash: the cache directory of a built image is named
 * `<name>-<hash>`, where the hash covers everything that shapes the image, so a recipe
 * change builds a new image and an unchanged one finds its cached build.
 */
import { createHash } from 'node:crypto';
import { DevvmError } from '../../shared/errors';

export interface DebianRecipe {
  /** Bump when the code that interprets the recipe changes in a way that changes the image. */
  formatVersion: number;
  name: string;
  suite: string;
  /** `<suite>-updates` and `<suite>-security` are added when the mirror configuration offers them. */
  updates: boolean;
  security: boolean;
  variant: string;
  components: string[];
  packages: string[];
  /** mmdebstrap --essential-hook: runs after the essential packages, before the rest. */
  essentialHook: string;
  /** mmdebstrap --customize-hook: runs on the finished tree, `$1` is its root. */
  customizeHook: string;
  diskSizeBytes: number;
  mkfsOptions: string[];
  /** 'pvh': boot the ELF inside the kernel's bzImage through its PVH entry (no decompressor; images/kernel.ts). */
  kernel?: 'pvh';
  /** 'devvm': boot with the initramfs BOOT_TUNING makes (images/initrd.ts), not Debian's. */
  initrd?: 'devvm';
}

export const GiB = 1024 ** 3;

/** JSON with object keys sorted at every level, so equal recipes hash equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  if (typeof value === 'number' && !Number.isFinite(value)) throw new DevvmError('internal', 'recipe holds a non-finite number');
  return JSON.stringify(value);
}

export function recipeHash(recipe: DebianRecipe): string {
  return createHash('sha256').update(canonicalJson(recipe)).digest('hex').slice(0, 16);
}
