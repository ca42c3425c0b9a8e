/**
 * Extra disks: hot-plugging a disk image file or an nbd:// export into a running VM
 * (virtio-blk on a free PCIe root port, or USB mass storage on the xHCI controller), and
 * serving a frozen layer read-only over NBD on 127.0.0.1 (qemu-nbd).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { DevvmError } from '../shared/errors';
import type { AttachedDisk } from '../shared/types';
import { imgInfo } from './layers';
import { parseNbdUri, protocolNode } from './nbd';
import { HOTPLUG_PORTS } from './qemu/args';
import { freePort } from './ports';
import { livePid } from './qemu/machine';
import type { Qmp } from './qemu/qmp';

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

/** Hot-plugs `source`; resolves once QEMU has the device (the guest sees it a moment later). */
export async function attach(qmp: Qmp, attached: AttachedRecord[], o: { source: string; format: string; usb: boolean; readOnly: boolean }): Promise<AttachedRecord> {
  let n = 1;
  while (attached.some((d) => d.id === `xd${n}`)) n++;
  const id = `xd${n}`;
  let port: string | undefined;
  if (!o.usb) {
    port = HOTPLUG_PORTS.find((p) => !attached.some((d) => d.port === p));
    if (!port) throw new DevvmError('busy', `all ${HOTPLUG_PORTS.length} hot-plug slots are in use`, 'detach a disk first, or attach as --usb');
  }
  await qmp.execute('blockdev-add', { ...protocolNode(o.source, `${id}-proto`, o.readOnly) });
  try {
    await qmp.execute('blockdev-add', { driver: o.format, file: `${id}-proto`, 'node-name': id, 'read-only': o.readOnly });
    try {
      await qmp.execute(
        'device_add',
        o.usb ? { driver: 'usb-storage', bus: 'xhci.0', drive: id, id, removable: true } : { driver: 'virtio-blk-pci', bus: port, drive: id, id },
      );
    } catch (e) {
      await qmp.execute('blockdev-del', { 'node-name': id }).catch(() => {});
      throw e;
    }
  } catch (e) {
    await qmp.execute('blockdev-del', { 'node-name': `${id}-proto` }).catch(() => {});
    throw e;
  }
  return { id, source: o.source, bus: o.usb ? 'usb' : 'virtio', readOnly: o.readOnly, ...(port ? { port } : {}) };
}

/**
 * Unplugs and closes a disk, flushing it. A PCIe unplug waits for the guest (Linux takes
 * about 5 s after the attention button); USB goes at once.
 */
export async function detach(qmp: Qmp, d: AttachedRecord, timeoutMs = 30_000): Promise<void> {
  // device_del of usb-storage sends two DEVICE_DELETED events: wait for the one naming our id.
  const gone = qmp.waitEvent('DEVICE_DELETED', timeoutMs, (e) => e.data?.device === d.id);
  await qmp.execute('device_del', { id: d.id });
  await gone;
  await qmp.execute('blockdev-del', { 'node-name': d.id });
  await qmp.execute('blockdev-del', { 'node-name': `${d.id}-proto` });
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
