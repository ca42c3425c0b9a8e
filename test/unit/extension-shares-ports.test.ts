/**
 * Shared folders, port forwards and Change Size… in the extension: the tree's rows (model,
 * and the VmTree with the vscode fake, live `vm/ports` updates included, from a real socket
 * to the HelperClient's signal), and the commands, run through the one registration loop
 * and error handler with scripted dialogs.
 */
import { fake, window as fakeWindow } from './extension-vscode-fake';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { createMessageConnection, SocketMessageReader, SocketMessageWriter } from 'vscode-jsonrpc/node';
import { errorReporter, registerCommands, SHOW_HELPER_LOG, SHOW_VM_LOGS, type Cx } from '../../src/extension/commands/command';
import { PORTS } from '../../src/extension/commands/ports';
import { SHARES } from '../../src/extension/commands/shares';
import { diskProblem, SIZE, sizeChange } from '../../src/extension/commands/size';
import { HelperClient } from '../../src/extension/helperclient';
import { groupChildren, groupItem, visibleGroups } from '../../src/extension/model';
import { forwardAddress, forwardItem, forwardUrl, shareItem } from '../../src/extension/sharesPorts';
import { VmTree } from '../../src/extension/trees';
import { DevvmError } from '../../src/shared/errors';
import { helperSocket } from '../../src/shared/paths';
import { Notify, Rpc } from '../../src/shared/rpc';
import type { PortForward, ShareInfo, VmInfo, VmSummary } from '../../src/shared/types';

const summary = (over: Partial<VmSummary> = {}): VmSummary => ({ name: 'web', state: 'running', image: 'debian-12', user: 'al', sshHost: 'devvm-web', sshPort: 2201, cpus: 2, memoryMiB: 2048, ...over });
const info = (over: Partial<VmInfo> = {}): VmInfo => ({
  ...summary(),
  diskGiB: 20, fullName: 'Al', autologin: false, ssh: true, provisioned: true, accelerator: 'tcg', pid: 1,
  dir: '/d/vms/web', serialLog: '/d/vms/web/serial.log', createdAt: '2026-01-01T00:00:00Z',
  layers: [], snapshots: [], disks: [], usb: [], shares: [], ports: [],
  ...over,
});
const share = (over: Partial<ShareInfo> = {}): ShareInfo => ({ hostPath: '/home/al/src', guestPath: '/home/al/src', readOnly: false, transport: 'virtiofs', mounted: true, ...over });
const fwd = (over: Partial<PortForward> = {}): PortForward => ({ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8123, guestPort: 8123, kind: 'auto', process: 'python3', active: true, ...over });

const problemShare = share({ hostPath: '/srv/data', guestPath: '/data', readOnly: true, transport: '9p', mounted: false, problem: 'mount failed: *no* 9p module' });
const remapped = fwd({ hostPort: 8124, note: 'host port 8123 was taken; using 8124' });
const staticFwd = fwd({ kind: 'static', hostPort: 8080, guestPort: 80, process: undefined });

// ---- the tree's rows ------------------------------------------------------------

test('Shared folders: one row per share (guest ← host), read-only and transport described, a problem as a warning', () => {
  const i = info({ shares: [share(), problemShare] });
  assert.deepEqual(groupChildren(summary(), 'shares', i), [
    { kind: 'share', vm: 'web', guestPath: '/data' },
    { kind: 'share', vm: 'web', guestPath: '/home/al/src' },
  ]);
  const ok = shareItem('web', 'running', share());
  assert.equal(ok.label, '/home/al/src ← /home/al/src');
  assert.equal(ok.description, 'read-write · virtiofs · mounted');
  assert.equal(ok.contextValue, 'share.rw.running');
  assert.equal(ok.icon?.id, 'folder-opened');
  const bad = shareItem('web', 'running', problemShare);
  assert.equal(bad.label, '/data ← /srv/data');
  assert.equal(bad.description, 'read-only · 9p · not mounted');
  assert.deepEqual(bad.icon, { id: 'warning', color: 'problemsWarningIcon.foreground' });
  assert.match(bad.tooltip, /\$\(warning\) mount failed: \\\*no\\\* 9p module/, 'the problem in the tooltip, Markdown escaped');
  assert.equal(bad.contextValue, 'share.ro.running');
  // A stopped VM: no "mounted" claim either way.
  assert.equal(shareItem('web', 'stopped', share({ mounted: false, transport: null })).description, 'read-write · transport chosen at start');
  assert.equal(groupItem(summary(), 'shares', i).description, '2 · 1 with a problem');
});

