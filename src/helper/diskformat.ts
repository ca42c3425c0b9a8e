/**
 * What a user-supplied disk file is, decided by reading it ourselves instead of letting
 * qemu probe it: a hostile qcow2 header can name any host file as its backing file or
 * external data file, and a FIFO or device blocks whoever opens or reads it.
 *
 * Files are opened once (O_NONBLOCK, checked regular by fstat) and handed to qemu-img as
 * /proc/<pid>/fd/<n>, so what was checked is what qemu reads, even if the path changes.
 *
 * The one qcow2 header reader: image import (images.ts) and disk attach (disksource.ts).
 * Layout: docs/interop/qcow2.txt in QEMU (all fields big-endian).
 */
import { constants, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { DevvmError } from '../shared/errors';

export const QCOW2_MAGIC = 0x514649fb;
const EXT_END = 0;
const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_DATA_FILE = 0x44415441;
const EXT_CRYPTO = 0x0537be77;
const INCOMPAT_CORRUPT = 1n << 1n;
const INCOMPAT_DATA_FILE = 1n << 2n;
/** dirty, corrupt, external data file, compression type, extended L2: all QEMU 7.2 knows. */
const INCOMPAT_KNOWN = 0b11111n;
/** qemu's own limit on a backing file name. */
const MAX_BACKING_NAME = 1023;
/** Header and its extensions live in the first cluster (at most 2 MiB). */
const MAX_CLUSTER_BITS = 21;

export interface Qcow2Header {
  version: number;
  clusterBits: number;
  virtualSize: number;
  /** As written in the header: absolute, relative to the image's folder, or a protocol. */
  backingFile: string | null;
  /**
   * The backing offset or size is non-zero, even when they name nothing qemu would open
   * (one of them zero): attach refuses that too rather than reason about it.
   */
  backingFieldSet: boolean;
  backingFormat: string | null;
  /** The external data file's name, or '' when the feature bit is set without one. */
  dataFile: string | null;
  encrypted: boolean;
  /** The corrupt bit: qemu found inconsistent metadata and wants a repair first. */
  corrupt: boolean;
  /** Incompatible feature bits qemu 7.2 does not know (0n when none). */
  unknownIncompatible: bigint;
}

/** A qcow2 header that is present but bad; `reason` is the short why, without the file name. */
export class BadQcow2Header extends DevvmError {
  constructor(
    file: string,
    readonly reason: string,
    message = `${file} is a damaged qcow2 image (${reason})`,
    hint?: string,
  ) {
    super('invalid-argument', message, hint);
  }
}

/** A printable, bounded form of a name taken from a file, for one-line messages. */
export function shown(name: string): string {
  const clean = name.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean;
}

/**
 * Parses the qcow2 header at the start of `buf` (the file's first cluster, or more).
 * Returns null when the magic is absent; throws BadQcow2Header when it is present but the
 * header is bad.
 */
export function parseQcow2Header(buf: Buffer, file: string): Qcow2Header | null {
  if (buf.length < 4 || buf.readUInt32BE(0) !== QCOW2_MAGIC) return null;
  const bad = (why: string) => new BadQcow2Header(file, why);
  if (buf.length < 72) throw bad('short header');
  const version = buf.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw new BadQcow2Header(file, `qcow2 version ${version} is not 2 or 3`, `${file} is a qcow2 version ${version} image`, 'only versions 2 and 3 are supported');
  const backingOffset = buf.readBigUInt64BE(8);
  const backingSize = buf.readUInt32BE(16);
  const clusterBits = buf.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > MAX_CLUSTER_BITS) throw bad(`cluster bits ${clusterBits}`);
  const virtualSize = Number(buf.readBigUInt64BE(24));
  const encrypted = buf.readUInt32BE(32) !== 0;
  let incompatible = 0n;
  let headerLength = 72;
  if (version === 3) {
    if (buf.length < 104) throw bad('short header');
    incompatible = buf.readBigUInt64BE(72);
    headerLength = buf.readUInt32BE(100);
    // The spec requires a multiple of 8 (extensions are 8-aligned after it).
    if (headerLength < 104 || headerLength % 8 !== 0) throw bad(`header length ${headerLength}`);
  }
  const cluster = 2 ** clusterBits;
  const limit = Math.min(buf.length, cluster);

  let backingFile: string | null = null;
  // qemu reads a name only when both offset and size are set (an empty name means none).
  if (backingOffset !== 0n && backingSize > 0) {
    const at = Number(backingOffset);
    if (backingSize > MAX_BACKING_NAME || at + backingSize > limit) throw bad('backing file name out of bounds');
    backingFile = buf.toString('utf8', at, at + backingSize);
  }

  let backingFormat: string | null = null;
  let dataFile: string | null = (incompatible & INCOMPAT_DATA_FILE) !== 0n ? '' : null;
  let extEncrypted = false;
  for (let at = headerLength; ; ) {
    if (at + 8 > limit) throw bad('header extensions run past the first cluster');
    const type = buf.readUInt32BE(at);
    const len = buf.readUInt32BE(at + 4);
    if (type === EXT_END) break;
    const data = at + 8;
    if (data + len > limit) throw bad('header extension out of bounds');
    const text = () => buf.toString('utf8', data, data + len).replace(/\0+$/, '');
    if (type === EXT_BACKING_FORMAT) backingFormat = text();
    else if (type === EXT_DATA_FILE) dataFile = text();
    else if (type === EXT_CRYPTO) extEncrypted = true;
    at = data + Math.ceil(len / 8) * 8;
  }
  return {
    version,
    clusterBits,
    virtualSize,
    backingFile,
    backingFieldSet: backingOffset !== 0n || backingSize !== 0,
    backingFormat,
    dataFile,
    encrypted: encrypted || extEncrypted,
    corrupt: (incompatible & INCOMPAT_CORRUPT) !== 0n,
    unknownIncompatible: incompatible & ~INCOMPAT_KNOWN,
  };
}

