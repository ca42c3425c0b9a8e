/**
 * The extension's one connection to the helper: connects lazily (starting the helper when
 * nothing answers), routes notifications, and after the helper goes away reconnects when
 * its socket reappears (a directory watch, not polling). Requests in flight when the
 * connection closes fail at once (connect() in src/shared/client.ts sees to it: vscode-jsonrpc leaves them pending on a close);
 * the next request connects again, starting a helper if none answers. No `vscode` import.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { ErrorCodes, ResponseError, type MessageConnection, type RequestType, type RequestType0 } from 'vscode-jsonrpc/node';
import { connect, fromRpcError } from '../shared/client';
import { DevvmError } from '../shared/errors';
import { Notify, type ProgressParams, type RpcErrorData, type UsbEvent } from '../shared/rpc';
import type { PortForward, VmSummary } from '../shared/types';

type Listener<T> = (value: T) => void;

class Signal<T> {
  private listeners = new Set<Listener<T>>();
  on(l: Listener<T>): { dispose(): void } {
    this.listeners.add(l);
    return { dispose: () => this.listeners.delete(l) };
  }
  fire(v: T): void {
    for (const l of [...this.listeners]) {
      try {
        l(v);
      } catch {
        // a listener's bug must not break notification delivery to the others
      }
    }
  }
}

export interface HelperClientOptions {
  home: string;
  helperScript: string;
  env: NodeJS.ProcessEnv;
  log: (level: 'info' | 'warn' | 'error', msg: string) => void;
}

export class HelperClient {
  readonly vmChanged = new Signal<VmSummary>();
  readonly vmRemoved = new Signal<string>();
  readonly imagesChanged = new Signal<void>();
  /** A host USB device appeared or went (the helper sends it while VMs run). */
  readonly usb = new Signal<UsbEvent>();
  /** A VM's forwards changed (a guest process started or stopped listening, a static one added). */
  readonly ports = new Signal<{ name: string; ports: PortForward[] }>();
  /** Fired after every (re)connection: listeners resync their state. */
  readonly connected = new Signal<void>();
  readonly disconnected = new Signal<void>();

  private conn: Promise<MessageConnection> | null = null;
  /** The open connection, and how to fail each request waiting on it. */
  private live: MessageConnection | null = null;
  /** Whether the connection attempt in `conn` starts a helper when none answers. */
  private connStarts = true;
  private progress = new Map<string, (p: ProgressParams) => void>();
  private watcher: FSWatcher | null = null;
  private disposed = false;

  constructor(private readonly o: HelperClientOptions) {}

  get home(): string {
    return this.o.home;
  }

  /** The connection; starts the helper when `start` and nothing answers. */
  connection(start = true): Promise<MessageConnection> {
    if (this.disposed) return Promise.reject(new DevvmError('invalid-state', 'the devvm extension is shutting down'));
    if (!this.conn) {
      this.connStarts = start;
      this.conn = this.open(start).catch((e) => {
        this.conn = null;
        throw fromRpcError(e);
      });
    }
    // A reconnect without start (the socket watch) may be racing a dying helper: a request then starts one.
    if (start && !this.connStarts) return this.conn.catch(() => this.connection(true));
    return this.conn;
  }

  private async open(start: boolean): Promise<MessageConnection> {
    const c = await connect({ home: this.o.home, helperScript: start ? this.o.helperScript : undefined, env: this.o.env });
    this.stopWatching();
    c.onNotification(Notify.vmChanged, (s) => this.vmChanged.fire(s));
    c.onNotification(Notify.vmRemoved, (p) => this.vmRemoved.fire(p.name));
    c.onNotification(Notify.imagesChanged, () => this.imagesChanged.fire());
    c.onNotification(Notify.usb, (e) => this.usb.fire(e));
    c.onNotification(Notify.ports, (p) => this.ports.fire(p));
    c.onNotification(Notify.progress, (p) => this.progress.get(p.token)?.(p));
    this.live = c;
    c.onClose(() => {
      // A close of an older connection must not drop a newer one.
      if (this.live !== c) return;
      this.live = null;
      this.conn = null;
      if (this.disposed) return;
      this.o.log('warn', 'the helper connection closed; reconnecting when the helper is back');
      this.disconnected.fire();
      this.watchForHelper();
    });
    this.o.log('info', `connected to the devvm helper in ${this.o.home}`);
    // After the caller's await resumes, so a first request is not raced by resync requests.
    queueMicrotask(() => this.connected.fire());
    return c;
  }

  /** When the helper comes back (started by the CLI or another window), reconnect and resync. */
  private watchForHelper(): void {
    if (this.watcher || this.disposed) return;
    try {
      mkdirSync(this.o.home, { recursive: true, mode: 0o700 });
      this.watcher = watch(this.o.home, (_event, file) => {
        if (file === 'helper.sock' && existsSync(path.join(this.o.home, 'helper.sock'))) {
          void this.connection(false).catch(() => {});
        }
      });
      // It may have come back between the close and the watch.
      if (existsSync(path.join(this.o.home, 'helper.sock'))) void this.connection(false).catch(() => {});
    } catch (e) {
      this.o.log('warn', `cannot watch ${this.o.home}: ${(e as Error).message}`);
    }
  }

  private stopWatching(): void {
    this.watcher?.close();
    this.watcher = null;
  }

  async request<R>(type: RequestType0<R, RpcErrorData>): Promise<R>;
  async request<P, R>(type: RequestType<P, R, RpcErrorData>, params: P): Promise<R>;
  async request<P, R>(type: RequestType0<R, RpcErrorData> | RequestType<P, R, RpcErrorData>, params?: P): Promise<R> {
    const c = await this.connection();
    try {
      // connect() makes a request fail at once when the helper's connection closes.
      return params === undefined ? await c.sendRequest(type as RequestType0<R, RpcErrorData>) : await c.sendRequest(type as RequestType<P, R, RpcErrorData>, params);
    } catch (e) {
      // The helper outlives VS Code: after an update, the one running may predate a request.
      if (e instanceof ResponseError && e.code === ErrorCodes.MethodNotFound) {
        throw new DevvmError('invalid-state', `the running devvm helper is older than this extension and does not know "${type.method}"`, 'stop it with "devvm helper stop" (VMs keep running) and retry: a current one starts on demand');
      }
      throw fromRpcError(e) satisfies DevvmError;
    }
  }

  /** A fresh progress token; `onProgress` gets the helper's messages for it until disposed. */
  progressToken(onProgress: (p: ProgressParams) => void): { token: string; dispose(): void } {
    const token = `devvm-${randomBytes(8).toString('hex')}`;
    this.progress.set(token, onProgress);
    return { token, dispose: () => this.progress.delete(token) };
  }

  dispose(): void {
    this.disposed = true;
    this.stopWatching();
    void this.conn?.then((c) => c.dispose(), () => {});
    this.conn = null;
  }
}