test('Ports: SSH first, then static, then automatic forwards; a remapped one says so', () => {
  const i = info({ ports: [remapped, staticFwd] });
  assert.deepEqual(groupChildren(summary(), 'ports', i), [
    { kind: 'port', vm: 'web' },
    { kind: 'forward', vm: 'web', protocol: 'tcp', hostPort: 8080 },
    { kind: 'forward', vm: 'web', protocol: 'tcp', hostPort: 8124 },
  ]);
  const auto = forwardItem('web', 'running', fwd());
  assert.equal(auto.label, '8123 → 127.0.0.1:8123');
  assert.equal(auto.description, 'python3 · auto');
  assert.equal(auto.contextValue, 'port.auto.tcp.active.running');
  const r = forwardItem('web', 'running', remapped);
  assert.equal(r.label, '8123 → 127.0.0.1:8124');
  assert.equal(r.description, 'python3 · auto · host port 8123 was taken; using 8124');
  // Without the helper's note, the remap is still named.
  assert.match(forwardItem('web', 'running', fwd({ hostPort: 8124 })).description!, /remapped: host port 8123 was taken/);
  const st = forwardItem('web', 'stopped', { ...staticFwd, active: false });
  assert.equal(st.label, '80 → 127.0.0.1:8080');
  assert.equal(st.description, 'static · when running');
  assert.equal(st.contextValue, 'port.static.tcp.inactive.stopped');
  assert.equal(forwardItem('web', 'running', fwd({ protocol: 'udp', kind: 'static' })).label, '8123/udp → 127.0.0.1:8123');
  // Bound beyond loopback only because the user wrote an address: flagged.
  const wide = forwardItem('web', 'running', fwd({ kind: 'static', hostAddress: '0.0.0.0' }));
  assert.equal(wide.icon?.id, 'broadcast');
  assert.match(wide.tooltip, /from other hosts/);
  assert.equal(groupItem(summary(), 'ports', i).description, '3');
});

test('addresses: a wildcard bind is reached on 127.0.0.1; IPv6 in brackets', () => {
  assert.equal(forwardUrl(fwd()), 'http://127.0.0.1:8123/');
  assert.equal(forwardAddress({ hostAddress: '0.0.0.0', hostPort: 80 }), '127.0.0.1:80');
  assert.equal(forwardAddress({ hostAddress: '::1', hostPort: 80 }), '[::1]:80');
  assert.equal(forwardAddress({ hostAddress: '192.168.1.5', hostPort: 80 }), '192.168.1.5:80');
});

test('groups: Shared folders and Ports only when they have a row (no empty nodes on a stopped VM)', () => {
  const stoppedNoSsh = summary({ state: 'stopped', sshPort: null });
  assert.deepEqual(visibleGroups(stoppedNoSsh, info()), ['layers', 'snapshots', 'disks', 'usb']);
  assert.deepEqual(visibleGroups(summary({ state: 'stopped' }), info()), ['layers', 'ports', 'snapshots', 'disks', 'usb'], "SSH's port is a row");
  assert.deepEqual(visibleGroups(stoppedNoSsh, info({ shares: [share()], ports: [staticFwd] })), ['layers', 'shares', 'ports', 'snapshots', 'disks', 'usb']);
  assert.deepEqual(visibleGroups(stoppedNoSsh, undefined), ['layers', 'snapshots', 'disks', 'usb'], 'vm/info failed: nothing claimed');
});

