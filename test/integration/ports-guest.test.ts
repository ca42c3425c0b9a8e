/**
 * Port forwarding on a real Debian guest (one VM, created with a static forward): a guest
 * process's port is reachable on the host's 127.0.0.1 within 3 s and gone within 3 s after
 * it ends; a taken host port gets another, shown by `ports`; a guest listener on 127.0.0.1
 * only is reachable too (over SSH); nothing of QEMU listens beyond loopback; forwards come
 * back after a suspend/resume; the static forward works after a reboot (last).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { debianImage, Sandbox, waitFor } from './harness';
import { accepts, httpGet, startGuestServer, stopGuestServer, untilAnswers } from './portprobe';

const sb = new Sandbox('ports');
const VM = 'pt';
// Host ports no other test of this suite uses.
const STATIC_HOST = 28081;
const STATIC_GUEST = 8081;
const figures: Record<string, number> = {};

interface Forward {
  kind: string;
  protocol: string;
  hostAddress: string;
  hostPort: number;
  guestPort: number;
  active: boolean;
  process?: string;
  note?: string;
  via?: string;
}

const ports = () => sb.json<Forward[]>(['ports', VM]);
const forGuest = (port: number) => ports().find((f) => f.guestPort === port && f.kind === 'auto');

before(async () => {
  // bootDebian's create, with a longer SSH wait than its 900 s: with 7 agents booting on 2
  // cores a first boot has taken 13 min to provision here.
  debianImage(sb);
  sb.ok(['create', VM, '--image', 'debian-12', '--user', 'dev', '--memory', '1024', '--port', `${STATIC_HOST}:${STATIC_GUEST}`]);
  const r = await sb.cliAsync(['start', VM, '--wait-ssh', '--timeout', '2400']);
  if (r.code !== 0) throw new Error(`devvm start ${VM} --wait-ssh exited ${r.code}: ${r.stderr}`);
  await waitFor('automatic forwarding to be on (the guest agent answers)', 120_000, () => sb.json<{ autoPorts?: { on: boolean } }>(['info', VM]).autoPorts?.on);
});

after(() => {
  console.log(`ports figures: ${JSON.stringify(figures)}`);
  sb.cleanup();
});

test('a guest http.server on 8123 is reachable at 127.0.0.1:8123 within 3 s, and the forward goes within 3 s after it ends', async () => {
  const s = await startGuestServer(sb, VM, 8123);
  const ms = await untilAnswers(8123, s.listeningAt, 10_000);
  figures.autoForwardMs = ms;
  assert.ok(ms < 3000, `reachable after ${ms} ms`);
  assert.equal(await httpGet(8123), 200);
  const f = await waitFor('the process name', 20_000, () => (forGuest(8123)?.process ? forGuest(8123) : undefined));
  assert.deepEqual([f.hostAddress, f.hostPort, f.active, f.process, f.via], ['127.0.0.1', 8123, true, 'python3', 'hostfwd']);
  assert.match(sb.ok(['ports', VM]), /auto\s+127\.0\.0\.1:8123\s+8123\s+python3\s+active/);

  // The pkill runs over a fresh SSH connection (many seconds on a loaded host): timed from its end, when the process is gone.
  stopGuestServer(sb, VM, s, 8123);
  const t0 = Date.now();
  await waitFor('the forward to go', 10_000, async () => !forGuest(8123) && !(await accepts(8123)));
  figures.autoRemoveMs = Date.now() - t0;
  assert.ok(figures.autoRemoveMs < 3000, `gone ${figures.autoRemoveMs} ms after the process ended`);
});

test('a host port already taken gets another one, and `ports` shows it', async () => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(8124, '127.0.0.1', () => r()));
  try {
    const s = await startGuestServer(sb, VM, 8124);
    const f = await waitFor('the moved forward', 10_000, () => (forGuest(8124)?.active ? forGuest(8124) : undefined));
    assert.notEqual(f.hostPort, 8124);
    assert.match(f.note ?? '', /host port 8124 was taken; using \d+/);
    assert.equal(await httpGet(f.hostPort), 200);
    assert.match(sb.ok(['ports', VM]), new RegExp(`127\\.0\\.0\\.1:${f.hostPort}\\s+8124 .*host port 8124 was taken`));
    stopGuestServer(sb, VM, s, 8124);
  } finally {
    blocker.close();
  }
});

test('a guest listener on 127.0.0.1 only is forwarded over SSH', async () => {
  const s = await startGuestServer(sb, VM, 8125, '127.0.0.1');
  const f = await waitFor('the relay', 10_000, () => (forGuest(8125)?.active ? forGuest(8125) : undefined));
  assert.equal(f.via, 'ssh');
  // Each relayed connection is an SSH login: many seconds on a loaded TCG host.
  const t0 = Date.now();
  assert.equal(await httpGet(8125, 60_000), 200);
  figures.loopbackRequestMs = Date.now() - t0;
  stopGuestServer(sb, VM, s, 8125);
  await waitFor('the relay to go', 10_000, async () => !forGuest(8125) && !(await accepts(8125)));
});

test('the static forward from create works, and nothing of QEMU listens beyond loopback', async () => {
  const s = await startGuestServer(sb, VM, STATIC_GUEST);
  await untilAnswers(STATIC_HOST, s.listeningAt, 10_000);
  const st = ports().find((f) => f.kind === 'static')!;
  assert.deepEqual([st.hostPort, st.guestPort, st.active], [STATIC_HOST, STATIC_GUEST, true]);
  assert.ok(!forGuest(STATIC_GUEST), 'a statically forwarded guest port is not forwarded again');
  assert.match(sb.ok(['info', VM]), new RegExp(`static\\s+127\\.0\\.0\\.1:${STATIC_HOST}\\s+${STATIC_GUEST}`));
  const pid = sb.json<{ pid: number }>(['info', VM]).pid;
  // TCP listeners: slirp's UDP sockets for the guest's own outgoing datagrams (DNS, NTP) are
  // bound to the wildcard by slirp itself, unconnected, and accept nothing (seen: one per flow).
  const ss = spawnSync('ss', ['-Hltnp'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes(`pid=${pid},`));
  assert.ok(ss.length >= 2, `QEMU's sockets: ${ss.join(' | ')}`);
  for (const l of ss) assert.match(l.split(/\s+/)[3] ?? '', /^127\.0\.0\.1:\d+$/, l);
  stopGuestServer(sb, VM, s, STATIC_GUEST);
});

test('after suspend and resume the static forward and a still-running guest listener are forwarded again', async () => {
  const s = await startGuestServer(sb, VM, 8126);
  await untilAnswers(8126, s.listeningAt, 10_000);
  s.child.kill();
  sb.ok(['suspend', VM]);
  assert.equal(await accepts(8126), false, 'nothing forwarded while suspended');
  assert.equal(await accepts(STATIC_HOST), false);
  const r = await sb.cliAsync(['start', VM]);
  assert.equal(r.code, 0, r.stderr);
  const t0 = Date.now();
  await untilAnswers(8126, t0, 15_000);
  figures.afterResumeMs = Date.now() - t0;
  assert.ok(ports().find((f) => f.kind === 'static')?.active);
  sb.ssh(VM, ["pkill -f '[h]ttp.server 8126'; true"]);
});

test('the static forward works after a reboot (stop, start)', async () => {
  sb.ok(['stop', VM]);
  const stopped = ports();
  assert.deepEqual(stopped.map((f) => [f.kind, f.hostPort, f.guestPort, f.active]), [['static', STATIC_HOST, STATIC_GUEST, false]]);
  const r = await sb.cliAsync(['start', VM, '--wait-ssh']);
  assert.equal(r.code, 0, r.stderr);
  const s = await startGuestServer(sb, VM, STATIC_GUEST);
  await untilAnswers(STATIC_HOST, s.listeningAt, 10_000);
  assert.equal(await httpGet(STATIC_HOST), 200);
  stopGuestServer(sb, VM, s, STATIC_GUEST);
});
