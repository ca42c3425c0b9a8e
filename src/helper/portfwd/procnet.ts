/**
 * What the guest listens on, from its /proc/net/tcp and /proc/net/tcp6 (read through the
 * guest agent's file commands: no process spawned per poll), and the change from one poll
 * to the next. Pure functions over untrusted text: a line that does not parse is skipped.
 */

/** A listening TCP socket in the guest. */
export interface Listener {
  port: number;
  /** Dotted quad, or an IPv6 address in its full hex form ("::1" and "::" shortened). */
  address: string;
  family: 4 | 6;
}

/** How a guest port is reached from the host. */
export type Route = 'hostfwd' | 'relay';

/** One guest port to forward: `hostfwd` through QEMU's user network, `relay` over SSH to `address` (a guest-local listener). */
export interface GuestPort {
  port: number;
  route: Route;
  /** The address the guest listens on (the relay's target). */
  address: string;
}

/** TCP_LISTEN in /proc/net/tcp's `st` column. */
const LISTEN = '0A';

/** The guest's address on QEMU's user network (slirp's first DHCP lease): where hostfwd connects. */
export const GUEST_IP = '10.0.2.15';

/** /proc/net/tcp stores each 32-bit word in the guest's byte order (little-endian: x86, arm64). */
function word(hex: string): number[] {
  const n = parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

function v4(hex: string): string | null {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return null;
  return word(hex).join('.');
}

function v6(hex: string): string | null {
  if (!/^[0-9A-Fa-f]{32}$/.test(hex)) return null;
  const bytes = [0, 8, 16, 24].flatMap((i) => word(hex.slice(i, i + 8)));
  // v4-mapped (::ffff:a.b.c.d): a dual-stack socket bound to an IPv4 address.
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join('.')}`;
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16));
  const full = groups.join(':');
  if (full === '0:0:0:0:0:0:0:0') return '::';
  if (full === '0:0:0:0:0:0:0:1') return '::1';
  return full;
}

/** The listening sockets of one /proc/net/tcp{,6} text; other states and unparsable lines are skipped. */
export function parseProcNet(text: string, family: 4 | 6): Listener[] {
  const out: Listener[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== LISTEN) continue;
    const [addrHex, portHex] = (f[1] ?? '').split(':');
    if (!addrHex || !portHex || !/^[0-9A-Fa-f]{4}$/.test(portHex)) continue;
    const address = family === 4 ? v4(addrHex) : v6(addrHex);
    const port = parseInt(portHex, 16);
    if (address === null || port < 1) continue;
    out.push({ port, address, family });
  }
  return out;
}

const unmapped = (a: string) => (a.startsWith('::ffff:') ? a.slice(7) : a);

/** QEMU's hostfwd connects to GUEST_IP: a socket on a wildcard or on that address takes it. */
export function reachableByHostfwd(address: string): boolean {
  const a = unmapped(address);
  return a === '0.0.0.0' || a === '::' || a === GUEST_IP;
}

const isLoopback = (address: string) => {
  const a = unmapped(address);
  return a === '::1' || a.startsWith('127.');
};

/**
 * The guest ports to forward, one entry per port (a port may have several sockets: IPv4
 * and IPv6, or several addresses). `skip`: ports forwarded otherwise (SSH, static ones).
 * A port some socket serves on a wildcard (or the NIC's address) goes through hostfwd;
 * one only a guest-local address serves is relayed to that address (loopback first).
 */
export function guestPorts(listeners: readonly Listener[], skip: ReadonlySet<number>): Map<number, GuestPort> {
  const byPort = new Map<number, Listener[]>();
  for (const l of listeners) {
    if (skip.has(l.port)) continue;
    byPort.set(l.port, [...(byPort.get(l.port) ?? []), l]);
  }
  const out = new Map<number, GuestPort>();
  for (const [port, ls] of [...byPort].sort((a, b) => a[0] - b[0])) {
    const direct = ls.find((l) => reachableByHostfwd(l.address));
    if (direct) {
      out.set(port, { port, route: 'hostfwd', address: direct.address });
      continue;
    }
    const target = ls.find((l) => l.family === 4 && isLoopback(l.address)) ?? ls.find((l) => isLoopback(l.address)) ?? ls[0]!;
    out.set(port, { port, route: 'relay', address: unmapped(target.address) });
  }
  return out;
}

export interface PortDiff {
  added: GuestPort[];
  removed: GuestPort[];
}

/**
 * From one poll to the next: a port whose route changed (or a relay whose target did) is
 * removed and added again; a hostfwd one whose socket moved between wildcards stays.
 */
export function diffPorts(prev: ReadonlyMap<number, GuestPort>, next: ReadonlyMap<number, GuestPort>): PortDiff {
  const same = (a: GuestPort, b: GuestPort) => a.route === b.route && (a.route === 'hostfwd' || a.address === b.address);
  const added: GuestPort[] = [];
  const removed: GuestPort[] = [];
  for (const [port, p] of prev) {
    const n = next.get(port);
    if (!n || !same(p, n)) removed.push(p);
  }
  for (const [port, n] of next) {
    const p = prev.get(port);
    if (!p || !same(p, n)) added.push(n);
  }
  return { added, removed };
}

/**
 * Process names by port from `ss -Hltnp` ("LISTEN 0 5 0.0.0.0:8123 0.0.0.0:*
 * users:(("python3",pid=612,fd=3))"). The name is the guest's: shown, never trusted
 * (control characters dropped, length bounded).
 */
export function parseSsProcesses(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const local = f[3];
    const m = /:(\d{1,5})$/.exec(local ?? '');
    const user = /users:\(\("((?:[^"\\]|\\.){1,64})",pid=(\d+)/.exec(line);
    if (!m || !user) continue;
    const port = Number(m[1]);
    const name = user[1]!.replace(/[\x00-\x1f\x7f]/g, '?').slice(0, 32);
    if (!out.has(port)) out.set(port, name);
  }
  return out;
}
