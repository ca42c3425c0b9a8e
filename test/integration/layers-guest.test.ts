/**
 * Layers on a real Debian guest: live snapshots (disk only and with RAM), restore,
 * a clone of a running VM running beside it with its own identity, disks hot-plugged
 * from a file (virtio and USB storage) and over NBD, and a snapshot exported over NBD.
 * One booted source VM is shared by every test, in order.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { debianImage, Sandbox, waitFor } from './harness';

const sb = new Sandbox('layers');
const work = `${sb.home}-work`;
const dataDisk = path.join(work, 'data.raw');
let payloadSum = '';
let nbd: ChildProcess | null = null;

const out = (vm: string, cmd: string) => {
  const r = sb.ssh(vm, [cmd]);
  assert.equal(r.code, 0, `${vm}: ${cmd}: ${r.stderr}`);
  return r.stdout.trim();
};

before(() => {
  debianImage(sb);
  // A small ext4 disk image with a random payload, made on the host.
  mkdirSync(path.join(work, 'root'), { recursive: true });
  const payload = Buffer.alloc(2 << 20);
  for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);
  writeFileSync(path.join(work, 'root', 'payload.bin'), payload);
  payloadSum = createHash('sha256').update(payload).digest('hex');
  assert.equal(spawnSync('mkfs.ext4', ['-q', '-d', path.join(work, 'root'), dataDisk, '32M']).status, 0);
  sb.ok(['create', 'src', '--image', 'debian-12', '--user', 'alice', '--memory', '1024', '--start', '--wait-ssh']);
});

after(() => {
  nbd?.kill('SIGKILL');
  sb.cleanup();
  spawnSync('rm', ['-rf', work]);
});

test('a disk-only snapshot is live and a RAM snapshot brings processes back; restore returns to each', () => {
  out('src', 'echo one > ~/before.txt && sync');
  const pid = sb.ssh('src', ['nohup sleep 100000 >/dev/null 2>&1 & echo $!']).stdout.trim();
  const qemuPid = sb.json<{ pid: number }>(['info', 'src']).pid;
  sb.ok(['snapshot', 'src', 'disk1']);
  assert.equal(sb.json<{ pid: number }>(['info', 'src']).pid, qemuPid, 'the VM kept running');
  out('src', 'echo two > ~/after.txt && sync');
  const boot = out('src', 'cat /proc/sys/kernel/random/boot_id');
  const up = parseFloat(out('src', 'cat /proc/uptime'));
  sb.ok(['snapshot', 'src', 'ram1', '--ram']);
  out('src', 'echo three > ~/late.txt && sync');

  const snaps = sb.json<Array<{ name: string; ram: boolean }>>(['snapshots', 'src']);
  assert.deepEqual(snaps.map((s) => [s.name, s.ram]), [['disk1', false], ['ram1', true]]);

  sb.ok(['restore', 'src', 'ram1']);
  assert.equal(sb.json<{ state: string }>(['info', 'src']).state, 'running');
  assert.equal(out('src', 'ls ~ | tr "\\n" " "'), 'after.txt before.txt');
  assert.equal(out('src', 'cat /proc/sys/kernel/random/boot_id'), boot, 'same boot');
  assert.ok(parseFloat(out('src', 'cat /proc/uptime')) >= up, 'uptime continues');
  assert.equal(sb.ssh('src', ['kill', '-0', pid]).code, 0, 'a process from before the snapshot still runs');

  sb.ok(['restore', 'src', 'disk1']);
  sb.ok(['start', 'src', '--wait-ssh']);
  assert.equal(out('src', 'ls ~ | tr "\\n" " "'), 'before.txt', 'the file written after the snapshot is gone');
  assert.notEqual(out('src', 'cat /proc/sys/kernel/random/boot_id'), boot, 'a disk-only restore boots afresh');

  const info = sb.json<{ layers: Array<{ role: string; snapshots?: string[] }> }>(['info', 'src']);
  assert.deepEqual(info.layers.map((l) => l.role), ['overlay', 'snapshot', 'cache', 'base']);
  assert.deepEqual(info.layers[1]!.snapshots, ['disk1']);
});

test('a clone of the running VM boots beside it with its own identity and the same user', async () => {
  out('src', 'echo shared > ~/shared.txt && sync');
  const t0 = Date.now();
  sb.ok(['clone', 'src', 'dst']);
  const cloneMs = Date.now() - t0;
  sb.ok(['start', 'dst', '--wait-ssh']);
  const list = sb.json<Array<{ name: string; state: string; sshPort: number }>>(['list']);
  assert.deepEqual(list.map((v) => [v.name, v.state]), [['dst', 'running'], ['src', 'running']]);
  assert.notEqual(list[0]!.sshPort, list[1]!.sshPort);
  assert.equal(out('dst', 'cat ~/shared.txt'), 'shared');
  assert.equal(out('dst', 'id -un'), 'alice');
  assert.equal(out('dst', 'hostname'), 'dst');
  assert.notEqual(out('dst', 'cat /etc/machine-id'), out('src', 'cat /etc/machine-id'));
  const hostKey = (vm: string) => readFileSync(path.join(sb.home, 'keys', `known_hosts.${vm}`), 'utf8').split(' ')[2];
  assert.notEqual(hostKey('dst'), hostKey('src'));
  assert.notEqual(out('dst', 'cat /sys/class/net/enp0s2/address'), out('src', 'cat /sys/class/net/enp0s2/address'));
  // The pinned key is the one the clone serves (StrictHostKeyChecking=yes in ssh_config).
  assert.match(readFileSync(path.join(sb.home, 'ssh_config'), 'utf8'), /Host devvm-dst[\s\S]*StrictHostKeyChecking yes/);
  // Both share the frozen layer under their overlays.
  const shared = sb.json<Array<{ usedBy: string[] }>>(['layers']).filter((l) => l.usedBy.length === 2);
  assert.ok(shared.length >= 1, 'a frozen layer shared by both');
  process.stdout.write(`# clone of a running VM took ${cloneMs} ms (CLI round trip)\n`);
});

test('a disk image file hot-plugged as virtio and as USB storage: the guest reads it, writes reach the host', async () => {
  const d = sb.json<{ id: string; bus: string }>(['disk', 'attach', 'src', dataDisk, '--format', 'raw']);
  assert.equal(d.bus, 'virtio');
  await waitFor('the guest to see vdb', 60_000, () => sb.ssh('src', ['test', '-b', '/dev/vdb']).code === 0);
  assert.equal(out('src', 'sudo mount /dev/vdb /mnt && sha256sum /mnt/payload.bin | cut -d" " -f1'), payloadSum);
  out('src', 'echo from-virtio | sudo tee /mnt/virtio.txt >/dev/null && sudo umount /mnt');
  sb.ok(['disk', 'detach', 'src', d.id]);

  const u = sb.json<{ id: string; bus: string }>(['disk', 'attach', 'src', dataDisk, '--format', 'raw', '--usb']);
  assert.equal(u.bus, 'usb');
  await waitFor('the guest to see a USB disk', 60_000, () => /sda\s+usb/.test(sb.ssh('src', ['lsblk', '-dno', 'NAME,TRAN']).stdout));
  assert.match(out('src', 'cat /sys/bus/usb/devices/*/product'), /QEMU USB HARDDRIVE/i);
  assert.equal(out('src', 'sudo mount /dev/sda /mnt && cat /mnt/virtio.txt && sha256sum /mnt/payload.bin | cut -d" " -f1'), `from-virtio\n${payloadSum}`);
  out('src', 'echo from-usb | sudo tee /mnt/usb.txt >/dev/null && sudo umount /mnt');
  sb.ok(['disk', 'detach', 'src', u.id]);
  assert.equal(spawnSync('debugfs', ['-R', 'cat /usb.txt', dataDisk], { encoding: 'utf8' }).stdout.trim(), 'from-usb');
});