// ---- the VmTree: live updates ----------------------------------------------------------

function treeWith(i: () => VmInfo) {
  const asked: string[] = [];
  const client = { request: async (t: { method: string }) => (asked.push(t.method), i()) } as unknown as HelperClient;
  const tree = new VmTree(client);
  const fired: unknown[] = [];
  tree.onDidChangeTreeData((n) => void fired.push(n));
  return { tree, asked, fired };
}

test('VmTree: a vm/ports notification adds the forward under Ports (and the Ports node to a VM without SSH); vm/changed drops it for vm/info again', async () => {
  let current = info({ sshPort: null, ssh: false });
  const { tree, asked, fired } = treeWith(() => current);
  tree.replace([summary({ sshPort: null })]);
  const vm = tree.vmNode('web');
  const groups = async () => (await tree.getChildren(vm)).map((n) => (n.kind === 'group' ? n.group : n.kind));
  assert.deepEqual(await groups(), ['layers', 'snapshots', 'disks', 'usb']);
  tree.setPorts('web', [remapped]);
  assert.equal(fired.at(-1), vm, 'the VM node redraws');
  assert.deepEqual(await groups(), ['layers', 'ports', 'snapshots', 'disks', 'usb']);
  const ports = (await tree.getChildren(vm)).find((n) => n.kind === 'group' && n.group === 'ports')!;
  const rows = await tree.getChildren(ports);
  assert.deepEqual(rows, [{ kind: 'forward', vm: 'web', protocol: 'tcp', hostPort: 8124 }]);
  const item = await tree.getTreeItem(rows[0]!);
  assert.equal(item.label, '8123 → 127.0.0.1:8124');
  assert.equal(item.description, 'python3 · auto · host port 8123 was taken; using 8124');
  assert.equal(item.contextValue, 'port.auto.tcp.active.running');
  assert.equal(asked.length, 1, 'vm/info once; the notification needs no request');
  // The process ended: the next notification has no forwards; the group goes.
  tree.setPorts('web', []);
  assert.deepEqual(await groups(), ['layers', 'snapshots', 'disks', 'usb']);
  // vm/changed: the override is dropped and vm/info (with a share now) read again.
  current = info({ sshPort: null, ssh: false, shares: [problemShare] });
  tree.upsert(summary({ sshPort: null }));
  assert.deepEqual(await groups(), ['layers', 'shares', 'snapshots', 'disks', 'usb']);
  assert.equal(asked.length, 2);
  const sharesGroup = (await tree.getChildren(vm)).find((n) => n.kind === 'group' && n.group === 'shares')!;
  const shareRow = (await tree.getChildren(sharesGroup))[0]!;
  assert.equal((await tree.getTreeItem(shareRow)).contextValue, 'share.ro.running');
  assert.deepEqual(tree.getParent(shareRow), sharesGroup);
  // A notification for a VM the tree does not know is ignored.
  tree.setPorts('ghost', [fwd()]);
  assert.equal(fired.at(-1), vm);
});

// ---- commands, with scripted dialogs ---------------------------------------------------

const original = { ...fakeWindow };
afterEach(() => {
  Object.assign(fakeWindow, original);
  fake.infos.length = 0;
  fake.opened.length = 0;
  fake.clipboard.length = 0;
});

interface Asked {
  title?: string;
  value?: string;
  validateInput?: (v: string) => string | undefined;
}

/** The input boxes answer `answers` in order and record what they were asked. */
function scriptInputs(answers: (string | undefined)[]): Asked[] {
  const asked: Asked[] = [];
  fakeWindow.showInputBox = (async (o: Asked) => {
    asked.push(o);
    return answers.shift();
  }) as never;
  return asked;
}

