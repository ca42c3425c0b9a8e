/**
 * `disk export`: a frozen layer served read-only by qemu-nbd, detached so it outlives the
 * helper as QEMU does.
 *
 * A whole disk holds the guest's password hash and host key, so no other local user may
 * read it: by default the export is a unix socket (0600) in the VM's 0700 directory; on
 * request (`tcp`) it listens on 127.0.0.1 with TLS-PSK, and the key file (0600) is what a
 * client needs. For TCP, qemu-nbd binds the port itself and we confirm the listener is
 * qemu-nbd's own socket (/proc/net/tcp inode among its fds), retrying on a fresh port
 * when the port was taken, so nobody can slip in between choosing a port and binding it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { DevvmError } from '../shared/errors';
import type { NbdExport } from '../shared/types';
import { sourceReachable, unixNbdUri } from './nbd';
import { freePort } from './ports';
import { pidAlive, spawnDetached, type DetachedChild } from './proc';
import { optValue } from './qemu/args';
import { writeFileAtomic } from './store';

export interface ExportRecord {
  pid: number;
  layer: string;
  /** The exported qcow2 (its chain is read through it). */
  file: string;
  exportName: string;
  uri: string;
  /** Unix exports: the socket. */
  socket?: string;
  /** TCP exports: the port on 127.0.0.1 and the TLS-PSK material. */
  port?: number;
  tls?: { dir: string; pskFile: string; identity: string };
}

/** Where an export keeps its files (VmFiles: nbdSocket, nbdTlsDir, nbdPid, nbdLog). */
export interface ExportFiles {
  socket: string;
  tlsDir: string;
  pidFile: string;
  logFile: string;
}

export const PSK_IDENTITY = 'devvm';
const PORT_ATTEMPTS = 5;

/** What clients see (NbdExport of src/shared/types). */
export function publicExport(vm: string, rec: ExportRecord): NbdExport {
  return { vm, layer: rec.layer, uri: rec.uri, ...(rec.tls ? { tls: { pskFile: rec.tls.pskFile, identity: rec.tls.identity } } : {}) };
}

/**
 * The qemu-nbd serving `rec`, if it still runs: the pid file names a live process whose
 * command line serves this file on this socket or port (a recycled pid does not pass).
 */
export function exportAlive(rec: ExportRecord, pidFile: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return false;
  }
  if (pid !== rec.pid || !Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) return false;
  let args: string[];
  try {
    args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return true; // no /proc (macOS): the pid file is all there is
  }
  const where = rec.socket !== undefined ? `--socket=${rec.socket}` : `--port=${rec.port}`;
  return path.basename(args[0] ?? '') === 'qemu-nbd' && args.includes(where) && args[args.length - 1] === rec.file;
}

/** Ends the export (if it runs) and removes its socket and key; the caller drops its record. */
export function stopExport(rec: ExportRecord | null, files: ExportFiles): void {
  if (rec && exportAlive(rec, files.pidFile)) {
    try {
      process.kill(rec.pid, 'SIGTERM');
    } catch {
      // gone meanwhile
    }
  }
  rmSync(files.socket, { force: true });
  rmSync(files.tlsDir, { recursive: true, force: true });
  rmSync(files.pidFile, { force: true });
}

/** Starts qemu-nbd with the process umask at 077, so its socket is born 0600. */
function spawnPrivate(args: string[], logFile: string): DetachedChild {
  const old = process.umask(0o077);
  try {
    return spawnDetached('qemu-nbd', args, logFile);
  } finally {
    process.umask(old);
  }
}

