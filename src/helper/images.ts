/**
 * Base images: DEVVM_HOME/images/<name>/ with a read-only disk (never written after
 * import; its sha256 is recorded) and, for Linux images built here, kernel and initrd
 * for direct kernel boot.
 */
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, createReadStream, createWriteStream, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DevvmError } from '../shared/errors';
import type { ImageInfo } from '../shared/types';
import * as v from '../shared/validate';
import type { Home } from './filenames';
import { imgInfo } from './layers';
import { buildDebian12 } from './images/debian';
import { parseNbdUri, sourceReachable } from './nbd';
import { run } from './proc';
import { readJson, writeJsonAtomic } from './store';

export type ImageMeta = Omit<ImageInfo, 'usedBy' | 'actualSize'>;

export type Progress = (message: string, fraction?: number) => void;

export const RECIPES = ['debian-12'] as const;

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

/** Hard link when on the same filesystem (instant, no space), copy otherwise. */
function linkOrCopy(src: string, dst: string): void {
  try {
    linkSync(src, dst);
  } catch {
    copyFileSync(src, dst);
  }
}

export class Images {
  /** Images something is being made from right now (a VM create or clone): delete refuses them. */
  private readonly holds = new Map<string, number>();

  constructor(
    private readonly home: Home,
    private readonly cacheRoot: string,
  ) {}

  names(): string[] {
    if (!existsSync(this.home.imagesDir)) return [];
    return readdirSync(this.home.imagesDir).filter((n) => existsSync(this.home.image(n).meta)).sort();
  }

  get(name: string): ImageMeta {
    v.imageName(name);
    const f = this.home.image(name);
    if (!existsSync(f.meta)) {
      throw new DevvmError('not-found', `no image named "${name}"`, name === 'debian-12' ? 'run "devvm image build debian-12"' : 'see "devvm image list"');
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
      actualSize = (await imgInfo(meta.file)).actualSize;
    } catch {
      // a missing or damaged base still lists, with size 0; `verify` says more
    }
    return { ...meta, actualSize, usedBy };
  }

  async build(recipe: string, name: string | undefined, progress: Progress, signal?: AbortSignal): Promise<ImageMeta> {
    if (!(RECIPES as readonly string[]).includes(recipe)) {
      throw new DevvmError('invalid-argument', `unknown image recipe "${recipe}"`, `available: ${RECIPES.join(', ')}`);
    }
    const target = v.imageName(name ?? recipe);
    if (existsSync(this.home.image(target).meta)) return this.get(target);
    const built = await buildDebian12({ cacheRoot: this.cacheRoot, signal, onProgress: progress });
    // The checksum of a cached build is computed once and kept beside it.
    const shaFile = path.join(built.dir, 'disk.sha256');
    let sha = existsSync(shaFile) ? readFileSync(shaFile, 'utf8').trim() : '';
    if (!/^[0-9a-f]{64}$/.test(sha)) {
      progress('computing checksum');
      sha = await sha256File(built.disk);
      writeFileSync(shaFile, `${sha}\n`);
    }
    return this.register(target, { disk: built.disk, kernel: built.kernel, initrd: built.initrd, sha256: sha, source: `recipe:${recipe}#${built.recipeHash}`, how: 'link' });
  }

  /**
   * Downloads the official Debian cloud image and verifies it against the published
   * SHA512SUMS before registering it. DEVVM_PULL_BASE points elsewhere (a mirror, tests).
   */
  async pull(recipe: string, name: string | undefined, progress: Progress, signal?: AbortSignal): Promise<ImageMeta> {
    const source = PULL_SOURCES[recipe];
    if (!source) throw new DevvmError('invalid-argument', `unknown image "${recipe}" to pull`, `available: ${Object.keys(PULL_SOURCES).join(', ')}`);
    const target = v.imageName(name ?? recipe);
    if (existsSync(this.home.image(target).meta)) return this.get(target);
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
    mkdirSync(this.home.tmpDir, { recursive: true, mode: 0o700 });
    const tmp = path.join(this.home.tmpDir, `pull-${process.pid}-${Date.now()}.qcow2`);
    try {
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
      progress('computing checksum');
      const sha = await sha256File(tmp);
      const info = await imgInfo(tmp);
      if (info.format !== 'qcow2') throw new DevvmError('io', `${source.file} is not a qcow2 image`);
      return await this.register(target, { disk: tmp, kernel: null, initrd: null, sha256: sha, source: `${base}${source.file}`, how: 'move' });
    } finally {
      rmSync(tmp, { force: true });
    }
  }

