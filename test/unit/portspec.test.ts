/** Static forwards as typed and as the helper accepts them, hostile input included. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ipv4, parsePortInput, parsePortSpec, staticPort } from '../../src/shared/portspec';

test('[ADDR:]HOST:GUEST[/udp]: defaults 127.0.0.1 and tcp', () => {
  assert.deepEqual(parsePortSpec('8080:80'), { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80 });
  assert.deepEqual(parsePortSpec('0.0.0.0:8080:80'), { protocol: 'tcp', hostAddress: '0.0.0.0', hostPort: 8080, guestPort: 80 });
  assert.deepEqual(parsePortSpec('5353:53/udp'), { protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 5353, guestPort: 53 });
  assert.deepEqual(parsePortSpec('5353:53', true), { protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 5353, guestPort: 53 });
  assert.deepEqual(parsePortSpec('1:65535/tcp'), { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 1, guestPort: 65535 });
});

test('hostile or malformed specs are refused with one line, before anything reaches QEMU', () => {
  const bad = [
    '', '80', ':80', '8080:', '8080:80:90:100', '0:80', '8080:0', '65536:80', '-1:80', '8080:80x', '0x50:80', '8080:80/sctp', '8080:80/',
    'localhost:8080:80', '::1:8080:80', '[::1]:8080:80', '1.2.3:8080:80', '1.2.3.4.5:8080:80', '256.0.0.1:8080:80', '010.0.0.1:8080:80',
    '127.0.0.1 -:22:8080:80', '127.0.0.1,hostfwd=tcp::2222-:22:1:2', '127.0.0.1\n:1:2', '127.0.0.1;quit:1:2', `${'1'.repeat(70)}:1:2`, '1e3:80', ' 8080:80',
  ];
  for (const b of bad) {
    assert.throws(() => parsePortSpec(b), (e: Error & { code?: string }) => e.code === 'invalid-argument' && !e.message.includes('\n'), b);
  }
  assert.throws(() => parsePortSpec('8080:80/tcp', true), /--udp/);
});

test('the helper checks what a client sends the same way (the schema only bounds it)', () => {
  assert.deepEqual(staticPort({ hostPort: 8080, guestPort: 80 }), { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80 });
  for (const hostAddress of ['0.0.0.0 ', 'a', '127.0.0.1-:22', '127.0.0.1\nquit', '::', '']) assert.throws(() => staticPort({ hostAddress, hostPort: 1, guestPort: 1 }), /invalid host address/, hostAddress);
  assert.throws(() => staticPort({ hostPort: 1.5, guestPort: 1 }), /port number/);
  assert.throws(() => staticPort({ protocol: 'icmp' as 'tcp', hostPort: 1, guestPort: 1 }), /invalid protocol/);
  assert.equal(ipv4('192.168.1.200'), '192.168.1.200');
});

test('one port for both sides only where asked (the extension\'s input boxes); the CLI wants HOST:GUEST', () => {
  assert.deepEqual(parsePortInput(' 8080/udp '), { protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 8080 });
  assert.throws(() => parsePortSpec('8080'), /invalid port forward "8080"/);
});