function logSince(file: string, offset: number): string {
  try {
    return readFileSync(file, 'utf8').slice(offset).trim().split('\n').slice(-2).join(' | ');
  } catch {
    return '';
  }
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/**
 * Serves `file` read-only. Resolves once the export answers and qemu-nbd's pid file names
 * it; on failure nothing of it is left running.
 */
export async function serveExport(o: {
  file: string;
  exportName: string;
  layer: string;
  files: ExportFiles;
  tcp: boolean;
  timeoutMs?: number;
  /** Where TCP ports come from (tests hand out a taken one first). */
  pickPort?: () => Promise<number>;
}): Promise<ExportRecord> {
  const { files } = o;
  stopExport(null, files);
  // The socket's directory is the access check for unix clients: owner only.
  await fsp.chmod(path.dirname(files.socket), 0o700);
  const common = ['--read-only', '--persistent', '--shared=16', `--export-name=${o.exportName}`, '--format=qcow2', `--pid-file=${files.pidFile}`];
  if (!o.tcp) {
    if (Buffer.byteLength(files.socket) > 107) {
      throw new DevvmError('invalid-argument', `the export socket path is too long for a unix socket (${files.socket.length} bytes)`, 'use a shorter DEVVM_HOME, or export with --tcp');
    }
    const rec: ExportRecord = { pid: 0, layer: o.layer, file: o.file, exportName: o.exportName, uri: unixNbdUri(files.socket, o.exportName), socket: files.socket };
    const from = sizeOf(files.logFile);
    const child = spawnPrivate([...common, `--socket=${files.socket}`, o.file], files.logFile);
    rec.pid = child.pid;
    try {
      await waitReady(child, rec, files, from, o.timeoutMs);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
    return rec;
  }
  const tls = await writePsk(files.tlsDir);
  for (let attempt = 1; ; attempt++) {
    const port = await (o.pickPort ?? freePort)();
    const rec: ExportRecord = { pid: 0, layer: o.layer, file: o.file, exportName: o.exportName, uri: `nbd://127.0.0.1:${port}/${o.exportName}`, port, tls };
    const from = sizeOf(files.logFile);
    const child = spawnPrivate(
      [...common, '--bind=127.0.0.1', `--port=${port}`, '--object', `tls-creds-psk,id=tls0,endpoint=server,dir=${optValue(tls.dir)}`, '--tls-creds=tls0', o.file],
      files.logFile,
    );
    rec.pid = child.pid;
    try {
      await waitReady(child, rec, files, from, o.timeoutMs);
      return rec;
    } catch (e) {
      child.kill('SIGKILL');
      // Someone bound the port between freePort() and qemu-nbd: take another one.
      if (e instanceof DevvmError && e.message.includes('in use') && attempt < PORT_ATTEMPTS) continue;
      rmSync(files.tlsDir, { recursive: true, force: true });
      throw e;
    }
  }
}

/** A fresh key in qemu's tls-creds-psk layout: DIR/keys.psk holding "identity:hexkey", 0600. */
async function writePsk(dir: string): Promise<{ dir: string; pskFile: string; identity: string }> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  await fsp.chmod(dir, 0o700);
  const pskFile = path.join(dir, 'keys.psk');
  writeFileAtomic(pskFile, `${PSK_IDENTITY}:${randomBytes(32).toString('hex')}\n`, 0o600);
  return { dir, pskFile, identity: PSK_IDENTITY };
}

async function waitReady(child: DetachedChild, rec: ExportRecord, files: ExportFiles, logFrom: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exited = child.exited();
    if (exited) {
      const why = logSince(files.logFile, logFrom);
      throw new DevvmError('process-failed', `qemu-nbd did not start (${exited}${why ? `: ${why}` : ''})`, `see ${files.logFile}`);
    }
    if (await ready(rec, files)) return;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new DevvmError('timeout', `qemu-nbd did not serve within ${timeoutMs} ms`, `see ${files.logFile}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function ready(rec: ExportRecord, files: ExportFiles): Promise<boolean> {
  if (!exportAlive(rec, files.pidFile)) return false; // pid file not written yet
  if (rec.socket !== undefined) {
    if (!existsSync(rec.socket)) return false;
    await fsp.chmod(rec.socket, 0o600); // born 0600 (umask); made sure
    return (await sourceReachable(rec.uri, 1000)) === null;
  }
  const owner = listenerOwner(rec.port!, rec.pid);
  if (owner === undefined) return (await sourceReachable(rec.uri, 1000)) === null; // no /proc
  if (owner !== null && owner !== rec.pid) {
    throw new DevvmError('busy', `port ${rec.port} on 127.0.0.1 is in use by another process`, 'try again');
  }
  return owner === rec.pid;
}

/**
 * Which process listens on 127.0.0.1:`port` (or the wildcard address): our qemu-nbd's pid
 * (`pid`) when the listening socket's inode is among its fds, -1 for someone else, null
 * for no listener yet, undefined where /proc/net/tcp does not exist.
 */
export function listenerOwner(port: number, pid: number): number | null | undefined {
  let table: string;
  try {
    table = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return undefined;
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== '0A') continue; // 0A: LISTEN
    const [addr, p] = f[1]!.split(':');
    if (p === hexPort && (addr === '0100007F' || addr === '00000000')) inodes.add(f[9]!);
  }
  if (!inodes.size) return null;
  return socketInodes(pid).some((i) => inodes.has(i)) ? pid : -1;
}

function socketInodes(pid: number): string[] {
  const out: string[] = [];
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) out.push(m[1]!);
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // gone
  }
  return out;
}
