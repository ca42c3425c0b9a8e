/** A Session without a helper: records every RPC call and answers from canned results. */
import type { MessageConnection, RequestType, RequestType0 } from 'vscode-jsonrpc';
import { DevvmError } from '../../src/shared/errors';
import type { RpcErrorData } from '../../src/shared/rpc';
import { run, type Session } from '../../src/cli/run';

export interface Call {
  method: string;
  params: unknown;
}

export class FakeSession implements Session {
  json = false;
  calls: Call[] = [];
  printed: unknown[] = [];
  texts: string[] = [];
  execs: Array<[string, string[]]> = [];
  relays: Array<[string, number, string | undefined]> = [];
  closed = false;

  /** method -> result (or a function of the params); a DevvmError result is thrown. */
  constructor(private readonly answers: Record<string, unknown> = {}) {}

  call<R>(type: RequestType0<R, RpcErrorData>): Promise<R>;
  call<P, R>(type: RequestType<P, R, RpcErrorData>, params: P): Promise<R>;
  async call(type: { method: string }, params?: unknown): Promise<unknown> {
    // Drop the random progress token so tables can compare params exactly.
    const p = params && typeof params === 'object' && 'progressToken' in params ? { ...(params as object), progressToken: '<token>' } : params;
    this.calls.push({ method: type.method, params: p === undefined ? undefined : JSON.parse(JSON.stringify(p)) });
    const a = this.answers[type.method];
    const r = typeof a === 'function' ? (a as (p: unknown) => unknown)(params) : a;
    if (r instanceof DevvmError) throw r;
    return r;
  }

  steps: string[] = [];
  outputs: string[] = [];

  /** A connection whose requests are recorded and answered like call()'s (for verbs built on shared modules, devvm up). */
  async connection(): Promise<MessageConnection> {
    return {
      sendRequest: (type: { method: string }, params?: unknown) => this.call(type as RequestType<unknown, unknown, RpcErrorData>, params),
      onNotification: () => ({ dispose: () => {} }),
    } as unknown as MessageConnection;
  }

  step(message?: string): void {
    if (message !== undefined) this.steps.push(message);
  }

  output(text: string): void {
    this.outputs.push(text);
  }

  withToken<T extends object>(p: T): T & { progressToken: string } {
    return { ...p, progressToken: 'tok' };
  }

  print(value: unknown, text: () => string): void {
    this.printed.push(value);
    this.texts.push(this.json ? JSON.stringify(value) : text());
  }

  async untilClosed(): Promise<{ closed: Promise<void> }> {
    return { closed: Promise.resolve() };
  }

  async exec(file: string, args: string[]): Promise<number> {
    this.execs.push([file, args]);
    return 0;
  }

  async relay(host: string, port: number, sentIdent?: string): Promise<number> {
    this.relays.push([host, port, sentIdent]);
    return 0;
  }

  close(): void {
    this.closed = true;
  }
}

export async function cli(argv: string[], answers: Record<string, unknown> = {}) {
  const s = new FakeSession(answers);
  let stdout = '';
  let stderr = '';
  const code = await run(argv, s, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr, session: s };
}
