/**
 * What `disk attach` may hand to a guest, decided before QEMU sees it.
 *
 * - Identity, not spelling: the source is resolved (realpath), opened by us, and its
 *   device+inode compared with every file devvm keeps under DEVVM_HOME, so a symlink, a
 *   hard link, `/./` or `//` reach the same verdict as the real name. A seed, a key, a
 *   cache, a writable overlay, a RAM state or any other private file is refused in any
 *   mode; a frozen pool layer or an image's base only read-only.
 * - Declared format: a file is raw only when the caller says so; otherwise it must be a
 *   qcow2 by our own header read, without backing or external data file (each would make
 *   QEMU open a second host file that the header, i.e. possibly a guest, chooses).
 * - The checked file stays open: the caller passes `fd` to QEMU (QMP add-fd) and points
 *   the file node at /dev/fdset/N, so no rename or symlink swap after the check can
 *   change what QEMU opens.
 */
import { constants, type BigIntStats } from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { DevvmError } from '../shared/errors';
import type { Home } from './filenames';
import { isNbdUri, parseNbdUri } from './nbd';
import { BadQcow2Header, qcow2Refusal, readQcow2Header } from './diskformat';

export type DiskFormat = 'qcow2' | 'raw';

export interface CheckedSource {
  /** What to record and show: the NBD URI, or the file's resolved path. */
  source: string;
  kind: 'file' | 'nbd';
  /** The QEMU format driver to use, explicitly (never probed). NBD exports are raw. */
  format: DiskFormat;
  /**
   * Files only: our open descriptor on the checked file (O_RDONLY when read-only, else
   * O_RDWR). Pass it to QEMU with add-fd, then close(); QEMU keeps its own duplicate.
   */
  fd?: number;
  /** Closes `fd` (a no-op for NBD). Always call it, also when attaching fails. */
  close(): Promise<void>;
}

/** What a file under DEVVM_HOME is to devvm. */
type Role =
  /** images/<id>/disk.qcow2, vmlinuz, initrd.img: shared, never written. */
  | 'base'
  /** layers/<id>.qcow2 known to be frozen (a snapshot's, a clone's, or some layer's parent). */
  | 'frozen'
  /** Everything else: overlays, caches, seeds, keys, RAM states, metadata, logs, tmp. */
  | 'private';

interface Owned {
  rel: string;
  role: Role;
}

const idOf = (st: { dev: bigint; ino: bigint }) => `${st.dev}:${st.ino}`;

const MAX_DEPTH = 5;
const LAYER_FILE = /^(l[0-9a-f]{12})\.qcow2$/;
const IMAGE_DATA = new Set(['disk.qcow2', 'vmlinuz', 'initrd.img']);

/** Which pool layers are provably frozen (never a VM's writable overlay). Null when unsure. */
async function frozenLayers(home: Home): Promise<Set<string> | null> {
  const frozen = new Set<string>();
  const writable = new Set<string>();
  for (const vm of await entries(home.vmsDir)) {
    let cfg: { overlay?: string; pending?: { newOverlay?: string }; snapshots?: Array<{ layer?: string }>; clonedFrom?: { layer?: string } };
    try {
      cfg = JSON.parse(await fsp.readFile(home.vm(vm).meta, 'utf8'));
    } catch (e) {
      // A VM mid-create has no vm.json yet: its overlay has no other evidence either.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      return null; // unreadable metadata could name any layer as its overlay
    }
    if (cfg.overlay) writable.add(cfg.overlay);
    if (cfg.pending?.newOverlay) writable.add(cfg.pending.newOverlay);
    for (const s of cfg.snapshots ?? []) if (s.layer) frozen.add(s.layer);
    if (cfg.clonedFrom?.layer) frozen.add(cfg.clonedFrom.layer);
  }
  for (const f of await entries(home.layersDir)) {
    if (!f.endsWith('.json')) continue;
    try {
      const meta = JSON.parse(await fsp.readFile(path.join(home.layersDir, f), 'utf8')) as { parent?: string | null };
      if (meta.parent) frozen.add(meta.parent);
    } catch {
      return null;
    }
  }
  for (const id of writable) frozen.delete(id);
  return frozen;
}

async function entries(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch {
    return [];
  }
}

function roleOf(rel: string, frozen: Set<string> | null): Role {
  const parts = rel.split(path.sep);
  if (parts.length === 3 && parts[0] === 'images' && IMAGE_DATA.has(parts[2]!)) return 'base';
  if (parts.length === 2 && parts[0] === 'layers') {
    const m = LAYER_FILE.exec(parts[1]!);
    if (m && frozen?.has(m[1]!)) return 'frozen';
  }
  return 'private';
}

/**
 * Every regular file under DEVVM_HOME by device+inode, with its role. Symlinks inside
 * the home count for the file they point at (an image may link its kernel) but are not
 * descended into.
 */
async function ownedFiles(home: Home): Promise<Map<string, Owned>> {
  const frozen = await frozenLayers(home);
  const out = new Map<string, Owned>();
  const walk = async (dir: string, rel: string, depth: number): Promise<void> => {
    for (const name of await entries(dir)) {
      const full = path.join(dir, name);
      const r = rel ? path.join(rel, name) : name;
      let st: BigIntStats;
      try {
        st = await fsp.lstat(full, { bigint: true });
        if (st.isSymbolicLink()) {
          st = await fsp.stat(full, { bigint: true });
          if (!st.isFile()) continue;
        }
      } catch {
        continue; // gone meanwhile, or a dangling link
      }
      if (st.isDirectory()) {
        if (depth < MAX_DEPTH) await walk(full, r, depth + 1);
        continue;
      }
      if (!st.isFile()) continue;
      const role = roleOf(r, frozen);
      const prev = out.get(idOf(st));
      // One inode under two names (a hard-linked base): the stricter role wins.
      if (!prev || role === 'private') out.set(idOf(st), { rel: r, role });
    }
  };
  await walk(home.root, '', 0);
  return out;
}

