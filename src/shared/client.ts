/**
 * Client side of the helper RPC, used by the CLI and the extension: connect to the
 * socket, and when nothing answers, start the helper detached and connect again.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { MessageConnection, ResponseError } from 'vscode-jsonrpc/node';
import { asDevvmError, DevvmError } from './errors';
import { ensurePrivateHome } from './homecheck';
import { helperSocket } from './paths';
import { socketConnection } from './rpcsocket';
import type { RpcErrorData } from './rpc';

function connectOnce(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    sock.once('connect', () => {
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', reject);
  });
}

export interface ConnectOptions {
  home: string;
  /** dist/helper.js; when given, the helper is started if the socket does not answer. */
  helperScript?: string;
  env?: NodeJS.ProcessEnv;
  /** How long to wait for a freshly started helper. */
  timeoutMs?: number;
}

export function startHelper(home: string, helperScript: string, env: NodeJS.ProcessEnv = process.env): void {
  // A home that is not ours is refused here, as the client's own one-line error (the
  // helper would refuse too, but only into helper.out).
  ensurePrivateHome(home, { fix: false });
  // The helper's own early output (before it opens helper.log) goes to a file, not to us.
  const out = openSync(path.join(home, 'helper.out'), 'a', 0o600);
  const child = spawn(process.execPath, [helperScript], {
    detached: true,
    stdio: ['ignore', out, out],
    env: { ...env, DEVVM_HOME: home, ELECTRON_RUN_AS_NODE: '1' },
  });
  child.unref();
  closeSync(out);
}

export async function connect(opts: ConnectOptions): Promise<MessageConnection> {
  const sockPath = helperSocket(opts.home);
  let sock: net.Socket;
  try {
    sock = await connectOnce(sockPath);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!opts.helperScript || (code !== 'ENOENT' && code !== 'ECONNREFUSED')) {
      throw new DevvmError('not-found', `cannot reach the devvm helper at ${sockPath}: ${code ?? e}`);
    }
    startHelper(opts.home, opts.helperScript, opts.env);
    const deadline = Date.now() + (opts.timeoutMs ?? 10000);
    for (;;) {
      try {
        sock = await connectOnce(sockPath);
        break;
      } catch {
        if (Date.now() > deadline) {
          throw new DevvmError('timeout', 'the devvm helper did not start', `see ${path.join(opts.home, 'helper.log')} and helper.out`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  }
  const conn = socketConnection(sock);
  rejectPendingOnClose(conn, opts.home);
  conn.listen();
  return conn;
}

export function helperGoneError(home?: string): DevvmError {
  return new DevvmError('internal', 'the devvm helper went away during the request', home ? `see ${path.join(home, 'helper.log')}; run the command again` : 'run the command again; the helper restarts on demand');
}

/**
 * vscode-jsonrpc leaves a request pending for ever when the socket closes (it rejects only
 * on dispose), so a client whose helper died would wait, or exit silently once nothing is
 * left on the event loop. Every request, pending or sent after the close, rejects instead.
 */
function rejectPendingOnClose(conn: MessageConnection, home: string): void {
  let closed = false;
  const rejecters = new Set<(e: DevvmError) => void>();
  const gone = () => {
    if (closed) return;
    closed = true;
    for (const reject of rejecters) reject(helperGoneError(home));
    rejecters.clear();
  };
  conn.onClose(gone);
  conn.onError(([e, failedWrite]) => {
    // A reset socket may report the error without a close; a write that failed (it carries
    // its message) will never be answered.
    if (failedWrite !== undefined || /ECONNRESET|EPIPE/.test(String((e as Error)?.message ?? e))) gone();
  });
  const send = conn.sendRequest.bind(conn) as (...args: unknown[]) => Promise<unknown>;
  (conn as { sendRequest: unknown }).sendRequest = (...args: unknown[]): Promise<unknown> => {
    if (closed) return Promise.reject(helperGoneError(home));
    return new Promise((resolve, reject) => {
      rejecters.add(reject);
      let sent: Promise<unknown>;
      try {
        sent = send(...args);
      } catch (e) {
        rejecters.delete(reject);
        reject(e);
        return;
      }
      sent.then(
        (v) => { rejecters.delete(reject); resolve(v); },
        (e) => { rejecters.delete(reject); reject(closed ? helperGoneError(home) : e); },
      );
    });
  };
}

/** Turns an RPC failure back into the DevvmError the helper threw. */
export function fromRpcError(e: unknown): DevvmError {
  if (e instanceof ResponseError) {
    const data = e.data as RpcErrorData | undefined;
    return new DevvmError(data?.code ?? 'internal', e.message, data?.hint);
  }
  if (e instanceof DevvmError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  if (/Connection got disposed|connection is closed|ECONNRESET|EPIPE/i.test(msg)) return helperGoneError();
  return asDevvmError(e);
}
