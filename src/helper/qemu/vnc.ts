/**
 * The smallest RFB (VNC) client the driver needs: connect to QEMU's VNC unix socket as a
 * shared client, learn the framebuffer size, and ask for another one with SetDesktopSize
 * (ExtendedDesktopSize, RFC 6143 plus the community extension QEMU implements). It never
 * asks for pixels, so QEMU only ever sends it size announcements. The Display tab draws
 * with noVNC over its own connection; the resize goes through here so every client (tab,
 * CLI, tests) takes one path that the helper can rate-limit.
 */
import net from 'node:net';
import { DevvmError } from '../../shared/errors';

const ENC_DESKTOP_SIZE = -223;
const ENC_EXTENDED_DESKTOP_SIZE = -308;
const SECURITY_NONE = 1;

export interface Size {
  width: number;
  height: number;
}

/** A byte reader over a socket's stream: `take(n)` resolves with exactly n bytes. */
class Reader {
  private buf: Buffer = Buffer.alloc(0);
  private want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failed: Error | null = null;

  constructor(sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      this.pump();
    });
    const end = (e?: Error) => {
      this.failed ??= e ?? new Error('the VNC server closed the connection');
      this.want?.reject(this.failed);
      this.want = null;
    };
    sock.on('error', end);
    sock.on('close', () => end());
  }

  private pump(): void {
    if (!this.want || this.buf.length < this.want.n) return;
    const { n, resolve } = this.want;
    this.want = null;
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    resolve(out);
  }

  take(n: number): Promise<Buffer> {
    if (this.failed && this.buf.length < n) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.want = { n, resolve, reject };
      this.pump();
    });
  }
}

export class VncClient {
  private size: Size;
  private listeners: Array<(s: Size | null, reply?: boolean) => void> = [];
  private closed = false;
  private pending = 0;
  private guestListeners: Array<(s: Size) => void> = [];

  private constructor(
    private readonly sock: net.Socket,
    private readonly reader: Reader,
    init: Size,
  ) {
    this.size = init;
  }

