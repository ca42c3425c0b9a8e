/** The QMP client against a fake QEMU on a unix socket: a command QEMU never answers fails with one line. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Qmp } from '../../src/helper/qemu/qmp';

const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-qmp-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Greets, accepts qmp_capabilities, answers query-status, and ignores everything else. */
async function fakeQemu(): Promise<{ file: string; close(): void }> {
  const file = path.join(dir, 'qmp.sock');
  const server = net.createServer((sock) => {
    sock.unref();
    sock.on('error', () => {});
    sock.write('{"QMP": {"version": {}, "capabilities": []}}\n');
    let buf = '';
    sock.on('data', (c) => {
      buf += c.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const m = JSON.parse(buf.slice(0, nl)) as { execute: string; id: number };
        buf = buf.slice(nl + 1);
        if (m.execute === 'qmp_capabilities') sock.write(`{"return": {}, "id": ${m.id}}\n`);
        if (m.execute === 'query-status') sock.write(`{"return": {"status": "running"}, "id": ${m.id}}\n`);
      }
    });
  });
  await new Promise<void>((r) => server.listen(file, r));
  server.unref();
  return { file, close: () => server.close() };
}

test('a command QEMU never answers is rejected after the command timeout, naming it; the connection keeps working', async () => {
  const q = await fakeQemu();
  const qmp = await Qmp.connect(q.file, 2000, 300);
  const t = Date.now();
  await assert.rejects(qmp.execute('quit'), /QEMU did not answer quit within 300 ms/);
  assert.ok(Date.now() - t < 2000);
  assert.deepEqual(await qmp.execute('query-status'), { status: 'running' });
  qmp.close();
  q.close();
});
