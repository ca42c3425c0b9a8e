/** The Dev VMs views' model, computed from RPC data (src/extension/model.ts, no vscode). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deleteDetail, formatBytes, groupChildren, groupItem, imageItem, layerItem, portItem, sshCommand, statusText, vmItem } from '../../src/extension/model';
import { remoteFolderUri, preferredRemoteSsh, installedRemoteSsh, vmFromRemoteAuthority } from '../../src/extension/remote';
import type { ImageInfo, VmInfo, VmSummary } from '../../src/shared/types';

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
  assert.equal(it.contextValue, 'vm.running.ssh');
  assert.equal(it.collapsible, 'collapsed');
  assert.match(it.tooltip, /ssh devvm-web/);
});

test('state icons: spinning while busy, plain when stopped, no port when not running', () => {
  for (const state of ['creating', 'starting', 'stopping', 'suspending'] as const) assert.equal(vmItem(summary({ state })).icon?.id, 'loading~spin');
  const stopped = vmItem(summary({ state: 'stopped' }));
  assert.equal(stopped.icon?.id, 'vm-outline');
  assert.doesNotMatch(stopped.description ?? '', /ssh/);
  assert.equal(vmItem(summary({ sshPort: null, state: 'stopped' })).contextValue, 'vm.stopped.nossh');
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
  assert.equal(groupItem('web', 'layers', i).description, '3 · 1.1 GiB on disk');
});

test('VM children: ports, snapshots and USB placeholders', () => {
  assert.deepEqual(groupChildren(summary(), 'ports', undefined), [{ kind: 'port', vm: 'web' }]);
  assert.equal(portItem(summary())?.label, '127.0.0.1:2201 → 22');
  assert.equal(portItem(summary({ state: 'stopped' }))?.description, 'ssh · when running');
  assert.equal(portItem(summary({ sshPort: null })), null);
  assert.deepEqual(groupChildren(summary({ sshPort: null }), 'ports', undefined), [{ kind: 'note', vm: 'web', group: 'ports', text: 'No forwarded ports (SSH is off)' }]);
  assert.deepEqual(groupChildren(summary(), 'snapshots', info()), [{ kind: 'note', vm: 'web', group: 'snapshots', text: 'No snapshots' }]);
  const withSnap = info({ layers: [info().layers[0]!, { ...info().layers[0]!, role: 'snapshot', readOnly: true }, ...info().layers.slice(1)] });
  assert.deepEqual(groupChildren(summary(), 'snapshots', withSnap), [{ kind: 'snapshot', vm: 'web', index: 1 }]);
  assert.deepEqual(groupChildren(summary(), 'usb', undefined), [{ kind: 'note', vm: 'web', group: 'usb', text: 'No USB devices attached' }]);
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
