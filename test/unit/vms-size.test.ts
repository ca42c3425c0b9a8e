/**
 * devvm set --cpus/--memory/--disk on the VM manager with a fake driver and real qcow2
 * layers (qemu-img): refusals by state and by value change nothing, the disk only grows
 * and only the VM's own overlay does, the VM's lock keeps a start and a resize apart, and
 * a RAM snapshot brings back the size it was taken with.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import { test } from 'node:test';
import { imgInfo } from '../../src/helper/layers';
import { sizeLine, diskArg } from '../../src/cli/commands/set';
import type { DevvmError } from '../../src/shared/errors';
import type { VmSummary } from '../../src/shared/types';
import { createParams, Gate, noProgress, rig, type Rig } from './vms-fake';

const GiB = 1024 ** 3;
const code = (e: unknown) => (e as DevvmError).code;

/** What `set` may change: vm.json and the overlay file (size, mtime, virtual size). */
async function snapshotOf(r: Rig, name: string): Promise<string> {
  const file = r.vms.pool.file(r.vms.config(name).overlay!);
  const st = statSync(file);
  return JSON.stringify({ cfg: readFileSync(r.home.vm(name).meta, 'utf8'), size: st.size, mtime: st.mtimeMs, virtual: (await imgInfo(file, 'qcow2')).virtualSize });
}

async function overlaySize(r: Rig, name: string): Promise<number> {
  return (await imgInfo(r.vms.pool.file(r.vms.config(name).overlay!), 'qcow2')).virtualSize;
}

test('a stopped VM: CPUs, memory and disk change in one set; the overlay grows; summary (list) and info show the new size', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('web', { cpus: 1, memoryMiB: 512 }), noProgress);
  const s = await r.vms.set('web', { cpus: 2, memoryMiB: 768, diskGiB: 3 });
  assert.deepEqual([s.cpus, s.memoryMiB, s.diskGiB], [2, 768, 3]);
  assert.equal(await overlaySize(r, 'web'), 3 * GiB);
  const info = await r.vms.info('web');
  assert.deepEqual([info.cpus, info.memoryMiB, info.diskGiB], [2, 768, 3]);
  assert.equal(info.layers.find((l) => l.role === 'overlay')!.virtualSize, 3 * GiB);
  assert.deepEqual(r.vms.list().map((x) => x.diskGiB), [3]);
  // The next boot gets the new machine.
  await r.vms.start('web', {}, noProgress);
  const spec = r.driver.launched.at(-1)!.spec;
  assert.deepEqual([spec.cpus, spec.memoryMiB], [2, 768]);
  // A snapshot's fresh overlay has the new size too.
  await r.vms.stop('web', false);
  await r.vms.snapshot('web', 's1', false, noProgress);
  assert.equal(await overlaySize(r, 'web'), 3 * GiB);
});

test('running and suspended VMs are refused with the way out, and nothing changes; a VM in error may be changed', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('web'), noProgress);
  await r.vms.start('web', {}, noProgress);
  let before = await snapshotOf(r, 'web');
  await assert.rejects(r.vms.set('web', { cpus: 1, diskGiB: 2, autostart: true }), (e: DevvmError) => {
    assert.equal(e.code, 'invalid-state');
    assert.match(e.message, /cannot change VM "web": it is running/);
    assert.match(e.hint!, /stop it first: devvm stop web/);
    return true;
  });
  assert.equal(await snapshotOf(r, 'web'), before, 'nothing changed, the other settings in the same set neither');
  await r.vms.suspend('web', noProgress);
  before = await snapshotOf(r, 'web');
  await assert.rejects(r.vms.set('web', { memoryMiB: 1024 }), (e: DevvmError) => {
    assert.equal(e.code, 'invalid-state');
    assert.match(e.message, /it is suspended/);
    assert.match(e.hint!, /saved state needs the machine it was saved from/);
    assert.match(e.hint!, /devvm start web --discard-state/);
    return true;
  });
  assert.equal(await snapshotOf(r, 'web'), before);
  assert.equal(r.vms.state('web'), 'suspended', 'the saved state is kept');
  // The way out the hint names: cold boot (drops the state), stop, then set.
  await r.vms.start('web', { discardState: true }, noProgress);
  r.driver.launched.at(-1)!.crash('QEMU (pid 1) ended without shutting down (killed or crashed)');
  assert.equal(r.vms.state('web'), 'error');
  const s = await r.vms.set('web', { memoryMiB: 1024 });
  assert.equal(s.memoryMiB, 1024);
});

