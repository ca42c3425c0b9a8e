/** devvm set's non-machine settings and autostart, on the VM manager with a fake driver. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DevvmError } from '../../src/shared/errors';
import { createParams, FakeDriver, noProgress, rig } from './vms-fake';

test('idle suspend and autostart: set at create, changed while running, shown in the summary; a refused display change changes nothing', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('dev', { idleSuspend: 30, autostart: true }), noProgress);
  let s = r.vms.summary('dev');
  assert.equal(s.idleSuspendMin, 30);
  assert.equal(s.autostart, true);
  await r.vms.start('dev', {}, noProgress);
  s = await r.vms.set('dev', { idleSuspend: 'off', autostart: false });
  assert.equal(s.idleSuspendMin, undefined);
  assert.equal(s.autostart, undefined);
  assert.equal(r.vms.config('dev').idleSuspend, 'off');
  await assert.rejects(r.vms.set('dev', { display: true, idleSuspend: 5 }), (e: DevvmError) => e.code === 'invalid-state');
  assert.equal(r.vms.config('dev').idleSuspend, 'off', 'nothing changed');
  s = await r.vms.set('dev', { idleSuspend: 'default' });
  assert.equal(r.vms.config('dev').idleSuspend, undefined);
  await assert.rejects(r.vms.set('dev', {}), /nothing to change/);
});

test('autostart at helper start: a stopped VM boots, a suspended one resumes, the others stay as they are', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('boots', { autostart: true }), noProgress);
  await r.vms.create(createParams('resumes', { autostart: true }), noProgress);
  await r.vms.create(createParams('stays'), noProgress);
  await r.vms.start('resumes', {}, noProgress);
  await r.vms.suspend('resumes', noProgress);
  await r.vms.shutdown(true);
  const again = await r.restart(new FakeDriver());
  await again.autostart();
  assert.equal(again.state('boots'), 'running');
  assert.equal(again.state('resumes'), 'running');
  assert.equal(again.state('stays'), 'stopped');
});
