/** The VM manager against a fake driver: races between operations, made deterministic with gates. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import type { DevvmError } from '../../src/shared/errors';
import { createParams, type FakeInstance, Gate, noProgress, rig } from './vms-fake';

const code = (e: unknown) => (e as DevvmError).code;

test('a delete of another VM while a VM is created does not collect the new VM layer, and the new VM starts', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('other'), noProgress);
  r.seedGate.gate = new Gate();
  const creating = r.vms.create(createParams('fresh'), noProgress);
  // Its overlay exists now; the vm.json naming it does not.
  await r.seedGate.gate.reached;
  await r.vms.delete('other', false);
  r.seedGate.gate.release();
  await creating;
  const layer = r.vms.config('fresh').overlay!;
  assert.ok(existsSync(r.vms.pool.file(layer)), 'the new overlay survived the collection');
  assert.equal((await r.vms.start('fresh', {}, noProgress)).state, 'running');
});

test('image delete is refused while a VM is being created from it', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  r.seedGate.gate = new Gate();
  const creating = r.vms.create(createParams('fresh'), noProgress);
  await r.seedGate.gate.reached;
  assert.throws(() => r.images.delete('base', r.vms.imageUsers('base')), (e) => code(e) === 'busy');
  r.seedGate.gate.release();
  await creating;
  assert.ok(existsSync(r.images.get('base').file), 'the base is still there');
  assert.throws(() => r.images.delete('base', r.vms.imageUsers('base')), (e) => code(e) === 'invalid-state', 'and now the VM uses it');
});

test('a clone from a snapshot keeps its parent layer while a concurrent snapshot delete collects', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('src'), noProgress);
  await r.vms.snapshot('src', 's1', false, noProgress);
  const parent = r.vms.config('src').snapshots![0]!.layer;
  // A second freeze so the snapshot's layer is not in src's chain any more once restored elsewhere.
  r.seedGate.gate = new Gate();
  const cloning = r.vms.clone({ source: 'src', name: 'copy', snapshot: 's1' }, noProgress);
  await r.seedGate.gate.reached;
  await r.vms.deleteSnapshot('src', 's1');
  r.seedGate.gate.release();
  await cloning;
  assert.ok(existsSync(r.vms.pool.file(parent)));
  assert.equal((await r.vms.start('copy', {}, noProgress)).state, 'running');
});

test('restore of a running VM holds the lock from stop to start: a snapshot or start in between is refused', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev'), noProgress);
  await r.vms.start('dev', {}, noProgress);
  await r.vms.snapshot('dev', 's1', false, noProgress);
  const attempts: Array<Promise<string>> = [];
  let restoring = true;
  r.vms.on('changed', (s: { name: string; state: string }) => {
    // Between the restore's steps the VM is stopped: exactly where a second operation could slip in.
    if (!restoring || s.name !== 'dev' || s.state !== 'stopped') return;
    const n = attempts.length;
    attempts.push(r.vms.snapshot('dev', `gap${n}`, false, noProgress).then(() => 'accepted', (e) => code(e)));
    attempts.push(r.vms.start('dev', {}, noProgress).then(() => 'accepted', (e) => code(e)));
  });
  r.driver.launchGate = new Gate();
  const restore = r.vms.restore('dev', 's1', noProgress);
  await r.driver.launchGate.reached;
  assert.equal(r.vms.state('dev'), 'starting');
  await assert.rejects(r.vms.snapshot('dev', 'mid', false, noProgress), (e) => code(e) === 'busy' || code(e) === 'invalid-state');
  r.driver.launchGate.release();
  const s = await restore;
  restoring = false;
  assert.equal(s.state, 'running');
  assert.ok(attempts.length > 0, 'the VM was seen stopped during the restore');
  for (const a of await Promise.all(attempts)) assert.equal(a, 'busy');
  assert.deepEqual(r.vms.config('dev').snapshots!.map((x) => x.name), ['s1']);
});

test('stop during start is refused with the lifecycle message; stop --force ends the start and the VM is stopped', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev'), noProgress);
  r.driver.launchGate = new Gate();
  const starting = r.vms.start('dev', {}, noProgress);
  const outcome = starting.then(() => 'started', (e: DevvmError) => e.message);
  await r.driver.launchGate.reached;
  await assert.rejects(r.vms.stop('dev', false), (e: DevvmError) => {
    assert.equal(e.code, 'invalid-state');
    assert.match(e.message, /cannot stop VM "dev": it is starting/);
    assert.match(e.hint ?? '', /devvm stop dev --force/);
    return true;
  });
  const stopped = await r.vms.stop('dev', true);
  assert.equal(stopped.state, 'stopped');
  assert.match(await outcome, /cancelled by stop --force/);
  assert.equal(r.vms.state('dev'), 'stopped');
  assert.ok(r.driver.launched.every((i) => !i.alive), 'nothing left running');
  // And it starts again normally.
  r.driver.launchGate = null;
  assert.equal((await r.vms.start('dev', {}, noProgress)).state, 'running');
});

test('stop --force while a started VM loads: the instance is killed and the start fails cleanly', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev'), noProgress);
  await r.vms.start('dev', {}, noProgress);
  r.driver.ramText = 'saved';
  await r.vms.suspend('dev', noProgress);
  assert.equal(r.vms.state('dev'), 'suspended');
  // Hold the RAM load of the resume.
  const gate = new Gate();
  const origLaunch = r.driver.launch.bind(r.driver);
  r.driver.launch = async (spec) => {
    const i = (await origLaunch(spec)) as FakeInstance;
    i.ram!.load = () => Promise.race([gate.wait(), i.dead.then(() => Promise.reject(new Error('QEMU exited during migrate-incoming')))]);
    return i;
  };
  const outcome = r.vms.start('dev', {}, noProgress).then(() => 'started', (e: DevvmError) => e.message);
  await gate.reached;
  await r.vms.stop('dev', true);
  gate.release();
  assert.match(await outcome, /cancelled by stop --force/);
  assert.ok(r.driver.launched.every((i) => !i.alive));
  assert.equal(r.vms.state('dev'), 'suspended', 'the saved state is kept: nothing resumed from it');
});
