/**
 * The QEMU driver's port forwards: user-mode networking's run-time hostfwd_add and
 * hostfwd_remove, which QMP only offers through `human-monitor-command`. The monitor
 * command is one line of text, so every value in it is checked again here (an IPv4
 * literal and whole port numbers): nothing else can reach that line.
 */
import { DevvmError } from '../../shared/errors';
import { ipv4 } from '../../shared/portspec';
import type { Qmp } from '../qemu/qmp';
import type { HostForward, PortOps } from './driver';

/** The user-mode netdev's id (qemu/args.ts). */
const NETDEV = 'net0';

function port(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new DevvmError('invalid-argument', `invalid port ${String(n)}`);
  return n;
}

function proto(p: string): 'tcp' | 'udp' {
  if (p !== 'tcp' && p !== 'udp') throw new DevvmError('invalid-argument', `invalid protocol ${p}`);
  return p;
}

/** `info usernet`'s host forwards ("  TCP[HOST_FORWARD]  14  127.0.0.1 40780  10.0.2.15  80  0  0"). */
export function parseUsernet(text: string): HostForward[] {
  const out: HostForward[] = [];
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*(TCP|UDP)\[HOST_FORWARD\]\s+\d+\s+(\S+)\s+(\d+)\s+\S+\s+(\d+)\b/.exec(line);
    if (!m) continue;
    out.push({ protocol: m[1] === 'TCP' ? 'tcp' : 'udp', hostAddress: m[2]!, hostPort: Number(m[3]), guestPort: Number(m[4]) });
  }
  return out;
}

export class QemuPorts implements PortOps {
  constructor(private readonly qmp: Qmp) {}

  private async hmp(line: string): Promise<string> {
    const out = await this.qmp.execute<string>('human-monitor-command', { 'command-line': line });
    return typeof out === 'string' ? out.trim() : '';
  }

  async add(f: HostForward): Promise<boolean> {
    const out = await this.hmp(`hostfwd_add ${NETDEV} ${proto(f.protocol)}:${ipv4(f.hostAddress)}:${port(f.hostPort)}-:${port(f.guestPort)}`);
    if (out === '') return true;
    // slirp could not bind the host port (taken by another process, or privileged).
    if (/could not set up host forwarding rule/i.test(out)) return false;
    throw new DevvmError('process-failed', `QEMU refused the forward of host port ${f.hostPort}: ${out.split(/\r?\n/)[0]}`);
  }

  async remove(f: Omit<HostForward, 'guestPort'>): Promise<void> {
    const out = await this.hmp(`hostfwd_remove ${NETDEV} ${proto(f.protocol)}:${ipv4(f.hostAddress)}:${port(f.hostPort)}`);
    if (out !== '' && !/removed|not found/.test(out)) throw new DevvmError('process-failed', `QEMU refused to remove the forward of host port ${f.hostPort}: ${out.split(/\r?\n/)[0]}`);
  }

  async list(): Promise<HostForward[]> {
    return parseUsernet(await this.hmp('info usernet'));
  }
}
