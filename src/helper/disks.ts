/**
 * Extra disks: checking a disk image file or an nbd:// export before it is hot-plugged
 * into a running VM (the driver plugs it, see driver/qemu.ts), and serving a frozen layer read-only over NBD on 127.0.0.1 (qemu-nbd).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { DevvmError } from '../shared/errors';
import type { AttachedDisk } from '../shared/types';
import { imgInfo } from './layers';
import { parseNbdUri } from './nbd';
import { freePort } from './ports';
import { livePid } from './qemu/machine';

/** A disk hot-plugged into the running QEMU, as remembered in vms/<name>/attached.json. */
export interface AttachedRecord extends AttachedDisk {
  /** The PCIe root port it sits on (virtio only). */
  port?: string;
}

/** What clients see of an attached disk (the root port is the helper's business). */
export function publicDisk({ port: _port, ...d }: AttachedRecord): AttachedDisk {
  return d;
}

/** Checks a source before QEMU sees it; returns its format (NBD exports are raw). */
export async function checkSource(source: string, home: string, readOnly: boolean): Promise<string> {
  if (source.startsWith('nbd://')) {
    parseNbdUri(source);
    return 'raw';
  }
  if (!path.isAbsolute(source) || source.split('/').includes('..')) {
    throw new DevvmError('invalid-argument', `disk source must be an absolute path or an nbd:// URI: ${JSON.stringify(source.slice(0, 80))}`);
  }
  let st;
  try {
    st = statSync(source);
  } catch {
    throw new DevvmError('not-found', `no such disk image: ${source}`);
  }
  if (!st.isFile()) throw new DevvmError('invalid-argument', `not a regular file: ${source}`);
  // devvm's own layers and bases are never handed to a guest for writing.
  if (!readOnly && (source + '/').startsWith(path.resolve(home) + '/')) {
    throw new DevvmError('invalid-argument', `${source} belongs to devvm's own state`, 'attach it with --read-only, or attach a copy');
  }
  const { format } = await imgInfo(source);
  if (format !== 'raw' && format !== 'qcow2') throw new DevvmError('invalid-argument', `unsupported disk format ${format}`, 'convert it with qemu-img convert -O qcow2');
  return format;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface ExportRecord {
  pid: number;
  port: number;
  layer: string;
  uri: string;
}

/** The qemu-nbd serving `rec`, if it still runs (checked, never assumed). */
export function exportAlive(rec: ExportRecord, pidFile: string, file: string): boolean {
  return livePid(pidFile, file) === rec.pid;
}

/**
 * Serves `file` (a frozen qcow2 layer, read through its chain) read-only on 127.0.0.1 with
 * qemu-nbd, detached so it outlives the helper like QEMU does.
 */
export async function serveNbd(o: { file: string; exportName: string; pidFile: string; logFile: string; layer: string }): Promise<ExportRecord> {
  const port = await freePort();
  rmSync(o.pidFile, { force: true });
  const out = openSync(o.logFile, 'a', 0o600);
  const child = spawn(
    'qemu-nbd',
    ['--read-only', '--persistent', '--shared=16', '--bind=127.0.0.1', `--port=${port}`, `--export-name=${o.exportName}`, '--format=qcow2', `--pid-file=${o.pidFile}`, o.file],
    { detached: true, stdio: ['ignore', out, out] },
  );
  closeSync(out);
  let exited: string | null = null;
  child.once('exit', (code, sig) => (exited = `exit ${code ?? sig}`));
  child.once('error', (e) => (exited = e.message));
  child.unref();
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (exited) throw new DevvmError('process-failed', `qemu-nbd did not start (${exited})`, `see ${o.logFile}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new DevvmError('timeout', 'qemu-nbd did not listen within 10 s', `see ${o.logFile}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { pid: child.pid!, port, layer: o.layer, uri: `nbd://127.0.0.1:${port}/${o.exportName}` };
}