function harness(vm: VmSummary, opts: { info?: VmInfo; reply?: (method: string, params: unknown) => unknown } = {}) {
  const requests: { method: string; params: unknown }[] = [];
  const shown: { message: string; actions: string[] }[] = [];
  const refreshed: string[] = [];
  const i = opts.info ?? info({ ...vm });
  const cx = {
    client: {
      request: async (t: { method: string }, params: unknown) => {
        requests.push({ method: t.method, params });
        if (t.method === 'vm/info') return i;
        return opts.reply ? opts.reply(t.method, params) : undefined;
      },
    },
    vms: { get: () => vm, info: async () => i, refreshInfo: (n: string) => void refreshed.push(n) },
    out: { info: () => {}, warn: () => {} },
    withProgress: (_t: string, f: (token: string) => Promise<unknown>) => f('tok'),
    pickVm: async () => vm,
    report: errorReporter({ showError: async (message, ...actions) => void shown.push({ message, actions }), log: () => {}, showHelperLog: () => {}, showVmLogs: () => {} }),
  } as unknown as Cx;
  const handlers = new Map<string, (...a: unknown[]) => Promise<void>>();
  registerCommands([...SIZE, ...SHARES, ...PORTS], cx, (id, f) => (handlers.set(id, f), { dispose: () => {} }));
  const run = async (id: string, arg: unknown = vm.name) => {
    await handlers.get(id)!(arg);
    await new Promise((r) => setImmediate(r));
  };
  return { run, requests, shown, refreshed, sets: () => requests.filter((r) => r.method !== 'vm/info') };
}

const stopped = summary({ state: 'stopped' });

test('Change Size…: prefilled with the current size, each step checked with the helper rules, vm/set gets what changed', async () => {
  // Within any host's limits (the inputs check against this host's CPUs and memory).
  const asked = scriptInputs(['1', '2048', '40']);
  const h = harness(stopped, { reply: () => ({ ...stopped, cpus: 1 }) });
  await h.run('devvm.changeSize');
  assert.deepEqual(asked.map((a) => a.value), ['2', '2048', '20'], 'prefilled with the current values');
  assert.deepEqual(asked.map((a) => a.title), ['Change Size of web (1/3)', 'Change Size of web (2/3)', 'Change Size of web (3/3)']);
  assert.match(asked[0]!.validateInput!('0')!, /CPU count 0 is out of range/);
  assert.match(asked[0]!.validateInput!('two')!, /whole number/);
  assert.equal(asked[0]!.validateInput!('1'), undefined);
  assert.match(asked[1]!.validateInput!('100')!, /memory 100 MiB is out of range/);
  assert.match(asked[2]!.validateInput!('10')!, /the disk only grows: at least 20 GiB/);
  assert.equal(asked[2]!.validateInput!('20'), undefined);
  assert.match(asked[0]!.validateInput!('65')!, /CPU count 65 is out of range/);
  assert.deepEqual(h.sets(), [{ method: 'vm/set', params: { name: 'web', cpus: 1, diskGiB: 40 } }], 'memory unchanged: not sent');
  assert.deepEqual(h.shown, []);
  assert.match(fake.infos[0]!, /^web: 1 vCPU, 2 GiB, 40 GiB disk \(the root filesystem grows at the next boot\)\.$/);
  assert.deepEqual(h.refreshed, ['web']);
});

test('Change Size…: refused input (a shrinking disk the box let through) is one error, nothing sent; Escape or no change sends nothing', async () => {
  scriptInputs(['2', '2048', '10']);
  let h = harness(stopped);
  await h.run('devvm.changeSize');
  assert.deepEqual(h.sets(), []);
  assert.deepEqual(h.shown.map((s) => s.message), ['Dev VMs: the disk only grows: at least 20 GiB (it has 20 GiB)']);
  scriptInputs(['2', undefined]);
  h = harness(stopped);
  await h.run('devvm.changeSize');
  assert.deepEqual(h.sets(), []);
  assert.deepEqual(h.shown, []);
  scriptInputs(['2', '2048', '20']);
  h = harness(stopped);
  await h.run('devvm.changeSize');
  assert.deepEqual(h.sets(), []);
  assert.match(fake.infos.at(-1)!, /keeps its size/);
});

