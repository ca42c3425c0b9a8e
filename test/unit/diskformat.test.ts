/**
 * Our own qcow2 header reader (the one for image import and disk attach): what it finds,
 * what it refuses to guess about, and why a header is refused for import or for attach.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { BadQcow2Header, EXT_DATA_FILE, hasProtocol, openRegular, parseQcow2Header, qcow2Refusal, readQcow2Header, refuseUnsafeQcow2, shown } from '../../src/helper/diskformat';
import { DevvmError } from '../../src/shared/errors';

interface Craft {
  version?: number;
  backing?: { at: number; name: string };
  incompatible?: bigint;
  crypt?: number;
  clusterBits?: number;
  headerLength?: number;
  exts?: Array<[number, string | Buffer]>;
  /** No end-of-extensions marker. */
  noEnd?: boolean;
  size?: number;
}

/** A qcow2 header as qemu writes it (v3: 104 bytes, then extensions, 64 KiB clusters). */
function craft(c: Craft = {}): Buffer {
  const version = c.version ?? 3;
  const buf = Buffer.alloc(c.size ?? 4096);
  buf.writeUInt32BE(0x514649fb, 0);
  buf.writeUInt32BE(version, 4);
  if (c.backing) {
    buf.writeBigUInt64BE(BigInt(c.backing.at), 8);
    buf.writeUInt32BE(Buffer.byteLength(c.backing.name), 16);
    buf.write(c.backing.name, c.backing.at);
  }
  buf.writeUInt32BE(c.clusterBits ?? 16, 20);
  buf.writeBigUInt64BE(1n << 30n, 24);
  buf.writeUInt32BE(c.crypt ?? 0, 32);
  let at = 72;
  if (version === 3) {
    buf.writeBigUInt64BE(c.incompatible ?? 0n, 72);
    buf.writeUInt32BE(c.headerLength ?? 104, 100);
    at = c.headerLength ?? 104;
  }
  for (const [type, text] of c.exts ?? []) {
    const data = typeof text === 'string' ? Buffer.from(text) : text;
    buf.writeUInt32BE(type, at);
    buf.writeUInt32BE(data.length, at + 4);
    data.copy(buf, at + 8);
    at += 8 + Math.ceil(data.length / 8) * 8;
  }
  if (c.noEnd) buf.fill(0xee, at);
  return buf;
}

const parse = (b: Buffer) => parseQcow2Header(b, 'x.qcow2');
/** Why attach refuses it. */
const why = (b: Buffer) => qcow2Refusal(parse(b)!);
/** What import says when it refuses it (null: accepted). */
const importRefusal = (b: Buffer): string | null => {
  try {
    refuseUnsafeQcow2('x.qcow2', parse(b)!);
    return null;
  } catch (e) {
    assert.ok(e instanceof DevvmError && e.code === 'invalid-argument');
    return e.oneLine();
  }
};

test('not a qcow2: no magic, no header', () => {
  assert.equal(parse(Buffer.from('just text')), null);
  assert.equal(parse(Buffer.alloc(0)), null);
});

test('a plain qcow2: size, no backing, no data file; import and attach take it', () => {
  for (const version of [2, 3]) {
    const h = parse(craft({ version }))!;
    assert.deepEqual(h, { version, clusterBits: 16, virtualSize: 2 ** 30, backingFile: null, backingFieldSet: false, backingFormat: null, dataFile: null, encrypted: false, corrupt: false, unknownIncompatible: 0n });
    assert.equal(qcow2Refusal(h), null);
    assert.equal(importRefusal(craft({ version })), null);
  }
  // The dirty, compression-type and extended-L2 bits are known: no refusal.
  assert.equal(why(craft({ incompatible: 0b11001n })), null);
  assert.equal(importRefusal(craft({ incompatible: 0b11001n })), null);
});

test('backing file name and format, as written', () => {
  const h = parse(craft({ backing: { at: 512, name: '../keys/id_ed25519' }, exts: [[0xe2792aca, 'raw']] }))!;
  assert.equal(h.backingFile, '../keys/id_ed25519');
  assert.equal(h.backingFormat, 'raw');
  // Without the format extension qemu would probe: we report it as unknown (null).
  assert.equal(parse(craft({ backing: { at: 512, name: '/etc/shadow' } }))!.backingFormat, null);
});

test('attach refuses a backing file, v2 or v3, and a size-only backing field (QEMU would look)', () => {
  assert.match(why(craft({ backing: { at: 512, name: '/home/u/.local/share/devvm/keys/id_ed25519' } }))!, /backing file \("\/home\/u\/\.local\/share\/devvm\/keys\/id_ed25519"\)/);
  assert.match(why(craft({ version: 2, backing: { at: 512, name: '../seed.iso' } }))!, /backing file/);
  const sizeOnly = craft();
  sizeOnly.writeUInt32BE(5, 16);
  assert.equal(parse(sizeOnly)!.backingFile, null, 'qemu opens no backing file without an offset');
  assert.equal(parse(sizeOnly)!.backingFieldSet, true);
  assert.match(why(sizeOnly)!, /backing file \("\(unnamed\)"\)/);
});

