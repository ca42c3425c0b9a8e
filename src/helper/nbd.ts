/** nbd:// URIs: parsing, the QEMU protocol node for a file or an export, reachability. */
import { existsSync } from 'node:fs';
import net from 'node:net';
import { DevvmError } from '../shared/errors';

export interface NbdUri {
  host: string;
  port: number;
  export: string;
}

const NBD_URI = /^nbd:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(?:\/([A-Za-z0-9._-]{0,255}))?$/;

/** nbd://HOST[:PORT][/EXPORT]; the grammar is narrow on purpose (it ends up in QEMU's JSON). */
export function parseNbdUri(uri: string): NbdUri {
  const m = NBD_URI.exec(uri);
  const port = m?.[2] === undefined ? 10809 : Number(m[2]);
  if (!m || !(port >= 1 && port <= 65535)) {
    throw new DevvmError('invalid-argument', `invalid NBD URI ${JSON.stringify(uri.slice(0, 80))}`, 'use nbd://HOST:PORT/EXPORT, like nbd://127.0.0.1:10809/disk');
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port, export: m[3] ?? '' };
}

/** QMP/-blockdev options of the protocol node for a source (file path or nbd:// URI). */
export function protocolNode(source: string, nodeName: string, readOnly: boolean): Record<string, unknown> {
  if (source.startsWith('nbd://')) {
    const u = parseNbdUri(source);
    return { driver: 'nbd', 'node-name': nodeName, server: { type: 'inet', host: u.host, port: String(u.port) }, export: u.export, 'read-only': readOnly };
  }
  return { driver: 'file', 'node-name': nodeName, filename: source, 'read-only': readOnly };
}


const NBD_GREETING = Buffer.from('NBDMAGICIHAVEOPT', 'latin1');

/**
 * Whether a disk source can be opened now: a file exists; an NBD server greets within
 * `timeoutMs`. The probe then ends the handshake politely (NBD_OPT_ABORT), so the
 * server does not log a failed negotiation for it. Lets "server down" be one clear line
 * before QEMU starts.
 */
export async function sourceReachable(source: string, timeoutMs = 3000): Promise<string | null> {
  if (!source.startsWith('nbd://')) return existsSync(source) ? null : 'missing';
  const u = parseNbdUri(source);
  return new Promise((resolve) => {
    const s = net.createConnection({ host: u.host, port: u.port });
    let got = Buffer.alloc(0);
    let greeted = false;
    let timer = setTimeout(() => done(`no answer within ${timeoutMs} ms`), timeoutMs);
    // Closed only once the server had its say: unread bytes would turn our close into a reset.
    function done(why: string | null): void {
      clearTimeout(timer);
      resolve(why);
      s.end();
      setTimeout(() => s.destroy(), 1000).unref();
    }
    s.on('data', (chunk: Buffer) => {
      if (greeted) return; // the server's acknowledgement of the abort
      got = Buffer.concat([got, chunk]);
      if (got.length < 18) return;
      if (!got.subarray(0, 16).equals(NBD_GREETING)) return done('not an NBD server');
      greeted = true;
      // Client flags (fixed newstyle), then option NBD_OPT_ABORT (2) with no data.
      const bye = Buffer.alloc(20);
      bye.writeUInt32BE(1, 0);
      NBD_GREETING.copy(bye, 4, 8);
      bye.writeUInt32BE(2, 12);
      s.write(bye);
      // The server answers and hangs up; one that lingers has greeted all the same.
      clearTimeout(timer);
      timer = setTimeout(() => done(null), 500);
    });
    s.once('end', () => done(greeted ? null : got.length ? 'not an NBD server' : 'closed the connection'));
    s.once('error', (e: NodeJS.ErrnoException) => done(greeted ? null : (e.code ?? e.message)));
  });
}
