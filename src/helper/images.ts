/**
 * Base images: DEVVM_HOME/images/<name>/ with a read-only disk (never written after
 * import; its sha256 is recorded) and, for Linux images built here, kernel and initrd
 * for direct kernel boot.
 */
import { createHash } from 'node:crypto';
import { chmodSync, createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { copyFile, link, mkdtemp } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { DevvmError } from '../shared/errors';
import type { ImageInfo } from '../shared/types';
import * as v from '../shared/validate';
import { jsonFilename, openChain, openRegular, readQcow2Header, refuseUnsafeQcow2, shown, type OpenedFile } from './diskformat';
import type { Home } from './filenames';
import { imgInfo } from './layers';
import { buildImage } from './images/build';
import { recipeHash, type DebianRecipe } from './images/recipe';
import { recipeByName, RECIPE_NAMES } from './images/recipes';
import { FIRSTBOOT_HOOK } from './images/firstboot';
import { parseNbdUri, sourceReachable } from './nbd';
import { run } from './proc';
import { fsyncDirAsync, fsyncPathAsync, readJson, writeJsonAtomic } from './store';

export type ImageMeta = Omit<ImageInfo, 'usedBy' | 'actualSize'>;

export type Progress = (message: string, fraction?: number) => void;

/** The recipes `image build` knows (see images/recipes.ts). */
export const RECIPES: readonly string[] = RECIPE_NAMES;

/** Official cloud images `image pull` knows; they boot through firmware and their own GRUB. */
const PULL_SOURCES: Record<string, { base: string; file: string }> = {
  'debian-12': { base: 'https://cloud.debian.org/images/cloud/bookworm/latest/', file: 'debian-12-genericcloud-amd64.qcow2' },
};

export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file, { highWaterMark: 1 << 20 })
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

export type DiskFormat = 'qcow2' | 'raw';

export interface ImportOptions {
  /** What the file is; a raw disk is taken only when declared. Default: qcow2, checked. */
  format?: DiskFormat;
  /** Copy a qcow2's backing chain into the base instead of refusing it. */
  flatten?: boolean;
}

function declaredFormat(x: unknown): DiskFormat | undefined {
  if (x === undefined || x === 'qcow2' || x === 'raw') return x;
  throw new DevvmError('invalid-argument', `unsupported image format ${JSON.stringify(x)?.slice(0, 40)}`, 'import a qcow2, or a raw disk with --format raw');
}

/** Hard link when on the same filesystem (instant, no space), copy otherwise; off the event loop. */
async function linkOrCopy(src: string, dst: string): Promise<void> {
  try {
    await link(src, dst);
  } catch {
    await copyFile(src, dst);
  }
}

export interface ImagesOptions {
  /** Flushes a file to disk (tests observe the order). */
  fsync?: (file: string) => void | Promise<void>;
  /** Builds a recipe's disk, kernel and initrd (tests stand in a fake). */
  buildImage?: typeof buildImage;
}

