/**
 * TLS-PSK keys for attaching a TCP NBD export (`disk attach --tls-psk FILE`).
 *
 * QEMU's tls-creds-psk reads DIR/keys.psk, so the user's key file is validated here and
 * its content copied into a fresh 0700 directory of the attaching VM: QEMU never reads a
 * path the user chose, and a FIFO, a device or someone else's file is refused before it
 * is opened for reading (O_NONBLOCK: opening a FIFO does not hang the helper).
 */
import { constants, readdirSync, rmSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { DevvmError } from '../shared/errors';
import { parseNbdUri } from '../shared/nbduri';
import type { VmFiles } from './filenames';
import { writeFileAtomic } from './store';

export interface Psk {
  identity: string;
  /** Hex, as qemu's keys.psk holds it. */
  key: string;
}

const MAX_BYTES = 4096;
const LINE = /^([A-Za-z0-9._-]{1,128}):([0-9a-fA-F]{2,1024})\n?$/;

function refuse(file: string, why: string): DevvmError {
  return new DevvmError('invalid-argument', `TLS-PSK key file ${file} ${why}`, 'give the key file devvm disk export --tcp printed (one line "identity:hexkey")');
}

/** A key is for nbd:// (TCP) only: a file or a unix socket has no TLS to speak. */
export function tlsSourceOnly(source: string): void {
  if (!source.startsWith('nbd://') || parseNbdUri(source).transport !== 'tcp') {
    throw new DevvmError('invalid-argument', '--tls-psk is only for nbd://HOST:PORT/EXPORT sources', 'attach files and nbd+unix:// exports without it');
  }
}

/** Reads and validates a key file: a regular file of the user's own, one line "identity:hexkey". */
export async function readPskFile(file: string): Promise<Psk> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw refuse(file, code === 'ENOENT' ? 'does not exist' : `cannot be opened (${code ?? 'error'})`);
  }
  try {
    // Checked on what was opened, so a swap of the path after the check changes nothing.
    const st = await fh.stat();
    if (!st.isFile()) throw refuse(file, 'is not a regular file');
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) throw refuse(file, 'is not owned by you');
    if (st.size > MAX_BYTES) throw refuse(file, `is too large (${st.size} bytes)`);
    const buf = Buffer.alloc(MAX_BYTES + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const m = LINE.exec(buf.subarray(0, bytesRead).toString('latin1'));
    if (!m || m[2]!.length % 2) throw refuse(file, 'is not one line "identity:hexkey" (identity: letters, digits, ".", "_", "-"; key: hex)');
    return { identity: m[1]!, key: m[2]!.toLowerCase() };
  } finally {
    await fh.close();
  }
}

/** A fresh 0700 `dir` holding keys.psk (0600) with `psk`, in qemu's layout. */
export async function installPsk(dir: string, psk: Psk): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { mode: 0o700 });
  await fsp.chmod(dir, 0o700);
  writeFileAtomic(path.join(dir, 'keys.psk'), `${psk.identity}:${psk.key}\n`, 0o600);
}

/** Removes every attach key directory of a VM (its QEMU ended, or the helper found it dead). */
export function removeAttachKeys(f: VmFiles): void {
  let names: string[];
  try {
    names = readdirSync(f.dir);
  } catch {
    return;
  }
  for (const n of names) if (f.isAttachTls(n)) rmSync(path.join(f.dir, n), { recursive: true, force: true });
}