test('an external data file: by its feature bit, with or without a name', () => {
  assert.equal(parse(craft({ incompatible: 1n << 2n }))!.dataFile, '');
  assert.equal(parse(craft({ incompatible: 1n << 2n, exts: [[EXT_DATA_FILE, '/home/me/.ssh/id_ed25519']] }))!.dataFile, '/home/me/.ssh/id_ed25519');
  // The name extension alone is reported too (qemu ignores it without the bit; we refuse either).
  assert.equal(parse(craft({ exts: [[EXT_DATA_FILE, 'data.raw']] }))!.dataFile, 'data.raw');
  assert.match(why(craft({ exts: [[EXT_DATA_FILE, '/etc/shadow']] }))!, /external data file \("\/etc\/shadow"\)/);
  assert.match(why(craft({ incompatible: 4n }))!, /external data file/, 'the data-file bit alone');
  assert.match(importRefusal(craft({ incompatible: 4n }))!, /x\.qcow2 has an external data file \(its data lives/);
  // Other extensions (feature names) are skipped over to find a data file behind them.
  assert.match(why(craft({ exts: [[0x6803f857, Buffer.alloc(48)], [EXT_DATA_FILE, 'd.bin']] }))!, /data file/);
});

test('encryption, legacy or LUKS', () => {
  assert.equal(parse(craft({ crypt: 1 }))!.encrypted, true);
  assert.equal(parse(craft({ exts: [[0x0537be77, '12345678abcdefgh']] }))!.encrypted, true);
  assert.match(why(craft({ crypt: 1 }))!, /encrypted/);
  assert.match(why(craft({ exts: [[0x0537be77, Buffer.alloc(16)]] }))!, /encrypted/);
  assert.match(importRefusal(craft({ crypt: 1 }))!, /is an encrypted qcow2 image/);
});

test('the corrupt bit and unknown incompatible features are refused by attach and by import', () => {
  assert.equal(parse(craft({ incompatible: 2n }))!.corrupt, true);
  assert.match(why(craft({ incompatible: 2n }))!, /corrupt/);
  assert.match(importRefusal(craft({ incompatible: 2n }))!, /^x\.qcow2 is a qcow2 image marked corrupt \(repair it/);
  assert.equal(parse(craft({ incompatible: (1n << 40n) | 1n }))!.unknownIncompatible, 1n << 40n);
  assert.match(why(craft({ incompatible: 1n << 40n }))!, /unknown here \(0x10000000000\)/);
  assert.match(importRefusal(craft({ incompatible: 1n << 5n }))!, /^x\.qcow2 uses qcow2 incompatible features unknown here \(0x20\)/);
  // v2 has no feature field: those bytes are not read as one.
  assert.equal(parse(craft({ version: 2, incompatible: 2n }))!.corrupt, false);
});

test('a damaged or hostile header is refused, never read past its cluster', () => {
  const bad = (b: Buffer, re: RegExp, reason: RegExp) =>
    assert.throws(() => parse(b), (e: unknown) => e instanceof BadQcow2Header && e.code === 'invalid-argument' && re.test(e.message) && reason.test(e.reason) && !e.reason.includes('x.qcow2'));
  bad(craft({ version: 1 }), /version 1/, /^qcow2 version 1 is not 2 or 3$/);
  bad(Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(4096, 0xff)]), /version 4294967295/, /version 4294967295/);
  for (const n of [40, 50, 90]) bad(craft().subarray(0, n), /short header/, /short header/);
  bad(craft({ backing: { at: 4090, name: 'a-name-past-the-end' } }), /backing file name out of bounds/, /backing/);
  const long = craft();
  long.writeBigUInt64BE(512n, 8);
  long.writeUInt32BE(2000, 16);
  bad(long, /backing file name out of bounds/, /backing/);
  const far = craft();
  far.writeBigUInt64BE(1n << 40n, 8);
  far.writeUInt32BE(8, 16);
  bad(far, /backing file name out of bounds/, /backing/);
  bad(craft({ noEnd: true }), /extension/, /extension/);
  const huge = craft({ exts: [[EXT_DATA_FILE, 'x']] });
  huge.writeUInt32BE(1 << 20, 104 + 4);
  bad(huge, /header extension out of bounds/, /extension/);
  for (const bits of [30, 40]) bad(craft({ clusterBits: bits }), new RegExp(`cluster bits ${bits}`), /cluster bits/);
  for (const length of [60, 108]) bad(craft({ headerLength: length }), new RegExp(`header length ${length}`), /header length/);
  assert.equal(parse(craft({ headerLength: 112 }))!.version, 3, 'a longer header, 8-aligned, is fine');
});

const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-diskformat-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('readQcow2Header reads the whole first cluster, not just its first 4 KiB, and stops there', async () => {
  const file = path.join(tmp, 'far.qcow2');
  writeFileSync(file, craft({ size: 65536 + 4096, backing: { at: 60000, name: '/etc/shadow' } }));
  const f = await openRegular('image file', file);
  try {
    assert.equal((await readQcow2Header(f))!.backingFile, '/etc/shadow');
  } finally {
    await f.close();
  }
  const small = path.join(tmp, 'small.qcow2');
  writeFileSync(small, craft({ clusterBits: 9, size: 512 }));
  const g = await openRegular('image file', small);
  try {
    assert.equal((await readQcow2Header(g))!.clusterBits, 9);
  } finally {
    await g.close();
  }
  writeFileSync(path.join(tmp, 'text'), 'just text');
  const t = await openRegular('image file', path.join(tmp, 'text'));
  try {
    assert.equal(await readQcow2Header(t), null);
  } finally {
    await t.close();
  }
});

test('protocol-looking backing names (qemu would open them as network or json sources)', () => {
  for (const p of ['nbd:127.0.0.1:10809', 'http://x/y', 'json:{"driver":"file"}', 'file:/etc/passwd']) assert.equal(hasProtocol(p), true, p);
  for (const p of ['/abs/path', '../keys/id', 'plain.qcow2', './a:b', 'dir/a:b']) assert.equal(hasProtocol(p), false, p);
});

test('names from a file are shown printable and bounded', () => {
  assert.equal(shown('a\nb\x1b[31m'), 'a?b?[31m');
  assert.equal(shown('x'.repeat(500)).length, 201);
});
