/**
 * Shared folders' logic: `--share` parsing, guest path rules, host folder checks against
 * hostile paths (symlinks, FIFOs, files, devvm's own home), the transport choice, QEMU
 * arguments for both transports, and parsing what the guest answers.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import { checkNoOverlap, guestPath, parseShareArg } from '../../src/shared/shares';
import { MACHINE_LAYOUT, qemuArgs, type QemuSpec } from '../../src/helper/qemu/args';
import { checkHostFolder, chooseTransport, shareTransport } from '../../src/helper/shares/host';
import { virtiofsdArgs } from '../../src/helper/qemu/virtiofsd';
import { mountArgs, parseHolders, parseMounts } from '../../src/helper/vm/shareguest';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-shares-unit-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const home = path.join(tmp, 'devvm-home');
mkdirSync(home);

const code = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof DevvmError, String(e));
    assert.ok(!e.message.includes('\n'));
    return e.code;
  }
  return 'ok';
};

test('--share HOSTDIR[:GUESTDIR][:ro]: relative host dirs resolve in the client, ro/rw suffix, bad forms refused', () => {
  const r = (p: string) => path.resolve('/work', p);
  assert.deepEqual(parseShareArg('proj', r), { hostPath: '/work/proj', readOnly: false });
  assert.deepEqual(parseShareArg('/src:/mnt/src', r), { hostPath: '/src', guestPath: '/mnt/src', readOnly: false });
  assert.deepEqual(parseShareArg('/src:/mnt/src:ro', r), { hostPath: '/src', guestPath: '/mnt/src', readOnly: true });
  assert.deepEqual(parseShareArg('/src:ro', r), { hostPath: '/src', readOnly: true });
  assert.deepEqual(parseShareArg('/src:rw', r), { hostPath: '/src', readOnly: false });
  for (const bad of ['', ':', '/a:/b:/c', '/a::ro', '/a:relative', '/a:/etc', '/a:/b/../c']) assert.equal(code(() => parseShareArg(bad, r)), 'invalid-argument', bad);
});

test('guest paths: absolute, plain, never a system path or the user\'s home itself', () => {
  for (const ok of ['/mnt/src', '/home/dev/src', '/tmp/x', '/var/www', '/work/my project', '/opt/app']) assert.equal(guestPath(ok, 'dev'), ok);
  for (const bad of ['/', '/proc', '/proc/1', '/sys/x', '/dev', '/dev/shm', '/etc', '/etc/ssh', '/usr', '/usr/local', '/boot', '/run', '/run/user', '/var', '/home', '/home/dev', '/root', '/tmp', '/lib', '/bin',
    'relative', '', '/a//b', '/a/./b', '/a/../b', '/a/', '/a\nb', '/a*', '/a[1]', '/a?', '/a\\b', 'x'.repeat(2000)]) {
    assert.equal(code(() => guestPath(bad, 'dev')), 'invalid-argument', JSON.stringify(bad));
  }
  assert.equal(code(() => guestPath(42)), 'invalid-argument');
});

test('no guest path twice or nested in another, no host folder twice', () => {
  const have = [{ hostPath: '/h/a', guestPath: '/mnt/a' }];
  assert.equal(code(() => checkNoOverlap({ hostPath: '/h/b', guestPath: '/mnt/b' }, have)), 'ok');
  assert.equal(code(() => checkNoOverlap({ hostPath: '/h/b', guestPath: '/mnt/a' }, have)), 'already-exists');
  assert.equal(code(() => checkNoOverlap({ hostPath: '/h/b', guestPath: '/mnt/a/sub' }, have)), 'already-exists');
  assert.equal(code(() => checkNoOverlap({ hostPath: '/h/b', guestPath: '/mnt' }, have)), 'already-exists');
  assert.equal(code(() => checkNoOverlap({ hostPath: '/h/a', guestPath: '/mnt/c' }, have)), 'already-exists');
  assert.equal(code(() => checkNoOverlap({ hostPath: '/h/b', guestPath: '/mnt/ab' }, have)), 'ok', 'a sibling sharing a prefix is not nested');
});

test('host folders: real directories only; symlinks are resolved and the real path recorded', () => {
  const dir = path.join(tmp, 'proj');
  mkdirSync(dir);
  assert.equal(checkHostFolder(dir, home), dir);
  const link = path.join(tmp, 'link');
  symlinkSync(dir, link);
  assert.equal(checkHostFolder(link, home), dir, 'the link is followed and its target recorded');
  writeFileSync(path.join(tmp, 'file'), 'x');
  assert.equal(code(() => checkHostFolder(path.join(tmp, 'file'), home)), 'invalid-argument');
  symlinkSync(path.join(tmp, 'file'), path.join(tmp, 'link-to-file'));
  assert.equal(code(() => checkHostFolder(path.join(tmp, 'link-to-file'), home)), 'invalid-argument');
  execFileSync('mkfifo', [path.join(tmp, 'fifo')]);
  assert.throws(() => checkHostFolder(path.join(tmp, 'fifo'), home), /is a FIFO/);
  assert.equal(code(() => checkHostFolder(path.join(tmp, 'missing'), home)), 'not-found');
  symlinkSync(path.join(tmp, 'nowhere'), path.join(tmp, 'dangling'));
  assert.equal(code(() => checkHostFolder(path.join(tmp, 'dangling'), home)), 'not-found');
  assert.equal(code(() => checkHostFolder('/dev/null', home)), 'invalid-argument');
  assert.equal(code(() => checkHostFolder('relative/dir', home)), 'invalid-argument');
  assert.equal(code(() => checkHostFolder(`${dir}/../proj`, home)), 'invalid-argument', 'not a plain path');
});

test('host folders: never a system folder, devvm\'s home, inside it or holding it, and no comma (QEMU option syntax)', () => {
  for (const sys of ['/', '/etc', '/usr', '/proc', '/dev', '/root']) assert.equal(code(() => checkHostFolder(sys, home)), 'invalid-argument', sys);
  mkdirSync(path.join(home, 'vms', 'x'), { recursive: true });
  assert.equal(code(() => checkHostFolder(home, home)), 'invalid-argument');
  assert.equal(code(() => checkHostFolder(path.join(home, 'vms', 'x'), home)), 'invalid-argument');
  assert.equal(code(() => checkHostFolder(tmp, home)), 'invalid-argument', 'a parent of devvm home');
  symlinkSync(path.join(home, 'vms'), path.join(tmp, 'sneaky'));
  assert.equal(code(() => checkHostFolder(path.join(tmp, 'sneaky'), home)), 'invalid-argument', 'a link into devvm home');
  mkdirSync(path.join(tmp, 'a,b'));
  assert.equal(code(() => checkHostFolder(path.join(tmp, 'a,b'), home)), 'invalid-argument');
  mkdirSync(path.join(tmp, 'c,d'));
  symlinkSync(path.join(tmp, 'c,d'), path.join(tmp, 'plain'));
  assert.equal(code(() => checkHostFolder(path.join(tmp, 'plain'), home)), 'invalid-argument', 'a link to a path with a comma');
});

test('transport: virtiofs when virtiofsd can run (root + C daemon, or a Rust one), 9p otherwise; read-only shares on 9p', () => {
  const c = '/usr/lib/qemu/virtiofsd';
  const root = chooseTransport({ uid: 0, cVirtiofsd: c, rustVirtiofsd: null });
  assert.equal(root.transport, 'virtiofs');
  assert.equal(root.virtiofsd, c);
  assert.equal(shareTransport(root, false), 'virtiofs');
  assert.equal(shareTransport(root, true), '9p', 'the C virtiofsd has no read-only mode: QEMU keeps a 9p export read-only');
  const user = chooseTransport({ uid: 1000, cVirtiofsd: c, rustVirtiofsd: null });
  assert.equal(user.transport, '9p');
  assert.match(user.reason, /needs root/);
  assert.equal(chooseTransport({ uid: 1000, cVirtiofsd: null, rustVirtiofsd: '/usr/bin/virtiofsd' }).virtiofsd, '/usr/bin/virtiofsd');
  assert.match(chooseTransport({ uid: 1000, cVirtiofsd: null, rustVirtiofsd: null }).reason, /no virtiofsd installed/);
  assert.equal(chooseTransport({ uid: 0, cVirtiofsd: c, rustVirtiofsd: null, forced: '9p' }).transport, '9p');
  assert.equal(chooseTransport({ uid: 1000, cVirtiofsd: null, rustVirtiofsd: null, forced: 'virtiofs' }).transport, '9p');
});

const spec: QemuSpec = {
  name: 'dev', accel: 'tcg', cpus: 2, memoryMiB: 1024,
  disks: { base: { file: '/img/disk.qcow2', format: 'qcow2' }, cache: '/vm/cache.qcow2', layers: [{ id: 'l1', file: '/pool/l1.qcow2' }] },
  kernel: null, initrd: null, seed: null, sshPort: 40022, mac: '52:54:00:12:34:56', display: null,
  qmpSocket: '/vm/qmp.sock', serialSocket: '/vm/serial.sock', serialLog: '/vm/serial.log', pidFile: '/vm/pid', agentSocket: '/vm/qga.sock',
};
const after2 = (args: string[], flag: string) => args.filter((_, i) => args[i - 1] === flag);

test('QEMU args without shares are unchanged (old RAM states keep their machine); layout not bumped', () => {
  const a = qemuArgs(spec);
  assert.equal(a.filter((x) => /memory-backend|fsdev|9p|vhost-user-fs|fs0/.test(x)).length, 0);
  assert.equal(after2(a, '-machine')[0], 'q35');
  assert.equal(MACHINE_LAYOUT, 3);
});

test('QEMU args, 9p: -fsdev local with an escaped path, readonly=on for read-only shares, fixed slots', () => {
  const a = qemuArgs({ ...spec, ninep: [{ tag: 'devvm0', hostPath: '/h/src', readOnly: false }, { tag: 'devvm1', hostPath: '/h/a,b=c', readOnly: true }], root: true });
  assert.deepEqual(after2(a, '-fsdev'), ['local,id=fsd-devvm0,path=/h/src,security_model=passthrough', 'local,id=fsd-devvm1,path=/h/a,,b=c,security_model=passthrough,readonly=on']);
  const dev = after2(a, '-device').filter((d) => d.startsWith('virtio-9p-pci'));
  assert.deepEqual(dev, ['virtio-9p-pci,fsdev=fsd-devvm0,mount_tag=devvm0,id=devvm0,addr=0x8', 'virtio-9p-pci,fsdev=fsd-devvm1,mount_tag=devvm1,id=devvm1,addr=0x9']);
  assert.match(after2(qemuArgs({ ...spec, ninep: [{ tag: 'devvm0', hostPath: '/h', readOnly: false }] }), '-fsdev')[0]!, /security_model=none/, 'not root: QEMU cannot chown');
  assert.throws(() => qemuArgs({ ...spec, ninep: [{ tag: 'x,y', hostPath: '/h', readOnly: false }] }), /bad share tag/);
});

test('QEMU args, virtiofs: shared memfd RAM, share root ports, a vhost-user-fs device per share on its port', () => {
  const a = qemuArgs({ ...spec, sharedMemory: true, virtiofs: [{ tag: 'devvm0', socket: '/vm/fs-devvm0.sock', port: 'fs0' }] });
  assert.equal(after2(a, '-machine')[0], 'q35,memory-backend=ram0');
  assert.deepEqual(after2(a, '-object'), ['memory-backend-memfd,id=ram0,size=1024M,share=on']);
  const devices = after2(a, '-device');
  assert.deepEqual(devices.filter((d) => d.startsWith('pcie-root-port,id=fs')), ['pcie-root-port,id=fs0,chassis=5,addr=14', 'pcie-root-port,id=fs1,chassis=6,addr=15', 'pcie-root-port,id=fs2,chassis=7,addr=16', 'pcie-root-port,id=fs3,chassis=8,addr=17']);
  assert.equal(devices.filter((d) => /^pcie-root-port,id=hp/.test(d)).length, 4, 'the disks keep their four hot-plug ports');
  assert.ok(devices.indexOf('vhost-user-fs-pci,chardev=fsc-devvm0,tag=devvm0,id=devvm0,bus=fs0') > devices.indexOf('pcie-root-port,id=fs0,chassis=5,addr=14'));
  assert.ok(after2(a, '-chardev').includes('socket,id=fsc-devvm0,path=/vm/fs-devvm0.sock'));
  assert.throws(() => qemuArgs({ ...spec, virtiofs: [{ tag: 'devvm0', socket: '/s', port: 'fs0' }] }), /shared memory/);
  assert.throws(() => qemuArgs({ ...spec, sharedMemory: true, virtiofs: [{ tag: 'devvm0', socket: '/s', port: 'hp0' }] }), /bad virtiofs/);
});

test('virtiofsd arguments: C daemon (root, per-request uid switch) and Rust daemon unprivileged (no sandbox)', () => {
  assert.deepEqual(virtiofsdArgs('/usr/lib/qemu/virtiofsd', false, '/vm/fs-devvm0.sock', '/h/src', true), ['--socket-path=/vm/fs-devvm0.sock', '-o', 'source=/h/src', '-o', 'cache=auto', '-o', 'sandbox=namespace', '-o', 'no_posix_lock', '-o', 'log_level=warn']);
  assert.deepEqual(virtiofsdArgs('/usr/bin/virtiofsd', true, '/s', '/h', false), ['--socket-path=/s', '--shared-dir=/h', '--cache=auto', '--sandbox=none']);
});

test('mount options: virtiofs and 9p, ro on the mount too', () => {
  assert.deepEqual(mountArgs('virtiofs', 'devvm0', '/mnt/a', false), ['-t', 'virtiofs', 'devvm0', '/mnt/a']);
  assert.deepEqual(mountArgs('virtiofs', 'devvm0', '/mnt/a', true), ['-t', 'virtiofs', '-o', 'ro', 'devvm0', '/mnt/a']);
  assert.match(mountArgs('9p', 'devvm1', '/mnt/b', true).join(' '), /^-t 9p -o trans=virtio,version=9p2000\.L,msize=\d+,access=user,cache=mmap,ro devvm1 \/mnt\/b$/);
});

test('what the guest answers: /proc/mounts (escaped paths, only devvm tags) and open-file holders', () => {
  const m = parseMounts('/dev/vda / ext4 rw 0 0\ndevvm0 /work/my\\040project virtiofs rw 0 0\ndevvm1 /mnt/ro 9p ro,trans=virtio 0 0\nother /x virtiofs rw 0 0\n');
  assert.deepEqual([...m], [['devvm0', '/work/my project'], ['devvm1', '/mnt/ro']]);
  assert.deepEqual(parseHolders('412\ttail\t/mnt/a/f.txt\n412\ttail\t/mnt/a\ngarbage\n77\tbash\t/mnt/a\n'), [{ pid: 412, comm: 'tail', path: '/mnt/a/f.txt' }, { pid: 77, comm: 'bash', path: '/mnt/a' }]);
});
