/**
 * Builds a Debian image from its recipe with mmdebstrap: an ext4 filesystem directly on
 * /dev/vda (no partition table, no bootloader) plus the kernel and initrd for QEMU's
 * direct kernel boot. Cached under `<cacheRoot>/images/<name>-<hash>/` (see cachedir.ts),
 * built in a private temp dir and renamed into place, so a directory with that name is
 * always complete.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { asDevvmError, DevvmError } from '../../shared/errors';
import { log } from '../log';
import { ProcessError, run } from '../proc';
import { acquireLock, type BuiltImage, isComplete, removeStaleBuilds, removeTree, result } from './cachedir';
import { DEVVM_INITRD_PATH } from './initrd';
import { unpackKernel } from './kernel';
import { MmdebstrapProgress, type ProgressFn } from './progress';
import { type DebianRecipe, GiB, recipeHash } from './recipe';
import { debianSources, hostAptFiles } from './sources';

export interface BuildOptions {
  cacheRoot: string;
  signal?: AbortSignal;
  onProgress?: (message: string, fraction?: number) => void;
}

/** Share of the whole build per step, from measured runs (mmdebstrap dominates). */
const SPAN = { mmdebstrap: [0, 0.88], mkfs: [0.88, 0.95], convert: [0.95, 0.995] } as const;