test("Change Size…: the helper's refusal is shown as its one line, with the VM's logs", async () => {
  scriptInputs(['2', '512', '20']);
  const h = harness(stopped, {
    reply: () => {
      throw new DevvmError('invalid-argument', 'memory 512 MiB is less than the image needs', 'use at least 1024 MiB');
    },
  });
  await h.run('devvm.changeSize');
  assert.deepEqual(h.shown, [{ message: 'Dev VMs: memory 512 MiB is less than the image needs (use at least 1024 MiB)', actions: [SHOW_VM_LOGS, SHOW_HELPER_LOG] }]);
});

test('Change Size… on a running or suspended VM (named from the palette): says why, asks nothing', async () => {
  for (const state of ['running', 'suspended'] as const) {
    const asked = scriptInputs(['4', '4096', '40']);
    const h = harness(summary({ state }));
    await h.run('devvm.changeSize');
    assert.equal(asked.length, 0);
    assert.deepEqual(h.requests, []);
    assert.equal(h.shown.length, 1);
    assert.match(h.shown[0]!.message, new RegExp(`^Dev VMs: cannot change VM "web": it is ${state} \\(expected stopped; `));
  }
});

test('sizeChange and diskProblem: only what changed; the disk never shrinks', () => {
  const from = { cpus: 2, memoryMiB: 2048, diskGiB: 20 };
  assert.equal(sizeChange('web', from, from), null);
  assert.deepEqual(sizeChange('web', from, { ...from, memoryMiB: 4096 }), { name: 'web', memoryMiB: 4096 });
  assert.equal(diskProblem('20', 20), undefined);
  assert.match(diskProblem('19', 20)!, /only grows/);
  assert.match(diskProblem('0', 20)!, /out of range/);
});

test('Add Shared Folder…: folder picker, guest path defaulting to the same path, read-only pick; vm/share gets them', async () => {
  fakeWindow.showOpenDialog = (async () => [{ fsPath: '/home/al/proj' }]) as never;
  const asked = scriptInputs(['/work/proj ']);
  fakeWindow.showQuickPick = (async (items: { label: string }[]) => items.find((x) => x.label === 'Read-only')) as never;
  const h = harness(summary(), { info: info({ shares: [share()] }), reply: (_m, p) => ({ ...(p as object), transport: '9p', mounted: true }) });
  await h.run('devvm.addShare');
  assert.equal(asked[0]!.value, '/home/al/proj', 'the same path by default');
  assert.match(asked[0]!.validateInput!('relative/dir')!, /not an absolute path/);
  assert.match(asked[0]!.validateInput!('/home/al/src')!, /shared already/);
  assert.deepEqual(h.sets(), [{ method: 'vm/share', params: { name: 'web', hostPath: '/home/al/proj', guestPath: '/work/proj', readOnly: true } }]);
  assert.match(fake.infos[0]!, /Shared \/home\/al\/proj with web at \/work\/proj, read-only \(mounted now\)/);
  assert.deepEqual(h.refreshed, ['web']);
});

