/** Our own qcow2 header reader: what it finds, and what it refuses to guess about. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasProtocol, parseQcow2Header, shown } from '../../src/helper/diskformat';
import { DevvmError } from '../../src/shared/errors';

interface Craft {
  version?: number;
  backing?: { at: number; name: string };
  incompatible?: bigint;
  crypt?: number;
  exts?: Array<[number, string]>;
  /** No end-of-extensions marker. */
  noEnd?: boolean;
}

/** A qcow2 header as qemu writes it (v3: 104 bytes, then extensions, 64 KiB clusters). */
function craft(c: Craft = {}): Buffer {
  const version = c.version ?? 3;
  const buf = Buffer.alloc(4096);
  buf.writeUInt32BE(0x514649fb, 0);
  buf.writeUInt32BE(version, 4);
  if (c.backing) {
    buf.writeBigUInt64BE(BigInt(c.backing.at), 8);
    buf.writeUInt32BE(Buffer.byteLength(c.backing.name), 16);
    buf.write(c.backing.name, c.backing.at);
  }
  buf.writeUInt32BE(16, 20);
  buf.writeBigUInt64BE(1n << 30n, 24);
  buf.writeUInt32BE(c.crypt ?? 0, 32);
  let at = 72;
  if (version === 3) {
    buf.writeBigUInt64BE(c.incompatible ?? 0n, 72);
    buf.writeUInt32BE(104, 100);
    at = 104;
  }
  for (const [type, data] of c.exts ?? []) {
    buf.writeUInt32BE(type, at);
    buf.writeUInt32BE(Buffer.byteLength(data), at + 4);
    buf.write(data, at + 8);
    at += 8 + Math.ceil(Buffer.byteLength(data) / 8) * 8;
  }
  if (c.noEnd) buf.fill(0xee, at);
  return buf;
}

const parse = (b: Buffer) => parseQcow2Header(b, 'x.qcow2');

test('not a qcow2: no magic, no header', () => {
  assert.equal(parse(Buffer.from('just text')), null);
  assert.equal(parse(Buffer.alloc(0)), null);
});

test('a plain qcow2: size, no backing, no data file', () => {
  for (const version of [2, 3]) {
    assert.deepEqual(parse(craft({ version })), { version, clusterBits: 16, virtualSize: 2 ** 30, backingFile: null, backingFormat: null, dataFile: null, encrypted: false });
  }
});

test('backing file name and format, as written', () => {
  const h = parse(craft({ backing: { at: 512, name: '../keys/id_ed25519' }, exts: [[0xe2792aca, 'raw']] }))!;
  assert.equal(h.backingFile, '../keys/id_ed25519');
  assert.equal(h.backingFormat, 'raw');
  // Without the format extension qemu would probe: we report it as unknown (null).
  assert.equal(parse(craft({ backing: { at: 512, name: '/etc/shadow' } }))!.backingFormat, null);
});

test('an external data file: by its feature bit, with or without a name', () => {
  assert.equal(parse(craft({ incompatible: 1n << 2n }))!.dataFile, '');
  assert.equal(parse(craft({ incompatible: 1n << 2n, exts: [[0x44415441, '/home/me/.ssh/id_ed25519']] }))!.dataFile, '/home/me/.ssh/id_ed25519');
  // The name extension alone is reported too (qemu ignores it without the bit; we refuse either).
  assert.equal(parse(craft({ exts: [[0x44415441, 'data.raw']] }))!.dataFile, 'data.raw');
});

test('encryption, legacy or LUKS', () => {
  assert.equal(parse(craft({ crypt: 1 }))!.encrypted, true);
  assert.equal(parse(craft({ exts: [[0x0537be77, '12345678abcdefgh']] }))!.encrypted, true);
});

test('a damaged or hostile header is refused, never read past its cluster', () => {
  const bad = (b: Buffer, re: RegExp) => assert.throws(() => parse(b), (e: unknown) => e instanceof DevvmError && e.code === 'invalid-argument' && re.test(e.message));
  bad(craft({ version: 1 }), /version 1/);
  bad(Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(4096, 0xff)]), /version 4294967295/);
  bad(craft().subarray(0, 50), /short header/);
  bad(craft().subarray(0, 90), /short header/);
  bad(craft({ backing: { at: 4090, name: 'a-name-past-the-end' } }), /backing file name out of bounds/);
  const long = craft();
  long.writeBigUInt64BE(512n, 8);
  long.writeUInt32BE(2000, 16);
  bad(long, /backing file name out of bounds/);
  bad(craft({ noEnd: true }), /extension/);
  const bits = craft();
  bits.writeUInt32BE(40, 20);
  bad(bits, /cluster bits 40/);
});

test('protocol-looking backing names (qemu would open them as network or json sources)', () => {
  for (const p of ['nbd:127.0.0.1:10809', 'http://x/y', 'json:{"driver":"file"}', 'file:/etc/passwd']) assert.equal(hasProtocol(p), true, p);
  for (const p of ['/abs/path', '../keys/id', 'plain.qcow2', './a:b', 'dir/a:b']) assert.equal(hasProtocol(p), false, p);
});

test('names from a file are shown printable and bounded', () => {
  assert.equal(shown('a\nb\x1b[31m'), 'a?b?[31m');
  assert.equal(shown('x'.repeat(500)).length, 201);
});
