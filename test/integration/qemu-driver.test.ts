/**
 * The QEMU driver on a real QEMU with blank disks (no kernel, nothing boots; cheap): launch
 * in a home whose path holds a comma, layer switch, disk hot-plug with declared formats,
 * a stop asked for versus a kill -9, and what a dead QEMU leaves for the next helper,
 * and a TLS-PSK NBD export (real qemu-nbd, as `disk export --tcp` serves it) attached.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { ExitInfo, Instance, InstanceFiles } from '../../src/helper/driver/driver';
import { QemuDriver } from '../../src/helper/driver/qemu';
import { serveExport, stopExport } from '../../src/helper/exports';
import { run } from '../../src/helper/proc';
import { installPsk, readPskFile } from '../../src/helper/tlspsk';

const root = mkdtempSync(path.join(os.tmpdir(), 'devvm-drv-'));
const dir = path.join(root, 'a,b');
mkdirSync(dir);
after(() => rmSync(root, { recursive: true, force: true }));

const driver = new QemuDriver(process.env.DEVVM_QEMU || 'qemu-system-x86_64', async () => ({ name: 'tcg', reason: 'test' }));
const files: InstanceFiles = { control: path.join(dir, 'qmp.sock'), serialSocket: path.join(dir, 'serial.sock'), serialLog: path.join(dir, 'serial.log'), pidFile: path.join(dir, 'pid'), log: path.join(dir, 'qemu.log'), displaySocket: path.join(dir, 'vnc.sock'), screendump: path.join(dir, 'screendump.png'), agentSocket: path.join(dir, 'qga.sock'), dir, shareRecord: path.join(dir, 'shares.json') };
const img = (n: string) => path.join(dir, n);

async function launch(): Promise<Instance> {
  return driver.launch({
    name: 'blank', cpus: 1, memoryMiB: 64, kernel: null, initrd: null, seed: null, sshPort: null, mac: '52:54:00:00:00:01', display: null, files, incoming: false,
    disks: { base: { file: img('base.qcow2'), format: 'qcow2' }, cache: img('cache.qcow2'), layers: [{ id: 'l000000000001', file: img('l1.qcow2') }] },
  });
}

const qmpOf = (i: Instance) => (i as unknown as { m: { qmp: { execute<T>(c: string, a?: Record<string, unknown>): Promise<T> } } }).m.qmp;
const exited = (i: Instance) => new Promise<ExitInfo>((r) => i.onExit(r));

test('setup: blank layers', async () => {
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', img('base.qcow2'), '16M']);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', img('base.qcow2'), '-F', 'qcow2', img('cache.qcow2')]);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', img('base.qcow2'), '-F', 'qcow2', img('l1.qcow2')]);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', img('l1.qcow2'), '-F', 'qcow2', img('l2.qcow2')]);
  // A raw disk whose first bytes a guest made into a qcow2 header naming a host file.
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', '/etc/hostname', '-F', 'raw', img('evil.raw'), '1M']);
});

test('launch with a comma in the path, switch the top layer live, stop on request (an expected end)', async () => {
  const i = await launch();
  assert.ok(i.alive);
  assert.equal(await i.runState(), 'running');
  assert.equal(await i.layers!.top(), 'l000000000001');
  await i.layers!.switchTop('l000000000001', { id: 'l000000000002', file: img('l2.qcow2') });
  assert.equal(await i.layers!.top(), 'l000000000002');
  await i.pause();
  assert.equal(await i.runState(), 'paused');
  await i.resume();
  const end = exited(i);
  await i.stop(true, 0);
  assert.deepEqual((await end).expected, true);
  // QEMU unlinks its pid file as it exits, a moment after its QMP socket closed (which is what `stop` awaits).
  for (let i = 0; i < 50 && existsSync(files.pidFile); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(existsSync(files.pidFile), false, 'QEMU removes its pid file when it quits in order');
  assert.equal(driver.reap(files), null);
});

test('hot-plugged disks are opened with their declared format: a qcow2 header inside a raw disk is data', async () => {
  const i = await launch();
  try {
    await i.devices!.attachDisk({ id: 'xd1', source: img('evil.raw'), fd: null, format: 'raw', usb: false, readOnly: true }, []);
    // A checked file goes to QEMU as our open descriptor (add-fd), never by its path again.
    const fd = openSync(img('l2.qcow2'), 'r');
    try {
      await i.devices!.attachDisk({ id: 'xd2', source: img('l2.qcow2'), fd, format: 'qcow2', usb: true, readOnly: true }, ['hp0']);
    } finally {
      closeSync(fd);
    }
    const qmpLog = await (i as unknown as { m: { qmp: { execute<T>(c: string): Promise<T> } } }).m.qmp.execute<Array<{ 'node-name': string; drv: string; backing_file?: string }>>('query-named-block-nodes');
    const byName = new Map(qmpLog.map((n) => [n['node-name'], n]));
    assert.equal(byName.get('xd1')?.drv, 'raw');
    assert.equal(byName.get('xd2')?.drv, 'qcow2');
    assert.equal(byName.get('xd2')?.backing_file, undefined, 'no backing file opened for an attached qcow2');
    assert.ok(![...byName.values()].some((n) => (n as { file?: string }).file === '/etc/hostname'));
    assert.match(String((byName.get('xd2-proto') as { file?: string } | undefined)?.file), /^\/dev\/fdset\/\d+$/);
  } finally {
    await i.stop(true, 0);
  }
});

test('kill -9 of QEMU is an unexpected end with a reason; a dead QEMU found later is reaped with one', async () => {
  const i = await launch();
  const end = exited(i);
  process.kill(i.pid, 'SIGKILL');
  const info = await end;
  assert.equal(info.expected, false);
  assert.match(info.reason, /ended without shutting down/);
  assert.ok(existsSync(files.pidFile), 'a killed QEMU leaves its pid file');
  assert.match(driver.reap(files) ?? '', /no helper watched/);
  assert.equal(existsSync(files.pidFile), false);
});

test('a launch aborted while QEMU comes up kills it', async () => {
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(
    driver.launch({
      name: 'blank', cpus: 1, memoryMiB: 64, kernel: null, initrd: null, seed: null, sshPort: null, mac: '52:54:00:00:00:01', display: null, files, incoming: false, signal: ac.signal,
      disks: { base: { file: img('base.qcow2'), format: 'qcow2' }, cache: img('cache.qcow2'), layers: [{ id: 'l000000000001', file: img('l1.qcow2') }] },
    }),
    /cancelled/,
  );
  assert.equal(await driver.attach(files), null);
});

test('a TLS-PSK NBD export attaches with its key; without it or with a wrong key it does not, and no credentials are left', async () => {
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', img('exp.qcow2'), '4M']);
  const ef = { socket: img('nbd.sock'), tlsDir: img('nbd-tls'), pidFile: img('nbd.pid'), logFile: img('nbd.log') };
  const rec = await serveExport({ file: img('exp.qcow2'), exportName: 'l1', layer: 'l1', files: ef, tcp: true });
  const i = await launch();
  try {
    const psk = await readPskFile(rec.tls!.pskFile);
    assert.equal(psk.identity, 'devvm');
    await installPsk(img('tls-xd1'), psk);
    const qmp = qmpOf(i);
    const objects = async () => (await qmp.execute<Array<{ name: string }>>('qom-list', { path: '/objects' })).map((o) => o.name);
    const nodes = async () => (await qmp.execute<Array<{ 'node-name': string; drv: string }>>('query-named-block-nodes')).map((n) => `${n['node-name']}:${n.drv}`);

    await assert.rejects(i.devices!.attachDisk({ id: 'xd2', source: rec.uri, fd: null, format: 'raw', usb: true, readOnly: true }, []), /TLS/i);
    await installPsk(img('tls-xd3'), { identity: 'devvm', key: 'ab'.repeat(32) });
    await assert.rejects(i.devices!.attachDisk({ id: 'xd3', source: rec.uri, fd: null, format: 'raw', usb: true, readOnly: true, tls: { dir: img('tls-xd3'), identity: 'devvm' } }, []));
    assert.ok(!(await objects()).includes('xd3-tls'), 'a failed attach drops its credentials');
    assert.ok(!(await nodes()).some((n) => n.startsWith('xd2') || n.startsWith('xd3')));

    await i.devices!.attachDisk({ id: 'xd1', source: rec.uri, fd: null, format: 'raw', usb: true, readOnly: true, tls: { dir: img('tls-xd1'), identity: psk.identity } }, []);
    assert.ok((await nodes()).includes('xd1-proto:nbd'));
    assert.ok((await nodes()).includes('xd1:raw'));
    assert.ok((await objects()).includes('xd1-tls'));
    await i.devices!.detachDisk('xd1');
    assert.ok(!(await objects()).includes('xd1-tls'), 'detach drops the credentials');
    assert.ok(!(await nodes()).some((n) => n.startsWith('xd1')));
  } finally {
    await i.stop(true, 0);
    stopExport(rec, ef);
  }
});
