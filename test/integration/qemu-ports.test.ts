/**
 * The QEMU driver's port forwards on a real QEMU with blank disks (nothing boots; cheap):
 * hostfwd_add binds the host port on 127.0.0.1 only, a taken port answers false (nothing
 * added), `list` reads them back (how a restarted helper finds them), remove frees the port,
 * and hostile values never reach the monitor line.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { Instance, InstanceFiles } from '../../src/helper/driver/driver';
import { QemuDriver } from '../../src/helper/driver/qemu';
import { parseUsernet } from '../../src/helper/driver/qemuports';
import { freePort, portIsFree } from '../../src/helper/ports';
import { run } from '../../src/helper/proc';

const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-qports-'));
const driver = new QemuDriver(process.env.DEVVM_QEMU || 'qemu-system-x86_64', async () => ({ name: 'tcg', reason: 'test' }));
const files: InstanceFiles = { control: path.join(dir, 'qmp.sock'), serialSocket: path.join(dir, 'serial.sock'), serialLog: path.join(dir, 'serial.log'), pidFile: path.join(dir, 'pid'), log: path.join(dir, 'qemu.log'), displaySocket: path.join(dir, 'vnc.sock'), screendump: path.join(dir, 'shot.png'), agentSocket: path.join(dir, 'qga.sock'), dir, shareRecord: path.join(dir, 'shares.json') };
const img = (n: string) => path.join(dir, n);
let inst: Instance | null = null;

after(async () => {
  await inst?.stop(true, 0);
  rmSync(dir, { recursive: true, force: true });
});

test('hostfwd add / list / remove on a live QEMU; a taken port is refused without adding; hostile values are refused before QEMU', async () => {
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', img('base.qcow2'), '16M']);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', img('base.qcow2'), '-F', 'qcow2', img('cache.qcow2')]);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', img('base.qcow2'), '-F', 'qcow2', img('l1.qcow2')]);
  const ssh = await freePort();
  inst = await driver.launch({
    name: 'blank', cpus: 1, memoryMiB: 64, kernel: null, initrd: null, seed: null, sshPort: ssh, mac: '52:54:00:00:00:02', display: null, files, incoming: false,
    disks: { base: { file: img('base.qcow2'), format: 'qcow2' }, cache: img('cache.qcow2'), layers: [{ id: 'l000000000001', file: img('l1.qcow2') }] },
  });
  const ports = inst.ports!;
  const p = await freePort(new Set([ssh]));
  assert.equal(await ports.add({ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: p, guestPort: 8123 }), true);
  assert.equal(await portIsFree(p), false, 'QEMU holds the host port');
  // Loopback only: the port is not open on another address of this host.
  const other = Object.values(os.networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  if (other) {
    const reached = await new Promise<boolean>((r) => net.createConnection({ host: other, port: p }).once('connect', () => r(true)).once('error', () => r(false)));
    assert.equal(reached, false, `reachable on ${other}`);
  }
  assert.equal(await ports.add({ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: p, guestPort: 8124 }), false, 'taken');
  const udp = await freePort(new Set([ssh, p]));
  assert.equal(await ports.add({ protocol: 'udp', hostAddress: '127.0.0.1', hostPort: udp, guestPort: 53 }), true);
  const listed = await ports.list();
  assert.deepEqual(listed.sort((a, b) => a.hostPort - b.hostPort), [
    { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: ssh, guestPort: 22 },
    { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: p, guestPort: 8123 },
    { protocol: 'udp', hostAddress: '127.0.0.1', hostPort: udp, guestPort: 53 },
  ].sort((a, b) => a.hostPort - b.hostPort));
  await ports.remove({ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: p });
  assert.equal(await portIsFree(p), true, 'freed');
  await ports.remove({ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: p }); // gone already: no error

  for (const hostAddress of ['127.0.0.1-:22', '127.0.0.1 info', '0.0.0.0,x', '']) {
    await assert.rejects(ports.add({ protocol: 'tcp', hostAddress, hostPort: p, guestPort: 1 }), /invalid host address/);
  }
  await assert.rejects(ports.add({ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestPort: 1 }), /invalid port/);
  await assert.rejects(ports.add({ protocol: 'tcp; quit' as 'tcp', hostAddress: '127.0.0.1', hostPort: 1, guestPort: 1 }), /invalid protocol/);
  assert.ok(inst.alive, 'QEMU still runs');
  assert.equal((await ports.list()).length, 2);
});

test('info usernet text: host forwards only', () => {
  const text = 'Hub -1 (net0):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n  TCP[HOST_FORWARD]  14       127.0.0.1 40780       10.0.2.15    80     0     0\r\n  TCP[ESTABLISHED]   20       10.0.2.15 44444   93.184.216.34   443     0     0\r\n  UDP[HOST_FORWARD]  13         0.0.0.0 40779       10.0.2.15    53     0     0\r\n';
  assert.deepEqual(parseUsernet(text), [
    { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 40780, guestPort: 80 },
    { protocol: 'udp', hostAddress: '0.0.0.0', hostPort: 40779, guestPort: 53 },
  ]);
});
