/**
 * A minimal qemu-guest-agent client: JSON over the VM's agent socket. A session first
 * resyncs (0xFF, then guest-sync-delimited with a random id; replies before the matching
 * one, left over from an earlier call that timed out, and any garbage are skipped), then
 * sends commands one at a time. The agent may be absent or not up yet, so everything has
 * a deadline: a call fails with `timeout`, it never hangs. A session that timed out is
 * closed (a late reply would answer the wrong command).
 */
import { randomInt } from 'node:crypto';
import net from 'node:net';
import { DevvmError } from '../../shared/errors';
import { log } from '../log';

export interface QgaCall {
  command: string;
  args?: Record<string, unknown>;
  /** guest-shutdown answers nothing when it obeys: resolve once sent (an error reply within a short grace still rejects). */
  noReply?: boolean;
}

/** After a no-reply command: how long an error reply may take to arrive. */
const NO_REPLY_GRACE_MS = 300;

/**
 * The first resync's window. A working agent answers in 2-130 ms (a just-resumed guest
 * under TCG); one whose first connection after a restore went unanswered answered a new
 * connection in 4 ms (1 restore in 6, by hand), so waiting long for the first is waste.
 */
const RESYNC_FIRST_MS = 500;

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void; call: QgaCall };

const timeoutError = (command: string, ms: number) =>
  new DevvmError('timeout', `the guest agent did not answer ${command} within ${ms} ms`, 'no agent runs in the guest, or it is not up yet');

export class QgaSession {
  private buf = Buffer.alloc(0);
  /** 'delimiter': waiting for the agent's 0xFF; 'sync': for the reply with our id; 'idle'; 'reply': for a command's. */
  private phase: 'delimiter' | 'sync' | 'idle' | 'reply' = 'delimiter';
  private pending: Pending | null = null;
  private timer: NodeJS.Timeout | undefined;
  private isClosed = false;
  private readonly syncId = randomInt(1, 2 ** 31 - 1);
  private readonly ended: Promise<void>;

  private constructor(private readonly sock: net.Socket) {
    this.ended = new Promise((r) => sock.once('close', () => r()));
    sock.on('error', (e) => this.fail(new DevvmError('io', `the guest agent's socket: ${e.message}`)));
    sock.on('close', () => {
      this.isClosed = true;
      if (this.phase === 'reply' && this.pending?.call.noReply) this.settle(null, undefined);
      else this.fail(new DevvmError('io', `the guest agent's socket closed${this.pending ? ` during ${this.pending.call.command}` : ''}`));
    });
    sock.on('data', (c: Buffer) => this.onData(c));
  }

  /**
   * Connects and resyncs within `timeoutMs`; `forWhat` names the command in a timeout's
   * message. A resync with no answer is tried again on a new connection, in windows that
   * double from RESYNC_FIRST_MS: right after a resume from a RAM state, the first
   * connection's resync was seen to go unanswered for good while a new one was answered
   * at once (CI, agent-guest: 15 s lost before the clock was set).
   */
  static async open(socket: string, timeoutMs: number, forWhat = 'guest-sync-delimited'): Promise<QgaSession> {
    const deadline = Date.now() + timeoutMs;
    for (let window = RESYNC_FIRST_MS; ; window *= 2) {
      const left = deadline - Date.now();
      const last = left <= window * 1.5; // not worth a new connection for less than half a window
      try {
        return await QgaSession.connect(socket, last ? left : window, forWhat);
      } catch (e) {
        if (last || !(e instanceof DevvmError && e.code === 'timeout')) {
          throw e instanceof DevvmError && e.code === 'timeout' ? timeoutError(forWhat, timeoutMs) : e;
        }
        log.info(`guest agent: no answer to a resync within ${window} ms; trying again on a new connection`);
      }
    }
  }

