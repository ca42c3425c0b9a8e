/**
 * Port forwards through the manager with the fake driver and agent: static ones applied
 * when the VM runs and live, automatic ones following the guest's /proc/net/tcp, a taken
 * host port moved, everything inactive once the VM stops, a restarted helper taking over
 * what QEMU has instead of adding it twice.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import type { PortForward } from '../../src/shared/types';
import { createParams, FakeDriver, noProgress, rig, type FakeInstance } from './vms-fake';

const HEAD = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
/** /proc/net/tcp with these LISTEN sockets ([hex address, port]). */
const tcp = (...ls: Array<[string, number]>) => HEAD + ls.map(([a, p], i) => `  ${i}: ${a}:${hex(p)} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 ${100 + i} 1\n`).join('');
const ANY = '00000000';
const LOOP = '0100007F';

async function until<T>(what: string, f: () => T | undefined | false, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function running(agent: FakeDriver['agent'], extra: Record<string, unknown> = {}) {
  const r = await rig();
  r.driver.agent = agent;
  const events: Array<{ name: string; ports: PortForward[] }> = [];
  r.vms.on('ports', (e: { name: string; ports: PortForward[] }) => events.push(e));
  await r.vms.create(createParams('dev', extra), noProgress);
  await r.vms.start('dev', {}, noProgress);
  return { ...r, events, inst: () => r.driver.launched.at(-1)! as FakeInstance };
}

const auto = (r: { vms: { forwards: { list(n: string): PortForward[] } } }, port: number) => r.vms.forwards.list('dev').find((f) => f.kind === 'auto' && f.guestPort === port);

test('create --port: kept in vm.json, inactive while stopped, forwarded when the VM runs', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev', { ports: [{ hostPort: 47001, guestPort: 8081 }, { protocol: 'udp', hostAddress: '0.0.0.0', hostPort: 47002, guestPort: 53 }] }), noProgress);
  assert.deepEqual(r.vms.config('dev').ports, [
    { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 47001, guestPort: 8081 },
    { protocol: 'udp', hostAddress: '0.0.0.0', hostPort: 47002, guestPort: 53 },
  ]);
  assert.deepEqual(r.vms.forwards.list('dev').map((f) => [f.kind, f.hostPort, f.active]), [['static', 47001, false], ['static', 47002, false]]);
  await r.vms.start('dev', {}, noProgress);
  const inst = r.driver.launched.at(-1)! as FakeInstance;
  await until('the static forwards', () => inst.ports.forwards.length === 2);
  assert.deepEqual(inst.ports.forwards, [
    { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 47001, guestPort: 8081 },
    { protocol: 'udp', hostAddress: '0.0.0.0', hostPort: 47002, guestPort: 53 },
  ]);
  assert.ok(r.vms.forwards.list('dev').every((f) => f.active));
});

test('create refuses a hostile address or a host port given twice, and nothing is created', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await assert.rejects(r.vms.create(createParams('dev', { ports: [{ hostAddress: '127.0.0.1-:22,', hostPort: 1, guestPort: 1 }] }), noProgress), /invalid host address/);
  await assert.rejects(r.vms.create(createParams('dev', { ports: [{ hostPort: 5000, guestPort: 1 }, { hostPort: 5000, guestPort: 2 }] }), noProgress), /forwarded twice/);
  assert.deepEqual(r.vms.names(), []);
});

