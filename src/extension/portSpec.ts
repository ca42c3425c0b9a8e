/**
 * Static port forwards as the user types them, `[ADDRESS:]HOST:GUEST[/udp]` or `PORT[/udp]`
 * (the same port on both sides), for Add Port Forward… and the Create form. Runs in the
 * extension host and in the webview: no `vscode`, no DOM, no Node imports.
 */
import { DevvmError } from '../shared/errors';
import { preview } from '../shared/validate';

export interface PortSpec {
  protocol: 'tcp' | 'udp';
  /** Only when the user wrote one; the helper binds 127.0.0.1 otherwise. */
  hostAddress?: string;
  hostPort: number;
  guestPort: number;
}

const SPEC = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5})(?::(\d{1,5}))?(?:\/(tcp|udp))?$/i;

function port(what: string, s: string, spec: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new DevvmError('invalid-argument', `${what} ${n} in ${preview(spec)} is out of range`, 'use 1-65535');
  return n;
}

export function parsePortSpec(text: string): PortSpec {
  const spec = text.trim();
  const m = SPEC.exec(spec);
  if (!m) throw new DevvmError('invalid-argument', `invalid port forward ${preview(spec)}`, 'write HOST:GUEST like 8080:80, or one port for both; add /udp for UDP');
  const [, address, host, guest, proto] = m;
  if (address && address.split('.').some((o) => Number(o) > 255)) throw new DevvmError('invalid-argument', `invalid address ${preview(address)} in ${preview(spec)}`, 'an IPv4 address like 127.0.0.1');
  if (address && guest === undefined) throw new DevvmError('invalid-argument', `invalid port forward ${preview(spec)}`, 'with an address, write ADDRESS:HOST:GUEST');
  const hostPort = port('host port', host!, spec);
  return {
    protocol: proto?.toLowerCase() === 'udp' ? 'udp' : 'tcp',
    ...(address ? { hostAddress: address } : {}),
    hostPort,
    guestPort: guest === undefined ? hostPort : port('guest port', guest, spec),
  };
}

/** A list separated by spaces or commas; each host port once per protocol. At most 64 (create's limit). */
export function parsePortList(text: string): PortSpec[] {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  if (parts.length > 64) throw new DevvmError('invalid-argument', `${parts.length} port forwards is more than 64`);
  const out: PortSpec[] = [];
  for (const p of parts) {
    const spec = parsePortSpec(p);
    if (out.some((x) => x.protocol === spec.protocol && x.hostPort === spec.hostPort)) throw new DevvmError('invalid-argument', `host port ${spec.hostPort}${spec.protocol === 'udp' ? '/udp' : ''} is forwarded twice`);
    out.push(spec);
  }
  return out;
}
