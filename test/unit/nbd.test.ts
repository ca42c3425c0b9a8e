import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parseNbdUri, protocolNode, sourceReachable } from '../../src/helper/nbd';

test('nbd:// URIs: host, port (default 10809), export; IPv6 in brackets', () => {
  assert.deepEqual(parseNbdUri('nbd://127.0.0.1:10810/disk'), { host: '127.0.0.1', port: 10810, export: 'disk' });
  assert.deepEqual(parseNbdUri('nbd://nas.local'), { host: 'nas.local', port: 10809, export: '' });
  assert.deepEqual(parseNbdUri('nbd://[::1]:5000/x'), { host: '::1', port: 5000, export: 'x' });
});

test('anything else in an nbd:// URI is refused before QEMU sees it', () => {
  for (const bad of ['nbd://', 'nbd://h:0/x', 'nbd://h:70000/x', 'nbd://h/a/b', 'nbd://h/x?y', 'nbd://h/"', 'nbd://h;rm/x', 'nbd://h/../x', `nbd://h/${'x'.repeat(256)}`]) {
    assert.throws(() => parseNbdUri(bad), /invalid NBD URI/, bad);
  }
});

test('protocol node: a file, or an NBD client over inet', () => {
  assert.deepEqual(protocolNode('/img/disk.qcow2', 'p', true), { driver: 'file', 'node-name': 'p', filename: '/img/disk.qcow2', 'read-only': true });
  assert.deepEqual(protocolNode('nbd://h:1/e', 'p', false), { driver: 'nbd', 'node-name': 'p', server: { type: 'inet', host: 'h', port: '1' }, export: 'e', 'read-only': false });
});

test('reachability: a file exists; an NBD server greets and the probe aborts the handshake', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-nbd-'));
  writeFileSync(path.join(dir, 'f'), '');
  assert.equal(await sourceReachable(path.join(dir, 'f')), null);
  assert.equal(await sourceReachable(path.join(dir, 'gone')), 'missing');
  let heard = Buffer.alloc(0);
  const nbd = net.createServer((s) => {
    s.on('data', (c: Buffer) => (heard = Buffer.concat([heard, c])));
    s.on('error', () => {});
    s.write(Buffer.concat([Buffer.from('NBDMAGICIHAVEOPT', 'latin1'), Buffer.from([0, 3])]));
  });
  const port = await listen(nbd);
  assert.equal(await sourceReachable(`nbd://127.0.0.1:${port}/base`), null);
  await new Promise((r) => setTimeout(r, 50));
  // client flags: fixed newstyle; then IHAVEOPT, NBD_OPT_ABORT (2), no data
  assert.equal(heard.toString('hex'), `00000001${Buffer.from('IHAVEOPT').toString('hex')}0000000200000000`);
  await new Promise((r) => nbd.close(r));
  assert.equal(await sourceReachable(`nbd://127.0.0.1:${port}/base`), 'ECONNREFUSED');
  const http = net.createServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
  const httpPort = await listen(http);
  assert.equal(await sourceReachable(`nbd://127.0.0.1:${httpPort}/base`), 'not an NBD server');
  http.close();
});

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}