test('NBD: a disk attached from nbd:// reads back exactly; a snapshot exported over NBD mounts in the clone', async () => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  nbd = spawn('qemu-nbd', ['--read-only', '--persistent', '--bind=127.0.0.1', `--port=${port}`, '--export-name=data', '--format=raw', dataDisk], { stdio: 'ignore' });
  await waitFor('qemu-nbd to listen', 10_000, () => spawnSync('qemu-img', ['info', `nbd://127.0.0.1:${port}/data`]).status === 0);
  const d = sb.json<{ id: string }>(['disk', 'attach', 'src', `nbd://127.0.0.1:${port}/data`, '--read-only']);
  await waitFor('the guest to see vdb', 60_000, () => sb.ssh('src', ['test', '-b', '/dev/vdb']).code === 0);
  const hostSum = createHash('sha256').update(readFileSync(dataDisk)).digest('hex');
  assert.equal(out('src', 'sudo sha256sum /dev/vdb | cut -d" " -f1'), hostSum, 'the whole device matches the served file');
  sb.ok(['disk', 'detach', 'src', d.id]);

  // A private export by default: a 0600 unix socket in the VM's directory, which the clone's QEMU reads.
  const e = sb.json<{ uri: string }>(['disk', 'export', 'src', 'disk1']);
  assert.match(e.uri, /^nbd\+unix:\/\/\/src-disk1\?socket=\/.*\/vms\/src\/nbd\.sock$/);
  assert.equal(statSync(path.join(sb.home, 'vms', 'src', 'nbd.sock')).mode & 0o777, 0o600);
  const x = sb.json<{ id: string }>(['disk', 'attach', 'dst', e.uri, '--read-only']);
  // The clone still has its first-boot seed as vdb: find the exported disk by its size.
  const dev = await waitFor('the clone to see the exported disk', 60_000, () => /^(vd[b-z])\s+20G$/m.exec(sb.ssh('dst', ['lsblk', '-dno', 'NAME,SIZE']).stdout)?.[1]);
  assert.equal(out('dst', `sudo mount -o ro,noload /dev/${dev} /mnt && cat /mnt/home/alice/before.txt && sudo umount /mnt`), 'one');
  sb.ok(['disk', 'detach', 'dst', x.id]);
  sb.ok(['disk', 'unexport', 'src']);
});

test('deleting snapshots and VMs frees layers nothing uses; what is used stays', () => {
  sb.ok(['snapshot', 'src', 'ram1', '--delete']);
  sb.ok(['snapshot', 'src', 'disk1', '--delete']);
  assert.deepEqual(sb.json<unknown[]>(['snapshots', 'src']), []);
  sb.ok(['stop', 'dst', '--force']);
  sb.ok(['delete', 'dst']);
  const layers = sb.json<Array<{ id: string; usedBy: string[] }>>(['layers']);
  assert.ok(layers.every((l) => l.usedBy.includes('src')), `only src's chain is left: ${JSON.stringify(layers)}`);
  sb.ok(['stop', 'src']);
  for (const l of layers) {
    const r = spawnSync('qemu-img', ['check', path.join(sb.home, 'layers', `${l.id}.qcow2`)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  }
});