  /** Connects and does the handshake (RFB 3.8, no authentication: the socket is 0600 in a 0700 directory). */
  static async connect(socketPath: string, timeoutMs = 5000): Promise<VncClient> {
    const sock = net.createConnection(socketPath);
    const reader = new Reader(sock);
    const timer = setTimeout(() => sock.destroy(new Error(`no VNC greeting within ${timeoutMs} ms`)), timeoutMs);
    try {
      const version = (await reader.take(12)).toString('latin1');
      if (!/^RFB 003\.\d{3}\n$/.test(version)) throw new Error(`not a VNC server (greeting ${JSON.stringify(version)})`);
      sock.write('RFB 003.008\n');
      const count = (await reader.take(1))[0]!;
      if (count === 0) {
        const len = (await reader.take(4)).readUInt32BE(0);
        throw new Error(`the VNC server refused: ${(await reader.take(len)).toString('utf8')}`);
      }
      const types = [...(await reader.take(count))];
      if (!types.includes(SECURITY_NONE)) throw new Error(`the VNC server wants authentication (types ${types.join(',')})`);
      sock.write(Buffer.from([SECURITY_NONE]));
      if ((await reader.take(4)).readUInt32BE(0) !== 0) throw new Error('the VNC server refused the connection');
      sock.write(Buffer.from([1])); // shared: never disconnect the Display tab's client
      const init = await reader.take(24);
      await reader.take(init.readUInt32BE(20)); // the desktop name
      const c = new VncClient(sock, reader, { width: init.readUInt16BE(0), height: init.readUInt16BE(2) });
      const enc = Buffer.alloc(4 + 8);
      enc.writeUInt8(2, 0);
      enc.writeUInt16BE(2, 2);
      enc.writeInt32BE(ENC_EXTENDED_DESKTOP_SIZE, 4);
      enc.writeInt32BE(ENC_DESKTOP_SIZE, 8);
      sock.write(enc);
      void c.readLoop();
      return c;
    } catch (e) {
      sock.destroy();
      throw new DevvmError('process-failed', `cannot talk to the VM's display: ${(e as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  get current(): Size {
    return { ...this.size };
  }

  get alive(): boolean {
    return !this.closed;
  }

  /** Server messages: only size announcements are expected; anything that cannot be framed ends the connection. */
  private async readLoop(): Promise<void> {
    try {
      for (;;) {
        const type = (await this.reader.take(1))[0];
        if (type === 0) {
          const n = (await this.reader.take(3)).readUInt16BE(1);
          for (let i = 0; i < n; i++) {
            const r = await this.reader.take(12);
            // ExtendedDesktopSize's x is why: 0 the guest changed, 1 the answer to our own request.
            const reply = r.readInt32BE(8) === ENC_EXTENDED_DESKTOP_SIZE && r.readUInt16BE(0) === 1;
            const width = r.readUInt16BE(4);
            const height = r.readUInt16BE(6);
            const encoding = r.readInt32BE(8);
            if (encoding === ENC_EXTENDED_DESKTOP_SIZE) {
              const screens = (await this.reader.take(4))[0]!;
              await this.reader.take(screens * 16);
            } else if (encoding !== ENC_DESKTOP_SIZE) {
              throw new Error(`unexpected rectangle encoding ${encoding}`);
            }
            this.announce({ width, height }, reply);
          }
        } else if (type === 1) {
          const n = (await this.reader.take(5)).readUInt16BE(3);
          await this.reader.take(n * 6);
        } else if (type === 2) {
          // bell
        } else if (type === 3) {
          const len = (await this.reader.take(7)).readUInt32BE(3);
          await this.reader.take(len);
        } else {
          throw new Error(`unexpected server message ${type}`);
        }
      }
    } catch {
      this.close();
    }
  }

  private announce(s: Size, reply: boolean): void {
    this.size = s;
    for (const l of this.listeners) l(s, reply);
    if (!reply && this.pending === 0) for (const l of this.guestListeners) l(s);
  }

  /** The guest changed its mode on its own (its driver loaded, it rebooted), not because we asked. */
  onGuestResize(l: (s: Size) => void): void {
    this.guestListeners.push(l);
  }

  /**
   * Asks for `want` and resolves with the size the guest then shows: `want` once it
   * switched; another size it announced instead (after a short settle, in case it passes
   * through one); or, when nothing changed within `timeoutMs`, the size it kept (a text
   * console cannot grow beyond the framebuffer it booted with).
   */
  async resize(want: Size, timeoutMs: number, settleMs = 300): Promise<{ size: Size; applied: boolean }> {
    if (this.size.width === want.width && this.size.height === want.height) return { size: this.current, applied: true };
    const msg = Buffer.alloc(8 + 16);
    msg.writeUInt8(251, 0);
    msg.writeUInt16BE(want.width, 2);
    msg.writeUInt16BE(want.height, 4);
    msg.writeUInt8(1, 6); // one screen
    msg.writeUInt32BE(0, 8); // screen id
    msg.writeUInt16BE(want.width, 16);
    msg.writeUInt16BE(want.height, 18);
    this.pending++;
    return new Promise((resolve) => {
      let timer = setTimeout(() => done(false), timeoutMs);
      const done = (applied: boolean) => {
        clearTimeout(timer);
        this.pending--;
        this.listeners = this.listeners.filter((l) => l !== onSize);
        resolve({ size: this.current, applied });
      };
      const onSize = (s: Size | null, reply?: boolean) => {
        if (s === null) return done(false);
        if (s.width === want.width && s.height === want.height) return done(true);
        // QEMU's immediate answer ("forwarded to the guest") carries the old size: not the guest's answer.
        if (reply) return;
        clearTimeout(timer);
        timer = setTimeout(() => done(false), settleMs);
      };
      this.listeners.push(onSize);
      this.sock.write(msg);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.destroy();
    for (const l of this.listeners) l(null);
  }
}
