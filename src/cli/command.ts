/**
 * What a CLI verb is: its name, its usage line, its options and positionals for
 * util.parseArgs, and its handler. The usage text and the dispatch are both made from
 * the one table in commands/index.ts, so they cannot drift apart.
 */
import type { MessageConnection, RequestType, RequestType0 } from 'vscode-jsonrpc';
import type { RpcErrorData } from '../shared/rpc';
import type { Options, Parsed } from './args';

/** What a handler may do: call the helper, print, hand the terminal to a program. */
export interface Context {
  call<R>(type: RequestType0<R, RpcErrorData>): Promise<R>;
  call<P, R>(type: RequestType<P, R, RpcErrorData>, params: P): Promise<R>;
  /** Adds a fresh progress token: the helper's progress notifications for it are drawn on a TTY. */
  withToken<T extends object>(params: T): T & { progressToken: string };
  /** `value` as JSON with --json, else `text()`; one write to stdout. */
  print(value: unknown, text: () => string): void;
  /** A promise that resolves when the helper's connection closes (it is connected first). */
  untilClosed(): Promise<{ closed: Promise<void> }>;
  /** The connection itself, for shared modules that speak RPC on their own (devvm up). */
  connection(): Promise<MessageConnection>;
  /** Progress: the progress line on a TTY, a plain line on stderr otherwise; no message clears the line. */
  step(message?: string): void;
  /** Streamed text (provisioning output): stdout, or stderr with --json so stdout stays one JSON value. */
  output(text: string): void;
  /** Closes the connection to the helper, runs a program on this terminal, resolves with its exit code. */
  exec(file: string, args: string[]): Promise<number>;
  /**
   * Closes the connection to the helper, relays stdin/stdout to a TCP port until either side
   * ends (ssh-proxy). `sentIdent`: the SSH identification line already written to stdout;
   * the server's own is then dropped, and refused when it differs.
   */
  relay(host: string, port: number, sentIdent?: string): Promise<number>;
}

export interface Args extends Parsed {
  /** After `--` (only for verbs with `passThrough`). */
  rest: string[];
}

export interface Command {
  /** "create", or "image import" for a verb of a family. */
  name: string;
  /** The arguments after the name, as shown in the usage; continuation lines start with a newline. */
  usage: string;
  /** What it does, one short phrase. */
  summary: string;
  options?: Options;
  /** Exact count or [min, max]. */
  positionals: number | readonly [number, number];
  /** Arguments after `--` go to the handler untouched (ssh). */
  passThrough?: boolean;
  run(ctx: Context, args: Args): Promise<number | void>;
}
