/**
 * The QEMU driver's shared folders: virtiofs devices (a virtiofsd per share, QMP
 * chardev-add + device_add vhost-user-fs-pci on a free share root port, and back), and
 * the boot-time daemons a launch needs. 9p devices come from the command line only.
 */
import { DevvmError } from '../../shared/errors';
import { log } from '../log';
import { SHARE_PORTS, SHARE_TAG } from '../qemu/args';
import type { Qmp } from '../qemu/qmp';
import { daemonSocket, killDaemon, readRecord, startDaemon, virtiofsdArgs, writeRecord, type DaemonRecord } from '../qemu/virtiofsd';
import type { InstanceFiles, ShareDevice, ShareOps } from './driver';

/** Which virtiofsd, if any, this host runs (shares/host.ts chooses). */
export interface VirtiofsdChoice {
  binary: string;
  rust: boolean;
  root: boolean;
}

/** Starts the daemons of boot-time virtiofs shares; each gets a share root port. */
export async function startBootDaemons(d: VirtiofsdChoice, files: InstanceFiles, devices: ShareDevice[], logFile: string): Promise<DaemonRecord[]> {
  const started: DaemonRecord[] = [];
  try {
    for (const s of devices.filter((x) => x.transport === 'virtiofs')) {
      const port = SHARE_PORTS[started.length];
      if (!port) throw new DevvmError('invalid-argument', `at most ${SHARE_PORTS.length} virtiofs shares per VM`);
      started.push(await daemonFor(d, files, s, port, logFile));
    }
  } catch (e) {
    started.forEach(killDaemon);
    throw e;
  }
  writeRecord(files.shareRecord, started);
  return started;
}

async function daemonFor(d: VirtiofsdChoice, files: InstanceFiles, s: ShareDevice, port: string, logFile: string): Promise<DaemonRecord> {
  if (!SHARE_TAG.test(s.tag)) throw new DevvmError('internal', `bad share tag ${s.tag}`);
  const socket = daemonSocket(files.dir, s.tag);
  const pid = await startDaemon(d.binary, virtiofsdArgs(d.binary, d.rust, socket, s.hostPath, d.root), socket, logFile);
  log.info(`virtiofsd pid ${pid} serves ${s.hostPath} as ${s.tag}`);
  return { tag: s.tag, pid, socket, port };
}

export class QemuShares implements ShareOps {
  constructor(
    private readonly qmp: Qmp,
    private readonly files: InstanceFiles,
    private readonly daemon: VirtiofsdChoice | null,
    /** The machine has shared memory and share ports (virtiofs can be hot-plugged). */
    private readonly sharedMemory: boolean,
    private readonly logFile: string,
  ) {}

  private get record(): DaemonRecord[] {
    return readRecord(this.files.shareRecord);
  }

  plugged(): string[] {
    return this.record.map((r) => r.tag);
  }

  canPlug(d: ShareDevice): string | null {
    if (d.transport !== 'virtiofs') return 'QEMU 7.2 cannot add a 9p export to a running VM (no fsdev_add)';
    if (!this.daemon) return 'no virtiofsd runs on this host';
    if (!this.sharedMemory) return 'this VM was started without shared memory (it had no virtiofs share at boot)';
    if (!SHARE_PORTS.some((p) => !this.record.some((r) => r.port === p))) return `all ${SHARE_PORTS.length} share slots are in use`;
    return null;
  }

  async plug(d: ShareDevice): Promise<void> {
    const why = this.canPlug(d);
    if (why) throw new DevvmError('not-supported', `cannot add ${d.hostPath} to the running VM: ${why}`);
    const list = this.record;
    const port = SHARE_PORTS.find((p) => !list.some((r) => r.port === p))!;
    const rec = await daemonFor(this.daemon!, this.files, d, port, this.logFile);
    try {
      await this.qmp.execute('chardev-add', { id: `fsc-${d.tag}`, backend: { type: 'socket', data: { addr: { type: 'unix', data: { path: rec.socket } }, server: false } } });
      try {
        await this.qmp.execute('device_add', { driver: 'vhost-user-fs-pci', chardev: `fsc-${d.tag}`, tag: d.tag, id: d.tag, bus: port });
      } catch (e) {
        await this.qmp.execute('chardev-remove', { id: `fsc-${d.tag}` }).catch(() => {});
        throw e;
      }
    } catch (e) {
      killDaemon(rec);
      throw new DevvmError('process-failed', `QEMU did not take the virtiofs device for ${d.hostPath}: ${(e as Error).message}`);
    }
    writeRecord(this.files.shareRecord, [...list, rec]);
  }

  async unplug(tag: string): Promise<void> {
    const rec = this.record.find((r) => r.tag === tag);
    if (!rec) return;
    // A PCIe unplug waits for the guest to let go (Linux: about 5 s after the attention button).
    const gone = this.qmp.waitEvent('DEVICE_DELETED', 30_000, (e) => e.data?.device === tag);
    await this.qmp.execute('device_del', { id: tag });
    await gone;
    await this.qmp.execute('chardev-remove', { id: `fsc-${tag}` }).catch((e: Error) => log.warn(`chardev-remove fsc-${tag}: ${e.message}`));
    killDaemon(rec);
    writeRecord(this.files.shareRecord, this.record.filter((r) => r.tag !== tag));
  }
}
