/**
 * NBD URIs, parsed once for the helper and both clients: nbd://HOST[:PORT][/EXPORT] and
 * nbd+unix:///EXPORT?socket=PATH.
 */
import { DevvmError } from './errors';

export type NbdUri =
  | { transport: 'tcp'; host: string; port: number; export: string }
  | { transport: 'unix'; socket: string; export: string };

/** Whether a disk source names an NBD export rather than a file. */
export function isNbdUri(source: string): boolean {
  return /^nbd(\+unix)?:\/\//.test(source);
}

const HOST = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))$/;
const EXPORT = /^[A-Za-z0-9._-]{0,255}$/;
const PORT = /^[1-9][0-9]{0,4}$/;

function bad(uri: string, why: string, hint = 'use nbd://HOST:PORT/EXPORT or nbd+unix:///EXPORT?socket=/abs/path'): DevvmError {
  // The URI is shown escaped: it may carry control characters or a password.
  return new DevvmError('invalid-argument', `invalid NBD URI ${JSON.stringify(uri.replace(/\/\/[^/@]*@/, '//***@').slice(0, 80))}: ${why}`, hint);
}

/**
 * The grammar is narrow on purpose: what passes ends up in QEMU's JSON and in qemu-img's
 * arguments. No credentials (NBD has none; a password in a URI would be logged), no
 * query but `socket=` on nbd+unix, no `..`, no control characters anywhere.
 */
export function parseNbdUri(uri: string): NbdUri {
  if (typeof uri !== 'string' || uri.length > 4096) throw bad(String(uri).slice(0, 80), 'too long');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(uri)) throw bad(uri, 'control characters');
  const unix = uri.startsWith('nbd+unix://');
  if (!unix && !uri.startsWith('nbd://')) throw bad(uri, 'not an nbd:// or nbd+unix:// URI');
  const rest = uri.slice(unix ? 'nbd+unix://'.length : 'nbd://'.length);
  if (rest.includes('#')) throw bad(uri, 'a fragment is not allowed');
  const q = rest.indexOf('?');
  const beforeQuery = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? null : rest.slice(q + 1);
  const slash = beforeQuery.indexOf('/');
  const authority = slash < 0 ? beforeQuery : beforeQuery.slice(0, slash);
  const exp = slash < 0 ? '' : beforeQuery.slice(slash + 1);
  if (authority.includes('@')) throw bad(uri, 'credentials are not allowed', 'NBD has no passwords; use a TLS-PSK export instead');
  if (!EXPORT.test(exp) || exp === '.' || exp === '..') throw bad(uri, 'the export name may only hold letters, digits, ".", "_" and "-"');
  if (unix) {
    if (authority !== '') throw bad(uri, 'nbd+unix:// takes no host (three slashes)');
    if (query === null || !query.startsWith('socket=') || query.includes('&')) throw bad(uri, 'nbd+unix:// needs exactly one query parameter, socket=PATH');
    let socket: string;
    try {
      socket = decodeURIComponent(query.slice('socket='.length));
    } catch {
      throw bad(uri, 'bad percent-encoding in the socket path');
    }
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f-\u009f]/.test(socket)) throw bad(uri, 'control characters in the socket path');
    if (!socket.startsWith('/') || socket.split('/').includes('..')) throw bad(uri, 'the socket must be an absolute path without ".."');
    if (Buffer.byteLength(socket) > 107) throw bad(uri, 'the socket path is longer than a unix socket address allows (107 bytes)');
    return { transport: 'unix', socket, export: exp };
  }
  if (query !== null) throw bad(uri, 'nbd:// takes no query');
  const m = /^(.*?)(?::([^:\]]*))?$/.exec(authority);
  const host = m?.[1] ?? '';
  const portText = m?.[2];
  if (!HOST.test(host) || host.includes('..')) throw bad(uri, 'bad host');
  if (portText !== undefined && !PORT.test(portText)) throw bad(uri, 'the port must be a number from 1 to 65535 without leading zeros');
  const port = portText === undefined ? 10809 : Number(portText);
  if (port > 65535) throw bad(uri, 'the port must be a number from 1 to 65535 without leading zeros');
  return { transport: 'tcp', host: host.replace(/^\[|\]$/g, ''), port, export: exp };
}

/** The URI of a unix-socket export (the socket path percent-encoded where it must be). */
export function unixNbdUri(socket: string, exportName: string): string {
  return `nbd+unix:///${exportName}?socket=${socket.split('/').map(encodeURIComponent).join('/')}`;
}