function refuse(message: string, hint: string): DevvmError {
  return new DevvmError('invalid-argument', message, hint);
}

/**
 * Checks a disk source and, for a file, opens it. Throws a one-line DevvmError and
 * leaves nothing open when the source may not be attached as asked.
 */
export async function checkDiskSource(home: Home, source: string, o: { readOnly: boolean; format?: DiskFormat }): Promise<CheckedSource> {
  if (isNbdUri(source)) return checkNbd(home, source, o);
  if (typeof source !== 'string' || !path.isAbsolute(source) || /[\x00-\x1f\x7f]/.test(source)) {
    throw refuse(`disk source must be an absolute path or an NBD URI: ${JSON.stringify(String(source).slice(0, 80))}`, 'give the full path of a qcow2 or raw image');
  }
  let real: string;
  let before: BigIntStats;
  try {
    real = await fsp.realpath(source);
    before = await fsp.stat(real, { bigint: true });
  } catch {
    throw new DevvmError('not-found', `no such disk image: ${source}`);
  }
  // Decided before open(): opening a device or FIFO can block or have side effects.
  if (!before.isFile()) throw refuse(`not a regular file: ${source}`, 'attach a qcow2 or raw image file');
  let fh: FileHandle;
  try {
    // O_NOFOLLOW: a symlink put in place of the resolved name since realpath fails here.
    fh = await fsp.open(real, (o.readOnly ? constants.O_RDONLY : constants.O_RDWR) | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw refuse(`cannot open ${source} ${o.readOnly ? 'for reading' : 'for writing'} (${code})`, o.readOnly ? 'check its permissions' : 'attach it with --read-only, or fix its permissions');
    }
    throw refuse(`cannot open ${source} (${code ?? (e as Error).message})`, 'check the path');
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile() || idOf(st) !== idOf(before)) throw refuse(`${source} changed while it was being checked`, 'try again');
    await checkOwnership(home, real, st, o.readOnly, source);
    const format = await fileFormat(fh, source, o.format);
    return { source: real, kind: 'file', format, fd: fh.fd, close: () => fh.close().catch(() => {}) };
  } catch (e) {
    await fh.close().catch(() => {});
    throw e;
  }
}

async function checkOwnership(home: Home, real: string, st: BigIntStats, readOnly: boolean, shown: string): Promise<void> {
  const owned = (await ownedFiles(home)).get(idOf(st));
  let root = home.root;
  try {
    root = await fsp.realpath(home.root);
  } catch {
    // no home yet: nothing in it to protect
  }
  const inside = (real + path.sep).startsWith(root + path.sep);
  if (!owned && !inside) return;
  const what = owned ? owned.rel : path.relative(root, real);
  const role = owned?.role ?? 'private';
  if (role === 'private') {
    throw refuse(`${shown} is devvm's own file ${what} (private VM state, keys or metadata)`, 'attach a copy of a disk image instead');
  }
  if (!readOnly) {
    throw refuse(`${shown} is devvm's ${role === 'base' ? 'shared base' : 'frozen layer'} ${what}, which is never written`, 'attach it with --read-only, or attach a copy');
  }
}

async function fileFormat(fh: FileHandle, shown: string, declared: DiskFormat | undefined): Promise<DiskFormat> {
  // Declared raw: QEMU's raw driver never interprets the bytes, whatever a guest wrote.
  if (declared === 'raw') return 'raw';
  let h;
  try {
    h = await readQcow2Header({ handle: fh, file: shown });
  } catch (e) {
    throw refuse(`${shown} has a malformed qcow2 header: ${e instanceof BadQcow2Header ? e.reason : (e as Error).message}`, 'check it with qemu-img check');
  }
  if (!h) throw refuse(`${shown} is not a qcow2 image`, 'attach a raw image with --format raw');
  const why = qcow2Refusal(h);
  if (why) throw refuse(`${shown} cannot be attached: ${why}`, 'flatten it first: qemu-img convert -O qcow2 SRC DST');
  return 'qcow2';
}

async function checkNbd(home: Home, source: string, o: { format?: DiskFormat }): Promise<CheckedSource> {
  const u = parseNbdUri(source);
  // A qcow2 read over NBD could still name host files (data file): exports are raw.
  if (o.format === 'qcow2') throw refuse('an NBD export is attached as raw', 'drop --format qcow2');
  if (u.transport === 'unix') {
    // Inside the home only another VM's export socket is an NBD server; the rest
    // (QMP, serial, helper) must not receive an NBD client's bytes.
    let real = path.resolve(u.socket);
    let root = home.root;
    try {
      real = await fsp.realpath(u.socket);
    } catch {
      // not there (yet): checked by name
    }
    try {
      root = await fsp.realpath(home.root);
    } catch {
      // no home yet
    }
    const rel = path.relative(root, real);
    if (!rel.startsWith('..') && !path.isAbsolute(rel)) {
      const parts = rel.split(path.sep);
      if (!(parts.length === 3 && parts[0] === 'vms' && parts[2] === path.basename(home.vm(parts[1]!).nbdSocket))) {
        throw refuse(`${u.socket} is devvm's own socket ${rel}, not an NBD export`, "use a VM's export URI from devvm disk export");
      }
    }
  }
  return { source, kind: 'nbd', format: 'raw', close: async () => {} };
}
