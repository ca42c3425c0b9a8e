/** The CLI's connection to the helper (started on demand), its progress line and its output. */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { MessageConnection, RequestType, RequestType0 } from 'vscode-jsonrpc/node';
import { connect, fromRpcError } from '../shared/client';
import { DevvmError } from '../shared/errors';
import { Notify, type RpcErrorData } from '../shared/rpc';
import { parseIdent } from '../shared/sshident';
import { ProgressLine } from './progress';
import type { Session } from './run';

export class RpcSession implements Session {
  private conn: MessageConnection | null = null;
  private readonly progress = new ProgressLine();
  private readonly tokens = new Set<string>();
  json = false;

  /** `home`: which helper to talk to (its socket is the one path a client needs). */
  constructor(private readonly home: string) {}

  private async rpc(): Promise<MessageConnection> {
    if (!this.conn) {
      // dist/helper.js sits next to dist/cli.js.
      this.conn = await connect({ home: this.home, helperScript: path.join(__dirname, 'helper.js') });
      this.conn.onNotification(Notify.progress, (p) => {
        if (this.tokens.has(p.token)) this.progress.update(p.message, p.fraction);
      });
    }
    return this.conn;
  }

  connection(): Promise<MessageConnection> {
    return this.rpc();
  }

  step(message?: string): void {
    if (message === undefined) this.progress.done();
    else if (this.progress.enabled) this.progress.update(message);
    else process.stderr.write(`${message}\n`);
  }

  output(text: string): void {
    (this.json ? process.stderr : process.stdout).write(text);
  }

  withToken<T extends object>(p: T): T & { progressToken: string } {
    const token = randomUUID();
    this.tokens.add(token);
    return { ...p, progressToken: token };
  }

  call<R>(type: RequestType0<R, RpcErrorData>): Promise<R>;
  call<P, R>(type: RequestType<P, R, RpcErrorData>, params: P): Promise<R>;
  async call(type: RequestType0<unknown, RpcErrorData> | RequestType<unknown, unknown, RpcErrorData>, params?: unknown): Promise<unknown> {
    const conn = await this.rpc();
    try {
      return await (params === undefined
        ? conn.sendRequest(type as RequestType0<unknown, RpcErrorData>)
        : conn.sendRequest(type as RequestType<unknown, unknown, RpcErrorData>, params));
    } catch (e) {
      throw fromRpcError(e);
    } finally {
      this.progress.done();
    }
  }

  async untilClosed(): Promise<{ closed: Promise<void> }> {
    const conn = await this.rpc();
    return { closed: new Promise<void>((resolve) => conn.onClose(() => resolve())) };
  }

  print(value: unknown, text: () => string): void {
    process.stdout.write(this.json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
  }

  exec(file: string, args: string[]): Promise<number> {
    this.close();
    return new Promise((resolve) => {
      const child = spawn(file, args, { stdio: 'inherit' });
      child.on('error', () => resolve(127));
      child.on('exit', (code, sig) => resolve(code ?? (sig ? 128 + (os.constants.signals[sig] ?? 0) : 1)));
    });
  }

  relay(host: string, port: number, sentIdent?: string): Promise<number> {
    this.close();
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host, port });
      let connected = false;
      sock.setNoDelay(true);
      sock.on('connect', () => {
        connected = true;
        // ssh closing our stdin half-closes the connection; sshd's end ends our stdout.
        process.stdin.pipe(sock);
        if (!sentIdent) {
          sock.pipe(process.stdout);
          return;
        }
        // ssh already has an identification line; the key exchange hashes the one it got,
        // so sshd's must be the same bytes, and is not passed on twice.
        let seen = '';
        const onData = (c: Buffer) => {
          seen += c.toString('latin1');
          const r = parseIdent(seen);
          if (r === undefined) return;
          sock.off('data', onData);
          if (r?.ident !== sentIdent) {
            sock.destroy();
            reject(new DevvmError('process-failed', `the VM's sshd now says "${r?.ident ?? seen.slice(0, 60).trim()}", not "${sentIdent}" as when it was last reached`, 'run ssh again (devvm has noted the new one)'));
            return;
          }
          const rest = Buffer.from(seen.slice(r.end), 'latin1');
          if (rest.length) process.stdout.write(rest);
          sock.pipe(process.stdout);
        };
        sock.on('data', onData);
      });
      // ssh went away (EPIPE): end the connection too.
      process.stdout.on('error', () => sock.destroy());
      process.stdin.on('error', () => sock.destroy());
      sock.on('error', (e) => {
        if (!connected) reject(new DevvmError('process-failed', `cannot connect to ${host}:${port}: ${e.message}`, 'the VM runs but its SSH port does not answer; see "devvm info"'));
      });
      sock.on('close', () => {
        // stdin would keep the process alive after the connection is gone.
        process.stdin.unpipe(sock);
        process.stdin.destroy();
        if (connected) resolve(0);
      });
    });
  }

  close(): void {
    this.conn?.dispose();
    this.conn = null;
  }
}
