/** The guest's listening sockets from /proc/net/tcp{,6}, the change between polls, and ss's process names. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diffPorts, guestPorts, parseProcNet, parseSsProcesses, type GuestPort } from '../../src/helper/portfwd/procnet';

const HEAD4 = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
const row = (i: number, local: string, remote: string, st: string) => `  ${i}: ${local} ${remote} ${st} 00000000:00000000 00:00000000 00000000  1000        0 ${12345 + i} 1 0000000000000000 100 0 0 10 0\n`;

test('IPv4: LISTEN sockets with their address and port; other states skipped', () => {
  const text = HEAD4
    + row(0, '00000000:1FBB', '00000000:0000', '0A') // 0.0.0.0:8123 LISTEN
    + row(1, '0100007F:0CEA', '00000000:0000', '0A') // 127.0.0.1:3306 LISTEN
    + row(2, '0F02000A:0016', '0202000A:C350', '01') // 10.0.2.15:22 ESTABLISHED
    + row(3, '0F02000A:1F90', '0202000A:C351', '06') // TIME_WAIT
    + row(4, '0F02000A:1F91', '00000000:0000', '0A'); // 10.0.2.15:8081 LISTEN
  assert.deepEqual(parseProcNet(text, 4), [
    { port: 8123, address: '0.0.0.0', family: 4 },
    { port: 3306, address: '127.0.0.1', family: 4 },
    { port: 8081, address: '10.0.2.15', family: 4 },
  ]);
});

test('IPv6: ::, ::1, v4-mapped and a full address', () => {
  const z = '0'.repeat(32);
  const text = HEAD4
    + row(0, `${z}:1FBB`, `${z}:0000`, '0A')
    + row(1, '00000000000000000000000001000000:1F40', `${z}:0000`, '0A') // ::1:8000
    + row(2, '0000000000000000FFFF00000100007F:1F41', `${z}:0000`, '0A') // ::ffff:127.0.0.1:8001
    + row(3, '000080FE00000000FF005450563412FE:1F42', `${z}:0000`, '0A') // fe80::5054:ff:fe12:3456
    + row(4, `${z}:1F43`, `${z}:0000`, '01');
  const ls = parseProcNet(text, 6);
  assert.deepEqual(ls.slice(0, 3), [
    { port: 8123, address: '::', family: 6 },
    { port: 8000, address: '::1', family: 6 },
    { port: 8001, address: '::ffff:127.0.0.1', family: 6 },
  ]);
  assert.equal(ls[3]!.address, 'fe80:0:0:0:5054:ff:fe12:3456');
  assert.equal(ls.length, 4);
});

test('garbage from the guest is skipped, never thrown on', () => {
  const text = `${HEAD4}nonsense\n  0: ZZZZ:1FBB 00000000:0000 0A\n  1: 00000000:GGGG 00000000:0000 0A\n  2: 00000000:0000 00000000:0000 0A\n  3: 00000000\n\n${'x'.repeat(10000)}\n`;
  assert.deepEqual(parseProcNet(text, 4), []);
  assert.deepEqual(parseProcNet('', 6), []);
  assert.deepEqual(parseProcNet(`${HEAD4}  0: 0000:1FBB 00000000:0000 0A\n`, 6), []);
});

test('one entry per port: a wildcard or the NIC address goes through hostfwd, guest-local only is relayed (IPv4 loopback first); skipped ports stay out', () => {
  const m = guestPorts([
    { port: 8123, address: '0.0.0.0', family: 4 },
    { port: 8123, address: '::', family: 6 },
    { port: 22, address: '0.0.0.0', family: 4 },
    { port: 8081, address: '127.0.0.1', family: 4 },
    { port: 8081, address: '::1', family: 6 },
    { port: 8082, address: '::1', family: 6 },
    { port: 8083, address: '::ffff:127.0.0.1', family: 6 },
    { port: 8084, address: '10.0.2.15', family: 4 },
    { port: 8085, address: '::ffff:10.0.2.15', family: 6 },
    { port: 8086, address: '172.17.0.1', family: 4 },
    { port: 9000, address: '0.0.0.0', family: 4 },
  ], new Set([22, 9000]));
  assert.deepEqual([...m.values()], [
    { port: 8081, route: 'relay', address: '127.0.0.1' },
    { port: 8082, route: 'relay', address: '::1' },
    { port: 8083, route: 'relay', address: '127.0.0.1' },
    { port: 8084, route: 'hostfwd', address: '10.0.2.15' },
    { port: 8085, route: 'hostfwd', address: '::ffff:10.0.2.15' },
    { port: 8086, route: 'relay', address: '172.17.0.1' },
    { port: 8123, route: 'hostfwd', address: '0.0.0.0' },
  ]);
});

const map = (...ps: GuestPort[]) => new Map(ps.map((p) => [p.port, p]));

test('the diff from one poll to the next: new, gone, route changed; a wildcard that moved stays', () => {
  const a: GuestPort = { port: 8000, route: 'hostfwd', address: '0.0.0.0' };
  const b: GuestPort = { port: 8001, route: 'relay', address: '127.0.0.1' };
  const c: GuestPort = { port: 8002, route: 'hostfwd', address: '::' };
  assert.deepEqual(diffPorts(map(), map(a, b)), { added: [a, b], removed: [] });
  assert.deepEqual(diffPorts(map(a, b), map(a, b)), { added: [], removed: [] });
  assert.deepEqual(diffPorts(map(a, b), map(b)), { added: [], removed: [a] });
  assert.deepEqual(diffPorts(map(a), map({ ...a, address: '::' })), { added: [], removed: [] }, 'still reachable the same way');
  const rebound: GuestPort = { port: 8001, route: 'hostfwd', address: '0.0.0.0' };
  assert.deepEqual(diffPorts(map(a, b), map(a, rebound, c)), { added: [rebound, c], removed: [b] });
  const moved: GuestPort = { port: 8001, route: 'relay', address: '::1' };
  assert.deepEqual(diffPorts(map(b), map(moved)), { added: [moved], removed: [b] });
});

test("ss -Hltnp: the first process per port; a hostile name is bounded and has no control characters", () => {
  const out = [
    'LISTEN 0      5            0.0.0.0:8123      0.0.0.0:*    users:(("python3",pid=612,fd=3))',
    'LISTEN 0      128             [::]:22           [::]:*    users:(("sshd",pid=401,fd=4))',
    'LISTEN 0      511        127.0.0.1:3000      0.0.0.0:*    users:(("node",pid=700,fd=20),("node",pid=701,fd=20))',
    'LISTEN 0      511        127.0.0.1:3001      0.0.0.0:*    users:(("evil\x1b[31m\x07name-that-goes-on-and-on-and-on",pid=9,fd=1))',
    'LISTEN 0      511        127.0.0.1:3002      0.0.0.0:*',
    'garbage',
  ].join('\n');
  const m = parseSsProcesses(out);
  assert.equal(m.get(8123), 'python3');
  assert.equal(m.get(22), 'sshd');
  assert.equal(m.get(3000), 'node');
  const evil = m.get(3001)!;
  assert.ok(!/[\x00-\x1f]/.test(evil) && evil.length <= 32, evil);
  assert.equal(m.has(3002), false);
});
