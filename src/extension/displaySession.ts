/**
 * One Display tab's host side, without `vscode`: it connects to the VM's VNC unix socket
 * (whose path only the helper gives, and only while the VM runs), relays bytes to and from
 * the webview, follows the VM's state (reconnecting when it starts or resumes), and turns
 * the view's sizes into debounced vm/displayResize requests for VMs that follow the tab.
 * The panel (display.ts) only wires it to a webview and the model.
 */
import net from 'node:net';
import { asDevvmError } from '../shared/errors';
import { realClock, ResizeDebouncer, sizeText, TAB_DEBOUNCE, type Clock, type DebounceOptions, type Size } from '../shared/display';
import type { DisplayInfo, DisplayResizeResult, VmState, VmSummary } from '../shared/types';
import { parseFromDisplay, type ToDisplay } from './displayProtocol';

export interface DisplayDeps {
  vm: string;
  /** Rpc.vmDisplay */
  display(name: string): Promise<DisplayInfo>;
  /** Rpc.vmDisplayResize */
  resize(name: string, size: Size): Promise<DisplayResizeResult>;
  post(m: ToDisplay): void;
  log(m: string): void;
  connect?: (path: string) => net.Socket;
  clock?: Clock;
  debounce?: DebounceOptions;
}

/** What the tab says when there is no screen to show. */
export function stateText(vm: string, state: VmState | 'gone' | 'nodisplay'): string {
  switch (state) {
    case 'running':
      return `Connecting to the display of ${vm}…`;
    case 'stopped':
      return 'VM is stopped';
    case 'suspended':
      return 'VM is suspended';
    case 'starting':
      return 'VM is starting…';
    case 'nodisplay':
      return `VM has no display (devvm set ${vm} --display on)`;
    case 'gone':
      return `VM "${vm}" no longer exists`;
    case 'error':
      return 'VM stopped with an error (see its logs)';
    default:
      return `VM is ${state}`;
  }
}

/** The note for a resize's answer: '' when the guest took the size. */
export function resizeNote(r: DisplayResizeResult): string {
  return r.applied ? '' : `The guest kept ${sizeText(r.size)} (its console's limit) instead of ${sizeText(r.requested)}; scaled to fit.`;
}

const RETRY_MS = [200, 400, 800, 1500, 3000];

export class DisplaySession {
  private summary: VmSummary | undefined;
  private ready = false;
  private disposed = false;
  private sock: net.Socket | null = null;
  /** A vm/display request or a socket connect is under way. */
  private connecting = false;
  private conn = 0;
  private view: Size | null = null;
  private follows = false;
  private retries = 0;
  private retryTimer: unknown = null;
  /** The webview gave up on this connection: no reconnect until the VM's state changes. */
  private givenUp = false;
  private readonly clock: Clock;
  private readonly debouncer: ResizeDebouncer;
  private resizeAskedAt = 0;

  constructor(
    private readonly d: DisplayDeps,
    initial: VmSummary | undefined,
  ) {
    this.summary = initial;
    this.clock = d.clock ?? realClock;
    this.debouncer = new ResizeDebouncer((s) => this.sendResize(s), d.debounce ?? TAB_DEBOUNCE, this.clock);
  }

  /** The connection number in use (tests). */
  get connection(): number {
    return this.sock ? this.conn : 0;
  }

  onMessage(raw: unknown): void {
    if (this.disposed) return;
    const m = parseFromDisplay(raw);
    if (!m) {
      const type = raw && typeof raw === 'object' ? String((raw as { type?: unknown }).type).slice(0, 20) : typeof raw;
      this.d.log(`display ${this.d.vm}: ignored a malformed message from the webview (type ${type})`);
      return;
    }
    switch (m.type) {
      case 'ready':
        this.ready = true;
        this.sync();
        break;
      case 'size':
        this.view = { width: m.width, height: m.height };
        if (this.sock && this.follows) this.debouncer.request(this.view);
        break;
      case 'data':
        if (m.conn === this.conn && this.sock) this.sock.write(m.data);
        break;
      case 'close':
        if (m.conn === this.conn && this.sock) {
          this.d.log(`display ${this.d.vm}: the viewer closed connection ${m.conn}`);
          this.givenUp = true;
          this.drop('Disconnected: the viewer gave up on the connection; it reconnects when the VM starts again.');
        }
        break;
      case 'rfb':
        this.d.log(`display ${this.d.vm}: viewer ${m.event === 'connect' ? 'connected' : 'disconnected'} (connection ${m.conn})`);
        break;
      case 'desktop':
        if (m.conn === this.conn) this.d.log(`display ${this.d.vm}: screen is ${m.width}x${m.height}${this.resizeAskedAt ? ` (${this.clock.now() - this.resizeAskedAt} ms after the last resize request)` : ''}`);
        break;
    }
  }

  /** The model's latest summary of the VM (undefined: it was deleted). */
  vmChanged(s: VmSummary | undefined): void {
    if (this.disposed) return;
    const before = this.summary;
    this.summary = s;
    if (!s || !before || before.state !== s.state || before.display !== s.display) this.givenUp = false;
    this.sync();
  }