test('Remove on a share row: vm/unshare with its guest path; a helper refusal (live removal not possible) is one line', async () => {
  let h = harness(summary(), { info: info({ shares: [share(), problemShare] }) });
  await h.run('devvm.removeShare', { kind: 'share', vm: 'web', guestPath: '/data' });
  assert.deepEqual(h.sets(), [{ method: 'vm/unshare', params: { name: 'web', guestPath: '/data' } }]);
  h = harness(summary(), {
    info: info({ shares: [share()] }),
    reply: () => {
      throw new DevvmError('not-supported', 'cannot remove the 9p share /home/al/src while web runs', 'stop the VM first');
    },
  });
  await h.run('devvm.removeShare', { kind: 'share', vm: 'web', guestPath: '/home/al/src' });
  assert.deepEqual(h.shown.map((s) => s.message), ['Dev VMs: cannot remove the 9p share /home/al/src while web runs (stop the VM first)']);
});

test('forwards: Open in Browser opens http://127.0.0.1:PORT, Copy Address copies it, Add/Remove go to vm/portAdd and vm/portRemove', async () => {
  const i = info({ ports: [remapped, staticFwd] });
  let h = harness(summary(), { info: i });
  await h.run('devvm.openPort', { kind: 'forward', vm: 'web', protocol: 'tcp', hostPort: 8124 });
  assert.deepEqual(fake.opened, ['http://127.0.0.1:8124/']);
  await h.run('devvm.copyPortAddress', { kind: 'forward', vm: 'web', protocol: 'tcp', hostPort: 8080 });
  assert.deepEqual(fake.clipboard, ['127.0.0.1:8080']);
  await h.run('devvm.removePort', { kind: 'forward', vm: 'web', protocol: 'tcp', hostPort: 8080 });
  assert.deepEqual(h.sets(), [{ method: 'vm/portRemove', params: { name: 'web', protocol: 'tcp', hostPort: 8080 } }]);
  // A forward gone meanwhile: one line, nothing opened.
  await h.run('devvm.openPort', { kind: 'forward', vm: 'web', protocol: 'tcp', hostPort: 9999 });
  assert.match(h.shown.at(-1)!.message, /no forward from host port 9999/);
  const asked = scriptInputs(['5432/udp']);
  h = harness(summary(), { info: i, reply: (_m, p) => ({ ...(p as object), hostAddress: '127.0.0.1', kind: 'static', active: true }) });
  await h.run('devvm.addPort');
  assert.match(asked[0]!.validateInput!('80:99999')!, /the guest port must be a port number 1-65535, got "99999"/);
  assert.match(asked[0]!.validateInput!('http')!, /the host port must be a port number 1-65535, got "http"/);
  assert.deepEqual(h.sets(), [{ method: 'vm/portAdd', params: { name: 'web', protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 5432, guestPort: 5432 } }]);
});

test('HelperClient: a vm/ports notification from the helper reaches its `ports` signal', async () => {
  const home = mkdtempSync(path.join(os.tmpdir(), 'devvm-ports-'));
  const server = net.createServer((sock) => {
    const c = createMessageConnection(new SocketMessageReader(sock), new SocketMessageWriter(sock));
    c.onRequest(Rpc.vmList.method, async () => {
      await c.sendNotification(Notify.ports, { name: 'web', ports: [remapped] });
      return [];
    });
    c.listen();
  });
  await new Promise<void>((r) => server.listen(helperSocket(home), r));
  const client = new HelperClient({ home, helperScript: '/nonexistent', env: {}, log: () => {} });
  const got: unknown[] = [];
  client.ports.on((p) => void got.push(p));
  try {
    await client.request(Rpc.vmList);
    for (let i = 0; i < 50 && !got.length; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(got, [{ name: 'web', ports: [remapped] }]);
  } finally {
    client.dispose();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(home, { recursive: true, force: true });
  }
});

test("a forward's tooltip: its title, a blank line, then the facts (Markdown needs the blank line)", () => {
  const lines = forwardItem('web', 'running', remapped).tooltip.split('\n');
  assert.equal(lines[1], '', 'the blank line after the title');
  assert.match(lines[2]!, /^Guest port 8123 \(tcp\) is reachable at 127\\\.0\\\.0\\\.1:8124/);
  assert.ok(lines.includes('Listening in the guest: python3  '));
});