function e2fsprogsVersion(text: string): number[] {
  const m = /(?:mke2fs|mkfs\.ext4) (\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : [0, 0, 0];
}

const atLeast = (v: number[], want: number[]) => {
  for (let i = 0; i < want.length; i++) if ((v[i] ?? 0) !== want[i]) return (v[i] ?? 0) > want[i];
  return true;
};

/**
 * Builds the image of `recipe` (or returns the cached one at once).
 *
 * As root: mmdebstrap writes the tree to a directory (in its unshare mode, which as root
 * only unshares the mount namespace, so a killed build cannot leave /proc, /sys or /dev
 * bind mounts behind in the temp dir), then `mkfs.ext4 -d` turns it into the filesystem.
 *
 * Without root: mmdebstrap's unshare mode (user namespaces; needs /etc/subuid and
 * /etc/subgid entries, as adduser makes) writes a tarball whose entries carry the right
 * owners. e2fsprogs >= 1.47.1 makes the filesystem straight from the tarball. Older
 * e2fsprogs: the tarball is unpacked and `mkfs.ext4 -d` run inside
 * `unshare --user --map-auto --map-root-user`, where the caller is uid 0 and the
 * subordinate ids stand for the image's other users, so the filesystem records the owners
 * the tarball had, and the files it writes belong to the caller.
 */
export async function buildImage(recipe: DebianRecipe, opts: BuildOptions): Promise<BuiltImage> {
  const hash = recipeHash(recipe);
  const imagesDir = path.join(opts.cacheRoot, 'images');
  const finalDir = path.join(imagesDir, `${recipe.name}-${hash}`);
  if (isComplete(finalDir, hash)) return result(finalDir, hash);

  const progress: ProgressFn = (m, f) => opts.onProgress?.(m, f);
  mkdirSync(imagesDir, { recursive: true, mode: 0o755 });
  const release = await acquireLock(`${finalDir}.lock`, (pid) => progress(`waiting for another build of this image (process ${pid})`), opts.signal);
  try {
    if (isComplete(finalDir, hash)) return result(finalDir, hash);
    await removeStaleBuilds(imagesDir);
    return await build(recipe, hash, imagesDir, finalDir, progress, opts.signal);
  } finally {
    release();
  }
}

async function build(recipe: DebianRecipe, hash: string, imagesDir: string, finalDir: string, progress: ProgressFn, signal?: AbortSignal): Promise<BuiltImage> {
  const started = performance.now();
  const asRoot = process.getuid?.() === 0;
  try {
    // tree (~0.8 GB) + raw filesystem (~0.8 GB allocated) + qcow2 (~0.8 GB)
    const free = statfsSync(imagesDir);
    if (free.bavail * free.bsize < 3 * GiB) {
      throw new DevvmError('io', `not enough free space in ${imagesDir} to build the ${recipe.name} image`, 'it needs about 3 GiB while building, 0.8 GiB after');
    }
  } catch (e) {
    if (e instanceof DevvmError) throw e; // statfs unsupported: carry on
  }

  const sources = debianSources(recipe, hostAptFiles(), process.env.DEVVM_DEBIAN_MIRROR);
  const tmp = path.join(imagesDir, `.${recipe.name}-${hash}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp, { mode: 0o755 });
  const tree = path.join(tmp, 'root');
  const tarball = path.join(tmp, 'rootfs.tar');
  const raw = path.join(tmp, 'disk.raw');
  let unprivilegedTree = false;
  log.info(`building ${recipe.name} (${hash}) in ${tmp} ${asRoot ? 'as root' : 'without root'}; sources (${sources.origin}): ${sources.entries.join(' | ')}`);
  try {
    // 1. packages, customization, kernel and initrd
    const [m0, m1] = SPAN.mmdebstrap;
    const mm = new MmdebstrapProgress((msg, f) => progress(msg, m0 + (m1 - m0) * f));
    progress('downloading and installing packages', 0);
    const t0 = performance.now();
    // Registered before run() registers its own, so it sees the process tree intact.
    const killTree = () => killProcessTree(tmp);
    signal?.addEventListener('abort', killTree, { once: true });
    try {
      await run(
        'mmdebstrap',
        [
          '--verbose',
          '--mode=unshare',
          `--variant=${recipe.variant}`,
          `--components=${recipe.components.join(',')}`,
          `--include=${recipe.packages.join(',')}`,
          `--essential-hook=${recipe.essentialHook}`,
          `--customize-hook=${recipe.customizeHook}`,
          // special hooks run outside the chroot as the caller: they can write into tmp in both modes
          `--customize-hook=download /vmlinuz ${shq(path.join(tmp, 'vmlinuz'))}`,
          `--customize-hook=download ${recipe.initrd === 'devvm' ? DEVVM_INITRD_PATH : '/initrd.img'} ${shq(path.join(tmp, 'initrd.img'))}`,
          recipe.suite,
          asRoot ? tree : tarball,
          // Mirrors are always explicit: without one, mmdebstrap reads sources from stdin.
          ...sources.entries,
        ],
        { signal, env: sbinPath(), onOutput: (c) => mm.feed(c) },
      );
    } catch (e) {
      throw explainMmdebstrap(e, asRoot);
    } finally {
      signal?.removeEventListener('abort', killTree);
    }
    const mmSeconds = (performance.now() - t0) / 1000;
    if (recipe.kernel === 'pvh') await unpackKernel(path.join(tmp, 'vmlinuz'), signal);

    // 2. the filesystem
    progress('making filesystem', SPAN.mkfs[0]);
    const mkfs = ['-q', '-t', 'ext4', ...recipe.mkfsOptions];
    const size = String(recipe.diskSizeBytes / 1024);
    if (asRoot) {
      await run(sbin('mkfs.ext4'), [...mkfs, '-d', tree, raw, `${size}k`], { signal });
      await removeTree(tree);
    } else {
      const version = e2fsprogsVersion((await run(sbin('mkfs.ext4'), ['-V'], { signal }).catch(() => ({ stdout: '', stderr: '' }))).stderr);
      if (atLeast(version, [1, 47, 1])) {
        await run(sbin('mkfs.ext4'), [...mkfs, '-d', tarball, raw, `${size}k`], { signal });
      } else {
        const ns = ['--user', '--map-auto', '--map-root-user'];
        mkdirSync(tree);
        unprivilegedTree = true;
        // Device nodes cannot be made in a user namespace; the guest's /dev is a devtmpfs anyway.
        await run('unshare', [...ns, 'tar', '-C', tree, '--numeric-owner', '--xattrs', '--xattrs-include=*', '--exclude=./dev/*', '-xpf', tarball], { signal });
        await run('unshare', [...ns, sbin('mkfs.ext4'), ...mkfs, '-d', tree, raw, `${size}k`], { signal });
        await removeTree(tree, true);
      }
      rmSync(tarball, { force: true });
    }

    // 3. qcow2 (uncompressed: compressed clusters are slower to read under every VM)
    progress('converting to qcow2', SPAN.convert[0]);
    const disk = path.join(tmp, 'disk.qcow2');
    await run('qemu-img', ['convert', '-O', 'qcow2', raw, disk], { signal });
    rmSync(raw, { force: true });
    // The base is shared by every VM's overlay: it must never change.
    chmodSync(disk, 0o444);

    const seconds = (performance.now() - started) / 1000;
    writeFileSync(
      path.join(tmp, 'recipe.json'),
      `${JSON.stringify({ hash, recipe, sources: sources.entries, builtAt: new Date().toISOString(), buildSeconds: Math.round(seconds), mmdebstrapSeconds: Math.round(mmSeconds) }, null, 2)}\n`,
    );

    // 4. publish atomically; a concurrent build that got there first wins
    try {
      renameSync(tmp, finalDir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && isComplete(finalDir, hash)) {
        await removeTree(tmp);
        return result(finalDir, hash);
      }
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        // an incomplete directory under the final name (damaged by hand): replace it
        const aside = `${tmp}.old`;
        renameSync(finalDir, aside);
        renameSync(tmp, finalDir);
        await removeTree(aside);
      } else {
        throw e;
      }
    }
    log.info(`built ${recipe.name} (${hash}) in ${Math.round(seconds)} s (mmdebstrap ${Math.round(mmSeconds)} s)`);
    progress('image ready', 1);
    return result(finalDir, hash);
  } catch (e) {
    await removeTree(tmp, unprivilegedTree).catch((err) => log.warn(`cannot remove ${tmp}: ${(err as Error).message}`));
    if (signal?.aborted) throw new DevvmError('invalid-state', 'image build was cancelled');
    throw asDevvmError(e);
  }
}

/**
 * Cancelling mmdebstrap: killing the process run() started is not enough. In unshare mode
 * it waits for a child in new namespaces with SIGTERM ignored, and that child (and the
 * apt, dpkg and maintainer scripts under it) carries on for minutes, holding the output
 * pipes open. So the whole tree under our mmdebstrap (found by its unique temp dir in
 * its arguments) is killed; its mount namespace goes with it. Linux only, like mmdebstrap.
 */
function killProcessTree(marker: string): void {
  const children = new Map<number, number[]>();
  const ours: number[] = [];
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return;
  }
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const pid = Number(p);
      children.set(ppid, [...(children.get(ppid) ?? []), pid]);
      if (ppid === process.pid && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker)) ours.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  const all: number[] = [];
  const queue = [...ours];
  while (queue.length) {
    const pid = queue.shift()!;
    all.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  for (const pid of all) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (all.length) log.info(`cancelled the image build: killed ${all.length} processes`);
}

/** Single-quoted for mmdebstrap's special hooks, which it splits like a shell. */
const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** PATH with the sbin directories, which a non-root user's PATH often lacks (mkfs.ext4, chroot). */
function sbinPath(): NodeJS.ProcessEnv {
  const dirs = (process.env.PATH ?? '/usr/bin:/bin').split(':');
  for (const d of ['/usr/sbin', '/sbin']) if (!dirs.includes(d)) dirs.push(d);
  return { ...process.env, PATH: dirs.join(':') };
}

/** Full path of an sbin tool when PATH lacks it (spawn looks commands up in the caller's PATH). */
function sbin(cmd: string): string {
  for (const d of (sbinPath().PATH ?? '').split(':')) if (d && existsSync(path.join(d, cmd))) return path.join(d, cmd);
  return cmd;
}

function explainMmdebstrap(e: unknown, asRoot: boolean): unknown {
  if (!(e instanceof ProcessError)) return e;
  const err = e.stderr;
  if (!asRoot && /subuid|subgid|newuidmap|unshare|user namespace/i.test(err)) {
    return new DevvmError('missing-dependency', 'mmdebstrap cannot create a user namespace to build the image without root', 'add subordinate ids for your user (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER), install uidmap, or build as root');
  }
  if (/Failed to fetch|Could not resolve|Temporary failure resolving|Unable to connect|404\s+Not Found/i.test(err)) {
    return new DevvmError('io', `downloading Debian packages failed: ${e.message.slice(0, 300)}`, 'check the network, or set DEVVM_DEBIAN_MIRROR to a reachable Debian mirror');
  }
  return e;
}
