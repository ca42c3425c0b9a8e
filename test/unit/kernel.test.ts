/** The guest kernel's unpacking for PVH boot (images/kernel.ts), on synthetic bzImages and ELFs. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { bzPayload, hasPvhEntry, unpackKernel } from '../../src/helper/images/kernel';

const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-kernel-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A 64-bit ELF with one PT_NOTE segment holding `notes` ([name, type]). */
function elf(notes: Array<[string, number]>): Buffer {
  const body = Buffer.concat(
    notes.map(([name, type]) => {
      const n = Buffer.from(`${name}\0`, 'latin1');
      const h = Buffer.alloc(12);
      h.writeUInt32LE(n.length, 0);
      h.writeUInt32LE(8, 4);
      h.writeUInt32LE(type, 8);
      return Buffer.concat([h, n, Buffer.alloc((4 - (n.length % 4)) % 4), Buffer.alloc(8)]);
    }),
  );
  const head = Buffer.alloc(64 + 56);
  head.writeUInt32BE(0x7f454c46, 0);
  head[4] = 2; // 64-bit
  head[5] = 1; // little endian
  head.writeBigUInt64LE(64n, 0x20); // e_phoff
  head.writeUInt16LE(56, 0x36);
  head.writeUInt16LE(1, 0x38);
  head.writeUInt32LE(4, 64); // PT_NOTE
  head.writeBigUInt64LE(BigInt(head.length), 64 + 8); // p_offset
  head.writeBigUInt64LE(BigInt(body.length), 64 + 32); // p_filesz
  return Buffer.concat([head, body]);
}

/** A bzImage shell around `payload` (setup header fields only). */
function bzImage(payload: Buffer, version = 0x20f): Buffer {
  const setupSects = 4;
  const setup = Buffer.alloc((setupSects + 1) * 512);
  setup[0x1f1] = setupSects;
  setup.write('HdrS', 0x202, 'latin1');
  setup.writeUInt16LE(version, 0x206);
  setup.writeUInt32LE(100, 0x248); // payload_offset within the protected-mode part
  setup.writeUInt32LE(payload.length, 0x24c);
  return Buffer.concat([setup, Buffer.alloc(100), payload, Buffer.alloc(64)]);
}

test('hasPvhEntry: only a Xen note of type 18 counts', () => {
  assert.equal(hasPvhEntry(elf([['GNU', 3], ['Xen', 18]])), true);
  assert.equal(hasPvhEntry(elf([['Xen', 6], ['GNU', 18]])), false);
  assert.equal(hasPvhEntry(Buffer.from('not an elf at all, not at all, not at all, not at all, not at all')), false);
});

test('bzPayload: finds the payload through the setup header and names its compression; not a bzImage is null', () => {
  const gz = gzipSync(Buffer.from('kernel'));
  const p = bzPayload(bzImage(gz));
  assert.equal(p?.format, 'gzip');
  assert.deepEqual(p?.data, gz);
  assert.equal(bzPayload(bzImage(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1])))?.format, 'xz');
  assert.equal(bzPayload(bzImage(Buffer.from('lz4?'), 0x20f))?.format, 'other');
  assert.equal(bzPayload(bzImage(gz, 0x207)), null, 'boot protocol before 2.08 has no payload fields');
  assert.equal(bzPayload(elf([])), null);
  const truncated = bzImage(gz).subarray(0, 2600); // cut inside the payload
  assert.equal(bzPayload(truncated), null);
});

test('unpackKernel: a gzip or xz bzImage with a PVH ELF inside is replaced by the ELF; anything else is left as it was', async () => {
  const pvh = elf([['Xen', 18]]);
  const gz = path.join(dir, 'gz');
  writeFileSync(gz, bzImage(gzipSync(pvh)));
  assert.equal(await unpackKernel(gz), true);
  assert.deepEqual(readFileSync(gz), pvh);

  const xzFile = path.join(dir, 'plain');
  writeFileSync(xzFile, pvh);
  const { spawnSync } = await import('node:child_process');
  const xz = spawnSync('xz', ['-c', '--check=crc32', xzFile]).stdout;
  const withXz = path.join(dir, 'xz');
  // As the kernel build does: the uncompressed size after the stream.
  writeFileSync(withXz, bzImage(Buffer.concat([xz, Buffer.from([pvh.length & 0xff, pvh.length >> 8, 0, 0])])));
  assert.equal(await unpackKernel(withXz), true);
  assert.deepEqual(readFileSync(withXz), pvh);

  for (const [name, content] of [
    ['no-pvh', bzImage(gzipSync(elf([['Xen', 6]])))],
    ['lz4', bzImage(Buffer.from('something else'))],
    ['not-bz', Buffer.from('hello')],
  ] as const) {
    const f = path.join(dir, name);
    writeFileSync(f, content);
    assert.equal(await unpackKernel(f), false, name);
    assert.deepEqual(readFileSync(f), content, `${name} untouched`);
  }
});