test('a guest listener is forwarded to the same host port with its process name, and removed when it goes; SSH and static guest ports are skipped', async (t) => {
  const r = await running('answering', { ports: [{ hostPort: 47011, guestPort: 8081 }] });
  t.after(r.cleanup);
  r.driver.guestSs = 'LISTEN 0 5 0.0.0.0:47123 0.0.0.0:* users:(("python3",pid=612,fd=3))\n';
  r.driver.guestFiles['/proc/net/tcp'] = tcp([ANY, 22], [ANY, 8081], [ANY, 47123]);
  const f = await until('the auto forward with its name', () => auto(r, 47123)?.process && auto(r, 47123));
  assert.deepEqual({ ...f }, { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 47123, guestPort: 47123, kind: 'auto', active: true, process: 'python3', via: 'hostfwd', guestAddress: '0.0.0.0' });
  assert.equal(auto(r, 22), undefined);
  assert.equal(auto(r, 8081), undefined, 'forwarded statically already');
  assert.ok(r.inst().ports.forwards.some((x) => x.hostPort === 47123 && x.guestPort === 47123));
  assert.ok(r.events.some((e) => e.name === 'dev' && e.ports.some((p) => p.guestPort === 47123)), 'clients were told');
  assert.deepEqual(r.driver.execs, ['ss -Hltnp'], 'ss runs once, when a port appeared');

  r.driver.guestFiles['/proc/net/tcp'] = tcp([ANY, 22]);
  await until('the forward to go', () => !auto(r, 47123));
  assert.ok(!r.inst().ports.forwards.some((x) => x.hostPort === 47123));
  assert.deepEqual(r.driver.execs, ['ss -Hltnp'], 'no ss when ports only went');
});

test('a taken host port: the next free one, with a note', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  r.driver.takenHostPorts.add(47124);
  r.driver.guestFiles['/proc/net/tcp6'] = HEAD + `  0: ${'0'.repeat(32)}:${hex(47124)} ${'0'.repeat(32)}:0000 0A 0 0 0 0 0 1\n`;
  r.driver.guestFiles['/proc/net/tcp'] = HEAD;
  const f = await until('the moved forward', () => auto(r, 47124));
  assert.equal(f.hostPort, 47125);
  assert.equal(f.note, 'host port 47124 was taken; using 47125');
});

test('another VM\'s SSH port is never handed out', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  const ssh = r.vms.config('dev').sshPort;
  r.driver.guestFiles['/proc/net/tcp'] = tcp([ANY, ssh]);
  const f = await until('the forward', () => auto(r, ssh));
  assert.notEqual(f.hostPort, ssh);
});

test('a guest listener on 127.0.0.1 only: relayed over SSH on the host port; with SSH disabled it is listed, not forwarded, and says why', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  r.driver.guestFiles['/proc/net/tcp'] = tcp([LOOP, 47130]);
  const f = await until('the relay', () => auto(r, 47130));
  assert.deepEqual([f.via, f.active, f.hostPort, f.guestAddress], ['ssh', true, 47130, '127.0.0.1']);
  assert.ok(!r.inst().ports.forwards.some((x) => x.guestPort === 47130), 'not through hostfwd');
  await assert.rejects(new Promise((res, rej) => net.createServer().once('error', rej).listen(47130, '127.0.0.1', () => res(null))), /EADDRINUSE/, 'the helper listens there');

  const n = await running('answering', { ssh: false });
  t.after(n.cleanup);
  n.driver.guestFiles['/proc/net/tcp'] = tcp([LOOP, 47131]);
  const g = await until('the entry', () => auto(n, 47131));
  assert.equal(g.active, false);
  assert.match(g.note ?? '', /listens on 127\.0\.0\.1 only; not forwarded .*SSH, which is disabled/);
});

test('no guest agent: static forwards only, and info says why automatic forwarding is off', async (t) => {
  for (const agent of [null, 'closed'] as const) {
    const r = await running(agent, { ports: [{ hostPort: 47140, guestPort: 80 }] });
    t.after(r.cleanup);
    await until('the static forward', () => r.vms.forwards.list('dev').find((f) => f.active));
    const info = await r.vms.info('dev');
    assert.equal(info.autoPorts?.on, false);
    assert.match(info.autoPorts?.reason ?? '', agent === null ? /no guest agent channel/ : /no guest agent runs in the guest/);
    assert.equal(r.vms.forwards.status('dev').auto.on, false);
  }
});

