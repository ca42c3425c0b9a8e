import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KERNEL_CMDLINE, MACHINE_LAYOUT, optValue, qemuArgs, randomMac, type QemuSpec } from '../../src/helper/qemu/args';

const spec: QemuSpec = {
  name: 'dev',
  accel: 'tcg',
  cpus: 2,
  memoryMiB: 1024,
  disks: { base: { file: '/img/disk.qcow2', format: 'qcow2' }, cache: '/vm/cache.qcow2', layers: [{ id: 'l000000000001', file: '/pool/l000000000001.qcow2' }, { id: 'l000000000002', file: '/pool/l000000000002.qcow2' }] },
  kernel: '/img/vmlinuz',
  initrd: '/img/initrd.img',
  seed: '/vm/seed.iso',
  sshPort: 40022,
  mac: '52:54:00:12:34:56',
  display: null,
  qmpSocket: '/vm/qmp.sock',
  serialSocket: '/vm/serial.sock',
  serialLog: '/vm/serial.log',
  pidFile: '/vm/pid',
  agentSocket: '/vm/qga.sock',
};

const after = (args: string[], flag: string) => args.filter((_, i) => args[i - 1] === flag);

test('every layer is an explicit blockdev node, chained overlay -> snapshot -> copy-on-read(cache) -> base', () => {
  const nodes = after(qemuArgs(spec), '-blockdev').map((j) => JSON.parse(j) as Record<string, unknown>);
  const byName = new Map(nodes.map((n) => [n['node-name'], n]));
  assert.equal(byName.get('base')?.['read-only'], true);
  assert.equal(byName.get('base-file')?.['read-only'], true);
  assert.equal(byName.get('cache')?.backing, 'base');
  assert.deepEqual(byName.get('cache-cor'), { driver: 'copy-on-read', file: 'cache', 'node-name': 'cache-cor' });
  assert.equal(byName.get('l000000000001')?.backing, 'cache-cor');
  assert.equal(byName.get('l000000000001')?.['read-only'], true, 'frozen layers are opened read-only');
  assert.equal(byName.get('l000000000002')?.backing, 'l000000000001');
  assert.equal(byName.get('l000000000002')?.['read-only'], undefined);
  assert.equal(byName.get('seed')?.['read-only'], true);
  const devices = after(qemuArgs(spec), '-device');
  assert.ok(devices.includes('virtio-blk-pci,drive=l000000000002,id=disk0,addr=0x3'));
  assert.equal(devices.filter((d) => d.startsWith('pcie-root-port,')).length, 4, 'root ports for disk hot-plug');
});

test('SSH is forwarded on loopback only; sockets and logs where given', () => {
  const a = qemuArgs(spec);
  assert.deepEqual(after(a, '-netdev'), ['user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22']);
  assert.deepEqual(after(a, '-qmp'), ['unix:/vm/qmp.sock,server=on,wait=off']);
  assert.match(after(a, '-chardev')[0]!, /path=\/vm\/serial\.sock,.*logfile=\/vm\/serial\.log/);
  assert.deepEqual(after(a, '-pidfile'), ['/vm/pid']);
});

test('SSH disabled: no port forward at all', () => {
  assert.deepEqual(after(qemuArgs({ ...spec, sshPort: null }), '-netdev'), ['user,id=net0']);
});

test('no seed after first setup; no kernel means firmware boot', () => {
  const a = qemuArgs({ ...spec, seed: null, kernel: null, initrd: null });
  assert.ok(!a.join(' ').includes('seed'));
  assert.ok(!a.includes('-kernel') && !a.includes('-append'));
});

test('accelerator picks the CPU model', () => {
  const tcg = qemuArgs(spec);
  assert.deepEqual([after(tcg, '-accel')[0], after(tcg, '-cpu')[0]], ['tcg,thread=multi', 'max']);
  const kvm = qemuArgs({ ...spec, accel: 'kvm' });
  assert.deepEqual([after(kvm, '-accel')[0], after(kvm, '-cpu')[0]], ['kvm', 'host']);
});

test('kernel command line boots root on vda with a serial console', () => {
  const a = qemuArgs(spec);
  assert.deepEqual(after(a, '-append'), [`${KERNEL_CMDLINE} cloud-init=enabled`], 'the cloud-init path (no provision given) enables it');
  assert.match(KERNEL_CMDLINE, /root=\/dev\/vda/);
  assert.match(KERNEL_CMDLINE, /console=ttyS0/);
});

