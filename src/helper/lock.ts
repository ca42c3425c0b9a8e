/**
 * The helper's single-instance lock. With the native addon: flock(2) on the file, which
 * the kernel drops when the process dies, so a kill -9'd helper never blocks the next one.
 * Without it: a pid file made with O_EXCL, taken over when its pid is dead or is not a
 * node/devvm process (pid reuse).
 */
import { closeSync, constants, ftruncateSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { DevvmError } from '../shared/errors';
import { log } from './log';
import { loadNative, type NativeAddon } from './native';

export interface Lock {
  readonly file: string;
  readonly kind: 'flock' | 'pidfile';
  /** Idempotent. The file stays for flock (unlinking a flocked file races); a pid file goes. */
  release(): void;
}

/** Locks held by this process, so a second acquire here fails like one from elsewhere. */
const held = new Set<string>();

/** Exclusive and non-blocking: the Lock, or null when another live process holds it. */
export function acquireLock(file: string): Lock | null {
  const { addon } = loadNative();
  if (addon) {
    const l = acquireFlock(file, addon);
    if (l !== 'unsupported') return l;
  }
  return acquirePidLock(file);
}

/** flock mode. 'unsupported' when the filesystem refuses flock (e.g. some NFS setups). */
export function acquireFlock(file: string, addon: NativeAddon): Lock | null | 'unsupported' {
  if (held.has(file)) return null;
  // Node opens with O_CLOEXEC, so QEMUs we spawn (which outlive us) never inherit the lock.
  const fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o600);
  let ok: boolean;
  try {
    ok = addon.flock(fd, true, true);
  } catch (e) {
    closeSync(fd);
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOLCK' || code === 'EINVAL') {
      log.warn(`flock on ${file} failed (${code}); using a pid file instead`);
      return 'unsupported';
    }
    throw new DevvmError('io', `cannot lock ${file}: ${(e as Error).message}`);
  }
  if (!ok) {
    closeSync(fd);
    return null;
  }
  // The pid inside is for humans and for the pid-file mode; the flock is what counts.
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`, 0);
  held.add(file);
  let released = false;
  return {
    file,
    kind: 'flock',
    release() {
      if (released) return;
      released = true;
      held.delete(file);
      try {
        addon.funlock(fd);
      } finally {
        closeSync(fd);
      }
    },
  };
}

function readPid(file: string): number | null {
  try {
    const n = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** Alive and plausibly a devvm helper (node, Electron running as node, or our bundle). */
export function pidHoldsLock(pid: number, file: string): boolean {
  if (pid === process.pid) return held.has(file);
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return true; // no /proc (macOS) or no access: alive is all we can tell
  }
  return /node|devvm|helper\.js|electron|code/i.test(cmdline);
}

/** pid-file mode (no addon). Exported for tests. */
export function acquirePidLock(file: string): Lock | null {
  if (held.has(file)) return null;
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new DevvmError('io', `cannot create ${file}: ${(e as Error).message}`);
      if (!takeOverStale(file)) return null;
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    return pidLock(file, fd);
  }
  return null;
}

/** True when the file was stale and is now gone. */
function takeOverStale(file: string): boolean {
  const pid = readPid(file);
  if (pid === null) {
    // Empty: someone may be between create and write. Stale only once it is old.
    try {
      if (Date.now() - statSync(file).mtimeMs < 2000) return false;
    } catch {
      return true; // vanished: retry the create
    }
  } else if (pidHoldsLock(pid, file)) {
    return false;
  }
  // Move it aside, then check it is still the stale one: a plain unlink could delete a
  // fresh lock another process created since we read the file.
  const aside = `${file}.stale.${process.pid}`;
  try {
    renameSync(file, aside);
  } catch {
    return true; // someone else removed it: retry the create
  }
  if (readPid(aside) !== pid) {
    try {
      linkSync(aside, file); // put the fresh lock back (fails if yet another appeared)
    } catch {
      // a newer one is in place already
    }
    unlinkSafe(aside);
    return false;
  }
  unlinkSafe(aside);
  log.info(`removed stale lock ${file} (pid ${pid ?? 'unknown'} is gone or is not a devvm helper)`);
  return true;
}

function unlinkSafe(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

function pidLock(file: string, fd: number): Lock {
  held.add(file);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    held.delete(file);
    process.removeListener('exit', release);
    closeSync(fd);
    if (readPid(file) === process.pid) unlinkSafe(file);
  };
  // An orderly exit cleans up; a crash leaves a file the next helper finds stale.
  process.on('exit', release);
  return { file, kind: 'pidfile', release };
}
