/** vm/wake.ts with a fake VM manager: what ssh-proxy's request does in each state. */
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import { Home } from '../../src/helper/filenames';
import type { VmContext } from '../../src/helper/vm/context';
import { wake, wakePlan } from '../../src/helper/vm/wake';
import type { VmState } from '../../src/shared/types';

const roots: string[] = [];
after(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

function fake(o: { state: VmState; ssh?: boolean; sshReady?: boolean; held?: { phase: string; done: Promise<void> } }) {
  const home = new Home(mkdtempSync(path.join(os.tmpdir(), 'devvm-waketest-')));
  roots.push(home.root);
  mkdirSync(home.vm('web').dir, { recursive: true });
  if (o.sshReady) writeFileSync(home.vm('web').launch, JSON.stringify({ seed: false, sshReady: true }));
  const w = { state: o.state, held: o.held as { phase: string; done: Promise<void> } | undefined, calls: [] as string[], busyOnce: false };
  const ctx = {
    home,
    store: { read: () => ({ name: 'web', ssh: o.ssh ?? true }) },
    locks: { get: () => w.held },
    state: () => w.state,
  } as unknown as VmContext;
  const deps = {
    start: async () => {
      w.calls.push('start');
      if (w.busyOnce) {
        w.busyOnce = false;
        throw new DevvmError('busy', 'VM "web" is busy (starting)');
      }
      w.state = 'running';
    },
    waitSsh: async () => void w.calls.push('waitSsh'),
    sleep: async () => {},
  };
  return { w, home, plan: () => wakePlan(ctx, 'web'), run: () => wake(ctx, deps, 'web', () => {}) };
}

test('a running VM whose SSH worked answers at once; one still booting is waited for', async () => {
  const a = fake({ state: 'running', sshReady: true });
  await a.run();
  assert.deepEqual(a.w.calls, []);
  const b = fake({ state: 'running' });
  await b.run();
  assert.deepEqual(b.w.calls, ['waitSsh']);
});

test('stopped, suspended and crashed VMs are started (resumed) with waitSsh', async () => {
  for (const state of ['stopped', 'suspended', 'error'] as const) {
    const f = fake({ state });
    await f.run();
    assert.deepEqual(f.w.calls, ['start'], state);
  }
});

test('an operation under way (another ssh\'s start, an idle suspend) is waited for, then looked at again', async () => {
  let finish!: () => void;
  const f = fake({ state: 'suspending', held: { phase: 'suspending', done: new Promise<void>((r) => (finish = r)) } });
  const p = f.run();
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(f.w.calls, [], 'nothing while it is held');
  f.w.held = undefined;
  f.w.state = 'suspended';
  finish();
  await p;
  assert.deepEqual(f.w.calls, ['start']);
});

test('a start that lost the race to another client is retried; deleting and no-SSH VMs are refused', async () => {
  const f = fake({ state: 'stopped' });
  f.w.busyOnce = true;
  await f.run();
  assert.deepEqual(f.w.calls, ['start', 'start']);
  await assert.rejects(fake({ state: 'deleting', held: { phase: 'deleting', done: Promise.resolve() } }).run(), /being deleted/);
  await assert.rejects(fake({ state: 'stopped', ssh: false }).run(), /SSH is disabled/);
});

test('wake plan: ready only when running with SSH seen working and no operation; the identification line as the probe last saw it', async () => {
  const ident = 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3';
  const a = fake({ state: 'running', sshReady: true });
  assert.deepEqual(a.plan(), { ready: true, ident: null });
  writeFileSync(a.home.vm('web').sshIdent, `${ident}\n`);
  assert.deepEqual(a.plan(), { ready: true, ident });
  const b = fake({ state: 'suspended' });
  writeFileSync(b.home.vm('web').sshIdent, `${ident}\n`);
  assert.deepEqual(b.plan(), { ready: false, ident });
  const c = fake({ state: 'running', sshReady: true, held: { phase: 'suspending', done: Promise.resolve() } });
  assert.equal(c.plan().ready, false);
  // A file that is not an identification line is not sent to ssh.
  const d = fake({ state: 'stopped' });
  writeFileSync(d.home.vm('web').sshIdent, 'SSH-2.0-x\r\nmore\n');
  assert.deepEqual(d.plan(), { ready: false, ident: null });
  const e = fake({ state: 'stopped', ssh: false });
  writeFileSync(e.home.vm('web').sshIdent, `${ident}\n`);
  assert.deepEqual(e.plan(), { ready: false, ident: null });
});
