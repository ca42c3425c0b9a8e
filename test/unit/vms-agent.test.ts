/** The manager's use of the guest agent, with the fake driver: freeze/thaw ordering, clock after resume, facts, restart. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';
import { writeJsonAtomic } from '../../src/helper/store';
import { VmStore } from '../../src/helper/vm/store';
import { createParams, FakeDriver, noProgress, rig } from './vms-fake';

async function running(agent: FakeDriver['agent'], provisioned = false) {
  const r = await rig();
  r.driver.agent = agent;
  await r.vms.create(createParams('dev'), noProgress);
  // Past first setup: no provisioning watch (readiness then goes straight to the agent and SSH).
  if (provisioned) new VmStore(r.home).update('dev', (c) => ({ ...c, provisioned: true }));
  await r.vms.start('dev', {}, noProgress);
  r.driver.events.length = 0;
  return r;
}

test('a live disk snapshot freezes the guest filesystems around the layer switch: freeze, switch, thaw, and the record is gone', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  const s = await r.vms.snapshot('dev', 'one', false, noProgress);
  assert.deepEqual(r.driver.events, ['prepare', 'freeze', 'switch', 'thaw']);
  assert.equal(r.vms.config('dev').fsFrozen, undefined);
  assert.ok(s.pauseMs >= 0);
});

test('a switch that fails still thaws (in finally), and the freeze record is cleared', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  r.driver.switchFails = true;
  await assert.rejects(r.vms.snapshot('dev', 'one', false, noProgress), /switch failed/);
  assert.deepEqual(r.driver.events, ['prepare', 'freeze', 'switch', 'thaw']);
  assert.equal(r.vms.config('dev').fsFrozen, undefined);
  assert.equal(r.vms.config('dev').snapshots, undefined);
});

test('a clone of a running VM freezes the source around its switch', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  await r.vms.clone({ source: 'dev', name: 'copy' }, noProgress);
  assert.deepEqual(r.driver.events, ['prepare', 'freeze', 'switch', 'thaw']);
});

test('no freeze when the agent does not answer, or no agent opened its port, or the driver has none: the snapshot still works', async (t) => {
  for (const agent of ['silent', 'closed', null] as const) {
    const r = await running(agent);
    t.after(r.cleanup);
    await r.vms.snapshot('dev', 'one', false, noProgress);
    assert.deepEqual(r.driver.events, agent === 'silent' ? ['prepare', 'freeze', 'switch'] : ['prepare', 'switch'], String(agent));
    assert.equal(r.vms.config('dev').fsFrozen, undefined);
  }
});

test('a RAM snapshot pauses the guest instead: no filesystem freeze', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  await r.vms.snapshot('dev', 'one', true, noProgress);
  assert.deepEqual(r.driver.events, ['prepare', 'switch']);
});

test('a resume sets the guest clock to the host time right away; a cold boot does not', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  assert.deepEqual(r.driver.guestTimes, [], 'cold boot');
  await r.vms.suspend('dev', noProgress);
  await r.vms.start('dev', {}, noProgress);
  assert.equal(r.driver.guestTimes.length, 1);
  const skewMs = Math.abs(r.driver.guestTimes[0]! / 1e6 - Date.now());
  assert.ok(skewMs < 1000, `${skewMs} ms`);
});

test('a RAM snapshot restore sets the clock too; a silent agent does not fail the resume', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  await r.vms.snapshot('dev', 'one', true, noProgress);
  await r.vms.restore('dev', 'one', noProgress);
  assert.equal(r.driver.guestTimes.length, 1);
  r.driver.agent = 'silent';
  await r.vms.restore('dev', 'one', noProgress);
  assert.equal(r.vms.state('dev'), 'running');
});

test('a helper restarted while a freeze was recorded thaws the guest and clears the record', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  // As a helper killed between freeze and thaw leaves it.
  new VmStore(r.home).update('dev', (c) => ({ ...c, fsFrozen: new Date().toISOString() }));
  const again = await r.restart();
  assert.deepEqual(r.driver.events, ['thaw']);
  assert.equal(again.config('dev').fsFrozen, undefined);
});

test('info: the guest facts while the agent answers; "not-answering" or "absent" otherwise; nothing when stopped', async (t) => {
  const r = await running('answering');
  t.after(r.cleanup);
  assert.deepEqual((await r.vms.info('dev')).agent, { state: 'answering', ip: '10.0.2.15', os: 'Debian GNU/Linux 12 (bookworm)', hostname: 'guest', uptimeSec: 42 });
  r.driver.agent = 'silent';
  assert.deepEqual((await r.vms.info('dev')).agent, { state: 'not-answering' });
  r.driver.agent = 'closed';
  assert.deepEqual((await r.vms.info('dev')).agent, { state: 'absent' });
  await r.vms.stop('dev', false);
  assert.equal((await r.vms.info('dev')).agent, undefined);
});

/** sshd stand-in on the VM's forwarded port: a banner, each connection recorded in the driver's events. */
async function fakeSshd(r: Awaited<ReturnType<typeof running>>): Promise<net.Server> {
  // A login worked in this run already: sshd answering is enough (no ssh client needed).
  writeJsonAtomic(r.home.vm('dev').launch, { seed: false, sshReady: true });
  const server = net.createServer((s) => {
    r.driver.events.push('banner');
    s.end('SSH-2.0-fake\r\n');
  });
  await new Promise<void>((ok) => server.listen(r.vms.config('dev').sshPort, '127.0.0.1', ok));
  return server;
}