  /**
   * Registers a disk image as a base. A local file (or `copy` of an NBD export) is copied in
   * and checksummed; an nbd:// export is used in place: every VM reads it through its own
   * copy-on-read cache layer, so a slow or remote base is read once per VM.
   */
  async import(file: string, name: string, kernel: string | undefined, initrd: string | undefined, progress: Progress, copy = false): Promise<ImageMeta> {
    v.imageName(name);
    v.nonEmptyPath('image file', file);
    if (existsSync(this.home.image(name).meta)) throw new DevvmError('already-exists', `an image named "${name}" already exists`, 'pick another --name or delete it first');
    const isNbd = /^nbd(\+unix)?:\/\//.test(file);
    const remote = isNbd && !copy;
    if (remote) parseNbdUri(file);
    if (!isNbd && !existsSync(file)) throw new DevvmError('not-found', `no such file: ${file}`);
    for (const [what, p] of [['kernel', kernel], ['initrd', initrd]] as const) {
      if (p !== undefined && !existsSync(p)) throw new DevvmError('not-found', `no such ${what} file: ${p}`);
    }
    let info;
    try {
      info = await imgInfo(file);
    } catch (e) {
      throw new DevvmError('invalid-argument', `${file} is not a readable disk image`, (e as Error).message.slice(0, 200));
    }
    if (info.format !== 'qcow2' && info.format !== 'raw') {
      throw new DevvmError('invalid-argument', `unsupported image format "${info.format}"`, 'import a qcow2 or raw disk image');
    }
    if (remote) return this.register(name, { disk: file, kernel: kernel ?? null, initrd: initrd ?? null, sha256: null, source: file, how: 'in-place' });
    mkdirSync(this.home.tmpDir, { recursive: true, mode: 0o700 });
    const tmp = path.join(this.home.tmpDir, `import-${process.pid}-${Date.now()}.qcow2`);
    try {
      // convert is sparse-aware, flattens any backing chain and checks the whole file reads.
      progress(`copying ${file}`);
      await run('qemu-img', ['convert', '-O', 'qcow2', file, tmp]);
      progress('computing checksum');
      const sha = await sha256File(tmp);
      return this.register(name, { disk: tmp, kernel: kernel ?? null, initrd: initrd ?? null, sha256: sha, source: file, how: 'move' });
    } finally {
      rmSync(tmp, { force: true });
    }
  }

  private async register(
    name: string,
    /** `how`: the disk is moved or linked into the image's folder, or used where it is (a remote base). */
    src: { disk: string; how: 'move' | 'link' | 'in-place'; kernel: string | null; initrd: string | null; sha256: string | null; source: string },
  ): Promise<ImageMeta> {
    const f = this.home.image(name);
    mkdirSync(this.home.imagesDir, { recursive: true, mode: 0o700 });
    const staging = `${f.dir}.tmp-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { mode: 0o700 });
    try {
      let disk = src.disk;
      if (src.how !== 'in-place') {
        disk = path.join(staging, 'disk.qcow2');
        if (src.how === 'move') renameSync(src.disk, disk);
        else linkOrCopy(src.disk, disk);
        chmodSync(disk, 0o444);
      }
      if (src.kernel) linkOrCopy(src.kernel, path.join(staging, 'vmlinuz'));
      if (src.initrd) linkOrCopy(src.initrd, path.join(staging, 'initrd.img'));
      const info = await imgInfo(disk);
      const meta: ImageMeta = {
        name,
        file: src.how === 'in-place' ? src.disk : f.disk,
        format: info.format,
        virtualSize: info.virtualSize,
        sha256: src.sha256,
        kernel: src.kernel ? f.kernel : null,
        initrd: src.initrd ? f.initrd : null,
        source: src.source,
        createdAt: new Date().toISOString(),
      };
      writeJsonAtomic(path.join(staging, 'image.json'), meta);
      renameSync(staging, f.dir);
      return meta;
    } catch (e) {
      rmSync(staging, { recursive: true, force: true });
      if ((e as NodeJS.ErrnoException).code === 'ENOTEMPTY' || (e as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new DevvmError('already-exists', `an image named "${name}" already exists`);
      }
      throw e;
    }
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
