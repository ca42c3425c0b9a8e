/**
 * The shares manager with a fake guest agent and fake share devices: a save is refused
 * (nothing unmounted, nothing unplugged) while a guest process holds a file in a share;
 * otherwise it syncs before each unmount and unplugs virtiofs; a 9p share added to a
 * running VM waits for the next boot and says so; a live virtiofs add is plugged and
 * mounted (retried while the device comes up).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import type { AgentOps, GuestExecResult, Instance, ShareDevice, ShareOps } from '../../src/helper/driver/driver';
import { Home } from '../../src/helper/filenames';
import { chooseTransport } from '../../src/helper/shares/host';
import { writeJsonAtomic } from '../../src/helper/store';
import { OpLocks } from '../../src/helper/vm/oplock';
import { Shares } from '../../src/helper/vm/shares';
import { VmStore } from '../../src/helper/vm/store';
import type { VmContext } from '../../src/helper/vm/context';
import type { VmConfig } from '../../src/helper/vmconfig';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-shares-mgr-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function setup(opts: { holders?: string; transport: 'virtiofs' | '9p'; failFirstMounts?: number }) {
  const root = mkdtempSync(path.join(tmp, 'home-'));
  const home = new Home(root);
  const src = mkdtempSync(path.join(tmp, 'src-'));
  const ro = mkdtempSync(path.join(tmp, 'ro-'));
  mkdirSync(home.vm('vm').dir, { recursive: true });
  const events: string[] = [];
  const mounts = new Map<string, string>();
  let failMounts = opts.failFirstMounts ?? 0;
  const ok = (stdout = ''): GuestExecResult => ({ exitCode: 0, stdout, stderr: '' });
  const agent = {
    connected: async () => true,
    ping: async () => {},
    exec: async (p: string, args: string[]): Promise<GuestExecResult> => {
      events.push(`${p} ${args.filter((a) => !a.includes('\n')).join(' ')}`.trim());
      if (p === '/bin/cat') return ok([...mounts].map(([t, d]) => `${t} ${d} virtiofs rw 0 0`).join('\n'));
      if (p === '/bin/sh') return ok(opts.holders ?? '');
      if (p === '/bin/mount') {
        if (failMounts-- > 0) return { exitCode: 32, stdout: '', stderr: 'mount: wrong fs type' };
        mounts.set(args[args.length - 2]!, args[args.length - 1]!);
      }
      if (p === '/bin/umount') for (const [t, d] of mounts) if (d === args[1]) mounts.delete(t);
      return ok();
    },
  } as unknown as AgentOps;
  const plugged: string[] = [];
  const shareOps: ShareOps = {
    plugged: () => [...plugged],
    canPlug: (d: ShareDevice) => (d.transport === 'virtiofs' ? null : 'QEMU 7.2 cannot add a 9p export to a running VM (no fsdev_add)'),
    plug: async (d) => {
      events.push(`plug ${d.tag}`);
      plugged.push(d.tag);
    },
    unplug: async (tag) => {
      events.push(`unplug ${tag}`);
      plugged.splice(plugged.indexOf(tag), 1);
    },
  };
  const inst = { alive: true, agent, shares: shareOps } as unknown as Instance;
  const store = new VmStore(home);
  const cfg = { version: 1, name: 'vm', image: 'i', user: 'dev', shares: [] } as unknown as VmConfig;
  writeJsonAtomic(home.vm('vm').meta, cfg);
  const locks = new OpLocks(() => {});
  const ctx = {
    home, store, locks, driver: { name: 'fake' }, instance: () => inst, state: () => 'running', changed: () => {},
  } as unknown as VmContext;
  const choice = opts.transport === 'virtiofs' ? chooseTransport({ uid: 0, cVirtiofsd: '/usr/lib/qemu/virtiofsd', rustVirtiofsd: null }) : chooseTransport({ uid: 1000, cVirtiofsd: null, rustVirtiofsd: null });
  const shares = new Shares(ctx, () => choice);
  return { shares, events, mounts, plugged, src, ro, store };
}

test('a live virtiofs add is plugged and mounted, the mount retried while the device comes up', async () => {
  const t = setup({ transport: 'virtiofs', failFirstMounts: 2 });
  const info = await t.shares.add('vm', { hostPath: t.src, guestPath: '/mnt/src' });
  assert.equal(info.transport, 'virtiofs');
  assert.equal(info.mounted, true);
  assert.deepEqual(t.events.filter((e) => e.startsWith('plug') || e.startsWith('/bin/mount')).length, 4, 'plug, then three mount tries');
  assert.equal(t.store.read('vm').shares?.[0]?.hostPath, t.src);
});

test('a 9p share added to a running VM is kept for the next boot, and says so', async () => {
  const t = setup({ transport: '9p' });
  const info = await t.shares.add('vm', { hostPath: t.src, guestPath: '/mnt/src' });
  assert.equal(info.transport, '9p');
  assert.equal(info.mounted, false);
  assert.match(info.problem ?? '', /cannot add a 9p export to a running VM.*next boot/);
  assert.equal(t.store.read('vm').shares?.length, 1);
});

test('a save is refused while a guest process holds a file in a share, with its name, and nothing changes', async () => {
  const t = setup({ transport: 'virtiofs', holders: '812\ttail\t/mnt/src/log.txt\n' });
  await t.shares.add('vm', { hostPath: t.src, guestPath: '/mnt/src' });
  t.events.length = 0;
  await assert.rejects(t.shares.beforeSave('vm', 'suspend'), (e: DevvmError) => {
    assert.equal(e.code, 'busy');
    assert.match(e.message, /^cannot suspend VM "vm": process "tail" \(pid 812\) in the guest holds \/mnt\/src\/log\.txt open in a shared folder$/);
    return true;
  });
  assert.equal(t.events.some((e) => /umount|unplug|sync/.test(e)), false, 'nothing unmounted or unplugged');
  assert.deepEqual([...t.mounts.values()], ['/mnt/src']);
  assert.deepEqual(t.plugged, ['devvm0']);
});

test('a save syncs before unmounting, unplugs virtiofs, and everything comes back after', async () => {
  const t = setup({ transport: 'virtiofs' });
  await t.shares.add('vm', { hostPath: t.src, guestPath: '/mnt/src' });
  t.events.length = 0;
  const tags = await t.shares.beforeSave('vm', 'suspend');
  assert.deepEqual(tags, ['devvm0']);
  const order = t.events.filter((e) => /sync|umount|unplug/.test(e));
  assert.deepEqual(order, ['/bin/sync', '/bin/umount -- /mnt/src', 'unplug devvm0']);
  assert.equal(t.mounts.size, 0);
  await t.shares.remount('vm', tags);
  assert.deepEqual(t.plugged, ['devvm0']);
  assert.deepEqual([...t.mounts.values()], ['/mnt/src']);
});

test('shares are checked against each other and the VM user: duplicates, nesting and the user\'s home refused', async () => {
  const t = setup({ transport: 'virtiofs' });
  await t.shares.add('vm', { hostPath: t.src, guestPath: '/mnt/src' });
  await assert.rejects(t.shares.add('vm', { hostPath: t.ro, guestPath: '/mnt/src/x' }), /overlaps/);
  await assert.rejects(t.shares.add('vm', { hostPath: t.src, guestPath: '/mnt/other' }), /shared already/);
  await assert.rejects(t.shares.add('vm', { hostPath: t.ro, guestPath: '/home/dev' }), /system path/);
  assert.equal(t.store.read('vm').shares?.length, 1, 'nothing added by the refusals');
  await assert.rejects(t.shares.remove('vm', '/mnt/nothing'), /has no share/);
});

test('a cold boot shares guest RAM (memfd) only when a virtiofs share needs it: read-only (9p) or no shares keep anonymous RAM', async () => {
  const t = setup({ transport: 'virtiofs' });
  const cfg = (shares: Array<{ readOnly: boolean }>) =>
    ({ ...t.store.read('vm'), shares: shares.map((s, i) => ({ hostPath: s.readOnly ? t.ro : t.src, guestPath: `/mnt/s${i}`, readOnly: s.readOnly, tag: `devvm${i}` })) }) as VmConfig;
  assert.equal(t.shares.bootPlan(cfg([])).shares.sharedMemory, false, 'no shares');
  assert.equal(t.shares.bootPlan(cfg([{ readOnly: true }])).shares.sharedMemory, false, 'a read-only share goes over 9p');
  const plan = t.shares.bootPlan(cfg([{ readOnly: true }, { readOnly: false }]));
  assert.equal(plan.shares.sharedMemory, true);
  assert.deepEqual(plan.record, { sharedMemory: true, ninep: [{ tag: 'devvm0', hostPath: t.ro, readOnly: true }] });
  assert.equal(setup({ transport: '9p' }).shares.bootPlan(cfg([{ readOnly: false }])).shares.sharedMemory, false, 'a 9p host');
});
