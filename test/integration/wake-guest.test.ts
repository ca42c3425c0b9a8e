/**
 * Wake on SSH and sleep when idle on a real Debian guest (one VM, 1 GiB): plain
 * `ssh -F <devvm's ssh_config> devvm-NAME true` resumes a suspended VM and boots a
 * stopped one through the Host block's ProxyCommand (devvm ssh-proxy); a VM that cannot
 * start says why in one line; with a 1 minute idle setting the VM is suspended within
 * 90 s of its last session closing, and not while one is open. Prints wakeOnSshMs and
 * sshRunningMs (medians of 3).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { bootDebian, Sandbox, waitFor } from './harness';

const sb = new Sandbox('wake');
const VM = 'wake';
const config = path.join(sb.home, 'ssh_config');
const state = () => sb.json<{ state: string }>(['info', VM]).state;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const figures: Record<string, number | number[]> = {};

/** `ssh devvm-NAME true` as a user types it: no ConnectTimeout (it would bound the boot). */
function sshTrue(extra: string[] = []): { code: number; stderr: string; ms: number } {
  const t0 = performance.now();
  const r = spawnSync('ssh', ['-F', config, '-o', 'BatchMode=yes', ...extra, `devvm-${VM}`, 'true'], { encoding: 'utf8', timeout: 600_000, env: { ...process.env, DEVVM_HOME: '/nonexistent-other-home' } });
  return { code: r.status ?? -1, stderr: r.stderr, ms: Math.round(performance.now() - t0) };
}

before(async () => {
  await bootDebian(sb, VM);
});

after(() => {
  console.log(`wake figures: ${JSON.stringify(figures)}`);
  sb.cleanup();
});

test('a running VM: the Host block relays through devvm ssh-proxy, whatever DEVVM_HOME the caller has (sshRunningMs)', () => {
  assert.match(readFileSync(config, 'utf8'), /\n {2}ProxyCommand \/usr\/bin\/env .*DEVVM_HOME=.* ssh-proxy wake\n/);
  const ms: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = sshTrue();
    assert.equal(r.code, 0, r.stderr);
    ms.push(r.ms);
  }
  figures.sshRunningMsRuns = ms;
  figures.sshRunningMs = median(ms);
  // The same without the proxy (ssh to the port itself): what ssh-proxy costs on a running VM.
  const direct: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = sshTrue(['-o', 'ProxyCommand=none']);
    assert.equal(r.code, 0, r.stderr);
    direct.push(r.ms);
  }
  figures.sshDirectMs = median(direct);
});

test('ssh to a suspended VM resumes it and succeeds (wakeOnSshMs)', () => {
  const ms: number[] = [];
  for (let i = 0; i < 3; i++) {
    sb.ok(['suspend', VM]);
    assert.equal(state(), 'suspended');
    const r = sshTrue();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(state(), 'running');
    ms.push(r.ms);
  }
  figures.wakeOnSshMsRuns = ms;
  figures.wakeOnSshMs = median(ms);
});

test('a VM whose image is missing: ssh fails with one line naming the cause, and nothing starts', () => {
  sb.ok(['stop', VM]);
  const disk = path.join(sb.home, 'images', 'debian-12', 'disk.qcow2');
  renameSync(disk, `${disk}.away`);
  try {
    const r = sshTrue();
    assert.notEqual(r.code, 0);
    const ours = r.stderr.split('\n').filter((l) => l.startsWith('devvm:'));
    assert.equal(ours.length, 1, r.stderr);
    assert.match(ours[0]!, /^devvm: the disk of image "debian-12" is missing: .*disk\.qcow2 \(.*\)$/);
    assert.equal(state(), 'stopped');
  } finally {
    renameSync(`${disk}.away`, disk);
  }
});

test('devvm ssh to a stopped VM boots it and connects', () => {
  assert.equal(state(), 'stopped');
  const t0 = performance.now();
  const r = sb.cli(['ssh', VM, '--', 'true']);
  assert.equal(r.code, 0, r.stderr);
  figures.bootOnSshMs = Math.round(performance.now() - t0);
  assert.equal(state(), 'running');
});

test("ssh with Remote-SSH's ConnectTimeout (15 s there, 5 here) to a stopped VM: the boot takes longer, and the connection works", () => {
  sb.ok(['stop', VM]);
  const r = sshTrue(['-o', 'ConnectTimeout=5']);
  assert.equal(r.code, 0, r.stderr);
  // ssh-proxy sent the identification line sshd gave last time; without it ssh gives up
  // waiting for the banner after 5 s ("Connection timed out during banner exchange").
  assert.ok(r.ms > 5000, `the boot took ${r.ms} ms, not longer than the timeout: this shows nothing`);
  figures.bootOnSshConnectTimeoutMs = r.ms;
  assert.equal(state(), 'running');
});

test('idle suspend at 1 minute: not while a session is open, within 90 s of the last one closing', async () => {
  const s = sb.json<{ idleSuspendMin?: number }>(['set', VM, '--idle-suspend', '1']);
  assert.equal(s.idleSuspendMin, 1);
  assert.match(sb.ok(['info', VM]), /suspends after 1 min idle/);
  const session = spawn('ssh', ['-F', config, '-o', 'BatchMode=yes', `devvm-${VM}`, 'sleep', '100'], { stdio: 'ignore' });
  const closed = new Promise<number>((resolve) => session.on('exit', (code) => resolve(code ?? -1)));
  // Well past the limit with the session open: still running.
  await new Promise((r) => setTimeout(r, 85_000));
  assert.equal(state(), 'running', 'suspended while a session was open');
  assert.equal(await closed, 0, 'the session ran to its end');
  const t0 = Date.now();
  await waitFor('the idle suspend', 120_000, () => state() === 'suspended');
  figures.idleSuspendAfterCloseMs = Date.now() - t0;
  assert.ok(figures.idleSuspendAfterCloseMs <= 90_000, `suspended ${figures.idleSuspendAfterCloseMs} ms after the last session closed`);
  // And ssh wakes it again.
  assert.equal(sshTrue().code, 0);
  assert.equal(state(), 'running');
});