test('port add / remove: live on a running VM, config only on a stopped one; duplicates and unknown ports refused', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  const spec = { protocol: 'tcp' as const, hostAddress: '127.0.0.1', hostPort: 47150, guestPort: 9000 };
  const f = await r.vms.forwards.add('dev', spec);
  assert.deepEqual([f.kind, f.hostPort, f.active], ['static', 47150, true]);
  assert.ok(r.inst().ports.forwards.some((x) => x.hostPort === 47150 && x.guestPort === 9000));
  await assert.rejects(r.vms.forwards.add('dev', { ...spec, guestPort: 9001 }), /already forwards host port 47150\/tcp/);
  await r.vms.forwards.add('dev', { ...spec, protocol: 'udp' });
  await r.vms.forwards.remove('dev', 'tcp', 47150);
  assert.ok(!r.inst().ports.forwards.some((x) => x.protocol === 'tcp' && x.hostPort === 47150));
  assert.deepEqual(r.vms.config('dev').ports, [{ ...spec, protocol: 'udp' }]);
  await assert.rejects(r.vms.forwards.remove('dev', 'tcp', 47150), /no static forward of host port 47150\/tcp/);

  await r.vms.stop('dev', false);
  const g = await r.vms.forwards.add('dev', { ...spec, hostPort: 47151 });
  assert.equal(g.active, false);
  assert.deepEqual(r.vms.forwards.list('dev').map((x) => [x.hostPort, x.active]), [[47150, false], [47151, false]]);
});

test('a taken static host port is moved (and shown); a port add whose host port is taken, too', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  r.driver.takenHostPorts.add(47160);
  const f = await r.vms.forwards.add('dev', { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 47160, guestPort: 80 });
  assert.deepEqual([f.hostPort, f.note], [47161, 'host port 47160 was taken; using 47161']);
  // Removable by either port.
  await r.vms.forwards.remove('dev', 'tcp', 47161);
  assert.deepEqual(r.vms.config('dev').ports, []);
});

test('stop: nothing is active any more and clients are told; the next start applies the static ones again', async (t) => {
  const r = await running('answering', { ports: [{ hostPort: 47170, guestPort: 80 }] });
  t.after(r.cleanup);
  r.driver.guestFiles['/proc/net/tcp'] = tcp([ANY, 47171]);
  await until('the auto forward', () => auto(r, 47171));
  await r.vms.stop('dev', false);
  assert.deepEqual(r.vms.forwards.list('dev').map((f) => [f.kind, f.active]), [['static', false]]);
  assert.deepEqual(r.events.at(-1)?.ports.map((f) => [f.kind, f.active]), [['static', false]]);
  assert.equal((await r.vms.info('dev')).autoPorts?.reason, 'the VM is not running');
  await r.vms.start('dev', {}, noProgress);
  await until('both again', () => r.inst().ports.forwards.length === 2);
});

test('suspend and resume: the new process gets the forwards again (run-time forwards are not in a saved state)', async (t) => {
  const r = await running('answering', { ports: [{ hostPort: 47180, guestPort: 80 }] });
  t.after(r.cleanup);
  await until('the static forward', () => r.inst().ports.forwards.length === 1);
  await r.vms.suspend('dev', noProgress);
  assert.ok(r.vms.forwards.list('dev').every((f) => !f.active));
  await r.vms.start('dev', {}, noProgress);
  assert.equal(r.driver.launched.length, 2);
  await until('the static forward on the resumed process', () => r.inst().ports.forwards.length === 1);
});

test('a restarted helper takes over the forwards QEMU has (none added twice) and drops the ones the guest no longer listens on', async (t) => {
  const r = await running('answering', { ports: [{ hostPort: 47190, guestPort: 80 }] });
  t.after(r.cleanup);
  r.driver.guestFiles['/proc/net/tcp'] = tcp([ANY, 47191]);
  await until('the auto forward', () => auto(r, 47191));
  const inst = r.inst();
  const before = inst.ports.forwards.map((f) => ({ ...f }));
  const again = await r.restart();
  await new Promise((res) => setTimeout(res, 100));
  assert.deepEqual(inst.ports.forwards, before, 'same forwards, none twice');
  assert.deepEqual(again.forwards.list('dev').map((f) => [f.kind, f.hostPort, f.active]), [['static', 47190, true], ['auto', 47191, true]]);
  r.driver.guestFiles['/proc/net/tcp'] = HEAD;
  await until('the auto forward to go', () => !again.forwards.list('dev').some((f) => f.kind === 'auto'));
  assert.deepEqual(inst.ports.forwards.map((f) => f.hostPort), [47190]);
});
