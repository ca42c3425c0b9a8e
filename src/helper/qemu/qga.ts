/**
 * A minimal qemu-guest-agent client: JSON over the VM's agent socket, one connection per
 * call. Each call first resyncs (0xFF, then guest-sync-delimited with a random id; replies
 * before the matching one, left over from an earlier call that timed out, and any garbage
 * are skipped), then sends its command. The agent may be absent or not up yet, so
 * everything has a deadline: a call fails with `timeout`, it never hangs.
 */
import { randomInt } from 'node:crypto';
import net from 'node:net';
import { DevvmError } from '../../shared/errors';

export interface QgaCall {
  command: string;
  args?: Record<string, unknown>;
  /** guest-shutdown answers nothing when it obeys: resolve once sent (an error reply within `graceMs` still rejects). */
  noReply?: boolean;
}

/** After a no-reply command: how long an error reply may take to arrive. */
const NO_REPLY_GRACE_MS = 300;

/** Runs `call` on the agent at `socket`; the whole exchange (connect, resync, command) within `timeoutMs`. */
export function qgaExecute<T = unknown>(socket: string, call: QgaCall, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const sock = net.createConnection(socket);
    const syncId = randomInt(1, 2 ** 31 - 1);
    let buf = Buffer.alloc(0);
    /** 'delimiter': waiting for the agent's 0xFF; 'sync': for the reply with our id; 'reply': for the command's. */
    let phase: 'delimiter' | 'sync' | 'reply' = 'delimiter';
    let settled = false;
    let grace: NodeJS.Timeout | undefined;
    const finish = (err: Error | null, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      // Settled once our end is closed: the next call's connection never overlaps this one.
      const done = () => (err ? reject(err) : resolve(value as T));
      if (sock.destroyed) return done();
      sock.once('close', done);
      sock.destroy();
    };
    const timer = setTimeout(
      () => finish(new DevvmError('timeout', `the guest agent did not answer ${call.command} within ${timeoutMs} ms`, 'no agent runs in the guest, or it is not up yet')),
      timeoutMs,
    );
    sock.on('error', (e) => finish(new DevvmError('io', `the guest agent's socket: ${e.message}`)));
    sock.on('close', () => {
      if (phase === 'reply' && call.noReply) finish(null, undefined);
      else finish(new DevvmError('io', `the guest agent's socket closed during ${call.command}`));
    });
    sock.on('connect', () => {
      // 0xFF first: it resets the agent's JSON parser, whatever an earlier client left half-sent.
      sock.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id: syncId } })}\n`)]));
    });
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length > 4 << 20) return finish(new DevvmError('io', 'the guest agent sent more than 4 MiB without an answer'));
      for (;;) {
        if (settled) return;
        if (phase === 'delimiter') {
          const at = buf.indexOf(0xff);
          if (at < 0) {
            buf = Buffer.alloc(0);
            return;
          }
          buf = buf.subarray(at + 1);
          phase = 'sync';
          continue;
        }
        const nl = buf.indexOf(0x0a);
        if (nl < 0) return;
        const line = buf.subarray(0, nl).toString('utf8').trim();
        buf = buf.subarray(nl + 1);
        if (!line) continue;
        let msg: { return?: unknown; error?: { class?: string; desc?: string } };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          continue; // garbage: skipped, the deadline still holds
        }
        if (typeof msg !== 'object' || msg === null) continue;
        if (phase === 'sync') {
          if (msg.return !== syncId) continue; // a stale reply to someone else's call
          phase = 'reply';
          sock.write(`${JSON.stringify({ execute: call.command, ...(call.args ? { arguments: call.args } : {}) })}\n`);
          if (call.noReply) grace = setTimeout(() => finish(null, undefined), Math.min(NO_REPLY_GRACE_MS, timeoutMs));
          continue;
        }
        if (msg.error) return finish(new DevvmError('process-failed', `the guest agent refused ${call.command}: ${msg.error.desc ?? msg.error.class ?? 'unknown error'}`));
        if ('return' in msg) return finish(null, msg.return);
      }
    });
  });
}

/** Calls on one agent run one at a time: QEMU serves its socket to one client at a time. */
export class QgaClient {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly socket: string) {}

  /** `timeoutMs` counts from now, the wait for earlier calls included. */
  execute<T = unknown>(call: QgaCall, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    const next = this.queue.then(() => {
      const left = deadline - Date.now();
      if (left <= 0) throw new DevvmError('timeout', `the guest agent did not answer ${call.command} within ${timeoutMs} ms`, 'an earlier call to it is still waiting');
      return qgaExecute<T>(this.socket, call, left);
    });
    this.queue = next.catch(() => {});
    return next;
  }
}
