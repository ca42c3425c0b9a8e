/**
 * virtiofsd, the daemon behind a virtiofs share: one per share, started detached through
 * proc.ts, listening on a 0600 socket in the VM's directory. It serves one QEMU connection
 * and exits when that closes; the record (shares.json) lets a restarted helper find the
 * daemons of a VM that still runs, and end those of one that does not.
 */
import { chmodSync, existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { DevvmError } from '../../shared/errors';
import { log } from '../log';
import { pidAlive, spawnDetached } from '../proc';
import { readJson, writeJsonAtomic } from '../store';

export interface DaemonRecord {
  tag: string;
  pid: number;
  socket: string;
  /** The root port its device sits on. */
  port: string;
}

/** The daemon's socket for a share (VM names and tags hold no "," or ":"). */
export function daemonSocket(vmDir: string, tag: string): string {
  return path.join(vmDir, `fs-${tag}.sock`);
}

/**
 * Its arguments. QEMU 7.2's C virtiofsd (root): it switches to the guest caller's uid and
 * gid for every request, so guest users own what they create and host permissions apply
 * as in the guest. A Rust virtiofsd run unprivileged: no sandbox (it cannot change uid),
 * every file is made as the host user, which the guest's first user (uid 1000) matches
 * on a usual desktop.
 */
export function virtiofsdArgs(binary: string, rust: boolean, socket: string, hostPath: string, root: boolean): string[] {
  if (rust) return [`--socket-path=${socket}`, `--shared-dir=${hostPath}`, '--cache=auto', `--sandbox=${root ? 'namespace' : 'none'}`];
  void binary;
  return [`--socket-path=${socket}`, '-o', `source=${hostPath}`, '-o', 'cache=auto', '-o', 'sandbox=namespace', '-o', 'no_posix_lock', '-o', 'log_level=warn'];
}

/** Starts the daemon and waits for its socket; made 0600 before QEMU connects. */
export async function startDaemon(binary: string, args: string[], socket: string, logFile: string): Promise<number> {
  rmSync(socket, { force: true });
  const child = spawnDetached(binary, args, logFile);
  const deadline = Date.now() + 10_000;
  while (!existsSync(socket)) {
    const exited = child.exited();
    if (exited) throw new DevvmError('process-failed', `virtiofsd did not start: ${tail(logFile) || exited}`, `see ${logFile}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new DevvmError('timeout', 'virtiofsd did not open its socket within 10 s', `see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  chmodSync(socket, 0o600);
  return child.pid;
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-2).join(' | ');
  } catch {
    return '';
  }
}

/** The pid is alive and is the daemon of `socket` (guards against pid reuse). */
export function daemonAlive(r: DaemonRecord): boolean {
  if (!pidAlive(r.pid)) return false;
  try {
    return readFileSync(`/proc/${r.pid}/cmdline`, 'utf8').includes(r.socket);
  } catch {
    return true;
  }
}

export function killDaemon(r: DaemonRecord): void {
  if (daemonAlive(r)) {
    try {
      process.kill(r.pid, 'SIGTERM');
    } catch {
      // gone meanwhile
    }
  }
  rmSync(r.socket, { force: true });
}

export function readRecord(file: string): DaemonRecord[] {
  if (!existsSync(file)) return [];
  try {
    return readJson<DaemonRecord[]>(file);
  } catch {
    return [];
  }
}

export function writeRecord(file: string, list: DaemonRecord[]): void {
  if (list.length) writeJsonAtomic(file, list);
  else rmSync(file, { force: true });
}

/** A VM that no longer runs: its daemons go (they exit with QEMU's connection; this makes sure). */
export function reapDaemons(file: string): void {
  const list = readRecord(file);
  for (const r of list) {
    if (daemonAlive(r)) log.info(`ending virtiofsd pid ${r.pid} of a VM that no longer runs`);
    killDaemon(r);
  }
  rmSync(file, { force: true });
}
