import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import {
  chooseAccelerator,
  decideAccelerator,
  probeBootSector,
  probeKvmWithQemu,
  QEMU_DEADLINE_MS,
  type AccelFacts,
} from '../../src/helper/accel';
import { loadNative } from '../../src/helper/native';
import { softwareOnlyKvm } from '../hostfacts';

const linux: AccelFacts = { platform: 'linux', kvmDevice: 'ok' };
const QEMU = 'qemu-system-x86_64';
const qemuMissing = spawnSync(QEMU, ['--version']).status !== 0 ? `${QEMU} not installed` : false;


test('DEVVM_ACCEL forces the accelerator, any case, before anything else', () => {
  for (const v of ['kvm', 'tcg', 'hvf'] as const) {
    assert.deepEqual(decideAccelerator({ ...linux, kvmDevice: 'missing', forced: v }), { name: v, reason: `forced by DEVVM_ACCEL=${v}` });
  }
  assert.equal(decideAccelerator({ platform: 'darwin', kvmDevice: 'missing', forced: ' TCG ' }).name, 'tcg');
});

test('an unknown DEVVM_ACCEL is ignored, and the reason says so', () => {
  const c = decideAccelerator({ ...linux, kvmDevice: 'missing', forced: 'xen' });
  assert.equal(c.name, 'tcg');
  assert.match(c.reason, /^DEVVM_ACCEL=xen ignored \(use kvm, hvf or tcg\); \/dev\/kvm missing/);
  assert.equal(decideAccelerator({ ...linux, kvmDevice: 'missing', forced: '' }).reason.startsWith('/dev/kvm missing'), true);
});

test('platform and /dev/kvm state', () => {
  assert.deepEqual(decideAccelerator({ platform: 'darwin', kvmDevice: 'missing' }), { name: 'hvf', reason: 'macOS: Hypervisor.framework' });
  assert.equal(decideAccelerator({ platform: 'win32', kvmDevice: 'missing' }).name, 'tcg');
  const missing = decideAccelerator({ ...linux, kvmDevice: 'missing' });
  assert.equal(missing.name, 'tcg');
  assert.match(missing.reason, /\/dev\/kvm missing/);
  const noAccess = decideAccelerator({ ...linux, kvmDevice: 'no-access' });
  assert.equal(noAccess.name, 'tcg');
  assert.match(noAccess.reason, /not readable and writable.*kvm group/);
  assert.equal(decideAccelerator(linux).name, 'tcg', 'no probe result: do not trust KVM blindly');
});

test('probe results map to kvm only when the probe passed', () => {
  const fast = decideAccelerator({ ...linux, probe: { via: 'addon', ok: true, ms: 12.5, reason: 'KVM ran 50M instructions in 12.5 ms' } });
  assert.deepEqual(fast, { name: 'kvm', reason: 'KVM ran 50M instructions in 12.5 ms (native probe)', probeMs: 12.5 });
  const slow = decideAccelerator({
    ...linux,
    probe: { via: 'qemu', ok: false, ms: 4010, reason: 'KVM too slow: QEMU probe guest printed nothing within 4000 ms' },
  });
  assert.equal(slow.name, 'tcg');
  assert.equal(slow.probeMs, 4010);
  assert.match(slow.reason, /^KVM too slow: .* \(QEMU probe\); VMs run under TCG/);
  const broken = decideAccelerator({ ...linux, probe: { via: 'addon', ok: false, ms: 3, reason: 'KVM_CREATE_VM failed: Device or resource busy' } });
  assert.equal(broken.name, 'tcg');
  assert.match(broken.reason, /KVM_CREATE_VM failed/);
});

test('the probe boot sector is a valid MBR with the loop count and marker', () => {
  const s = probeBootSector(1234);
  assert.equal(s.length, 512);
  assert.equal(s.readUInt16BE(510), 0x55aa);
  assert.equal(s.readUInt32LE(8), 1234);
  const msgAt = s.readUInt16LE(20) - 0x7c00;
  assert.equal(s.toString('latin1', msgAt, s.indexOf(0, msgAt)), 'DEVVM-KVM-PROBE-OK');
});

test('chooseAccelerator honours DEVVM_ACCEL from opts.env without probing, and memoizes', async () => {
  const t = performance.now();
  const kvm = await chooseAccelerator({ env: { DEVVM_ACCEL: 'kvm' } });
  assert.deepEqual(kvm, { name: 'kvm', reason: 'forced by DEVVM_ACCEL=kvm' });
  assert.equal((await chooseAccelerator({ env: { DEVVM_ACCEL: 'tcg' } })).name, 'tcg');
  assert.ok(performance.now() - t < 200, 'a forced choice runs no probe');
  assert.equal(chooseAccelerator({ env: { DEVVM_ACCEL: 'hvf' } }), chooseAccelerator({ env: { DEVVM_ACCEL: 'hvf' } }));
});

test('chooseAccelerator with the native probe answers within its deadline', { skip: loadNative().addon ? false : loadNative().detail, timeout: 20000 }, async () => {
  const t = performance.now();
  const c = await chooseAccelerator({ env: {}, deadlineMs: 1500 });
  const took = performance.now() - t;
  console.log(`# native: ${JSON.stringify(c)} in ${Math.round(took)} ms`);
  assert.ok(took < 1500 + 500, `took ${took} ms`);
  if (softwareOnlyKvm()) {
    assert.equal(c.name, 'tcg');
    assert.match(c.reason, /KVM too slow/);
  }
});

test('the QEMU fallback probe picks tcg on this machine within its deadline', { skip: qemuMissing, timeout: 30000 }, async () => {
  const t = performance.now();
  const c = await chooseAccelerator({ env: {}, useAddon: false, qemu: QEMU });
  const took = performance.now() - t;
  console.log(`# qemu fallback: ${JSON.stringify(c)} in ${Math.round(took)} ms`);
  // The deadline covers QEMU's startup; killing it and cleaning up adds a little.
  assert.ok(took < QEMU_DEADLINE_MS + 1000, `took ${took} ms`);
  assert.ok(c.reason.includes('(QEMU probe)') || !existsSync('/dev/kvm'), c.reason);
  if (softwareOnlyKvm() || !existsSync('/dev/kvm')) assert.equal(c.name, 'tcg');
});

test('the QEMU probe rejects a crawling KVM by its deadline, killing QEMU', { skip: qemuMissing || (softwareOnlyKvm() ? false : 'needs a software-only KVM'), timeout: 30000 }, async () => {
  // qemu64 instead of host: this machine's KVM refuses some of host's MSRs at once, and
  // this test is about the deadline.
  const t = performance.now();
  const r = await probeKvmWithQemu(QEMU, 2000, 'qemu64');
  const took = performance.now() - t;
  console.log(`# qemu probe (qemu64): ${JSON.stringify(r)} in ${Math.round(took)} ms`);
  assert.equal(r.ok, false);
  assert.match(r.reason, /KVM too slow: QEMU probe guest printed nothing within 2000 ms/);
  assert.ok(took < 2000 + 1000, `took ${took} ms`);
  const left = spawnSync('pgrep', ['-f', 'devvm-kvm-probe-'], { encoding: 'utf8' }).stdout.trim();
  assert.equal(left, '', 'no probe QEMU left running');
});