/** True for names qemu would take as a protocol ("nbd:…", "http://…", "json:{…}"): a ':' before any '/'. */
export function hasProtocol(name: string): boolean {
  const colon = name.indexOf(':');
  return colon > 0 && !name.slice(0, colon).includes('/');
}

/** A regular file opened for reading; keep it open while qemu-img reads `qemuPath`. */
export interface OpenedFile {
  file: string;
  handle: FileHandle;
  stats: Stats;
  /** A path that reopens exactly this file (not whatever the name points to later). */
  qemuPath: string;
  close(): Promise<void>;
}

function notRegular(what: string, file: string, s: Stats): DevvmError {
  const kind = s.isFIFO() ? 'a FIFO' : s.isDirectory() ? 'a directory' : s.isCharacterDevice() || s.isBlockDevice() ? 'a device' : s.isSocket() ? 'a socket' : 'not a file';
  return new DevvmError('invalid-argument', `${what} ${file} is not a regular file (it is ${kind})`, 'give the path of a file');
}

/**
 * Opens `file` for reading only if it is a regular file. stat first, so a FIFO or device is
 * never opened; O_NONBLOCK and fstat after, in case it was swapped for one in between.
 */
export async function openRegular(what: string, file: string): Promise<OpenedFile> {
  let s: Stats;
  try {
    s = await stat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new DevvmError('not-found', `no such ${what}: ${file}`);
    throw e;
  }
  if (!s.isFile()) throw notRegular(what, file, s);
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const f = await handle.stat();
    if (!f.isFile()) throw notRegular(what, file, f);
    if (f.dev !== s.dev || f.ino !== s.ino) throw new DevvmError('busy', `${what} ${file} changed while it was opened`, 'try again');
    let closed = false;
    return {
      file,
      handle,
      stats: f,
      qemuPath: `/proc/${process.pid}/fd/${handle.fd}`,
      close: async () => {
        if (closed) return;
        closed = true;
        await handle.close();
      },
    };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/**
 * The qcow2 header of an open file (named `file` in messages), or null when it is not a
 * qcow2. Reads the first cluster: 4 KiB first, more only when the header says so.
 */
export async function readQcow2Header(f: { handle: FileHandle; file: string }): Promise<Qcow2Header | null> {
  const head = Buffer.alloc(4096);
  const { bytesRead } = await f.handle.read(head, 0, head.length, 0);
  const bits = bytesRead >= 24 ? head.readUInt32BE(20) : 0;
  const want = bits >= 9 && bits <= MAX_CLUSTER_BITS ? 2 ** bits : 0;
  if (bytesRead < head.length || want <= head.length || head.readUInt32BE(0) !== QCOW2_MAGIC) return parseQcow2Header(head.subarray(0, bytesRead), f.file);
  const buf = Buffer.alloc(want);
  const r = await f.handle.read(buf, 0, want, 0);
  return parseQcow2Header(buf.subarray(0, r.bytesRead), f.file);
}

/** Refusals that hold for every qcow2 we take in, flattened or not. */
export function refuseUnsafeQcow2(file: string, h: Qcow2Header): void {
  if (h.dataFile !== null) {
    throw new DevvmError('invalid-argument', `${file} has an external data file${h.dataFile ? ` (${shown(h.dataFile)})` : ''}`, 'its data lives in another host file; convert it to a self-contained image first');
  }
  if (h.encrypted) throw new DevvmError('invalid-argument', `${file} is an encrypted qcow2 image`, 'decrypt it with qemu-img convert first');
  if (h.corrupt) throw new DevvmError('invalid-argument', `${file} is a qcow2 image marked corrupt`, 'repair it with qemu-img check -r all first');
  if (h.unknownIncompatible) {
    throw new DevvmError('invalid-argument', `${file} uses qcow2 incompatible features unknown here (0x${h.unknownIncompatible.toString(16)})`, 'convert it with the qemu-img that wrote it first');
  }
}

/**
 * Why a qcow2 may not be attached to a guest as it is, or null when it may: anything that
 * makes QEMU open a second host file (backing, external data), or that it cannot read as
 * a plain disk (encrypted, corrupt, unknown incompatible features).
 */
export function qcow2Refusal(h: Qcow2Header): string | null {
  if (h.backingFile !== null || h.backingFieldSet) return `it names a backing file (${JSON.stringify((h.backingFile ?? '(unnamed)').slice(0, 60))})`;
  if (h.dataFile !== null) return `it names an external data file${h.dataFile ? ` (${JSON.stringify(h.dataFile.slice(0, 60))})` : ''}`;
  if (h.encrypted) return 'it is encrypted';
  if (h.corrupt) return 'it is marked corrupt';
  if (h.unknownIncompatible) return `it uses incompatible features unknown here (0x${h.unknownIncompatible.toString(16)})`;
  return null;
}

/** qemu block options (a json: filename) that open exactly the checked chain, nothing more. */
export type BlockSpec = { driver: 'raw' | 'qcow2'; file: { driver: 'file'; filename: string }; backing?: BlockSpec | null };

export function jsonFilename(spec: BlockSpec): string {
  return `json:${JSON.stringify(spec)}`;
}

const MAX_CHAIN = 16;

/**
 * Opens the backing chain below the qcow2 `top` (already opened and checked), each file
 * checked as `top` was, with formats declared in the headers or read by us (never probed
 * by qemu). Returns the block spec for the whole chain and every file opened (close them).
 */
export async function openChain(top: OpenedFile, header: Qcow2Header): Promise<{ spec: BlockSpec; opened: OpenedFile[] }> {
  const opened: OpenedFile[] = [];
  const seen = new Set([`${top.stats.dev}:${top.stats.ino}`]);
  const spec: BlockSpec = { driver: 'qcow2', file: { driver: 'file', filename: top.qemuPath }, backing: null };
  try {
    let level = spec;
    let levelFile = top.file;
    let h: Qcow2Header | null = header;
    while (h?.backingFile) {
      const name = h.backingFile;
      if (opened.length >= MAX_CHAIN) throw new DevvmError('invalid-argument', `${top.file} has a backing chain deeper than ${MAX_CHAIN}`);
      if (hasProtocol(name)) throw new DevvmError('invalid-argument', `${levelFile} has a backing file that is not a local file (${shown(name)})`, 'only local backing files can be flattened');
      if (h.backingFormat !== null && h.backingFormat !== 'raw' && h.backingFormat !== 'qcow2') {
        throw new DevvmError('invalid-argument', `${levelFile} has a backing file in format "${shown(h.backingFormat)}"`, 'only raw and qcow2 backing files can be flattened');
      }
      // qemu resolves a relative backing name against the folder of the image naming it.
      const file = path.resolve(path.dirname(levelFile), name);
      const f = await openRegular('backing file', file);
      opened.push(f);
      const id = `${f.stats.dev}:${f.stats.ino}`;
      if (seen.has(id)) throw new DevvmError('invalid-argument', `${top.file} has a backing chain that loops (${file})`);
      seen.add(id);
      // A declared raw backing file is raw even if its bytes look like a qcow2.
      const next: Qcow2Header | null = h.backingFormat === 'raw' ? null : await readQcow2Header(f);
      if (h.backingFormat === 'qcow2' && !next) throw new DevvmError('invalid-argument', `the backing file ${file} of ${levelFile} is not a qcow2 image`);
      const child: BlockSpec = { driver: next ? 'qcow2' : 'raw', file: { driver: 'file', filename: f.qemuPath } };
      if (next) {
        refuseUnsafeQcow2(file, next);
        child.backing = null;
      }
      level.backing = child;
      level = child;
      levelFile = file;
      h = next;
    }
    return { spec, opened };
  } catch (e) {
    await Promise.all(opened.map((f) => f.close()));
    throw e;
  }
}