test('the disk only grows: a smaller size is refused naming the current one, the same size changes nothing', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('web', { diskGiB: 2, cpus: 2 }), noProgress);
  const before = await snapshotOf(r, 'web');
  await assert.rejects(r.vms.set('web', { cpus: 1, diskGiB: 1 }), (e: DevvmError) => {
    assert.equal(e.code, 'invalid-argument');
    assert.equal(e.message, 'the disk of VM "web" is 2 GiB and cannot shrink (asked for 1 GiB)');
    assert.equal(e.hint, 'give --disk 2 or more');
    return true;
  });
  assert.equal(await snapshotOf(r, 'web'), before, 'the CPUs given with it did not change either');
  await assert.rejects(r.vms.set('web', { display: true, diskGiB: 1 }), /cannot shrink/);
  assert.equal(await snapshotOf(r, 'web'), before, 'nor a display asked in the same set');
  await r.vms.set('web', { diskGiB: 2 });
  assert.equal(await overlaySize(r, 'web'), 2 * GiB);
  assert.equal(JSON.parse(JSON.parse(await snapshotOf(r, 'web')).cfg).diskGiB, 2);
  // Size and display in one set, under one lock.
  const s = await r.vms.set('web', { display: true, cpus: 1, diskGiB: 3 });
  assert.deepEqual([s.display, s.cpus, s.diskGiB], ['auto', 1, 3]);
  assert.equal(await overlaySize(r, 'web'), 3 * GiB);
});

test("limits: the host's CPUs and memory, the schema's ranges; nothing changes on a refusal", async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('web'), noProgress);
  const before = await snapshotOf(r, 'web');
  const hostCpus = os.availableParallelism();
  const hostMiB = Math.floor(os.totalmem() / 1048576);
  for (const [p, msg] of [
    [{ cpus: hostCpus + 1, diskGiB: 4 }, new RegExp(`CPU count ${hostCpus + 1} is out of range`)],
    [{ memoryMiB: hostMiB + 1, diskGiB: 4 }, /memory \d+ MiB is out of range/],
    [{ memoryMiB: 100 }, /memory 100 MiB is out of range/],
    [{ cpus: 0 }, /CPU count 0 is out of range/],
    [{ diskGiB: 20000 }, /disk size 20000 GiB is out of range/],
  ] as const) {
    await assert.rejects(r.vms.set('web', p), (e: DevvmError) => e.code === 'invalid-argument' && msg.test(e.message), JSON.stringify(p));
  }
  assert.equal(await snapshotOf(r, 'web'), before);
  assert.equal((await r.vms.start('web', {}, noProgress)).state, 'running', 'a refused value left no lock behind');
});

test("the VM's lock: a start during a resize is refused as busy, a resize during a start is refused by state, two sets: the second is busy", async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('web'), noProgress);
  // The lock is taken before the first await: qemu-img resize runs while this is pending.
  const resizing = r.vms.set('web', { diskGiB: 4, cpus: 1 });
  await assert.rejects(r.vms.start('web', {}, noProgress), (e: DevvmError) => e.code === 'busy' && /busy \(configuring\)/.test(e.message));
  await assert.rejects(r.vms.set('web', { diskGiB: 5 }), (e) => code(e) === 'busy');
  await resizing;
  assert.equal(r.vms.config('web').diskGiB, 4);
  assert.equal(await overlaySize(r, 'web'), 4 * GiB);
  // A start under way (held at launch): the set is refused and the disk stays as it is.
  r.driver.launchGate = new Gate();
  const starting = r.vms.start('web', {}, noProgress);
  await r.driver.launchGate.reached;
  const before = await snapshotOf(r, 'web');
  await assert.rejects(r.vms.set('web', { diskGiB: 6 }), (e: DevvmError) => e.code === 'invalid-state' && /it is starting/.test(e.message));
  r.driver.launchGate.release();
  await starting;
  assert.equal(await snapshotOf(r, 'web'), before);
  assert.equal(r.vms.state('web'), 'running');
});

