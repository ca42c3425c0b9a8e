/**
 * Our own reading of a qcow2 header, so that what QEMU will open is decided before QEMU
 * sees the file: which version, whether it names a backing file or an external data file
 * (either makes QEMU open a second host file the header chooses), encryption, unknown
 * incompatible features. Nothing here trusts qemu-img's probing.
 *
 * Layout: docs/interop/qcow2.txt in QEMU (all fields big-endian).
 */
import type { FileHandle } from 'node:fs/promises';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
const EXT_END = 0x00000000;
const EXT_ENCRYPTION = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441; // "DATA": external data file name
const INCOMPAT_DATA_FILE = 1n << 2n;
/** dirty, corrupt, external data file, compression type, extended L2: all QEMU 7.2 knows. */
const INCOMPAT_KNOWN = 0b11111n;

export interface Qcow2Header {
  version: number;
  clusterBits: number;
  virtualSize: bigint;
  backingFile: string | null;
  dataFile: string | null;
  /** The incompatible-features bit for an external data file (set even when the name extension is absent). */
  dataFileBit: boolean;
  encrypted: boolean;
  corrupt: boolean;
  unknownIncompatible: bigint;
  extensions: number[];
}

/** Whether the first bytes are a qcow2 magic (what a format probe would go by). */
export function isQcow2Magic(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32BE(0) === QCOW2_MAGIC;
}

/**
 * Parses the header in `buf` (the file's first cluster, or as much of it as exists).
 * Returns null when the magic is absent; throws a plain Error with a short reason when
 * the header is malformed.
 */
export function parseQcow2Header(buf: Buffer): Qcow2Header | null {
  if (!isQcow2Magic(buf)) return null;
  if (buf.length < 72) throw new Error('truncated qcow2 header');
  const version = buf.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw new Error(`qcow2 version ${version} is not 2 or 3`);
  const backingOffset = buf.readBigUInt64BE(8);
  const backingSize = buf.readUInt32BE(16);
  const clusterBits = buf.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21) throw new Error(`qcow2 cluster_bits ${clusterBits} out of range`);
  const virtualSize = buf.readBigUInt64BE(24);
  const cryptMethod = buf.readUInt32BE(32);
  let incompatible = 0n;
  let headerLength = 72;
  if (version === 3) {
    if (buf.length < 104) throw new Error('truncated qcow2 v3 header');
    incompatible = buf.readBigUInt64BE(72);
    headerLength = buf.readUInt32BE(100);
    if (headerLength < 104 || headerLength % 8 !== 0 || headerLength > buf.length) throw new Error(`qcow2 header_length ${headerLength} is invalid`);
  }
  const clusterSize = 2 ** clusterBits;
  const readString = (offset: bigint, size: number, what: string): string => {
    // QEMU reads these from the first cluster only; anything else is malformed.
    if (offset + BigInt(size) > BigInt(Math.min(clusterSize, buf.length)) || size > 1023) throw new Error(`qcow2 ${what} lies outside the header cluster`);
    return buf.subarray(Number(offset), Number(offset) + size).toString('latin1');
  };
  // A backing file is named by offset and size; either being non-zero counts (QEMU uses both).
  const backingFile = backingOffset !== 0n || backingSize !== 0 ? (backingSize > 0 && backingOffset > 0n ? readString(backingOffset, backingSize, 'backing file name') : '(unnamed)') : null;
  let dataFile: string | null = null;
  const extensions: number[] = [];
  let off = headerLength;
  const end = Math.min(clusterSize, buf.length);
  for (;;) {
    // QEMU stops at the cluster's end too (an image without an end marker is valid).
    if (off + 8 > end) break;
    const type = buf.readUInt32BE(off);
    const len = buf.readUInt32BE(off + 4);
    if (type === EXT_END) break;
    if (off + 8 + len > end) throw new Error(`qcow2 header extension 0x${type.toString(16)} runs past the header cluster`);
    extensions.push(type);
    if (type === EXT_DATA_FILE) dataFile = buf.subarray(off + 8, off + 8 + len).toString('latin1');
    off += 8 + Math.ceil(len / 8) * 8;
  }
  return {
    version,
    clusterBits,
    virtualSize,
    backingFile,
    dataFile,
    dataFileBit: (incompatible & INCOMPAT_DATA_FILE) !== 0n,
    encrypted: cryptMethod !== 0 || extensions.includes(EXT_ENCRYPTION),
    corrupt: (incompatible & 2n) !== 0n,
    unknownIncompatible: incompatible & ~INCOMPAT_KNOWN,
    extensions,
  };
}

/** Why QEMU must not open this qcow2 as a guest disk, or null when it may. */
export function qcow2Refusal(h: Qcow2Header): string | null {
  if (h.backingFile !== null) return `it names a backing file (${JSON.stringify(h.backingFile.slice(0, 60))})`;
  if (h.dataFile !== null || h.dataFileBit) return `it names an external data file${h.dataFile !== null ? ` (${JSON.stringify(h.dataFile.slice(0, 60))})` : ''}`;
  if (h.encrypted) return 'it is encrypted';
  if (h.corrupt) return 'it is marked corrupt';
  if (h.unknownIncompatible) return `it uses incompatible features unknown here (0x${h.unknownIncompatible.toString(16)})`;
  return null;
}

/** Reads the first cluster (at most 2 MiB, the largest qcow2 cluster) through an open handle. */
export async function readQcow2Header(fh: FileHandle): Promise<Qcow2Header | null> {
  const head = Buffer.alloc(4096);
  const { bytesRead } = await fh.read(head, 0, head.length, 0);
  if (!isQcow2Magic(head.subarray(0, bytesRead))) return null;
  const bits = bytesRead >= 24 ? head.readUInt32BE(20) : 16;
  const want = bits >= 9 && bits <= 21 ? Math.max(4096, 2 ** bits) : 4096;
  if (want <= bytesRead) return parseQcow2Header(head.subarray(0, bytesRead));
  const buf = Buffer.alloc(want);
  const r = await fh.read(buf, 0, want, 0);
  return parseQcow2Header(buf.subarray(0, r.bytesRead));
}
