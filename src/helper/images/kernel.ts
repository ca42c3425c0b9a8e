/**
 * The kernel an image boots with. A bzImage first decompresses itself, which took 3 s of
 * every boot under emulation (docs/boot.md); the ELF inside it starts at once through its
 * PVH entry point, which QEMU's -kernel uses for an ELF that declares one. Recipes that
 * ask for it (`kernel: 'pvh'`) keep that ELF in place of the bzImage; a kernel where it
 * cannot be found, unpacked or started that way stays as it was.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { log } from '../log';
import { run } from '../proc';

/** The compressed kernel inside a bzImage (boot protocol 2.08+: payload_offset/length), or null. */
export function bzPayload(image: Buffer): { format: 'xz' | 'gzip' | 'other'; data: Buffer } | null {
  if (image.length < 0x250 || image.toString('latin1', 0x202, 0x206) !== 'HdrS' || image.readUInt16LE(0x206) < 0x208) return null;
  const setupSects = image[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + image.readUInt32LE(0x248);
  const end = start + image.readUInt32LE(0x24c);
  if (end > image.length || end <= start) return null;
  const data = image.subarray(start, end);
  const format = data.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) ? 'xz' : data[0] === 0x1f && data[1] === 0x8b ? 'gzip' : 'other';
  return { format, data };
}

/** Whether `elf` is a 64-bit ELF with a PVH entry (a Xen note of type 18, XEN_ELFNOTE_PHYS32_ENTRY). */
export function hasPvhEntry(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > elf.length || elf.readUInt32LE(ph) !== 4) continue; // PT_NOTE
    let at = Number(elf.readBigUInt64LE(ph + 8));
    const end = Math.min(elf.length, at + Number(elf.readBigUInt64LE(ph + 32)));
    while (at + 12 <= end) {
      const namesz = elf.readUInt32LE(at);
      const descsz = elf.readUInt32LE(at + 4);
      const type = elf.readUInt32LE(at + 8);
      const name = elf.toString('latin1', at + 12, at + 12 + namesz);
      if (name === 'Xen\0' && type === 18) return true;
      at += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
    }
  }
  return false;
}

/** Replaces the bzImage at `file` with its PVH-bootable ELF; false (the file untouched) when it has none. */
export async function unpackKernel(file: string, signal?: AbortSignal): Promise<boolean> {
  const payload = bzPayload(readFileSync(file));
  if (!payload || payload.format === 'other') {
    log.info(`${file}: kept as it is (${payload ? 'its compression is not xz or gzip' : 'not a bzImage'})`);
    return false;
  }
  let elf: Buffer;
  if (payload.format === 'gzip') {
    elf = gunzipSync(payload.data);
  } else {
    // The kernel build appends the uncompressed size after the xz stream: --single-stream stops before it.
    const unpacked = `${file}.payload`;
    const xz = `${unpacked}.xz`;
    writeFileSync(xz, payload.data, { mode: 0o600 });
    try {
      await run('xz', ['-d', '--single-stream', '--force', xz], { signal }); // writes `unpacked`
      elf = readFileSync(unpacked);
    } finally {
      rmSync(xz, { force: true });
      rmSync(unpacked, { force: true });
    }
  }
  if (!hasPvhEntry(elf)) {
    log.info(`${file}: kept as it is (the kernel inside has no PVH entry)`);
    return false;
  }
  writeFileSync(`${file}.elf`, elf, { mode: 0o644 });
  renameSync(`${file}.elf`, file);
  return true;
}
