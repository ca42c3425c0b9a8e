/**
 * A stand-in for the Display tab's noVNC, for the idle-CPU figure: a shared RFB client that
 * asks for incremental framebuffer updates again as soon as one arrives (as noVNC does),
 * in ZRLE (zlib-compressed, like the Tight encoding noVNC prefers), and throws the pixels
 * away. Only what is needed to frame QEMU's answers is parsed.
 */
import net from 'node:net';

export interface Viewer {
  updates(): number;
  close(): void;
}

export async function watch(socketPath: string): Promise<Viewer> {
  const sock = net.createConnection(socketPath);
  let buf = Buffer.alloc(0);
  let waiting: { n: number; resolve: (b: Buffer) => void } | null = null;
  const pump = () => {
    if (waiting && buf.length >= waiting.n) {
      const { n, resolve } = waiting;
      waiting = null;
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      resolve(out);
    }
  };
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    pump();
  });
  let closed = false;
  sock.on('close', () => (closed = true));
  sock.on('error', () => (closed = true));
  const take = (n: number) => new Promise<Buffer>((resolve) => ((waiting = { n, resolve }), pump()));
  await take(12);
  sock.write('RFB 003.008\n');
  const count = (await take(1))[0]!;
  await take(count);
  sock.write(Buffer.from([1]));
  await take(4);
  sock.write(Buffer.from([1]));
  const init = await take(24);
  let width = init.readUInt16BE(0);
  let height = init.readUInt16BE(2);
  const bpp = init[4]! / 8;
  await take(init.readUInt32BE(20));
  const enc = [16, 0, -223, -308];
  const se = Buffer.alloc(4 + 4 * enc.length);
  se.writeUInt8(2, 0);
  se.writeUInt16BE(enc.length, 2);
  enc.forEach((e, i) => se.writeInt32BE(e, 4 + 4 * i));
  sock.write(se);
  const request = (incremental: boolean) => {
    const r = Buffer.alloc(10);
    r.writeUInt8(3, 0);
    r.writeUInt8(incremental ? 1 : 0, 1);
    r.writeUInt16BE(width, 6);
    r.writeUInt16BE(height, 8);
    sock.write(r);
  };
  let updates = 0;
  request(false);
  void (async () => {
    while (!closed) {
      const type = (await take(1))[0];
      if (type === 0) {
        const n = (await take(3)).readUInt16BE(1);
        for (let i = 0; i < n; i++) {
          const r = await take(12);
          const w = r.readUInt16BE(4);
          const h = r.readUInt16BE(6);
          const e = r.readInt32BE(8);
          if (e === 0) await take(w * h * bpp);
          else if (e === 16) await take((await take(4)).readUInt32BE(0));
          else if (e === -308) await take((await take(4))[0]! * 16);
          if (e === -223 || e === -308) [width, height] = [w, h];
        }
        updates++;
        request(true);
      } else if (type === 2) {
        // bell
      } else if (type === 3) {
        await take((await take(7)).readUInt32BE(3));
      } else {
        sock.destroy();
        return;
      }
    }
  })();
  return { updates: () => updates, close: () => sock.destroy() };
}
