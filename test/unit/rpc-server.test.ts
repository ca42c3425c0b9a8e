/**
 * The RPC boundary: parameters parsed once from the protocol's declaration (unknown keys,
 * wrong types and bad names refused before a handler runs), and an operation whose
 * client vanished mid-way still completes (progress to a disposed connection is dropped).
 * A real Server on a real unix socket, with stand-in services: no VM.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createMessageConnection, SocketMessageReader, SocketMessageWriter, type MessageConnection } from 'vscode-jsonrpc/node';
import { fromRpcError } from '../../src/shared/client';
import { Params, Rpc } from '../../src/shared/rpc';
import { Home } from '../../src/helper/filenames';
import { Server, type ServerDeps } from '../../src/helper/server';
import type { Images } from '../../src/helper/images';
import type { Vms } from '../../src/helper/vms';

function fakeVms(overrides: Record<string, unknown>): Vms {
  const e = new EventEmitter();
  return Object.assign(e, { runningNames: () => [], usbOwner: () => undefined, imageUsers: () => [], list: () => [] }, overrides) as unknown as Vms;
}

async function serve(vms: Vms) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-rpc-'));
  const deps: ServerDeps = {
    home: new Home(dir), vms, images: { names: () => [] } as unknown as Images,
    info: { pid: process.pid, version: 'test', home: dir, startedAt: '' }, qemuBinary: 'qemu-system-x86_64',
    accelerator: async () => ({ name: 'tcg', reason: 'test' }) as never, shutdown: () => {}, usb: null, usbSysfsRoot: dir,
  };
  const server = new Server(deps);
  const sock = path.join(dir, 's');
  const listener = net.createServer((c) => server.accept(c));
  await new Promise<void>((r) => listener.listen(sock, r));
  const client = async (): Promise<{ conn: MessageConnection; socket: net.Socket }> => {
    const socket = net.createConnection(sock);
    await new Promise((r) => socket.once('connect', r));
    const conn = createMessageConnection(new SocketMessageReader(socket), new SocketMessageWriter(socket));
    conn.listen();
    return { conn, socket };
  };
  const close = () => {
    server.closeAll();
    listener.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { client, close };
}

test('parameters are parsed from the one declaration: types, names, unknown keys', () => {
  assert.deepEqual(Params.start.parse({ name: 'web', waitSsh: true }, 'params'), { name: 'web', waitSsh: true });
  assert.throws(() => Params.start.parse({ name: 'Web' }, 'params'), /invalid VM name "Web"/);
  assert.throws(() => Params.start.parse({ name: 'web', waitSsh: 'yes' }, 'params'), /waitSsh must be true or false/);
  assert.throws(() => Params.start.parse({ name: 'web', timeoutSec: 0 }, 'params'), /timeoutSec must be a whole number in 1-86400/);
  assert.throws(() => Params.start.parse({ name: 'web', force: true }, 'params'), /unknown parameter "force"/);
  assert.throws(() => Params.create.parse({ name: 'web', image: 'debian-12', user: 'root' }, 'params'), /reserved/);
  assert.throws(() => Params.create.parse({ name: 'web', image: 'debian-12', user: 'a', sshKeys: ['nope'] }, 'params'), /not an OpenSSH public key/);
  assert.throws(() => Params.name.parse([], 'params'), /params must be an object/);
  // Relative paths would resolve against the helper's working directory, not the client's.
  assert.throws(() => Params.imageImport.parse({ file: 'disk.qcow2', name: 'x' }, 'params'), /image file "disk.qcow2" is not an absolute path/);
  assert.throws(() => Params.imageImport.parse({ file: '/d.qcow2', name: 'x', kernel: 'vmlinuz' }, 'params'), /kernel file "vmlinuz" is not an absolute path/);
  assert.equal(Params.imageImport.parse({ file: 'nbd://h:1/e', name: 'x' }, 'params').file, 'nbd://h:1/e');
  assert.throws(() => Params.sshInclude.parse({ userConfig: '.ssh/config' }, 'params'), /not an absolute path/);
  assert.throws(() => Rpc.vmList.params.parse({ x: 1 }, 'params'), /takes no parameters/);
});

test('the server refuses a bad message before the handler runs, with the one-line error', async (t) => {
  let called = 0;
  const { client, close } = await serve(fakeVms({ start: async () => called++ }));
  t.after(close);
  const { conn, socket } = await client();
  await assert.rejects(conn.sendRequest(Rpc.vmStart.method, { name: '../x' }), (e) => {
    const err = fromRpcError(e);
    return err.code === 'invalid-argument' && /invalid VM name/.test(err.message);
  });
  await assert.rejects(conn.sendRequest(Rpc.vmStart.method, { name: 'x', bogus: 1 }), (e) => fromRpcError(e).message === 'unknown parameter "bogus"');
  assert.equal(called, 0);
  // A request without parameters (vscode-jsonrpc then passes only its cancellation token).
  assert.deepEqual(await conn.sendRequest(Rpc.vmList), []);
  await assert.rejects(conn.sendRequest(Rpc.vmList.method, { x: 1 }), (e) => fromRpcError(e).message === 'this request takes no parameters');
  conn.dispose();
  socket.destroy();
});

test('a client that goes away mid-operation loses its progress, not the operation', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let finished = false;
  let progressed = 0;
  const { client, close } = await serve(
    fakeVms({
      restore: async (_name: string, _snap: string, progress: (m: string) => void) => {
        progress('stopping');
        await gate;
        // The client is gone now: on the old server this threw and the restore stopped half-way.
        progress('creating the new overlay');
        progressed++;
        finished = true;
        return { name: 'web' };
      },
    }),
  );
  t.after(close);
  const { conn, socket } = await client();
  const pending = conn.sendRequest(Rpc.vmRestore.method, { name: 'web', snapshot: 's1', progressToken: 't1' }).catch(() => 'gone');
  await new Promise((r) => setTimeout(r, 100));
  conn.dispose();
  socket.destroy();
  await new Promise((r) => setTimeout(r, 100));
  release();
  for (let i = 0; i < 50 && !finished; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(finished, true);
  assert.equal(progressed, 1);
  assert.equal(await pending, 'gone');
});