  private static connect(socket: string, timeoutMs: number, forWhat: string): Promise<QgaSession> {
    const s = new QgaSession(net.createConnection(socket));
    return new Promise<QgaSession>((resolve, reject) => {
      s.expect({ resolve: () => resolve(s), reject, call: { command: forWhat } }, timeoutMs);
      s.sock.once('connect', () => {
        // 0xFF first: it resets the agent's JSON parser, whatever an earlier client left half-sent.
        s.sock.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id: s.syncId } })}\n`)]));
      });
    });
  }

  execute<T = unknown>(call: QgaCall, timeoutMs: number): Promise<T> {
    if (this.isClosed) return Promise.reject(new DevvmError('io', `the guest agent's session is closed (${call.command})`));
    if (this.pending) return Promise.reject(new DevvmError('internal', `guest agent call ${call.command} while ${this.pending.call.command} runs`));
    return new Promise<T>((resolve, reject) => {
      this.phase = 'reply';
      this.expect({ resolve: resolve as (v: unknown) => void, reject, call }, timeoutMs);
      this.sock.write(`${JSON.stringify({ execute: call.command, ...(call.args ? { arguments: call.args } : {}) })}\n`);
      if (call.noReply) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.settle(null, undefined), Math.min(NO_REPLY_GRACE_MS, timeoutMs));
      }
    });
  }

  /** Resolves once our end is closed, so the next session never overlaps this one. */
  close(): Promise<void> {
    this.sock.destroy();
    return this.ended;
  }

  private expect(p: Pending, timeoutMs: number): void {
    this.pending = p;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.fail(timeoutError(p.call.command, timeoutMs));
      this.sock.destroy();
    }, timeoutMs);
  }

  private settle(err: Error | null, value: unknown): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    clearTimeout(this.timer);
    if (this.phase === 'reply') this.phase = 'idle';
    if (err) p.reject(err);
    else p.resolve(value);
  }

  private fail(e: Error): void {
    this.settle(e, undefined);
  }

  private onData(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    if (this.buf.length > 4 << 20) {
      this.fail(new DevvmError('io', 'the guest agent sent more than 4 MiB without an answer'));
      this.sock.destroy();
      return;
    }
    for (;;) {
      if (this.phase === 'delimiter') {
        const at = this.buf.indexOf(0xff);
        if (at < 0) {
          this.buf = Buffer.alloc(0);
          return;
        }
        this.buf = this.buf.subarray(at + 1);
        this.phase = 'sync';
        continue;
      }
      const nl = this.buf.indexOf(0x0a);
      if (nl < 0) return;
      const line = this.buf.subarray(0, nl).toString('utf8').trim();
      this.buf = this.buf.subarray(nl + 1);
      if (!line) continue;
      let msg: { return?: unknown; error?: { class?: string; desc?: string } };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        continue; // garbage: skipped, the deadline still holds
      }
      if (typeof msg !== 'object' || msg === null) continue;
      if (this.phase === 'sync') {
        if (msg.return !== this.syncId) continue; // a stale reply to someone else's call
        this.phase = 'idle';
        this.settle(null, undefined);
      } else if (this.phase === 'reply') {
        const command = this.pending?.call.command ?? '?';
        if (msg.error) this.fail(new DevvmError('process-failed', `the guest agent refused ${command}: ${msg.error.desc ?? msg.error.class ?? 'unknown error'}`));
        else if ('return' in msg) this.settle(null, msg.return);
      }
      // 'idle': a stray message, skipped
    }
  }
}

/** Runs `call` on the agent at `socket` in a session of its own; the whole exchange within `timeoutMs`. */
export async function qgaExecute<T = unknown>(socket: string, call: QgaCall, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const s = await QgaSession.open(socket, timeoutMs, call.command);
  try {
    const left = deadline - Date.now();
    if (left <= 0) throw timeoutError(call.command, timeoutMs);
    return await s.execute<T>(call, left);
  } finally {
    await s.close();
  }
}

/** Calls on one agent run one at a time: QEMU serves its socket to one client at a time. */
export class QgaClient {
  private queue: Promise<unknown> = Promise.resolve();
  private queued_ = 0;

  constructor(readonly socket: string) {}

  /** Calls waiting for their turn: a background session (the port poll) yields to them between its commands. */
  get waiting(): number {
    return this.queued_;
  }

  /** `timeoutMs` counts from now, the wait for earlier calls included. */
  execute<T = unknown>(call: QgaCall, timeoutMs: number): Promise<T> {
    return this.queued(call.command, timeoutMs, (left) => qgaExecute<T>(this.socket, call, left));
  }

  /** A session of several commands (one resync), opened within `timeoutMs`; closed when `fn` ends. */
  session<T>(timeoutMs: number, fn: (s: QgaSession) => Promise<T>): Promise<T> {
    return this.queued('guest-sync-delimited', timeoutMs, async (left) => {
      const s = await QgaSession.open(this.socket, left);
      try {
        return await fn(s);
      } finally {
        await s.close();
      }
    });
  }

  private queued<T>(command: string, timeoutMs: number, run: (left: number) => Promise<T>): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    this.queued_++;
    const next = this.queue.then(() => {
      this.queued_--;
      const left = deadline - Date.now();
      if (left <= 0) throw new DevvmError('timeout', `the guest agent did not answer ${command} within ${timeoutMs} ms`, 'an earlier call to it is still waiting');
      return run(left);
    });
    this.queue = next.catch(() => {});
    return next;
  }
}
