/** The VM manager against a fake driver: real states (error), engine file names, half-built VMs. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { DevvmError } from '../../src/shared/errors';
import { createParams, FakeDriver, Gate, noProgress, rig } from './vms-fake';

test('a VM whose process dies unasked is in state error with the reason, kept over a helper restart, cleared by start', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev'), noProgress);
  await r.vms.start('dev', {}, noProgress);
  r.driver.launched.at(-1)!.crash('QEMU (pid 1) ended without shutting down (killed or crashed)');
  const s = r.vms.summary('dev');
  assert.equal(s.state, 'error');
  assert.match(s.error ?? '', /ended without shutting down/);
  const again = await r.restart(new FakeDriver());
  assert.equal(again.summary('dev').state, 'error', 'persisted in vm.json');
  await assert.rejects(again.suspend('dev', noProgress), (e: DevvmError) => e.code === 'invalid-state' && /it is error/.test(e.message));
  const started = await again.start('dev', {}, noProgress);
  assert.equal(started.state, 'running');
  assert.equal(started.error, undefined);
});

test('a process that ended while no helper ran (driver reaps it) is reported as error; stop clears it', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev'), noProgress);
  const d = new FakeDriver();
  d.reapReason = 'QEMU (pid 7) ended while no helper watched it (killed or crashed)';
  const again = await r.restart(d);
  assert.equal(again.summary('dev').state, 'error');
  assert.match(again.summary('dev').error ?? '', /no helper watched/);
  assert.equal((await again.stop('dev', false)).state, 'stopped');
});

test('a stop asked for is not an error', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev'), noProgress);
  await r.vms.start('dev', {}, noProgress);
  assert.equal((await r.vms.stop('dev', false)).state, 'stopped');
});

test('a RAM snapshot named "suspend" never touches the suspend state, and deleting it keeps the VM suspended', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev'), noProgress);
  await r.vms.start('dev', {}, noProgress);
  r.driver.ramText = 'snapshot RAM';
  await r.vms.snapshot('dev', 'suspend', true, noProgress);
  r.driver.ramText = 'suspend RAM';
  await r.vms.suspend('dev', noProgress);
  const f = r.home.vm('dev');
  assert.equal(readFileSync(f.snapshotRam('suspend'), 'utf8'), 'snapshot RAM');
  assert.equal(readFileSync(f.suspendState, 'utf8'), 'suspend RAM');
  await r.vms.deleteSnapshot('dev', 'suspend');
  assert.equal(r.vms.state('dev'), 'suspended');
  assert.equal(readFileSync(f.suspendState, 'utf8'), 'suspend RAM');
});

test('a snapshot made by an older version keeps its RAM file at the old name', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev'), noProgress);
  await r.vms.start('dev', {}, noProgress);
  await r.vms.snapshot('dev', 'old', true, noProgress);
  const f = r.home.vm('dev');
  // As an older devvm stored it.
  writeFileSync(f.legacySnapshotRam('old'), readFileSync(f.snapshotRam('old')));
  (await import('node:fs')).rmSync(f.snapshotRam('old'));
  await r.vms.restore('dev', 'old', noProgress);
  assert.equal(r.vms.state('dev'), 'running');
});

test('a half-built VM left by a killed helper is removed at start-up and the name is free', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  // What this version leaves (a staging directory) and what older ones left (the VM's own directory without vm.json).
  const staging = path.join(r.home.vmsDir, '.new-ghost-0123abcd');
  mkdirSync(staging, { recursive: true });
  writeFileSync(path.join(staging, 'ssh_host_ed25519_key'), 'private');
  mkdirSync(r.home.vm('ghost').dir, { recursive: true });
  writeFileSync(r.home.vm('ghost').hostKey, 'private');
  const again = await r.restart();
  assert.deepEqual(readdirSync(r.home.vmsDir), []);
  assert.deepEqual(again.list(), []);
  assert.equal((await again.create(createParams('ghost'), noProgress)).name, 'ghost');
  assert.ok(existsSync(r.home.vm('ghost').meta));
});

test('a create that fails leaves nothing under the name, and no layer', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await assert.rejects(r.vms.create(createParams('big', { diskGiB: 1, image: 'missing' }), noProgress), (e: DevvmError) => e.code === 'not-found');
  r.seedGate.gate = { wait: () => Promise.reject(new Error('genisoimage broke')), release() {}, reached: Promise.resolve(), opened: Promise.resolve() } as never;
  await assert.rejects(r.vms.create(createParams('dev'), noProgress), /genisoimage broke/);
  assert.deepEqual(readdirSync(r.home.vmsDir), []);
  assert.deepEqual(r.vms.pool.ids(), []);
  assert.deepEqual(r.vms.list(), []);
});

test('delete --force of a running VM stops and deletes it under one lock', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev'), noProgress);
  await r.vms.start('dev', {}, noProgress);
  await assert.rejects(r.vms.delete('dev', false), (e: DevvmError) => e.code === 'invalid-state' && /delete dev --force/.test(e.hint ?? ''));
  const states: string[] = [];
  r.vms.on('changed', (s: { state: string }) => states.push(s.state));
  await r.vms.delete('dev', true);
  assert.ok(!states.includes('stopped'), `never stopped-and-unlocked in between: ${states.join(',')}`);
  assert.deepEqual(r.vms.list(), []);
  assert.deepEqual(r.vms.pool.ids(), []);
});

test('QEMU killed after its RAM state was saved, while suspend ends it: the VM is suspended, not in error', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev'), noProgress);
  await r.vms.start('dev', {}, noProgress);
  r.driver.stopGate = new Gate();
  const suspending = r.vms.suspend('dev', noProgress);
  await r.driver.stopGate.reached;
  // The save is done and the suspend is ending QEMU: a kill -9 lands now.
  r.driver.launched.at(-1)!.crash('QEMU (pid 1) ended without shutting down (killed or crashed)');
  r.driver.stopGate.release();
  await suspending;
  assert.equal(r.vms.summary('dev').state, 'suspended');
  assert.equal(r.vms.summary('dev').error, undefined);
  r.driver.stopGate = null;
  assert.equal((await r.vms.start('dev', {}, noProgress)).state, 'running');
});