test('a shared chain: growing one VM leaves the frozen layers and its clone alone, even with a real QEMU holding the clone open; a held overlay fails cleanly', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('src'), noProgress);
  await r.vms.clone({ source: 'src', name: 'copy' }, noProgress);
  const shared = r.vms.config('copy').clonedFrom!.layer;
  const hash = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
  const sharedBefore = hash(r.vms.pool.file(shared));
  const copyOverlay = r.vms.pool.file(r.vms.config('copy').overlay!);
  // A real QEMU (no guest, -S) with the clone's chain open, as while that VM runs.
  const qemu = spawn('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-S', '-monitor', 'none', '-blockdev', JSON.stringify({ driver: 'qcow2', 'node-name': 'd', file: { driver: 'file', filename: copyOverlay } })], { stdio: 'ignore' });
  t.after(() => qemu.kill('SIGKILL'));
  // Until QEMU holds its lock (qemu-img info without -U fails then).
  for (let i = 0; i < 100; i++) {
    const held = await imgInfo(copyOverlay).then(() => false, () => true);
    if (held) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  await r.vms.set('src', { diskGiB: 3 });
  assert.equal(await overlaySize(r, 'src'), 3 * GiB);
  assert.equal(hash(r.vms.pool.file(shared)), sharedBefore, 'the frozen layer both chains share is unchanged');
  assert.equal((await imgInfo(r.vms.pool.file(r.vms.config('src').overlay!), 'qcow2')).backingFile, r.vms.pool.file(shared));
  // The clone's overlay is held by that QEMU: the resize fails, and nothing changes.
  const before = await snapshotOf(r, 'copy');
  await assert.rejects(r.vms.set('copy', { diskGiB: 3, memoryMiB: 1024 }), (e: DevvmError) => {
    assert.equal(e.code, 'process-failed');
    assert.match(e.message, /^cannot grow the disk of VM "copy": .*lock/);
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.hint!, /nothing was changed/);
    return true;
  });
  assert.equal(await snapshotOf(r, 'copy'), before);
  assert.equal(r.vms.config('copy').diskGiB, 1);
});

test('a RAM snapshot restores the size it was taken with (its state needs that machine); a disk-only one keeps the current size', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('web', { cpus: 1, memoryMiB: 512 }), noProgress);
  await r.vms.start('web', {}, noProgress);
  await r.vms.snapshot('web', 'live', true, noProgress);
  await r.vms.stop('web', false);
  await r.vms.snapshot('web', 'disk', false, noProgress);
  await r.vms.set('web', { cpus: 2, memoryMiB: 768, diskGiB: 2 });
  let s = await r.vms.restore('web', 'disk', noProgress);
  assert.deepEqual([s.cpus, s.memoryMiB, s.diskGiB, s.state], [2, 768, 2, 'stopped']);
  s = await r.vms.restore('web', 'live', noProgress);
  assert.deepEqual([s.cpus, s.memoryMiB, s.diskGiB, s.state], [1, 512, 2, 'suspended'], 'CPUs and memory of the snapshot; the disk keeps growing only');
  assert.equal(await overlaySize(r, 'web'), 2 * GiB);
  // The fake's fingerprint covers CPUs and memory as QEMU's does: the resume fits.
  s = await r.vms.start('web', {}, noProgress);
  assert.equal(s.state, 'running');
  assert.deepEqual([r.driver.launched.at(-1)!.spec.cpus, r.driver.launched.at(-1)!.spec.incoming], [1, true]);
});

test('a RAM snapshot from before sizes were recorded, restored after a size change: the resume is refused, saying how to cold boot', async (t) => {
  const r = await rig();
  t.after(r.cleanup);
  await r.vms.create(createParams('web', { cpus: 1, memoryMiB: 512 }), noProgress);
  await r.vms.start('web', {}, noProgress);
  await r.vms.snapshot('web', 'old', true, noProgress);
  await r.vms.stop('web', false);
  // As an older helper wrote it: no size in the record.
  const f = r.home.vm('web').meta;
  const cfg = JSON.parse(readFileSync(f, 'utf8'));
  delete cfg.snapshots[0].ram.cpus;
  delete cfg.snapshots[0].ram.memoryMiB;
  (await import('node:fs')).writeFileSync(f, JSON.stringify(cfg));
  await r.vms.set('web', { cpus: 2 });
  await r.vms.restore('web', 'old', noProgress);
  await assert.rejects(r.vms.start('web', {}, noProgress), (e: DevvmError) => e.code === 'invalid-state' && /does not fit its current configuration/.test(e.message) && /--discard-state/.test(e.hint!));
  assert.equal((await r.vms.start('web', { discardState: true }, noProgress)).state, 'running');
});

test('CLI: --disk GiB or +GiB, and the line that says what changed', () => {
  assert.deepEqual(diskArg('30'), { grow: false, gib: 30 });
  assert.deepEqual(diskArg('+10'), { grow: true, gib: 10 });
  assert.throws(() => diskArg('-1'), /--disk must be GiB or \+GiB/);
  assert.throws(() => diskArg('10G'), /--disk must be GiB or \+GiB/);
  const b = { name: 'web', cpus: 2, memoryMiB: 2048, diskGiB: 20 } as VmSummary;
  assert.equal(sizeLine(b, { ...b, cpus: 4, memoryMiB: 4096, diskGiB: 30 }), 'web: 4 CPUs, 4096 MiB, disk 30 GiB (grows at the next boot)');
  assert.equal(sizeLine(b, { ...b, cpus: 1 }), 'web: 1 CPU');
  assert.equal(sizeLine(b, b), 'web: size unchanged (2 CPUs, 2048 MiB, disk 20 GiB)');
});
