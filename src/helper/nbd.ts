/** NBD sources: the QEMU protocol node for a file or an export, and reachability (URIs: src/shared/nbduri.ts). */
import { existsSync } from 'node:fs';
import net from 'node:net';

export { isNbdUri, parseNbdUri, unixNbdUri, type NbdUri } from '../shared/nbduri';
import { isNbdUri, parseNbdUri } from '../shared/nbduri';

/** QMP/-blockdev options of the protocol node for a source (file path or NBD URI). */
export function protocolNode(source: string, nodeName: string, readOnly: boolean): Record<string, unknown> {
  if (isNbdUri(source)) {
    const u = parseNbdUri(source);
    const server = u.transport === 'unix' ? { type: 'unix', path: u.socket } : { type: 'inet', host: u.host, port: String(u.port) };
    return { driver: 'nbd', 'node-name': nodeName, server, export: u.export, 'read-only': readOnly };
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
  if (!isNbdUri(source)) return existsSync(source) ? null : 'missing';
  const u = parseNbdUri(source);
  return new Promise((resolve) => {
    const s = u.transport === 'unix' ? net.createConnection({ path: u.socket }) : net.createConnection({ host: u.host, port: u.port });
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
