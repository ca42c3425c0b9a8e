/**
 * The image cache's directory rules: a finished build is `<name>-<hash>/` holding every
 * file below (never a partial one), a build in progress a private `.<name>-<hash>.tmp-*`
 * dir, and a lock file per recipe hash so two builds of the same recipe do not both run.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DevvmError } from '../../shared/errors';
import { log } from '../log';
import { pidAlive, run } from '../proc';

export interface BuiltImage {
  disk: string;
  kernel: string;
  initrd: string;
  recipeHash: string;
  dir: string;
}

const FILES = ['disk.qcow2', 'vmlinuz', 'initrd.img', 'recipe.json'] as const;

export function isComplete(dir: string, hash: string): boolean {
  if (!FILES.every((f) => existsSync(path.join(dir, f)))) return false;
  try {
    return (JSON.parse(readFileSync(path.join(dir, 'recipe.json'), 'utf8')) as { hash?: string }).hash === hash;
  } catch {
    return false;
  }
}

export function result(dir: string, hash: string): BuiltImage {
  return { disk: path.join(dir, 'disk.qcow2'), kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.img'), recipeHash: hash, dir };
}

/** Mount points at or below `dir` (from /proc/self/mountinfo; none where that is absent). */
function mountsUnder(dir: string): string[] {
  let info = '';
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info
    .split('\n')
    .map((l) => unescape(l.split(' ')[4] ?? ''))
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/**
 * rm -rf that never crosses into a mount point: a build killed at the wrong moment could
 * leave the host's /dev, /proc or /sys mounted inside the tree, and deleting through those
 * would damage the host. Such a tree is left in place and reported instead.
 */
export async function removeTree(dir: string, unprivilegedTree = false): Promise<void> {
  if (!existsSync(dir)) return;
  if (mountsUnder(dir).length) {
    await run('umount', ['--recursive', '--lazy', dir]).catch(() => undefined);
    if (mountsUnder(dir).length) {
      log.warn(`not removing ${dir}: something is still mounted inside it`);
      return;
    }
  }
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch (e) {
    // A tree unpacked in a user namespace holds files owned by subordinate ids that only
    // that namespace's root may delete.
    if (!unprivilegedTree) throw e;
    await run('unshare', ['--user', '--map-auto', '--map-root-user', 'rm', '-rf', '--one-file-system', dir]);
  }
}

/**
 * Removes temp dirs of builds whose process is gone (killed helper, power loss). Only
 * those untouched for an hour: a build in another PID namespace (a container sharing the
 * cache) has a pid that looks dead from here.
 */
export async function removeStaleBuilds(imagesDir: string): Promise<void> {
  let names: string[] = [];
  try {
    names = readdirSync(imagesDir);
  } catch {
    return;
  }
  for (const n of names) {
    // Any recipe's temp dir: `.<name>-<hash>.tmp-<pid>-<random>` (see build.ts).
    const m = /^\.[a-z0-9][a-z0-9.-]*-[0-9a-f]+\.tmp-(\d+)-[0-9a-f]+(\.old)?$/.exec(n);
    let age = 0;
    try {
      age = Date.now() - statSync(path.join(imagesDir, n)).mtimeMs;
    } catch {
      continue;
    }
    if (m && !pidAlive(Number(m[1])) && age > 3600_000) {
      log.info(`removing the leftovers of an interrupted image build: ${n}`);
      await removeTree(path.join(imagesDir, n), process.getuid?.() !== 0).catch((e) => log.warn(`cannot remove ${n}: ${(e as Error).message}`));
    }
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(t);
      reject(new DevvmError('invalid-state', 'image build was cancelled'));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/**
 * A lock file (pid inside) so two builds of the same recipe do not both spend minutes on
 * it: the second waits for the first and then finds its result. Correctness does not depend
 * on it (unique temp dirs, rename that tolerates losing); a lock whose process is gone is
 * taken over.
 */
export async function acquireLock(lock: string, onWait: (pid: number) => void, signal?: AbortSignal): Promise<() => void> {
  let announced = false;
  for (;;) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
      return () => {
        try {
          if (readFileSync(lock, 'utf8').trim() === String(process.pid)) unlinkSync(lock);
        } catch {
          // already gone
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let owner = 0;
    try {
      owner = Number(readFileSync(lock, 'utf8').trim()) || 0;
    } catch {
      continue; // released between our two calls
    }
    if (!owner || owner === process.pid || !pidAlive(owner)) {
      try {
        unlinkSync(lock);
      } catch {
        // someone else took it over first
      }
      continue;
    }
    if (!announced) onWait(owner);
    announced = true;
    await sleep(1000, signal);
  }
}
