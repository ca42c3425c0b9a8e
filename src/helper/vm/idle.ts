/**
 * Idle suspend: a running VM with a limit (its own --idle-suspend, else the helper's
 * default) that has had no SSH session and no console client for that many minutes is
 * suspended through the normal suspend path.
 *
 * Sessions are counted from the kernel's tables, so every client counts whoever made it:
 * - SSH: ESTABLISHED TCP connections whose local end is QEMU's forward, 127.0.0.1:PORT, in
 *   /proc/net/tcp and tcp6 (ssh, Remote-SSH and ssh-proxy all go through it).
 * - Consoles: connected sockets accepted on the VM's serial.sock and vnc.sock, in
 *   /proc/net/unix (an accepted socket carries its listener's path). The helper's own RFB
 *   connection for resizes (qemu/vnc.ts) is one of them and is subtracted (`ownClients`).
 * The clock and the tables are injected: unit tests fake both.
 */
import { readFileSync } from 'node:fs';

export interface IdleVm {
  name: string;
  /** Minutes without a session before it is suspended; null: never. */
  limitMin: number | null;
  sshPort: number | null;
  /** serial.sock and vnc.sock paths. */
  consoles: string[];
  /** Console connections that are the helper's own. */
  ownClients: number;
}

export interface IdleDeps {
  now(): number;
  /** Running VMs no operation holds. */
  vms(): IdleVm[];
  /** /proc/net/tcp and /proc/net/tcp6. */
  readTcp(): string[];
  /** /proc/net/unix. */
  readUnix(): string;
  suspend(name: string): Promise<unknown>;
  log(message: string): void;
}

const ESTABLISHED = '01';
const SS_CONNECTED = '03';
const LOOPBACK = new Set(['0100007F', '0000000000000000FFFF00000100007F']);

/** ESTABLISHED connections to 127.0.0.1:port (the server's end: local address and port). */
export function countTcp(tables: readonly string[], port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const table of tables) {
    for (const line of table.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4 || f[3] !== ESTABLISHED) continue;
      const [addr, p] = (f[1] ?? '').split(':');
      if (p === hexPort && LOOPBACK.has(addr ?? '')) n++;
    }
  }
  return n;
}

/** Connected sockets bound to one of `paths` (accepted connections; a listener is not connected). */
export function countUnix(table: string, paths: readonly string[]): number {
  const want = new Set(paths);
  let n = 0;
  for (const line of table.split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path; the path may hold spaces.
    const m = /^\s*\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(\S+)\s+\S+\s(.+)$/.exec(line);
    if (m && m[1] === SS_CONNECTED && want.has(m[2]!)) n++;
  }
  return n;
}

function readOr(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return ''; // no IPv6: no tcp6
  }
}

export const procTables = {
  readTcp: () => [readOr('/proc/net/tcp'), readOr('/proc/net/tcp6')],
  readUnix: () => readOr('/proc/net/unix'),
};

export class IdleWatch {
  /** When each running VM last had a session (or was first seen running). */
  private readonly lastActive = new Map<string, number>();
  private ticking = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly d: IdleDeps) {}

  /** Looks at every running VM once; resolves with those it suspended. */
  async tick(): Promise<string[]> {
    if (this.ticking) return [];
    this.ticking = true;
    try {
      const now = this.d.now();
      const vms = this.d.vms();
      const running = new Set(vms.map((v) => v.name));
      // Stopped, suspended or held by an operation: its idle time starts again when it runs.
      for (const name of [...this.lastActive.keys()]) if (!running.has(name)) this.lastActive.delete(name);
      const watched = vms.filter((v) => v.limitMin !== null);
      for (const v of vms) if (v.limitMin === null) this.lastActive.set(v.name, now);
      if (!watched.length) return [];
      const tcp = this.d.readTcp();
      const unix = this.d.readUnix();
      const suspended: string[] = [];
      for (const v of watched) {
        const sessions = (v.sshPort ? countTcp(tcp, v.sshPort) : 0) + Math.max(0, countUnix(unix, v.consoles) - v.ownClients);
        const since = this.lastActive.get(v.name);
        if (sessions > 0 || since === undefined) {
          this.lastActive.set(v.name, now);
          continue;
        }
        if (now - since < v.limitMin! * 60_000) continue;
        // A failed suspend (hot-plugged disks, say) is tried again after another full period.
        this.lastActive.set(v.name, now);
        try {
          this.d.log(`${v.name}: no SSH session or console for ${v.limitMin} min: suspending`);
          await this.d.suspend(v.name);
          this.lastActive.delete(v.name);
          suspended.push(v.name);
        } catch (e) {
          this.d.log(`${v.name}: idle suspend failed: ${(e as Error).message}`);
        }
      }
      return suspended;
    } finally {
      this.ticking = false;
    }
  }

  /** A session is about to begin (ssh-proxy woke the VM and connects next): idle time starts again. */
  touch(name: string): void {
    this.lastActive.set(name, this.d.now());
  }

  /** Idle milliseconds so far (null: not watched or in a session at the last look). */
  idleMs(name: string): number | null {
    const since = this.lastActive.get(name);
    return since === undefined ? null : this.d.now() - since;
  }

  start(everyMs = 5000): void {
    this.timer ??= setInterval(() => void this.tick(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
