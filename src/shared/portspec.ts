/**
 * Static port forwards as typed (`port add`, `create --port`) and as the helper accepts
 * them. The host address ends up inside a QEMU monitor command line (hostfwd_add), so it
 * is only ever a dotted-quad IPv4 literal: nothing else can reach that line.
 */
import { DevvmError } from './errors';
import type { PortForward, PortProtocol } from './types';
import { preview } from './validate';

export const LOOPBACK = '127.0.0.1';

/** A static forward as kept in vm.json. */
export interface StaticPort {
  protocol: PortProtocol;
  hostAddress: string;
  hostPort: number;
  guestPort: number;
}

function invalid(message: string, hint?: string): never {
  throw new DevvmError('invalid-argument', message, hint);
}

/** An IPv4 literal, four decimal bytes without leading zeros (so "010.0.0.1" cannot mean octal anywhere). */
export function ipv4(value: unknown): string {
  if (typeof value !== 'string' || !/^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/.test(value)) {
    invalid(`invalid host address ${preview(value)}`, 'give an IPv4 address such as 127.0.0.1 (the default) or 0.0.0.0');
  }
  return value;
}

export function portNumber(what: string, value: unknown): number {
  const n = typeof value === 'string' && /^\d{1,5}$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) invalid(`${what} must be a port number 1-65535, got ${preview(value)}`);
  return n;
}

/** The helper's check of a forward from a client; defaults: tcp, 127.0.0.1. */
export function staticPort(p: { protocol?: PortProtocol; hostAddress?: string; hostPort: number; guestPort: number }): StaticPort {
  const protocol = p.protocol ?? 'tcp';
  if (protocol !== 'tcp' && protocol !== 'udp') invalid(`invalid protocol ${preview(protocol)}`, 'tcp or udp');
  return { protocol, hostAddress: ipv4(p.hostAddress ?? LOOPBACK), hostPort: portNumber('the host port', p.hostPort), guestPort: portNumber('the guest port', p.guestPort) };
}

/**
 * "[ADDR:]HOSTPORT:GUESTPORT[/udp]" (the CLI's form; `udp` is the `--udp` flag) and, with
 * `onePort` (the extension's input boxes), "PORT[/udp]" for the same port on both sides. A
 * missing address is 127.0.0.1: a forward reaches beyond this host only when asked.
 */
export function parsePortSpec(text: string, udp = false, onePort = false): StaticPort {
  if (typeof text !== 'string' || text.length > 64) invalid(`invalid port forward ${preview(text)}`, 'use [ADDR:]HOSTPORT:GUESTPORT, e.g. 8080:80');
  let body = onePort ? text.trim() : text;
  let protocol: PortProtocol = udp ? 'udp' : 'tcp';
  const slash = body.lastIndexOf('/');
  if (slash >= 0) {
    const proto = body.slice(slash + 1);
    if (proto !== 'tcp' && proto !== 'udp') invalid(`invalid protocol ${preview(proto)} in ${preview(text)}`, 'end with /tcp or /udp, or nothing');
    if (udp && proto === 'tcp') invalid(`${preview(text)} says /tcp but --udp was given`);
    protocol = proto;
    body = body.slice(0, slash);
  }
  const parts = body.split(':');
  if (onePort && parts.length === 1) parts.push(parts[0]!);
  if (parts.length !== 2 && parts.length !== 3) invalid(`invalid port forward ${preview(text)}`, 'use [ADDR:]HOSTPORT:GUESTPORT, e.g. 8080:80 or 0.0.0.0:8080:80');
  const [addr, host, guest] = parts.length === 3 ? parts : [LOOPBACK, ...parts];
  return { protocol, hostAddress: ipv4(addr), hostPort: portNumber('the host port', host), guestPort: portNumber('the guest port', guest) };
}

/** "127.0.0.1:8080 -> 80/tcp". */
export function portSpecText(p: Pick<PortForward, 'protocol' | 'hostAddress' | 'hostPort' | 'guestPort'>): string {
  return `${p.hostAddress}:${p.hostPort} -> ${p.guestPort}${p.protocol === 'udp' ? '/udp' : ''}`;
}

export const sameHostPort = (a: Pick<StaticPort, 'protocol' | 'hostPort'>, b: Pick<StaticPort, 'protocol' | 'hostPort'>): boolean => a.protocol === b.protocol && a.hostPort === b.hostPort;

/** As the extension's input boxes take it: "PORT[/udp]" too, surrounding blanks ignored. */
export const parsePortInput = (text: string): StaticPort => parsePortSpec(text, false, true);

/** A list separated by spaces or commas (the Create form); each host port once per protocol, at most 64 (create's limit). */
export function parsePortList(text: string): StaticPort[] {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  if (parts.length > 64) invalid(`${parts.length} port forwards is more than 64`);
  const out: StaticPort[] = [];
  for (const p of parts) {
    const spec = parsePortInput(p);
    if (out.some((x) => sameHostPort(x, spec))) invalid(`host port ${spec.hostPort}${spec.protocol === 'udp' ? '/udp' : ''} is forwarded twice`);
    out.push(spec);
  }
  return out;
}
