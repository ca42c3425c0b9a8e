/** Metadata files: JSON written atomically (temp file, fsync, rename, fsync dir). */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { DevvmError } from '../shared/errors';

export function writeFileAtomic(file: string, data: string, mode = 0o600): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

/** Flushes a directory's entries after a rename into it; best effort (not supported everywhere). */
export function fsyncDir(dir: string): void {
  try {
    fsyncPath(dir);
  } catch {
    // not supported here
  }
}

export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

export function readJson<T>(file: string): T {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new DevvmError('not-found', `missing ${file}`);
    throw e;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new DevvmError('io', `damaged metadata file ${file}`, 'restore it from a backup or delete the entry');
  }
}

/** Flushes a data file (a layer, a seed, an imported disk) before metadata that names it is written. */
export function fsyncPath(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsyncPath off the event loop: an imported disk can take seconds to flush. */
export async function fsyncPathAsync(file: string): Promise<void> {
  const fh = await open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsyncDir off the event loop. */
export async function fsyncDirAsync(dir: string): Promise<void> {
  try {
    await fsyncPathAsync(dir);
  } catch {
    // not supported here
  }
}
