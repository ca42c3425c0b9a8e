/** The Dev VMs views' model, computed from RPC data (src/extension/model.ts, no vscode). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bytes as formatBytes, date as formatDate, layerTreeText } from '../../src/shared/format';
import { deleteDetail, diskItem, normalizeInfo, diskLabel, groupChildren, groupItem, imageItem, layerItem, nbdUriProblem, nextFreeName, portItem, restoreDetail, snapshotItem, sshCommand, statusText, usbItem, vmItem } from '../../src/extension/model';
import { remoteFolderUri, remotePathUri, preferredRemoteSsh, installedRemoteSsh, vmFromRemoteAuthority } from '../../src/extension/remote';
import type { HostUsbDevice, ImageInfo, LayerNode, SnapshotInfo, VmInfo, VmSummary } from '../../src/shared/types';

const summary = (over: Partial<VmSummary> = {}): VmSummary => ({
  name: 'web',
  state: 'running',
  image: 'debian-12',
  user: 'alice',
  sshHost: 'devvm-web',
  sshPort: 2201,
  cpus: 2,
  memoryMiB: 2048,
  ...over,
});

const GiB = 1024 ** 3;
const info = (over: Partial<VmInfo> = {}): VmInfo => ({
  ...summary(),
  diskGiB: 20,
  fullName: 'Alice Example',
  autologin: false,
  ssh: true,
  provisioned: true,
  accelerator: 'tcg',
  pid: 123,
  shares: [],
  ports: [],
  dir: '/home/u/.local/share/devvm/vms/web',
  serialLog: '/home/u/.local/share/devvm/vms/web/serial.log',
  createdAt: '2026-01-01T00:00:00Z',
  layers: [
    { role: 'overlay', file: '/d/vms/web/overlay.qcow2', format: 'qcow2', virtualSize: 20 * GiB, actualSize: 300 * 1024 ** 2, readOnly: false, sharedBy: ['web'] },
    { role: 'cache', file: '/d/vms/web/cache.qcow2', format: 'qcow2', virtualSize: 4 * GiB, actualSize: 64 * 1024 ** 2, readOnly: false, sharedBy: ['web'] },
    { role: 'base', file: '/d/images/debian-12/disk.qcow2', format: 'qcow2', virtualSize: 4 * GiB, actualSize: 800 * 1024 ** 2, readOnly: true, sharedBy: ['api', 'web'] },
  ],
  snapshots: [],
  disks: [],
  usb: [],
  ...over,
});

test('formatBytes: binary units, one decimal under 10', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(20 * GiB), '20 GiB');
  assert.equal(formatBytes(1.25 * GiB), '1.3 GiB');
  assert.equal(formatBytes(-1), '?');
});

test('a running VM: green icon, SSH port in the description, context value with state and ssh', () => {
  const it = vmItem(summary());
  assert.equal(it.label, 'web');
  assert.equal(it.description, 'running · 2 vCPU · 2 GiB · ssh :2201');
  assert.deepEqual(it.icon, { id: 'vm-running', color: 'charts.green' });
  assert.equal(it.contextValue, 'vm.running.ssh.nodisplay');
  assert.equal(it.collapsible, 'collapsed');
  assert.match(it.tooltip, /ssh devvm-web/);
});

test('state icons: spinning while busy, plain when stopped, no port when not running', () => {
  for (const state of ['creating', 'starting', 'stopping', 'suspending'] as const) assert.equal(vmItem(summary({ state })).icon?.id, 'loading~spin');
  const stopped = vmItem(summary({ state: 'stopped' }));
  assert.equal(stopped.icon?.id, 'vm-outline');
  assert.doesNotMatch(stopped.description ?? '', /ssh/);
  assert.equal(vmItem(summary({ sshPort: null, state: 'stopped' })).contextValue, 'vm.stopped.nossh.nodisplay');
});

test('a provisioning error shows as a warning with the message, escaped for Markdown', () => {
  const it = vmItem(summary({ error: 'first-user setup failed: *bad* [x](y)' }));
  assert.equal(it.icon?.id, 'warning');
  assert.match(it.tooltip, /\\\*bad\\\* \\\[x\\\]\\\(y\\\)/);
});

test('VM children: disk layers top to bottom from vm/info, shared base marked', () => {
  const s = summary();
  const i = info();
  assert.deepEqual(groupChildren(s, 'layers', undefined), [{ kind: 'note', vm: 'web', group: 'layers', text: 'Loading…' }]);
  const nodes = groupChildren(s, 'layers', i);
  assert.deepEqual(nodes.map((n) => n.kind === 'layer' && n.index), [0, 1, 2]);
  const items = i.layers.map((l, k) => layerItem('web', l, k));
  assert.deepEqual(items.map((x) => x.label), ['overlay', 'cache', 'base']);
  assert.equal(items[0]!.description, '300 MiB / 20 GiB');
  assert.equal(items[2]!.description, '800 MiB / 4 GiB · read-only · shared with 1 other VM');
  assert.equal(items[2]!.contextValue, 'layer.base.shared');
  assert.match(items[2]!.tooltip, /Used by: api, web/);
  assert.equal(groupItem(s, 'layers', i).description, '3 · 1.1 GiB on disk');
  assert.equal(groupItem(s, 'layers', i).contextValue, 'group.layers.running');
});

test('VM children: ports, and placeholders for snapshots, disks and USB', () => {
  assert.deepEqual(groupChildren(summary(), 'ports', undefined), [{ kind: 'port', vm: 'web' }]);
  assert.equal(portItem(summary())?.label, '22 → 127.0.0.1:2201', 'guest port first, as every forward reads');
  assert.equal(portItem(summary({ state: 'stopped' }))?.description, 'ssh · when running');
  assert.equal(portItem(summary({ sshPort: null })), null);
  assert.deepEqual(groupChildren(summary({ sshPort: null }), 'ports', undefined), [{ kind: 'note', vm: 'web', group: 'ports', text: 'No forwarded ports (SSH is off)' }]);
  assert.deepEqual(groupChildren(summary(), 'snapshots', undefined), [{ kind: 'note', vm: 'web', group: 'snapshots', text: 'Loading…' }]);
  assert.deepEqual(groupChildren(summary(), 'snapshots', info()), [{ kind: 'note', vm: 'web', group: 'snapshots', text: 'No snapshots' }]);
  assert.deepEqual(groupChildren(summary(), 'usb', info()), [{ kind: 'note', vm: 'web', group: 'usb', text: 'No USB devices attached' }]);
  assert.deepEqual(groupChildren(summary(), 'disks', info()), [{ kind: 'note', vm: 'web', group: 'disks', text: 'No disks attached' }]);
  assert.deepEqual(groupChildren(summary({ state: 'stopped' }), 'disks', info({ state: 'stopped' })), [{ kind: 'note', vm: 'web', group: 'disks', text: 'Disks can be attached while the VM runs' }]);
  assert.equal(groupItem(summary(), 'snapshots', info()).description, '0');
  assert.equal(groupItem(summary(), 'usb', info()).description, undefined);
});

const snaps: SnapshotInfo[] = [
  { name: 'later', layer: 'l2', ram: true, createdAt: '2026-02-01T10:30:00Z' },
  { name: 'clean', layer: 'l1', ram: false, createdAt: '2026-01-15T08:00:00Z' },
];

test('snapshots: listed oldest first from vm/info, RAM badge, date, context value per kind', () => {
  const nodes = groupChildren(summary(), 'snapshots', info({ snapshots: snaps }));
  assert.deepEqual(nodes, [
    { kind: 'snapshot', vm: 'web', name: 'clean' },
    { kind: 'snapshot', vm: 'web', name: 'later' },
  ]);
  const ram = snapshotItem('web', snaps[0]!);
  assert.equal(ram.label, 'later');
  assert.match(ram.description ?? '', /^RAM · 2026-0[12]-\d\d \d\d:\d\d$/);
  assert.equal(ram.contextValue, 'snapshot.ram');
  assert.equal(ram.id, 'vm:web/snapshots/later');
  assert.match(ram.tooltip, /continues from that moment/);
  const disk = snapshotItem('web', snaps[1]!);
  assert.doesNotMatch(disk.description ?? '', /RAM/);
  assert.equal(disk.contextValue, 'snapshot.disk');
  assert.equal(groupItem(summary(), 'snapshots', info({ snapshots: snaps })).description, '2');
  assert.equal(groupItem(summary(), 'snapshots', info()).contextValue, 'group.snapshots.running');
});

test('formatDate: local "YYYY-MM-DD HH:MM", the text itself when not a date', () => {
  const d = new Date(2026, 0, 5, 7, 3);
  assert.equal(formatDate(d.toISOString()), '2026-01-05 07:03');
  assert.equal(formatDate('garbage'), 'garbage');
});

test('snapshot layers in the Disk layers group: snapshot names and layer id', () => {
  const layer = { role: 'snapshot' as const, file: '/d/layers/abc.qcow2', format: 'qcow2', virtualSize: 20 * GiB, actualSize: 12 * 1024 ** 2, readOnly: true, sharedBy: ['web', 'web-clone'], id: 'abc', snapshots: ['clean'] };
  const it = layerItem('web', layer, 1);
  assert.equal(it.label, 'snapshot');
  assert.equal(it.description, 'clean · 12 MiB / 20 GiB · read-only · shared with 1 other VM');
  assert.match(it.tooltip, /Layer: `abc`/);
  assert.match(it.tooltip, /Snapshots: clean/);
  assert.equal(it.contextValue, 'layer.snapshot.shared');
  const frozen = layerItem('web', { ...layer, snapshots: [], sharedBy: ['web'] }, 1);
  assert.equal(frozen.description, '12 MiB / 20 GiB · read-only');
  assert.match(frozen.tooltip, /kept for a clone or an export/);
});

const usbDev: HostUsbDevice = { id: '1-2.3', busnum: 1, devnum: 7, vendorId: '0781', productId: '5583', manufacturer: 'SanDisk', product: 'Ultra Fit', serial: 'AA01', devnode: '/dev/bus/usb/001/007', attachedTo: 'web' };

test('attached disks and USB devices: listed from vm/info with detach context values', () => {
  const disks = [
    { id: 'disk1', source: '/home/u/data.qcow2', bus: 'virtio' as const, readOnly: false },
    { id: 'disk2', source: 'nbd://127.0.0.1:10809/web-clean', bus: 'virtio' as const, readOnly: true },
    { id: 'disk3', source: '/home/u/stick.img', bus: 'usb' as const, readOnly: false },
  ];
  const i = info({ disks, usb: [usbDev] });
  assert.deepEqual(groupChildren(summary(), 'disks', i).map((n) => n.kind === 'disk' && n.id), ['disk1', 'disk2', 'disk3']);
  assert.deepEqual(groupChildren(summary(), 'usb', i), [{ kind: 'usb', vm: 'web', id: '1-2.3' }]);
  assert.equal(groupItem(summary(), 'disks', i).description, '3');
  assert.equal(groupItem(summary(), 'disks', i).contextValue, 'group.disks.running');
  const [a, b, c] = disks.map((d) => diskItem('web', d));
  assert.equal(a!.label, 'data.qcow2');
  assert.equal(a!.description, 'virtio disk');
  assert.equal(a!.contextValue, 'disk.virtio');
  assert.equal(b!.label, 'nbd://127.0.0.1:10809/web-clean');
  assert.equal(b!.description, 'virtio disk · read-only');
  assert.equal(b!.icon?.id, 'globe');
  assert.equal(c!.description, 'USB storage');
  assert.equal(c!.contextValue, 'disk.usb');
  const u = usbItem('web', usbDev);
  assert.equal(u.label, 'Ultra Fit');
  assert.equal(u.description, '0781:5583 · bus 1-2.3');
  assert.equal(u.contextValue, 'usb.device');
  assert.match(u.tooltip, /SanDisk · 0781:5583 · bus 1\\-2\\\.3 · serial AA01/, 'escaped for Markdown');
  assert.equal(usbItem('web', { ...usbDev, product: undefined }).label, '0781:5583');
  assert.equal(diskLabel('/a/b/c.img'), 'c.img');
});

test('vm/info from an older helper (no snapshots, disks or usb) still lists', () => {
  const old = { ...info() } as Partial<VmInfo>;
  delete old.snapshots;
  delete old.disks;
  delete old.usb;
  const i = normalizeInfo(old as VmInfo);
  assert.deepEqual([i.snapshots, i.disks, i.usb], [[], [], []]);
  assert.equal(groupChildren(summary(), 'snapshots', i)[0]?.kind, 'note');
});

test('names and NBD URIs typed in input boxes', () => {
  assert.equal(nextFreeName('web-clone', ['web']), 'web-clone');
  assert.equal(nextFreeName('web-clone', ['web-clone', 'web-clone-2']), 'web-clone-3');
  assert.equal(nbdUriProblem('nbd://127.0.0.1:10809/web-clean'), undefined);
  assert.equal(nbdUriProblem('nbd://nas.local/export'), undefined);
  assert.equal(nbdUriProblem('nbd://[::1]:10809/x'), undefined);
  assert.match(nbdUriProblem('') ?? '', /enter/);
  assert.match(nbdUriProblem('http://x/y') ?? '', /nbd:\/\/HOST:PORT\/EXPORT/);
  assert.match(nbdUriProblem('nbd://h:70000/x') ?? '', /port must be a number from 1 to 65535/);
  assert.match(nbdUriProblem('nbd://h:1/a b') ?? '', /export name may only hold/);
  // What Export Disk prints by default is accepted where a URI is typed.
  assert.equal(nbdUriProblem('nbd+unix:///web-l1?socket=/home/a/.local/share/devvm/vms/web/nbd.sock'), undefined);
  assert.match(nbdUriProblem('nbd+unix:///x?socket=rel/path') ?? '', /absolute path/);
});

test('restore confirmation: what is lost and what happens to a running or suspended VM', () => {
  const [ram, disk] = snaps;
  assert.match(restoreDetail({ name: 'web', state: 'running' }, disk!), /discarded[\s\S]*boots again from the snapshot/);
  assert.match(restoreDetail({ name: 'web', state: 'running' }, ram!), /continues from the moment/);
  assert.match(restoreDetail({ name: 'web', state: 'stopped' }, ram!), /becomes suspended/);
  assert.match(restoreDetail({ name: 'web', state: 'suspended' }, disk!), /saved RAM state is discarded/);
  assert.doesNotMatch(restoreDetail({ name: 'web', state: 'stopped' }, disk!), /stopped at once|suspended/);
});

test('layer tree text: layers under their image, children indented, snapshots and users', () => {
  const nodes: LayerNode[] = [
    { id: 'b2', parent: 'a1', image: 'debian-12', file: '/d/layers/b2.qcow2', actualSize: 2 * 1024 ** 2, createdAt: '2026-01-02T00:00:00Z', snapshots: ['web/later'], usedBy: ['web'] },
    { id: 'a1', parent: null, image: 'debian-12', file: '/d/layers/a1.qcow2', actualSize: 10 * 1024 ** 2, createdAt: '2026-01-01T00:00:00Z', snapshots: ['web/clean'], usedBy: ['web', 'web-clone'] },
    { id: 'c3', parent: 'a1', image: 'debian-12', file: '/d/layers/c3.qcow2', actualSize: 1024 ** 2, createdAt: '2026-01-03T00:00:00Z', snapshots: [], usedBy: ['web-clone'] },
    { id: 'z9', parent: null, image: 'alpine', file: '/d/layers/z9.qcow2', actualSize: 0, createdAt: '2026-01-01T00:00:00Z', snapshots: [], usedBy: [] },
  ];
  const text = layerTreeText(nodes, '/d/layers');
  const lines = text.split('\n');
  assert.match(lines[0]!, /4 frozen layers, 13 MiB \(\/d\/layers\)/);
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  assert.ok(at(/^alpine \(base image\)$/) < at(/^debian-12 \(base image\)$/), 'images sorted');
  assert.match(lines[at(/a1/)]!, /^└─ a1  10 MiB  .*snapshots: web\/clean  used by: web, web-clone$/);
  assert.match(lines[at(/b2/)]!, /^   ├─ b2 .*snapshots: web\/later  used by: web$/);
  assert.match(lines[at(/c3/)]!, /^   └─ c3 .*used by: web-clone$/);
  assert.match(lines[at(/z9/)]!, /used by: no VM$/);
  assert.match(layerTreeText([], '/d/layers'), /No frozen layers yet/);
  // A parent that is not listed: shown at the root, flagged.
  assert.match(layerTreeText([{ ...nodes[0]!, parent: 'gone' }], '/d/layers'), /^└─ b2 .*parent gone missing$/m);
});

test('images: size, users, and delete only when unused', () => {
  const img: ImageInfo = { name: 'debian-12', file: '/d/images/debian-12/disk.qcow2', format: 'qcow2', virtualSize: 4 * GiB, actualSize: 800 * 1024 ** 2, sha256: 'ab'.repeat(32), kernel: '/d/images/debian-12/vmlinuz', initrd: null, source: 'built locally', createdAt: '', usedBy: ['web', 'api'] };
  assert.equal(imageItem(img).description, '800 MiB · used by 2 VMs');
  assert.equal(imageItem(img).contextValue, 'image.inuse');
  assert.equal(imageItem({ ...img, usedBy: [] }).contextValue, 'image.unused');
});

test('status bar: running count, busy spinner', () => {
  assert.equal(statusText([]).text, '$(vm) 0');
  assert.equal(statusText([summary(), summary({ name: 'b', state: 'stopped' })]).text, '$(vm) 1');
  assert.match(statusText([summary(), summary({ name: 'b', state: 'stopped' })]).tooltip, /1 of 2 running \(web\)/);
  assert.equal(statusText([summary({ state: 'starting' })]).text, '$(loading~spin) 0');
});

test('delete confirmation says what goes and what stays', () => {
  const d = deleteDetail(info());
  assert.match(d, /powered off first/);
  assert.match(d, /vms\/web and everything in it: overlay, cache \(364 MiB\)/);
  assert.match(d, /\/home\/alice/);
  assert.match(d, /base image "debian-12" is kept/);
  assert.doesNotMatch(deleteDetail(info({ state: 'stopped' })), /powered off/);
});

test('ssh command quotes a config path with spaces', () => {
  assert.equal(sshCommand({ sshHost: 'devvm-web' }, '/d/ssh_config'), 'ssh -F /d/ssh_config devvm-web');
  assert.equal(sshCommand({ sshHost: 'devvm-web' }, "/my dir/it's"), `ssh -F '/my dir/it'\\''s' devvm-web`);
});

test('Remote-SSH: exact folder URI, extension per product, connected VM from the authority', () => {
  assert.equal(remoteFolderUri('web', 'alice'), 'vscode-remote://ssh-remote+devvm-web/home/alice');
  assert.equal(remotePathUri('web', '/work/my-repo'), 'vscode-remote://ssh-remote+devvm-web/work/my-repo');
  assert.equal(preferredRemoteSsh('Visual Studio Code', 'vscode'), 'ms-vscode-remote.remote-ssh');
  assert.equal(preferredRemoteSsh('Visual Studio Code - Insiders', 'vscode-insiders'), 'ms-vscode-remote.remote-ssh');
  assert.equal(preferredRemoteSsh('code-server', 'code-oss'), 'jeanp413.open-remote-ssh');
  assert.equal(preferredRemoteSsh('VSCodium', 'vscodium'), 'jeanp413.open-remote-ssh');
  assert.equal(installedRemoteSsh(() => false), undefined);
  assert.equal(installedRemoteSsh((id) => id === 'jeanp413.open-remote-ssh'), 'jeanp413.open-remote-ssh');
  assert.equal(vmFromRemoteAuthority('ssh-remote+devvm-web'), 'web');
  assert.equal(vmFromRemoteAuthority('ssh-remote+otherhost'), undefined);
  assert.equal(vmFromRemoteAuthority(undefined), undefined);
});

test('the tooltip says when a VM suspends when idle and whether it starts with the helper', () => {
  const base = { name: 'web', state: 'running' as const, image: 'd', user: 'u', sshHost: 'devvm-web', sshPort: 2222, cpus: 2, memoryMiB: 2048 };
  assert.match(vmItem({ ...base, idleSuspendMin: 30 }).tooltip, /Power: suspends after 30 min idle$/);
  assert.match(vmItem({ ...base, idleSuspendMin: 5, autostart: true }).tooltip, /Power: suspends after 5 min idle, starts with the helper$/);
  assert.ok(!vmItem(base).tooltip.includes('Power:'));
});
