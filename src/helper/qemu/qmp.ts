/**
 * Minimal QMP client: one unix socket per VM, greeting + qmp_capabilities, commands
 * matched to replies by id, events re-emitted. `closed` fires when QEMU goes away, which
 * is how the helper learns that a VM stopped, whether it started QEMU or reattached.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { DevvmError } from '../../shared/errors';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void; command: string; timer: NodeJS.Timeout };

/**
 * Every command devvm sends answers at once (long work such as migration runs in the
 * background and is polled), so a QEMU that has not answered in this time is wedged: the
 * operation fails with one line instead of holding its VM's lock, and a client, for ever.
 */
export const QMP_COMMAND_TIMEOUT_MS = 120_000;

export class Qmp extends EventEmitter {
  private buf = '';
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private greeted = false;
  private isClosed = false;

  private constructor(
    private readonly sock: net.Socket,
    private readonly commandTimeoutMs: number,
  ) {
    super();
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.onData(chunk));
    sock.on('close', () => this.onClose());
    sock.on('error', () => {}); // 'close' follows
  }

  static connect(path: string, timeoutMs = 5000, commandTimeoutMs = QMP_COMMAND_TIMEOUT_MS): Promise<Qmp> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(path);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new DevvmError('timeout', `QMP at ${path} did not greet`));
      }, timeoutMs);
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      sock.once('connect', () => {
        const qmp = new Qmp(sock, commandTimeoutMs);
        qmp.once('greeting', () => {
          clearTimeout(timer);
          qmp.execute('qmp_capabilities').then(() => resolve(qmp), reject);
        });
      });
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.isClosed) return Promise.reject(new DevvmError('invalid-state', `QMP closed (command ${command})`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.track(id, command, resolve as (v: unknown) => void, reject);
      this.sock.write(`${JSON.stringify({ execute: command, arguments: args, id })}\n`);
    });
  }

  private track(id: number, command: string, resolve: (v: unknown) => void, reject: (e: Error) => void): void {
    const timer = setTimeout(() => {
      this.pending.delete(id);
      reject(new DevvmError('timeout', `QEMU did not answer ${command} within ${this.commandTimeoutMs} ms`, 'the VM looks wedged; "devvm stop NAME --force" ends it'));
    }, this.commandTimeoutMs);
    timer.unref();
    this.pending.set(id, { resolve, reject, command, timer });
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (p) {
      clearTimeout(p.timer);
      this.pending.delete(id);
    }
    return p;
  }

  /**
   * Sends a command together with a file descriptor (SCM_RIGHTS), as `getfd` needs.
   * `send` is the native addon's sendFd; the reply comes back on the normal stream.
   */
  executeWithFd<T = unknown>(command: string, args: Record<string, unknown>, fd: number, send: (sockFd: number, fd: number, data: string) => void): Promise<T> {
    if (this.isClosed) return Promise.reject(new DevvmError('invalid-state', `QMP closed (command ${command})`));
    const id = this.nextId++;
    const sockFd = (this.sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof sockFd !== 'number' || sockFd < 0) return Promise.reject(new DevvmError('internal', 'QMP socket has no file descriptor'));
    return new Promise<T>((resolve, reject) => {
      this.track(id, command, resolve as (v: unknown) => void, reject);
      try {
        send(sockFd, fd, `${JSON.stringify({ execute: command, arguments: args, id })}\n`);
      } catch (e) {
        this.settle(id);
        reject(e);
      }
    });
  }

  /** Resolves with the first event of that name for which `match` holds. */
  waitEvent(name: string, timeoutMs: number, match: (e: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent) => {
        if (e.event === name && match(e)) done(() => resolve(e));
      };
      const onClose = () => done(() => reject(new DevvmError('invalid-state', `QEMU exited while waiting for ${name}`)));
      const timer = setTimeout(() => done(() => reject(new DevvmError('timeout', `no ${name} event within ${timeoutMs} ms`))), timeoutMs);
      const done = (f: () => void) => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('closed', onClose);
        f();
      };
      this.on('event', onEvent);
      this.once('closed', onClose);
    });
  }

  close(): void {
    this.sock.destroy();
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if ('QMP' in msg && !this.greeted) {
        this.greeted = true;
        this.emit('greeting', msg.QMP);
      } else if ('event' in msg) {
        this.emit('event', msg as unknown as QmpEvent);
      } else if (typeof msg.id === 'number') {
        const p = this.settle(msg.id);
        if (!p) continue;
        if ('error' in msg) {
          const err = msg.error as { class?: string; desc?: string };
          p.reject(new DevvmError('process-failed', `QEMU refused ${p.command}: ${err.desc ?? err.class ?? 'unknown error'}`));
        } else {
          p.resolve(msg.return);
        }
      }
    }
  }

  private onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new DevvmError('invalid-state', `QEMU exited during ${p.command}`));
    }
    this.pending.clear();
    this.emit('closed');
  }
}
