/** The `devvm ports` table and its line on automatic forwarding. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { portsText } from '../../src/shared/format';
import type { PortForward } from '../../src/shared/types';

const base = { protocol: 'tcp', hostAddress: '127.0.0.1', active: true } as const;

test('kind, host address:port, guest port, process, state, note; SSH relays and guest-local addresses shown', () => {
  const ports: PortForward[] = [
    { ...base, kind: 'static', hostPort: 28081, guestPort: 8081, via: 'hostfwd' },
    { ...base, kind: 'auto', hostPort: 8124, guestPort: 8123, process: 'python3', via: 'hostfwd', guestAddress: '::', note: 'host port 8123 was taken; using 8124' },
    { ...base, kind: 'auto', hostPort: 5432, guestPort: 5432, process: 'postgres', via: 'ssh', guestAddress: '127.0.0.1' },
    { ...base, protocol: 'udp', hostAddress: '0.0.0.0', kind: 'static', hostPort: 5353, guestPort: 53, active: false },
  ];
  assert.equal(portsText(ports, { on: true }), [
    'KIND    HOST             GUEST           PROCESS   STATE              NOTE',
    'static  127.0.0.1:28081  8081            -         active',
    'auto    127.0.0.1:8124   8123            python3   active             host port 8123 was taken; using 8124',
    'auto    127.0.0.1:5432   127.0.0.1:5432  postgres  active (over SSH)',
    'static  0.0.0.0:5353     53/udp          -         inactive',
  ].join('\n').replace(/ +$/gm, ''));
});

test('automatic forwarding off: the reason first; nothing forwarded says so', () => {
  assert.equal(portsText([], { on: false, reason: 'no guest agent runs in the guest' }), 'automatic forwarding is off: no guest agent runs in the guest\nno forwards');
  assert.equal(portsText([], { on: true }), "no forwards (none of the guest's processes listens on TCP yet)");
});