test('readiness: the agent answers first, then the banner counts; a port no agent opened is polled as before', async (t) => {
  const r = await running('answering', true);
  t.after(r.cleanup);
  const sshd = await fakeSshd(r);
  t.after(() => sshd.close());
  await r.vms.waitSsh('dev', 10, noProgress);
  assert.deepEqual(r.driver.events, ['ping', 'address', 'banner']);
  r.driver.events.length = 0;
  r.driver.agent = 'closed';
  await r.vms.waitSsh('dev', 10, noProgress);
  assert.deepEqual(r.driver.events, ['banner']);
});

test('wake path: a start --wait-ssh that restores a state saved while SSH worked does not probe sshd; one saved before SSH worked does', async (t) => {
  const r = await running('answering', true);
  t.after(r.cleanup);
  const sshd = await fakeSshd(r);
  t.after(() => sshd.close());
  await r.vms.suspend('dev', noProgress);
  r.driver.events.length = 0;
  await r.vms.start('dev', { waitSsh: true, timeoutSec: 10 }, noProgress);
  assert.deepEqual(r.driver.events.filter((e) => e !== 'setTime'), [], 'no readiness gate, no probe');
  // Saved before its first login worked: readiness runs (the agent's gate first; the fake sshd's port was
  // taken, so the VM got another one where nothing answers).
  await r.vms.suspend('dev', noProgress);
  writeJsonAtomic(r.home.vm('dev').launch, { seed: false });
  const saved = r.vms.config('dev').suspended!;
  new VmStore(r.home).update('dev', (c) => ({ ...c, suspended: { ...saved, sshReady: undefined } }));
  r.driver.events.length = 0;
  await assert.rejects(r.vms.start('dev', { waitSsh: true, timeoutSec: 3 }, noProgress), /did not answer within 3 s/);
  assert.ok(r.driver.events.includes('address'), r.driver.events.join(','));
});

test('readiness after a boot: once sshd answers, the agent says whether logins are allowed (no /run/nologin); while they are not it is asked again, and when it cannot tell a real login decides', async (t) => {
  const r = await running('answering', true);
  t.after(r.cleanup);
  const sshd = await fakeSshd(r);
  t.after(() => sshd.close());
  // Booted, not restored: no login has worked in this run yet.
  writeJsonAtomic(r.home.vm('dev').launch, { seed: false });
  r.driver.guestFiles['/proc/uptime'] = '42.0 40.0\n';
  await r.vms.waitSsh('dev', 10, noProgress);
  assert.equal(JSON.parse(readFileSync(r.home.vm('dev').launch, 'utf8')).sshReady, true, 'logins allowed: ready without logging in');
  // Still booting: ready soon after /run/nologin goes. A login (which fails here: nothing
  // speaks SSH beyond the banner) would have cost its 2 s pause first.
  writeJsonAtomic(r.home.vm('dev').launch, { seed: false });
  r.driver.guestFiles = { '/proc/uptime': '1.0 1.0\n', '/run/nologin': 'System is booting up.\n' };
  const t0 = Date.now();
  const waiting = r.vms.waitSsh('dev', 10, noProgress);
  await new Promise((ok) => setTimeout(ok, 600));
  r.driver.guestFiles = { '/proc/uptime': '1.6 1.6\n' };
  await waiting;
  assert.ok(Date.now() - t0 < 2000, `ready ${Date.now() - t0} ms after the wait began`);
  // File reads refused (not even /proc/uptime): a login is tried, fails, and readiness runs out.
  writeJsonAtomic(r.home.vm('dev').launch, { seed: false });
  r.driver.guestFiles = {};
  await assert.rejects(r.vms.waitSsh('dev', 3, noProgress), /did not answer within 3 s/);
});

test('readiness: while the agent says the NIC has no address, the port is not probed; once it has one, it is', async (t) => {
  const r = await running('answering', true);
  t.after(r.cleanup);
  const sshd = await fakeSshd(r);
  t.after(() => sshd.close());
  r.driver.guestAddress = null;
  const ready = r.vms.waitSsh('dev', 10, noProgress);
  await new Promise((ok) => setTimeout(ok, 1200));
  assert.ok(!r.driver.events.includes('banner'), r.driver.events.join(','));
  assert.ok(r.driver.events.filter((e) => e === 'address').length >= 2, r.driver.events.join(','));
  r.driver.guestAddress = '10.0.2.15';
  await ready;
  assert.equal(r.driver.events.at(-1), 'banner');
  assert.equal(r.driver.events.filter((e) => e === 'ping').length, 1, 'the agent is pinged once, then only asked for the address');
});

test('readiness: an agent that opened its port but does not answer holds SSH back (no blind polling) until its patience runs out', async (t) => {
  const r = await running('silent', true);
  t.after(r.cleanup);
  const sshd = await fakeSshd(r);
  t.after(() => sshd.close());
  await assert.rejects(r.vms.waitSsh('dev', 1, noProgress), /did not answer within 1 s/);
  assert.ok(r.driver.events.length > 1 && r.driver.events.every((e) => e === 'ping'), r.driver.events.join(','));
});