/** `recipe:<name>#<hash>`: what a build records as its source. */
const builtFrom = (source: string) => /^recipe:([^#]+)#([0-9a-f]+)$/.exec(source);

/** A build from a recipe that has changed since (devvm was updated): `image build` makes the current one. */
function outdated(meta: ImageMeta): boolean {
  const m = builtFrom(meta.source);
  const recipe = m && recipeByName(m[1]!);
  return !!recipe && m[2] !== recipeHash(recipe);
}

export class Images {
  /** Images something is being made from right now (a VM create or clone): delete refuses them. */
  private readonly holds = new Map<string, number>();
  /** Names an import, build or pull is making right now. */
  private readonly making = new Map<string, Promise<unknown>>();
  private readonly fsync: (file: string) => void | Promise<void>;
  private readonly buildImage: typeof buildImage;

  constructor(
    private readonly home: Home,
    private readonly cacheRoot: string,
    opts: ImagesOptions = {},
  ) {
    this.fsync = opts.fsync ?? fsyncPathAsync;
    this.buildImage = opts.buildImage ?? buildImage;
  }

  names(): string[] {
    if (!existsSync(this.home.imagesDir)) return [];
    return readdirSync(this.home.imagesDir).filter((n) => existsSync(this.home.image(n).meta)).sort();
  }

  get(name: string): ImageMeta {
    v.imageName(name);
    const f = this.home.image(name);
    if (!existsSync(f.meta)) {
      throw new DevvmError('not-found', `no image named "${name}"`, RECIPES.includes(name) ? `run "devvm image build ${name}"` : 'see "devvm image list"');
    }
    return readJson<ImageMeta>(f.meta);
  }

  /** The image, once its base can be opened: a present file or an answering NBD server. */
  async requireBase(name: string): Promise<ImageMeta> {
    const img = this.get(name);
    const why = await sourceReachable(img.file);
    if (why === 'missing') throw new DevvmError('not-found', `the disk of image "${name}" is missing: ${img.file}`, 'delete and rebuild the image');
    if (why) throw new DevvmError('io', `the base of image "${name}" at ${img.file} does not answer (${why})`, 'start its NBD server, then try again');
    return img;
  }

  async info(name: string, usedBy: string[]): Promise<ImageInfo> {
    const meta = this.get(name);
    let actualSize = 0;
    try {
      actualSize = (await imgInfo(meta.file, meta.format)).actualSize;
    } catch {
      // a missing or damaged base still lists, with size 0; `verify` says more
    }
    return { ...meta, actualSize, usedBy, ...(outdated(meta) ? { outdated: true as const } : {}) };
  }

  /**
   * Idempotent: an image of that name built from the recipe as it is now is returned as
   * it is. One built from an older version of the recipe is rebuilt and replaced when no
   * VM uses it (`usersOf`), and returned as it is (`outdated` in its info) when one does:
   * its VMs' disks are layered on it.
   */
  async build(recipe: string, name: string | undefined, progress: Progress, usersOf: (image: string) => string[], signal?: AbortSignal): Promise<ImageMeta> {
    const known = recipeByName(recipe);
    if (!known) throw new DevvmError('invalid-argument', `unknown image recipe "${recipe}"`, `available: ${RECIPES.join(', ')}`);
    const target = v.imageName(name ?? recipe);
    const have = await this.settled(target);
    if (!have) return this.reserve(target, () => this.buildNow(known, target, progress, signal));
    const from = builtFrom(have.source);
    if (from?.[1] !== known.name) {
      throw new DevvmError('already-exists', `image "${target}" exists and is not a build of recipe ${known.name} (it came from ${have.source})`, `delete it, or build under another name: devvm image build ${known.name} --name NAME`);
    }
    if (from[2] === recipeHash(known)) return have;
    const busy = () => this.inUse(target, usersOf(target));
    if (busy()) return have;
    progress(`image "${target}" was built from an older ${known.name} recipe: building the current one`);
    return this.reserve(target, () => this.buildNow(known, target, progress, signal, busy));
  }

  /** Why image `name` cannot be replaced or deleted now, or null. */
  private inUse(name: string, usedBy: string[]): string | null {
    if (this.holds.has(name)) return 'a VM is being created from it';
    return usedBy.length ? `${usedBy.join(', ')} ${usedBy.length === 1 ? 'uses' : 'use'} it` : null;
  }

  /** Registers `recipe`'s build as `target`; with `replacing`, in place of the image there (see register). */
  private async buildNow(recipe: DebianRecipe, target: string, progress: Progress, signal?: AbortSignal, replacing?: () => string | null): Promise<ImageMeta> {
    const built = await this.buildImage(recipe, { cacheRoot: this.cacheRoot, signal, onProgress: progress });
    // The checksum of a cached build is computed once and kept beside it.
    const shaFile = path.join(built.dir, 'disk.sha256');
    let sha = existsSync(shaFile) ? readFileSync(shaFile, 'utf8').trim() : '';
    if (!/^[0-9a-f]{64}$/.test(sha)) {
      progress('computing checksum');
      sha = await sha256File(built.disk);
      writeFileSync(shaFile, `${sha}\n`);
    }
    // Only builds whose hook installs devvm-firstboot say so; older registered images keep cloud-init.
    const firstBoot = recipe.customizeHook.includes(FIRSTBOOT_HOOK) ? ('devvm' as const) : undefined;
    return this.register(target, { disk: built.disk, format: 'qcow2', kernel: built.kernel, initrd: built.initrd, sha256: sha, source: `recipe:${recipe.name}#${built.recipeHash}`, how: 'link', firstBoot }, replacing);
  }

  /**
   * Downloads the official Debian cloud image and verifies it against the published
   * SHA512SUMS before registering it. DEVVM_PULL_BASE points elsewhere (a mirror, tests).
   */
  async pull(recipe: string, name: string | undefined, progress: Progress, signal?: AbortSignal): Promise<ImageMeta> {
    const source = PULL_SOURCES[recipe];
    if (!source) throw new DevvmError('invalid-argument', `unknown image "${recipe}" to pull`, `available: ${Object.keys(PULL_SOURCES).join(', ')}`);
    const target = v.imageName(name ?? recipe);
    const have = await this.settled(target);
    if (!have) return this.reserve(target, () => this.pullNow(source, target, progress, signal));
    if (!have.source.endsWith(`/${source.file}`)) {
      throw new DevvmError('already-exists', `image "${target}" exists and is not a pull of ${source.file} (it came from ${have.source})`, `delete it, or pull under another name: devvm image pull ${recipe} --name NAME`);
    }
    return have;
  }

  private async pullNow(source: { base: string; file: string }, target: string, progress: Progress, signal?: AbortSignal): Promise<ImageMeta> {
    const base = (process.env.DEVVM_PULL_BASE || source.base).replace(/\/?$/, '/');
    const get = async (url: string) => {
      let res: Response;
      try {
        res = await fetch(url, { signal });
      } catch (e) {
        throw new DevvmError('io', `cannot download ${url}: ${(e as Error).cause ?? (e as Error).message}`, 'check the network or set DEVVM_PULL_BASE to a mirror');
      }
      if (!res.ok || !res.body) throw new DevvmError('io', `cannot download ${url}: HTTP ${res.status}`);
      return res;
    };
    const sums = await (await get(`${base}SHA512SUMS`)).text();
    const want = sums.split('\n').map((l) => /^([0-9a-f]{128})\s+\*?(\S+)$/.exec(l.trim())).find((m) => m?.[2] === source.file)?.[1];
    if (!want) throw new DevvmError('io', `${source.file} is not listed in ${base}SHA512SUMS`);
    return this.withTmp('pull-', async (dir) => {
      const tmp = path.join(dir, 'disk.qcow2');
      const res = await get(`${base}${source.file}`);
      const total = Number(res.headers.get('content-length')) || 0;
      const h512 = createHash('sha512');
      const out = createWriteStream(tmp, { mode: 0o600 });
      let done = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        h512.update(chunk);
        done += chunk.length;
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
        progress(`downloading ${source.file}`, total ? done / total : undefined);
      }
      await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
      if (h512.digest('hex') !== want) {
        throw new DevvmError('io', `checksum mismatch for ${source.file}`, 'the download is damaged or was tampered with; nothing was registered');
      }
      // The published checksum says the bytes are what the mirror holds, not that they are safe:
      // the base is used as it is, so it must be a standalone qcow2 by its own header.
      const f = await openRegular('download', tmp);
      try {
        const h = await readQcow2Header(f);
        if (!h) throw new DevvmError('io', `${source.file} is not a qcow2 image`, 'nothing was registered');
        refuseUnsafeQcow2(source.file, h);
        if (h.backingFile !== null) throw new DevvmError('invalid-argument', `${source.file} has a backing file (${shown(h.backingFile)})`, 'a pulled base must stand alone; nothing was registered');
      } finally {
        await f.close();
      }
      progress('computing checksum');
      const sha = await sha256File(tmp);
      return this.register(target, { disk: tmp, format: 'qcow2', kernel: null, initrd: null, sha256: sha, source: `${base}${source.file}`, how: 'move' });
    });
  }

  /**
   * Registers a disk image as a base. A local file (or `copy` of an NBD export) is copied in
   * and checksummed; an nbd:// export is used in place: every VM reads it through its own
   * copy-on-read cache layer, so a slow or remote base is read once per VM.
   *
   * A local file is read as `opts.format`, by default qcow2 checked by its header (a raw
   * disk must be declared): qemu never guesses. A qcow2 with a backing file is refused
   * unless `opts.flatten`; one with an external data file always.
   */
  async import(file: string, name: string, kernel: string | undefined, initrd: string | undefined, progress: Progress, copy = false, opts: ImportOptions = {}): Promise<ImageMeta> {
    v.imageName(name);
    v.nonEmptyPath('image file', file);
    const format = declaredFormat(opts.format);
    return this.reserve(name, async () => {
      if (existsSync(this.home.image(name).meta)) throw new DevvmError('already-exists', `an image named "${name}" already exists`, 'pick another --name or delete it first');
      if (/^nbd(\+unix)?:\/\//.test(file)) return this.importNbd(file, name, kernel, initrd, progress, copy, format);
      const opened: OpenedFile[] = [];
      try {
        // Every check before anything is written.
        const disk = await openRegular('image file', file);
        opened.push(disk);
        const boot: Array<[OpenedFile, string]> = [];
        for (const [what, p, dst] of [['kernel', kernel, 'vmlinuz'], ['initrd', initrd, 'initrd.img']] as const) {
          if (p === undefined) continue;
          const f = await openRegular(what, p);
          opened.push(f);
          boot.push([f, dst]);
        }
        let source = disk.qemuPath;
        if (format !== 'raw') {
          const h = await readQcow2Header(disk);
          if (!h) throw new DevvmError('invalid-argument', `${file} is not a qcow2 image`, 'pass --format raw to import a raw disk');
          refuseUnsafeQcow2(file, h);
          if (h.backingFile !== null && !opts.flatten) {
            throw new DevvmError('invalid-argument', `${file} has a backing file (${shown(h.backingFile)}); pass --flatten to copy it into one standalone base`);
          }
          // Even without a backing file the chain is spelled out (backing: null), so qemu opens nothing else.
          const chain = await openChain(disk, h);
          opened.push(...chain.opened);
          source = jsonFilename(chain.spec);
        }
        return await this.withTmp('import-', async (tmp) => {
          const out = path.join(tmp, 'disk.qcow2');
          progress(`copying ${file}`);
          try {
            // convert is sparse-aware, writes one standalone qcow2 and checks the whole file reads.
            await run('qemu-img', ['convert', '-f', format ?? 'qcow2', '-O', 'qcow2', source, out]);
          } catch (e) {
            throw new DevvmError('invalid-argument', `${file} is not a readable ${format ?? 'qcow2'} image`, ((e as Error).message.split(': ').slice(-1)[0] ?? '').slice(0, 200));
          }
          const copies: Record<string, string> = {};
          for (const [f, dst] of boot) {
            copies[dst] = path.join(tmp, dst);
            await pipeline(f.handle.createReadStream({ start: 0, autoClose: false }), createWriteStream(copies[dst], { mode: 0o600 }));
          }
          progress('computing checksum');
          const sha = await sha256File(out);
          return this.register(name, { disk: out, format: 'qcow2', kernel: copies.vmlinuz ?? null, initrd: copies['initrd.img'] ?? null, sha256: sha, source: file, how: 'move' });
        });
      } finally {
        await Promise.all(opened.map((f) => f.close()));
      }
    });
  }

  /** An NBD export is the raw disk it serves; used in place, or copied in with `copy`. */
  private async importNbd(uri: string, name: string, kernel: string | undefined, initrd: string | undefined, progress: Progress, copy: boolean, format: DiskFormat | undefined): Promise<ImageMeta> {
    if (format === 'qcow2') {
      throw new DevvmError('invalid-argument', `an NBD export is imported as the raw disk it serves`, 'serve the qcow2 with qemu-nbd --format=qcow2 and import without --format');
    }
    if (!copy) parseNbdUri(uri);
    for (const [what, p] of [['kernel', kernel], ['initrd', initrd]] as const) {
      if (p !== undefined) await (await openRegular(what, p)).close();
    }
    try {
      await imgInfo(uri, 'raw');
    } catch (e) {
      throw new DevvmError('invalid-argument', `${uri} is not a readable disk image`, (e as Error).message.slice(0, 200));
    }
    if (!copy) return this.register(name, { disk: uri, format: 'raw', kernel: kernel ?? null, initrd: initrd ?? null, sha256: null, source: uri, how: 'in-place' });
    return this.withTmp('import-', async (tmp) => {
      const out = path.join(tmp, 'disk.qcow2');
      progress(`copying ${uri}`);
      await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', uri, out]);
      progress('computing checksum');
      const sha = await sha256File(out);
      return this.register(name, { disk: out, format: 'qcow2', kernel: kernel ?? null, initrd: initrd ?? null, sha256: sha, source: uri, how: 'move' });
    });
  }

  /** A fresh private folder in DEVVM_HOME/tmp for `fn`, removed afterwards whatever happens. */
  private async withTmp<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
    mkdirSync(this.home.tmpDir, { recursive: true, mode: 0o700 });
    const dir = await mkdtemp(path.join(this.home.tmpDir, prefix));
    try {
      return await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /**
   * Runs `fn` as the one operation making image `name`; another one meanwhile is refused
   * (two imports would otherwise race for the same folder and checksum).
   */
  private async reserve<T>(name: string, fn: () => Promise<T>): Promise<T> {
    if (this.making.has(name)) throw new DevvmError('busy', `image "${name}" is being made right now`, 'wait for it to finish, or pick another --name');
    const p = fn();
    this.making.set(name, p);
    try {
      return await p;
    } finally {
      this.making.delete(name);
    }
  }

  /** For build and pull, which are idempotent: image `name` once nothing is making it, or null. */
  private async settled(name: string): Promise<ImageMeta | null> {
    for (let running = this.making.get(name); running; running = this.making.get(name)) await running.catch(() => {});
    return existsSync(this.home.image(name).meta) ? this.get(name) : null;
  }

  /**
   * At helper start, holding the home's lock: everything in tmp was left by a helper that
   * died mid-operation. Returns what was removed.
   */
  sweepTmp(): string[] {
    if (!existsSync(this.home.tmpDir)) return [];
    const left = readdirSync(this.home.tmpDir);
    for (const n of left) rmSync(path.join(this.home.tmpDir, n), { recursive: true, force: true });
    return left;
  }

  private async register(
    name: string,
    /** `how`: the disk is moved or linked into the image's folder, or used where it is (a remote base). */
    src: { disk: string; format: DiskFormat; how: 'move' | 'link' | 'in-place'; kernel: string | null; initrd: string | null; sha256: string | null; source: string; firstBoot?: 'devvm' },
    /** The image `name` is replaced, if this still finds it unused once the new one is ready. */
    replacing?: () => string | null,
  ): Promise<ImageMeta> {
    const f = this.home.image(name);
    mkdirSync(this.home.imagesDir, { recursive: true, mode: 0o700 });
    // Staged in tmp, which no image name reaches, and renamed into images/ last.
    return this.withTmp('image-', async (staging) => {
      try {
        let disk = src.disk;
        const data: string[] = [];
        if (src.how !== 'in-place') {
          disk = path.join(staging, 'disk.qcow2');
          if (src.how === 'move') renameSync(src.disk, disk);
          else await linkOrCopy(src.disk, disk);
          chmodSync(disk, 0o444);
          data.push(disk);
        }
        for (const [from, to] of [[src.kernel, 'vmlinuz'], [src.initrd, 'initrd.img']] as const) {
          if (!from) continue;
          await linkOrCopy(from, path.join(staging, to));
          data.push(path.join(staging, to));
        }
        const info = await imgInfo(disk, src.format);
        // The data reaches the disk before the metadata that names it.
        for (const file of data) await this.fsync(file);
        const meta: ImageMeta = {
          name,
          file: src.how === 'in-place' ? src.disk : f.disk,
          format: src.format,
          virtualSize: info.virtualSize,
          sha256: src.sha256,
          kernel: src.kernel ? f.kernel : null,
          initrd: src.initrd ? f.initrd : null,
          source: src.source,
          createdAt: new Date().toISOString(),
          ...(src.firstBoot ? { firstBoot: src.firstBoot } : {}),
        };
        writeJsonAtomic(path.join(staging, 'image.json'), meta);
        if (replacing) this.swapIn(name, staging, replacing);
        else renameSync(staging, f.dir);
        await fsyncDirAsync(this.home.imagesDir);
        return meta;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOTEMPTY' || (e as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new DevvmError('already-exists', `an image named "${name}" already exists`);
        }
        throw e;
      }
    });
  }

  /**
   * Puts `staging` where image `name` is, unless `inUse` says something uses it now
   * (checked with no await before the renames, so no create slips in between). The old
   * folder goes to tmp first: a helper killed between the two renames loses the image,
   * which the build cache gives back at the next `image build`.
   */
  private swapIn(name: string, staging: string, inUse: () => string | null): void {
    const why = inUse();
    if (why) throw new DevvmError('busy', `image "${name}" came into use while its rebuild ran (${why}); it is kept`, 'the new build is cached: building it under another name (--name) registers it at once');
    const dir = this.home.image(name).dir;
    const old = `${staging}-replaced`;
    renameSync(dir, old);
    try {
      renameSync(staging, dir);
    } catch (e) {
      renameSync(old, dir);
      throw e;
    }
    rmSync(old, { recursive: true, force: true });
  }

  async verify(name: string): Promise<boolean> {
    const meta = this.get(name);
    if (meta.sha256 === null) throw new DevvmError('invalid-state', `image "${name}" is served from ${meta.file} and has no checksum to verify`);
    return (await sha256File(meta.file)) === meta.sha256;
  }

  /** Marks `name` in use until the returned release is called (idempotent). */
  hold(name: string): () => void {
    this.holds.set(name, (this.holds.get(name) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.holds.get(name) ?? 1) - 1;
      if (n > 0) this.holds.set(name, n);
      else this.holds.delete(name);
    };
  }

  delete(name: string, usedBy: string[]): void {
    this.get(name);
    if (this.holds.has(name)) throw new DevvmError('busy', `image "${name}" is in use by a VM being created`, 'wait for it to finish');
    if (usedBy.length) throw new DevvmError('invalid-state', `image "${name}" is used by ${usedBy.join(', ')}`, 'delete those VMs first');
    rmSync(this.home.image(name).dir, { recursive: true, force: true });
  }
}