test('MACs are locally administered QEMU addresses', () => {
  assert.equal(randomMac(Buffer.from([1, 0xab, 0xff])), '52:54:00:01:ab:ff');
});

test('a remote base is an nbd protocol node under the same base format node', () => {
  const remote = { ...spec, disks: { ...spec.disks, base: { file: 'nbd://127.0.0.1:10809/base', format: 'raw' } } };
  const nodes = after(qemuArgs(remote), '-blockdev').map((j) => JSON.parse(j) as Record<string, unknown>);
  const byName = new Map(nodes.map((n) => [n['node-name'], n]));
  assert.deepEqual(byName.get('base-file'), { driver: 'nbd', 'node-name': 'base-file', server: { type: 'inet', host: '127.0.0.1', port: '10809' }, export: 'base', 'read-only': true });
  assert.deepEqual(byName.get('base'), { driver: 'raw', file: 'base-file', 'node-name': 'base', 'read-only': true });
});

test('paths in QEMU option strings have their commas doubled, so a DEVVM_HOME with "," cannot add options', () => {
  const home = '/home/a,b/x,server=off';
  const a = qemuArgs({ ...spec, qmpSocket: `${home}/qmp.sock`, serialSocket: `${home}/serial.sock`, serialLog: `${home}/serial.log`, incoming: true });
  assert.deepEqual(after(a, '-qmp'), ['unix:/home/a,,b/x,,server=off/qmp.sock,server=on,wait=off']);
  const chardev = after(a, '-chardev')[0]!;
  assert.equal(chardev, 'socket,id=serial0,path=/home/a,,b/x,,server=off/serial.sock,server=on,wait=off,logfile=/home/a,,b/x,,server=off/serial.log,logappend=on');
  // Split as QEMU does (",," is a literal comma): the options are exactly these.
  const keys = chardev.replace(/,,/g, '\u0000').split(',').map((kv) => kv.split('=')[0]);
  assert.deepEqual(keys, ['socket', 'id', 'path', 'server', 'wait', 'logfile', 'logappend']);
  assert.deepEqual(after(a, '-incoming'), ['defer']);
  assert.equal(optValue('a,b'), 'a,,b');
});

test('every VM has the guest agent channel: virtio-serial on a free fixed slot, the port name qemu-guest-agent looks for, a socket chardev', () => {
  const a = qemuArgs(spec);
  const devices = after(a, '-device');
  assert.ok(devices.includes('virtio-serial-pci,id=vserial0,addr=0x7'));
  assert.ok(devices.includes('virtserialport,bus=vserial0.0,chardev=qga0,name=org.qemu.guest_agent.0'));
  assert.ok(after(a, '-chardev').includes('socket,id=qga0,path=/vm/qga.sock,server=on,wait=off'));
  // Fixed slots never collide: 0x1 display, 0x2 NIC, 0x3 disk, 0x4 seed, 0x5 rng, 0x6 xhci, 0x7 agent, 0x10-0x13 root ports.
  const slots = qemuArgs({ ...spec, display: { width: 1024, height: 768 }, vncSocket: '/vm/vnc.sock' })
    .filter((x) => /(^|,)addr=/.test(x))
    .map((x) => /addr=(0x)?([0-9a-f]+)/.exec(x)![2]!);
  assert.equal(new Set(slots).size, slots.length, `distinct PCI slots: ${slots.join(' ')}`);
  assert.ok(slots.includes('7'));
});

test('the agent socket is escaped too: a "," in its path cannot add chardev options', () => {
  const a = qemuArgs({ ...spec, agentSocket: '/h/a,b/x,server=off/qga.sock' });
  const chardev = after(a, '-chardev').find((c) => c.includes('id=qga0'))!;
  assert.equal(chardev, 'socket,id=qga0,path=/h/a,,b/x,,server=off/qga.sock,server=on,wait=off');
  const keys = chardev.replace(/,,/g, '\u0000').split(',').map((kv) => kv.split('=')[0]);
  assert.deepEqual(keys, ['socket', 'id', 'path', 'server', 'wait']);
});

test('the machine layout changed with the agent channel: RAM states saved before it no longer match', () => {
  assert.equal(MACHINE_LAYOUT, 3);
});
