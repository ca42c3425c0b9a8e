/**
 * A base image on slow network storage, for the cache-layer tests and the bench:
 * qemu-nbd serves the file read-only on 127.0.0.1, and a TCP relay in front of it limits
 * the bandwidth towards clients and counts every byte it relays. That count is what
 * "bytes read from the base" means (NBD reply headers add 16 bytes per read).
 * Both run in a child process: the tests' synchronous CLI calls would stall a relay
 * living in their own event loop (and the helper would wait on it forever).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { sourceReachable } from '../../src/helper/nbd';
import { freePort } from '../../src/helper/ports';

export interface SlowNbd {
  /** nbd:// URI of the throttled, counting relay. */
  uri: string;
  /** Bytes relayed from the server to clients since the last reset. */
  bytes(): Promise<number>;
  reset(): Promise<void>;
  close(): Promise<void>;
}

type Request = { op: 'bytes' | 'reset' | 'close' };
type Reply = { uri?: string; bytes?: number; error?: string };

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`qemu-nbd exited with ${child.exitCode}`);
    // The helper's own probe: it greets properly, so qemu-nbd logs no failed negotiation.
    if ((await sourceReachable(`nbd://127.0.0.1:${port}/base`)) === null) return;
    if (Date.now() > deadline) throw new Error(`qemu-nbd did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Serves `file` (qcow2) as export "base" at `bytesPerSecond` shared by all clients. */
export async function serveSlowly(file: string, bytesPerSecond: number): Promise<SlowNbd> {
  const child = fork(__filename, [file, String(bytesPerSecond)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const next = () =>
    new Promise<Reply>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the NBD relay exited with ${code}`));
      child.once('exit', onExit);
      child.once('message', (m: Reply) => {
        child.off('exit', onExit);
        if (m.error) reject(new Error(m.error));
        else resolve(m);
      });
    });
  const ask = (op: Request['op']) => {
    const reply = next();
    child.send({ op } satisfies Request);
    return reply;
  };
  const { uri } = await next();
  return {
    uri: uri!,
    bytes: async () => (await ask('bytes')).bytes!,
    reset: async () => void (await ask('reset')),
    close: async () => {
      if (child.exitCode !== null || !child.connected) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.send({ op: 'close' } satisfies Request);
      await gone;
    },
  };
}

async function relayMain(file: string, bytesPerSecond: number): Promise<void> {
  const upstreamPort = await freePort();
  const nbd = spawn('qemu-nbd', ['--read-only', '--persistent', '--shared=16', '--format=qcow2', '--export-name=base', '--bind=127.0.0.1', `--port=${upstreamPort}`, file], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitForPort(upstreamPort, nbd, 15_000);
  let relayed = 0;
  // One link for every client: the time at which it finishes sending what it was given.
  let linkFreeAt = 0;
  const conns = new Set<net.Socket>();
  const relay = net.createServer((client) => {
    const upstream = net.createConnection(upstreamPort, '127.0.0.1');
    conns.add(client).add(upstream);
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      relayed += chunk.length;
      const now = performance.now();
      linkFreeAt = Math.max(now, linkFreeAt) + (chunk.length / bytesPerSecond) * 1000;
      const wait = linkFreeAt - now;
      if (wait < 1) {
        client.write(chunk);
        return;
      }
      // Paused, the upstream delivers nothing more: order is kept and memory bounded.
      upstream.pause();
      setTimeout(() => {
        client.write(chunk);
        upstream.resume();
      }, wait);
    });
    // A side that ends is ended on the other side after what is in flight (pipe does it
    // for the client's bytes); a failing side tears both down.
    upstream.on('end', () => setTimeout(() => client.end(), Math.max(0, linkFreeAt - performance.now()) + 1));
    const fail = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', fail);
      s.on('close', () => conns.delete(s));
    }
    client.on('close', () => upstream.end());
  });
  const port = await listen(relay);
  // The parent going away ends qemu-nbd too.
  process.on('disconnect', () => nbd.kill('SIGTERM'));
  process.on('message', async (m: Request) => {
    if (m.op === 'bytes') process.send!({ bytes: relayed } satisfies Reply);
    if (m.op === 'reset') {
      relayed = 0;
      process.send!({} satisfies Reply);
    }
    if (m.op === 'close') {
      for (const s of conns) s.destroy();
      relay.close();
      nbd.kill('SIGTERM');
      if (nbd.exitCode === null) await new Promise((r) => nbd.once('exit', r));
      process.exit(0);
    }
  });
  process.send!({ uri: `nbd://127.0.0.1:${port}/base` } satisfies Reply);
}

if (require.main === module) {
  relayMain(process.argv[2]!, Number(process.argv[3])).catch((e: Error) => {
    process.send?.({ error: e.message } satisfies Reply);
    process.exit(1);
  });
}
