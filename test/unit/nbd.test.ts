import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parseNbdUri, protocolNode, sourceReachable, unixNbdUri } from '../../src/helper/nbd';

test('nbd:// URIs: host, port (default 10809), export; IPv6 in brackets', () => {
  assert.deepEqual(parseNbdUri('nbd://127.0.0.1:10810/disk'), { transport: 'tcp', host: '127.0.0.1', port: 10810, export: 'disk' });
  assert.deepEqual(parseNbdUri('nbd://nas.local'), { transport: 'tcp', host: 'nas.local', port: 10809, export: '' });
  assert.deepEqual(parseNbdUri('nbd://[::1]:5000/x'), { transport: 'tcp', host: '::1', port: 5000, export: 'x' });
});

test('nbd+unix:///EXPORT?socket=PATH, percent-decoded; unixNbdUri round-trips odd paths', () => {
  assert.deepEqual(parseNbdUri('nbd+unix:///web-s?socket=/home/u/.local/share/devvm/vms/web/nbd.sock'), { transport: 'unix', socket: '/home/u/.local/share/devvm/vms/web/nbd.sock', export: 'web-s' });
  assert.deepEqual(parseNbdUri('nbd+unix:///?socket=/tmp/a%20b%2Cc/s'), { transport: 'unix', socket: '/tmp/a b,c/s', export: '' });
  for (const sock of ['/tmp/a b,c?d&e#f%g/nbd.sock', '/x/n.sock']) {
    assert.deepEqual(parseNbdUri(unixNbdUri(sock, 'e')), { transport: 'unix', socket: sock, export: 'e' });
  }
});

test('anything else in an NBD URI is refused before QEMU sees it: credentials, odd ports, control characters', () => {
  const cases: Array<[string, RegExp]> = [
    ['nbd://', /bad host/],
    ['nbd://h:0/x', /port/],
    ['nbd://h:70000/x', /port/],
    ['nbd://h:080/x', /leading zeros/],
    ['nbd://h:/x', /port/],
    ['nbd://h:+80/x', /port/],
    ['nbd://h:8 0/x', /port/],
    ['nbd://user:secret@h/x', /credentials/],
    ['nbd://user@h/x', /credentials/],
    ['nbd+unix://u@/x?socket=/s', /credentials/],
    ['nbd://h/a/b', /export name/],
    ['nbd://h/x?y', /no query/],
    ['nbd://h/x#f', /fragment/],
    ['nbd://h/"', /export name/],
    ['nbd://h;rm/x', /bad host/],
    ['nbd://h/../x', /export name/],
    ['nbd://h/..', /export name/],
    [`nbd://h/${'x'.repeat(256)}`, /export name/],
    ['nbd://h/x\n', /control/],
    ['nbd://h\u0000/x', /control/],
    ['nbd://h/x\u0085', /control/],
    ['nbd+unix:///x?socket=/a%0Ab', /control/],
    ['nbd+unix:///x?socket=/a%00b', /control/],
    ['nbd+unix://host/x?socket=/s', /no host/],
    ['nbd+unix:///x', /socket=PATH/],
    ['nbd+unix:///x?socket=/s&tls=1', /socket=PATH/],
    ['nbd+unix:///x?socket=rel/s', /absolute/],
    ['nbd+unix:///x?socket=/a/../s', /absolute/],
    ['nbd+unix:///x?socket=/%E0%A4%A', /percent/],
    [`nbd+unix:///x?socket=/${'s'.repeat(120)}`, /longer/],
    ['nbds://h/x', /not an nbd/],
    ['http://h/x', /not an nbd/],
  ];
  for (const [bad, why] of cases) {
    assert.throws(() => parseNbdUri(bad), (e: Error) => /invalid NBD URI/.test(e.message) && why.test(e.message), bad);
  }
  // A password never reaches the error message (it would be logged and shown).
  assert.throws(() => parseNbdUri('nbd://user:hunter2@h/x'), (e: Error) => !e.message.includes('hunter2'));
});

test('protocol node: a file, or an NBD client over inet', () => {
  assert.deepEqual(protocolNode('/img/disk.qcow2', 'p', true), { driver: 'file', 'node-name': 'p', filename: '/img/disk.qcow2', 'read-only': true });
  assert.deepEqual(protocolNode('nbd://h:1/e', 'p', false), { driver: 'nbd', 'node-name': 'p', server: { type: 'inet', host: 'h', port: '1' }, export: 'e', 'read-only': false });
  assert.deepEqual(protocolNode('nbd+unix:///e?socket=/v/nbd.sock', 'p', true), { driver: 'nbd', 'node-name': 'p', server: { type: 'unix', path: '/v/nbd.sock' }, export: 'e', 'read-only': true });
});

test('reachability: a file exists; an NBD server greets and the probe aborts the handshake', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-nbd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
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
  // The same probe over a unix socket.
  const unixNbd = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', () => {});
    s.write(Buffer.concat([Buffer.from('NBDMAGICIHAVEOPT', 'latin1'), Buffer.from([0, 3])]));
  });
  const sock = path.join(dir, 'nbd.sock');
  await new Promise<void>((r) => unixNbd.listen(sock, r));
  assert.equal(await sourceReachable(unixNbdUri(sock, 'base')), null);
  await new Promise((r) => unixNbd.close(r));
  assert.equal(await sourceReachable(unixNbdUri(sock, 'base')), 'ENOENT');
});

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}