  dispose(): void {
    this.disposed = true;
    this.debouncer.dispose();
    this.clearRetry();
    const s = this.sock;
    this.sock = null;
    s?.destroy();
  }

  /** Connects when the VM runs with a display, else shows why not. */
  private sync(): void {
    if (!this.ready || this.disposed) return;
    const s = this.summary;
    const why = !s ? 'gone' : !s.display ? 'nodisplay' : s.state !== 'running' ? s.state : null;
    if (why) {
      this.clearRetry();
      this.retries = 0;
      this.drop(stateText(this.d.vm, why));
      return;
    }
    if (this.sock || this.connecting || this.retryTimer !== null || this.givenUp) return;
    void this.open();
  }

  private async open(): Promise<void> {
    this.connecting = true;
    let info: DisplayInfo;
    try {
      info = await this.d.display(this.d.vm);
    } catch (e) {
      this.connecting = false;
      const err = asDevvmError(e);
      this.d.log(`display ${this.d.vm}: ${err.oneLine()}`);
      this.d.post({ type: 'status', text: err.oneLine() });
      this.retryLater();
      return;
    }
    if (this.disposed) return;
    if (!info.display || !info.socket) {
      this.connecting = false;
      this.d.post({ type: 'status', text: stateText(this.d.vm, !info.display ? 'nodisplay' : info.state) });
      // The summary said running: the helper's answer is newer, a vm/changed follows.
      if (info.display && info.state === 'running') this.retryLater();
      return;
    }
    this.follows = info.display === 'auto';
    this.d.post({ type: 'note', text: this.follows ? '' : `Fixed size ${sizeText(info.display as Size)}, scaled to fit (devvm set ${this.d.vm} --display-size auto follows the tab).` });
    const sock = (this.d.connect ?? ((p: string) => net.createConnection(p)))(info.socket);
    const conn = ++this.conn;
    sock.on('connect', () => {
      this.connecting = false;
      if (this.disposed || this.sock || this.summary?.state !== 'running') return void sock.destroy();
      this.sock = sock;
      this.retries = 0;
      this.d.log(`display ${this.d.vm}: connected to ${info.socket} (connection ${conn})`);
      this.d.post({ type: 'status', text: '' });
      this.d.post({ type: 'open', conn });
      // A new session: the guest may have restarted at its boot size, so the tab's size goes out again.
      this.debouncer.reset();
      if (this.follows && this.view) this.debouncer.request(this.view);
    });
    // A copy: a socket chunk may share a larger buffer, which postMessage would carry whole.
    sock.on('data', (chunk: Buffer) => void (this.sock === sock && this.d.post({ type: 'data', conn, data: new Uint8Array(chunk) })));
    sock.on('error', (e: NodeJS.ErrnoException) => this.d.log(`display ${this.d.vm}: socket ${info.socket}: ${e.code ?? e.message}`));
    sock.on('close', () => {
      if (this.sock !== sock) {
        // Never connected: QEMU's socket is not there yet, or the VM just stopped.
        if (this.connecting && this.conn === conn) {
          this.connecting = false;
          this.retryLater();
        }
        return;
      }
      this.sock = null;
      this.d.post({ type: 'closed', conn });
      if (!this.disposed) this.retryLater();
    });
  }

  /** Closes the connection (if any) and shows `text`. */
  private drop(text: string): void {
    const s = this.sock;
    this.sock = null;
    if (s) {
      this.d.post({ type: 'closed', conn: this.conn });
      s.destroy();
    }
    this.d.post({ type: 'note', text: '' });
    this.d.post({ type: 'status', text });
  }

  /** While the VM is said to run, try again soon (the socket appears as QEMU starts). */
  private retryLater(): void {
    if (this.disposed || this.retryTimer !== null) return;
    if (this.retries >= RETRY_MS.length * 4) {
      this.d.post({ type: 'status', text: `Cannot reach the display of ${this.d.vm}; it reconnects when the VM starts again.` });
      return;
    }
    const ms = RETRY_MS[Math.min(this.retries, RETRY_MS.length - 1)]!;
    this.retries++;
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = null;
      this.sync();
    }, ms);
  }

  private clearRetry(): void {
    if (this.retryTimer !== null) this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private async sendResize(view: Size): Promise<void> {
    this.resizeAskedAt = this.clock.now();
    try {
      const r = await this.d.resize(this.d.vm, view);
      if (r.superseded || this.disposed) return;
      this.d.log(`display ${this.d.vm}: view ${sizeText(view)} -> asked ${sizeText(r.requested)}, guest shows ${sizeText(r.size)}${r.applied ? '' : ' (kept)'} in ${r.ms} ms`);
      this.d.post({ type: 'note', text: resizeNote(r) });
    } catch (e) {
      const err = asDevvmError(e);
      this.d.log(`display ${this.d.vm}: resize to ${sizeText(view)}: ${err.oneLine()}`);
      this.d.post({ type: 'note', text: `Could not resize the guest (${err.message}); scaled to fit.` });
      throw e;
    }
  }
}
