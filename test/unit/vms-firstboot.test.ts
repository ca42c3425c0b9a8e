/**
 * The helper's side of the two provisioning paths, with a fake driver: which seed a new VM
 * gets, how its start hands it to the machine, that a clone keeps its source's path, and
 * that the devvm seed goes once first setup is reported, like the ISO.
 */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DEVVM_SEED_MAGIC } from '../../src/helper/devvmseed';
import { READY_MARKER } from '../../src/helper/provision';
import type { VmConfig } from '../../src/helper/vmconfig';
import { createParams, noProgress, rig } from './vms-fake';

/** The rig's image, marked as a build from here that carries devvm-firstboot (kernel beside it). */
async function builtHere() {
  const r = await rig();
  const kernel = path.join(r.root, 'vmlinuz');
  writeFileSync(kernel, 'kernel');
  const meta = JSON.parse(readFileSync(r.home.image('base').meta, 'utf8')) as Record<string, unknown>;
  writeFileSync(r.home.image('base').meta, JSON.stringify({ ...meta, kernel, firstBoot: 'devvm' }));
  return r;
}

const config = (r: Awaited<ReturnType<typeof rig>>, name: string) => JSON.parse(readFileSync(r.home.vm(name).meta, 'utf8')) as VmConfig;

async function until(what: string, f: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !f(); i++) await new Promise((res) => setTimeout(res, 25));
  assert.ok(f(), what);
}

test('an image built here: the devvm seed (0600), handed to the machine as such, gone after first setup', async () => {
  const r = await builtHere();
  try {
    await r.vms.create(createParams('dev'), noProgress);
    const f = r.home.vm('dev');
    const cfg = config(r, 'dev');
    assert.equal(cfg.provision, 'devvm');
    assert.equal(statSync(f.devvmSeed).mode & 0o777, 0o600);
    assert.ok(readFileSync(f.devvmSeed, 'utf8').startsWith(`${DEVVM_SEED_MAGIC}\n`));
    assert.ok(!existsSync(f.seed), 'no cloud-init ISO');

    await r.vms.start('dev', {}, noProgress);
    const spec = r.driver.launched[0]!.spec;
    assert.equal(spec.provision, 'devvm');
    assert.equal(spec.seed, f.devvmSeed);

    // devvm-firstboot's line on the serial console, as ProvisionWatch reads it.
    appendFileSync(f.serialLog, `${READY_MARKER} ${cfg.instanceId} after 4.20 s\r\n`);
    await until('first setup recorded', () => config(r, 'dev').provisioned);
    await r.vms.stop('dev', false);
    assert.ok(!existsSync(f.devvmSeed), 'the seed (hash, private host key) is deleted once used');

    await r.vms.start('dev', {}, noProgress);
    assert.equal(r.driver.launched[1]!.spec.seed, null, 'never attached again');
    await r.vms.stop('dev', true);
  } finally {
    await r.cleanup();
  }
});

test('devvm-firstboot reporting a failure is shown as the VM\'s provisioning error', async () => {
  const r = await builtHere();
  try {
    await r.vms.create(createParams('dev'), noProgress);
    await r.vms.start('dev', {}, noProgress);
    appendFileSync(r.home.vm('dev').serialLog, 'devvm-firstboot failed: Failed to create user dev\r\n');
    await until('error recorded', () => config(r, 'dev').provisionError !== undefined);
    assert.match(config(r, 'dev').provisionError!, /devvm-firstboot failed: Failed to create user dev/);
    assert.equal(config(r, 'dev').provisioned, false);
    await r.vms.stop('dev', true);
  } finally {
    await r.cleanup();
  }
});

test('DEVVM_PROVISION=cloud-init: the same image gets the cloud-init seed; a clone keeps its source\'s path', async () => {
  const r = await builtHere();
  const was = process.env.DEVVM_PROVISION;
  try {
    process.env.DEVVM_PROVISION = 'cloud-init';
    await r.vms.create(createParams('ci'), noProgress);
    delete process.env.DEVVM_PROVISION;
    assert.equal(config(r, 'ci').provision, undefined);
    assert.ok(existsSync(r.home.vm('ci').seed));
    assert.ok(!existsSync(r.home.vm('ci').devvmSeed));
    await r.vms.start('ci', {}, noProgress);
    assert.equal(r.driver.launched[0]!.spec.provision, undefined);
    assert.equal(r.driver.launched[0]!.spec.seed, r.home.vm('ci').seed);
    await r.vms.stop('ci', true);

    await r.vms.create(createParams('dev'), noProgress);
    await r.vms.clone({ source: 'dev', name: 'copy' }, noProgress);
    assert.equal(config(r, 'copy').provision, 'devvm');
    const seed = readFileSync(r.home.vm('copy').devvmSeed, 'utf8');
    assert.match(seed, new RegExp(`^clone ${Buffer.from('1').toString('base64')}$`, 'm'), 'the clone part only');
    assert.doesNotMatch(seed, /^password-hash /m);
    await r.vms.clone({ source: 'ci', name: 'ci-copy' }, noProgress);
    assert.equal(config(r, 'ci-copy').provision, undefined);
    assert.ok(existsSync(r.home.vm('ci-copy').seed));
  } finally {
    if (was === undefined) delete process.env.DEVVM_PROVISION;
    else process.env.DEVVM_PROVISION = was;
    await r.cleanup();
  }
});

test('an image without the mark (pulled, imported, or built before it) keeps cloud-init', async () => {
  const r = await rig();
  try {
    await r.vms.create(createParams('dev'), noProgress);
    assert.equal(config(r, 'dev').provision, undefined);
    assert.ok(existsSync(r.home.vm('dev').seed));
  } finally {
    await r.cleanup();
  }
});
