/**
 * The extension's helper connection when the helper goes away: a request in flight fails
 * with one clear DevvmError (it used to wait forever), the view is told it is disconnected,
 * and the next request reconnects, starting the helper when none answers. Against a fake
 * helper on a real unix socket (no VM, no real helper).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createMessageConnection, SocketMessageReader, SocketMessageWriter } from 'vscode-jsonrpc/node';
import { HelperClient } from '../../src/extension/helperclient';
import { DevvmError } from '../../src/shared/errors';
import { helperSocket } from '../../src/shared/paths';
import { Rpc } from '../../src/shared/rpc';
import type { VmSummary } from '../../src/shared/types';

const vm = (name: string): VmSummary => ({ name, state: 'stopped', image: 'img', user: 'u', sshHost: `devvm-${name}`, sshPort: null, cpus: 1, memoryMiB: 256 });

type Behaviour = 'answer' | 'hold' | 'drop';

/** A helper that answers vm/list, holds it unanswered, or closes the socket instead of answering: `act(connection, request)` says which. */
function fakeHelper(home: string, act: (conn: number, req: number) => Behaviour) {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    const n = ++connections;
    let requests = 0;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    const conn = createMessageConnection(new SocketMessageReader(sock), new SocketMessageWriter(sock));
    conn.onRequest(Rpc.vmList.method, () => {
      const what = act(n, ++requests);
      if (what === 'drop') sock.destroy();
      if (what !== 'answer') return new Promise(() => {});
      return [vm(`answer-${n}`)];
    });
    conn.listen();
  });
  return {
    listen: () => new Promise<void>((r) => server.listen(helperSocket(home), r)),
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
    get connections() {
      return connections;
    },
  };
}

/** Fails instead of hanging: the defect was a promise that never settled. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms))).finally(() => clearTimeout(t))]).finally(() => clearTimeout(t));
}

function client(home: string, helperScript: string, logs: string[] = []) {
  return new HelperClient({ home, helperScript, env: { ...process.env, DEVVM_HOME: home }, log: (level, msg) => logs.push(`${level}: ${msg}`) });
}

test('a request in flight when the helper goes away fails with one clear error; the next one reconnects', async () => {
  const home = mkdtempSync(path.join(os.tmpdir(), 'devvm-hc-'));
  const helper = fakeHelper(home, (n) => (n === 1 ? 'drop' : 'answer'));
  await helper.listen();
  const c = client(home, path.join(home, 'no-such-helper.js'));
  let disconnected = 0;
  c.disconnected.on(() => disconnected++);
  try {
    const err = await within(
      c.request(Rpc.vmList).then(
        () => assert.fail('the request succeeded'),
        (e: unknown) => e,
      ),
      5000,
      'vm/list while the helper went away',
    );
    assert.ok(err instanceof DevvmError, `a DevvmError, got ${String(err)}`);
    assert.equal(err.message, 'the devvm helper went away during the request');
    assert.match(err.oneLine(), /went away during the request \(.+\)/, 'with a hint');
    assert.equal(disconnected, 1, 'the view is told once');
    // The next request opens a new connection (the helper answers again).
    const list = await within(c.request(Rpc.vmList), 5000, 'vm/list after the helper came back');
    assert.deepEqual(list.map((s) => s.name), ['answer-2']);
    assert.equal(helper.connections, 2);
  } finally {
    c.dispose();
    await helper.close();
    rmSync(home, { recursive: true, force: true });
  }
});

test('every request pending on the connection fails, not only the first', async () => {
  const home = mkdtempSync(path.join(os.tmpdir(), 'devvm-hc-'));
  // The first two requests are held unanswered; the third makes the helper go away.
  const helper = fakeHelper(home, (_n, req) => (req < 3 ? 'hold' : 'drop'));
  await helper.listen();
  const c = client(home, path.join(home, 'no-such-helper.js'));
  try {
    const held = [c.request(Rpc.vmList), c.request(Rpc.vmList)];
    await new Promise((r) => setTimeout(r, 100));
    const results = await within(Promise.allSettled([...held, c.request(Rpc.vmList)]), 5000, 'three requests');
    assert.deepEqual(
      results.map((r) => (r.status === 'rejected' ? (r.reason as DevvmError).message : 'answered')),
      Array(3).fill('the devvm helper went away during the request'),
    );
  } finally {
    c.dispose();
    await helper.close();
    rmSync(home, { recursive: true, force: true });
  }
});

test('after the helper died, the next request starts a new one', async () => {
  const home = mkdtempSync(path.join(os.tmpdir(), 'devvm-hc-'));
  const first = fakeHelper(home, () => 'drop');
  await first.listen();
  // What the client starts when nothing answers: a fake helper answering vm/list, writing its pid.
  const script = path.join(home, 'fake-helper.js');
  const pidFile = path.join(home, 'fake-helper.pid');
  writeFileSync(
    script,
    `const net = require('node:net'); const fs = require('node:fs');
const rpc = require(${JSON.stringify(require.resolve('vscode-jsonrpc/node'))});
fs.writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));
setTimeout(() => process.exit(0), 30000).unref();
const sock = ${JSON.stringify(helperSocket(home))};
try { fs.unlinkSync(sock); } catch {}
net.createServer((s) => {
  const c = rpc.createMessageConnection(new rpc.SocketMessageReader(s), new rpc.SocketMessageWriter(s));
  c.onRequest(${JSON.stringify(Rpc.vmList.method)}, () => [${JSON.stringify(vm('restarted'))}]);
  c.listen();
}).listen(sock);
`,
  );
  const c = client(home, script);
  try {
    await assert.rejects(within(c.request(Rpc.vmList), 5000, 'vm/list as the helper dies'), /went away during the request/);
    await first.close(); // the helper is gone for good (its socket file removed)
    const list = await within(c.request(Rpc.vmList), 10000, 'vm/list with no helper running');
    assert.deepEqual(list.map((s) => s.name), ['restarted']);
  } finally {
    c.dispose();
    if (existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGTERM');
      } catch {
        // already gone
      }
    }
    await first.close().catch(() => {});
    rmSync(home, { recursive: true, force: true });
  }
});
