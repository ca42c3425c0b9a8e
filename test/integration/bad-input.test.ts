/**
 * Bad input and faults against the real CLI, helper and QEMU: each case gets a clear
 * one-line error and leaves `list --json` and every file under DEVVM_HOME unchanged.
 * Uses a blank imported disk (no guest OS needed to be "running" for these).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CLI, processGone, Sandbox, ROOT, waitFor } from './harness';

const sb = new Sandbox('bad');
const blank = path.join(sb.home, '..', `${path.basename(sb.home)}-blank.qcow2`);
const corrupt = path.join(sb.home, '..', `${path.basename(sb.home)}-corrupt.qcow2`);

// A recorded sysfs tree stands in for the host's USB bus (these machines have none), and
// a directory of stand-ins for its device nodes: 1-2 (bus 1, dev 2) is a plain file the
// helper can open and hand to QEMU; 1-3.1 (dev 5) is a node the kernel refuses to open
// read-write even for root (a read-only sysctl).
const usbSysfs = path.join(ROOT, 'test', 'fixtures', 'usb', 'sysfs', 'bus', 'usb', 'devices');
const usbDev = `${sb.home}-usbdev`;

before(() => {
  sb.env.DEVVM_USB_SYSFS = usbSysfs;
  sb.env.DEVVM_USB_DEVROOT = usbDev;
  mkdirSync(path.join(usbDev, '001'), { recursive: true });
  writeFileSync(path.join(usbDev, '001', '002'), '');
  symlinkSync('/proc/sys/kernel/ostype', path.join(usbDev, '001', '005'));
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', blank, '2G']);
  writeFileSync(corrupt, Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(4096, 0xff)]));
  sb.ok(['image', 'import', blank, '--name', 'blank']);
  sb.ok(['create', 'taken', '--image', 'blank', '--user', 'alice']);
  sb.ok(['create', 'runner', '--image', 'blank', '--user', 'alice', '--memory', '256', '--cpus', '1']);
  sb.ok(['start', 'runner']);
});

after(() => {
  sb.cleanup();
  spawnSync('rm', ['-rf', blank, corrupt, usbDev]);
});

const cases: Array<[string, string[], string?, number?]> = [
  ['name with /', ['create', 'a/b', '--image', 'blank', '--user', 'bob']],
  ['name ..', ['create', '..', '--image', 'blank', '--user', 'bob']],
  ['name ../evil', ['create', '../evil', '--image', 'blank', '--user', 'bob']],
  ['name with space', ['create', 'has space', '--image', 'blank', '--user', 'bob']],
  ['name of 200 characters', ['create', 'x'.repeat(200), '--image', 'blank', '--user', 'bob']],
  ['uppercase name', ['create', 'UPPER', '--image', 'blank', '--user', 'bob']],
  ['shell in name', ['create', '$(touch /tmp/devvm-pwned)', '--image', 'blank', '--user', 'bob']],
  ['reserved user root', ['create', 'vm1', '--image', 'blank', '--user', 'root']],
  ['shell in user name', ['create', 'vm1', '--image', 'blank', '--user', 'a;rm -rf /']],
  ['space in user name', ['create', 'vm1', '--image', 'blank', '--user', 'ali ce']],
  ['colon in full name', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--full-name', 'Bob: admin']],
  ['newline in full name', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--full-name', 'Bob\nroot::0:0']],
  ['password with inner newline', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--password-stdin'], 'one\ntwo\n'],
  ['empty password', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--password-stdin'], '\n'],
  ['missing password file', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--password-file', '/nonexistent/pw']],
  ['negative cpus', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--cpus', '-1']],
  ['zero cpus', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--cpus', '0']],
  ['1000 cpus', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--cpus', '1000']],
  ['non-numeric cpus', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--cpus', 'two'], undefined, 2],
  ['10 MiB memory', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--memory', '10']],
  ['more memory than the host', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--memory', '200000']],
  ['negative disk', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--disk', '-5']],
  ['huge disk', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--disk', '99999999']],
  ['disk smaller than the image', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--disk', '1']],
  ['missing image', ['create', 'vm1', '--image', 'nope', '--user', 'bob']],
  ['image name with traversal', ['create', 'vm1', '--image', '../blank', '--user', 'bob']],
  ['bogus ssh key', ['create', 'vm1', '--image', 'blank', '--user', 'bob', '--ssh-key', 'ssh-rsa not!base64']],
  ['busy name', ['create', 'taken', '--image', 'blank', '--user', 'bob']],
  ['import a missing file', ['image', 'import', '/nonexistent/disk.qcow2', '--name', 'x']],
  ['import a corrupt qcow2', ['image', 'import', corrupt, '--name', 'x']],
  ['import under a taken name', ['image', 'import', blank, '--name', 'blank']],
  ['import with a bad name', ['image', 'import', blank, '--name', '../x']],
  ['delete an image in use', ['image', 'delete', 'blank']],
  ['unknown recipe', ['image', 'build', 'windows-95']],
  ['delete a running VM', ['delete', 'runner']],
  ['delete a missing VM', ['delete', 'ghost']],
  ['start a missing VM', ['start', 'ghost']],
  ['stop a missing VM', ['stop', 'ghost']],
  ['info on a path', ['info', '../../etc']],
  ['ssh to a missing VM', ['ssh', 'ghost', '--', 'true']],
  ['snapshot with a bad name', ['snapshot', 'taken', '../x']],
  ['snapshot of a missing VM', ['snapshot', 'ghost', 's1']],
  ['RAM snapshot of a stopped VM', ['snapshot', 'taken', 's1', '--ram']],
  ['restore a missing snapshot', ['restore', 'taken', 'nope']],
  ['delete a missing snapshot', ['snapshot', 'taken', 'nope', '--delete']],
  ['clone onto a taken name', ['clone', 'runner', 'taken']],
  ['clone to a bad name', ['clone', 'taken', 'a/b']],
  ['clone a missing VM', ['clone', 'ghost', 'copy']],
  ['clone from a missing snapshot', ['clone', 'taken', 'copy', '--snapshot', 'nope']],
  ['attach a disk to a stopped VM', ['disk', 'attach', 'taken', blank]],
  ['attach a missing file', ['disk', 'attach', 'runner', '/nonexistent/disk.img']],
  ['attach a bad NBD URI', ['disk', 'attach', 'runner', 'nbd://bad host:99999/x']],
  ['attach a base image for writing', ['disk', 'attach', 'runner', path.join(sb.home, 'images', 'blank', 'disk.qcow2')]],
  ['detach an unknown disk', ['disk', 'detach', 'runner', 'xd9']],
  ['detach a bad disk id', ['disk', 'detach', 'runner', '../x']],
  ['export a missing snapshot', ['disk', 'export', 'taken', 'nope']],
  ['unknown disk command', ['disk', 'frob'], undefined, 2],
  ['attach an unknown USB device', ['usb', 'attach', 'runner', 'dead:beef']],
  ['attach a USB device to a stopped VM', ['usb', 'attach', 'taken', '1-2']],
  ['attach a USB device without access to its node', ['usb', 'attach', 'runner', '0781:5581']],
  ['detach a USB device that is not attached', ['usb', 'detach', 'runner', '1-2']],
  ['a USB device spec with shell in it', ['usb', 'attach', 'runner', '$(reboot)']],
  ['unknown command', ['frobnicate'], undefined, 2],
  ['unknown flag', ['list', '--colour'], undefined, 2],
  ['missing argument', ['create'], undefined, 2],
];

for (const [what, args, input, exit] of cases) {
  test(`bad input: ${what}`, () => {
    const list = sb.ok(['list', '--json']);
    const files = sb.files(['runner']);
    const r = sb.cli(args, input);
    assert.equal(r.code, exit ?? 1, `exit code; stderr: ${r.stderr}`);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line: ${r.stderr}`);
    assert.match(lines[0]!, /^devvm: \S.*/);
    assert.equal(r.stdout, '');
    assert.equal(sb.ok(['list', '--json']), list, 'list unchanged');
    assert.deepEqual(sb.files(['runner']), files, 'files unchanged');
  });
}

test('usb list reads the host devices from sysfs; a missing permission names the udev rule', () => {
  const l = sb.json<Array<{ id: string; vendorId: string; productId: string; product?: string; devnode: string }>>(['usb', 'list']);
  assert.deepEqual(l.map((d) => [d.id, `${d.vendorId}:${d.productId}`]), [['1-2', '046d:c52b'], ['1-3.1', '0781:5581']]);
  const r = sb.cli(['usb', 'attach', 'runner', '1-3.1']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no permission to open .*001\/005 .*SUBSYSTEM=="usb", ATTR\{idVendor\}=="0781", ATTR\{idProduct\}=="5581"/);
});

test('usb attach hands the opened node to QEMU as an fd set; a node that is no USB device is refused by QEMU, not recorded', () => {
  const r = sb.cli(['usb', 'attach', 'runner', '1-2']);
  assert.equal(r.code, 1);
  // QEMU opened the descriptor it was passed (a missing set would be "failed to open
  // /dev/fdset/N: No such file"); only libusb then found no USB device behind it.
  assert.match(r.stderr, /cannot attach USB device 1-2 \(046d:c52b\): QEMU refused device_add: failed to open host usb device \/dev\/fdset\/\d+$/m);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  const l = sb.json<Array<{ id: string; attachedTo?: string }>>(['usb', 'list']);
  assert.equal(l.find((d) => d.id === '1-2')?.attachedTo, undefined);
  assert.equal(sb.json<{ usb: unknown[] }>(['info', 'runner']).usb.length, 0);
});

test('--json errors are one JSON object with code and message', () => {
  const r = sb.cli(['info', 'ghost', '--json']);
  assert.equal(r.code, 1);
  const e = JSON.parse(r.stdout) as { error: { code: string; message: string } };
  assert.equal(e.error.code, 'not-found');
  assert.match(e.error.message, /no VM named "ghost"/);
});

test('shell metacharacters in a name never reach a shell', () => {
  assert.throws(() => readFileSync('/tmp/devvm-pwned'));
});

test('a second helper for the same DEVVM_HOME refuses to start and the first keeps serving', () => {
  const first = sb.json<{ pid: number }>(['helper', 'status']);
  const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'helper.js')], { env: sb.env, encoding: 'utf8', timeout: 15000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /another helper is already running/);
  assert.equal(sb.json<{ pid: number }>(['helper', 'status']).pid, first.pid);
});

function rawRpc(payload: Buffer | string): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.createConnection(path.join(sb.home, 'helper.sock'));
    let data = '';
    sock.on('data', (c) => (data += c.toString()));
    sock.on('close', () => resolve(data));
    sock.on('error', () => resolve(data));
    sock.on('connect', () => sock.write(payload));
    setTimeout(() => sock.destroy(), 1000);
  });
}

const frame = (o: unknown) => {
  const body = JSON.stringify(o);
  return `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
};

test('malformed RPC messages are answered or dropped; the helper keeps serving', async () => {
  const list = sb.ok(['list', '--json']);
  await rawRpc('this is not JSON-RPC at all\r\n\r\n');
  await rawRpc('Content-Length: 12\r\n\r\n{"jsonrpc":');
  await rawRpc(Buffer.from([0xff, 0xfe, 0, 1, 2, 3]));
  const bad = await rawRpc(frame({ jsonrpc: '2.0', id: 1, method: 'vm/create', params: { name: 12, image: [], user: {} } }));
  assert.match(bad, /invalid VM name/);
  assert.match(bad, /"code":"invalid-argument"/);
  const unknown = await rawRpc(frame({ jsonrpc: '2.0', id: 2, method: 'vm/explode', params: {} }));
  assert.match(unknown, /-32601/);
  const notObject = await rawRpc(frame({ jsonrpc: '2.0', id: 3, method: 'vm/info', params: ['a', 'b'] }));
  assert.match(notObject, /"error"/);
  assert.equal(sb.ok(['list', '--json']), list);
});

test('a busy SSH port is replaced by a free one at start', async () => {
  const before = sb.json<{ sshPort: number }>(['info', 'taken']);
  const blocker = net.createServer().listen(before.sshPort, '127.0.0.1');
  await new Promise((r) => blocker.once('listening', r));
  try {
    sb.ok(['start', 'taken']);
    const after = sb.json<{ sshPort: number; state: string }>(['info', 'taken']);
    assert.equal(after.state, 'running');
    assert.notEqual(after.sshPort, before.sshPort);
    assert.match(readFileSync(path.join(sb.home, 'ssh_config'), 'utf8'), new RegExp(`Port ${after.sshPort}\\n`));
    sb.ok(['stop', 'taken', '--force']);
  } finally {
    blocker.close();
  }
});

test('kill -9 of the helper: the VM keeps running and the next call reattaches', async () => {
  const before = sb.json<{ pid: number }>(['info', 'runner']);
  const helper = Number(readFileSync(path.join(sb.home, 'helper.pid'), 'utf8'));
  process.kill(helper, 'SIGKILL');
  await waitFor('helper to die', 5000, () => processGone(helper));
  const list = sb.json<Array<{ name: string; state: string }>>(['list']);
  assert.equal(list.find((v) => v.name === 'runner')?.state, 'running');
  assert.equal(list.find((v) => v.name === 'taken')?.state, 'stopped');
  const after = sb.json<{ pid: number }>(['info', 'runner']);
  assert.equal(after.pid, before.pid, 'same QEMU process');
  assert.notEqual(Number(readFileSync(path.join(sb.home, 'helper.pid'), 'utf8')), helper);
  sb.ok(['stop', 'runner', '--force']);
  assert.equal(sb.json<{ state: string }>(['info', 'runner']).state, 'stopped');
});

test('kill -9 of QEMU: the VM is reported in error with the reason, metadata intact; start clears it', async () => {
  sb.ok(['start', 'runner']);
  const { pid } = sb.json<{ pid: number }>(['info', 'runner']);
  process.kill(pid, 'SIGKILL');
  await waitFor('runner to be in error', 10000, () => sb.json<{ state: string }>(['info', 'runner']).state === 'error');
  const info = sb.json<{ user: string; layers: unknown[]; error?: string }>(['info', 'runner']);
  assert.match(info.error ?? '', /QEMU/i);
  assert.equal(info.user, 'alice');
  assert.equal(info.layers.length, 3);
  // A helper restart keeps the error; start clears it.
  sb.ok(['helper', 'stop']);
  assert.equal(sb.json<{ state: string }>(['info', 'runner']).state, 'error');
  sb.ok(['start', 'runner']);
  assert.equal(sb.json<{ state: string; error?: string }>(['info', 'runner']).error, undefined);
  sb.ok(['stop', 'runner', '--force']);
  assert.equal(sb.json<{ state: string }>(['info', 'runner']).state, 'stopped');
});

test('a damaged saved state is reported and kept; --discard-state cold boots', () => {
  sb.ok(['create', 'sleepy', '--image', 'blank', '--user', 'alice', '--memory', '256', '--cpus', '1']);
  sb.ok(['start', 'sleepy']);
  sb.ok(['suspend', 'sleepy']);
  const state = path.join(sb.home, 'vms', 'sleepy', 'ram', 'suspend.ram');
  assert.equal(sb.json<{ state: string }>(['info', 'sleepy']).state, 'suspended');
  writeFileSync(state, 'this is not a migration stream');
  const r = sb.cli(['resume', 'sleepy']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^devvm: the saved state of VM "sleepy" cannot be restored: .*--discard-state/);
  assert.equal(sb.json<{ state: string }>(['info', 'sleepy']).state, 'suspended', 'never silently discarded');
  assert.equal(readFileSync(state, 'utf8'), 'this is not a migration stream');
  assert.equal(sb.cli(['resume', 'runner']).code, 1, 'resume refuses a VM that is not suspended');
  sb.ok(['start', 'sleepy', '--discard-state']);
  assert.equal(sb.json<{ state: string }>(['info', 'sleepy']).state, 'running');
  sb.ok(['delete', 'sleepy', '--force']);
});

test('suspend and resume without the native addon (QEMU exec fallback)', () => {
  sb.cli(['helper', 'stop']);
  sb.env.DEVVM_NO_NATIVE = '1';
  try {
    sb.ok(['create', 'plain', '--image', 'blank', '--user', 'alice', '--memory', '256', '--cpus', '1']);
    sb.ok(['start', 'plain']);
    const pid = sb.json<{ pid: number }>(['info', 'plain']).pid;
    sb.ok(['suspend', 'plain']);
    assert.ok(processGone(pid), 'QEMU ended after the save');
    assert.ok(statSync(path.join(sb.home, 'vms', 'plain', 'ram', 'suspend.ram')).size > 100_000);
    sb.ok(['resume', 'plain']);
    assert.equal(sb.json<{ state: string }>(['info', 'plain']).state, 'running');
    assert.ok(!existsSync(path.join(sb.home, 'vms', 'plain', 'ram', 'suspend.ram')), 'state file used up');
    sb.ok(['delete', 'plain', '--force']);
  } finally {
    delete sb.env.DEVVM_NO_NATIVE;
    sb.cli(['helper', 'stop']);
  }
});

// ---- faults around layers and RAM states ------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Runs the CLI in the background; resolves with its exit code. */
function cliBackground(args: string[]): Promise<number> {
  const child = spawn(process.execPath, [CLI, ...args], { env: sb.env, stdio: 'ignore' });
  return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
}

/**
 * The invariants a fault must not break: no half-finished freeze in any vm.json, every
 * layer a VM or snapshot names exists, every pool layer is used by something, no partial
 * RAM file, every layer passes `qemu-img check`.
 */
function assertLayersConsistent(): void {
  const pool = path.join(sb.home, 'layers');
  const metas = readdirSync(pool).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(path.join(pool, f), 'utf8')) as { id: string; parent: string | null });
  const byId = new Map(metas.map((m) => [m.id, m]));
  assert.deepEqual(readdirSync(pool).filter((f) => f.endsWith('.qcow2')).sort(), metas.map((m) => `${m.id}.qcow2`).sort(), 'a file for every layer and a layer for every file');
  const used = new Set<string>();
  const keep = (id: string) => {
    for (let cur: string | null = id; cur; cur = byId.get(cur)!.parent) {
      assert.ok(byId.has(cur), `layer ${cur} exists`);
      used.add(cur);
    }
  };
  for (const vm of readdirSync(path.join(sb.home, 'vms'))) {
    const cfg = JSON.parse(readFileSync(path.join(sb.home, 'vms', vm, 'vm.json'), 'utf8')) as { overlay: string; pending?: unknown; snapshots?: Array<{ name: string; layer: string; ram?: unknown }> };
    assert.equal(cfg.pending, undefined, `${vm}: no unfinished freeze`);
    keep(cfg.overlay);
    for (const s of cfg.snapshots ?? []) {
      keep(s.layer);
      if (s.ram) assert.ok(existsSync(path.join(sb.home, 'vms', vm, 'ram', `snapshot.${s.name}.ram`)), `${vm}/${s.name}: RAM file present`);
    }
    const ramDir = path.join(sb.home, 'vms', vm, 'ram');
    if (existsSync(ramDir)) assert.deepEqual(readdirSync(ramDir).filter((f) => f.endsWith('.partial')), [], 'no partial RAM file');
  }
  assert.deepEqual([...byId.keys()].filter((id) => !used.has(id)), [], 'no orphaned layer');
  for (const id of byId.keys()) {
    const r = spawnSync('qemu-img', ['check', '-U', path.join(pool, `${id}.qcow2`)], { encoding: 'utf8' });
    assert.equal(r.status, 0, `qemu-img check ${id}: ${r.stdout}${r.stderr}`);
  }
}

test('live snapshots on a running VM, kill -9 of the helper mid-snapshot: layers stay consistent, the base untouched', async () => {
  const base = path.join(sb.home, 'images', 'blank', 'disk.qcow2');
  const baseSum = sha256(base);
  sb.ok(['create', 'snappy', '--image', 'blank', '--user', 'alice', '--memory', '256', '--cpus', '1']);
  sb.ok(['start', 'snappy']);
  sb.ok(['snapshot', 'snappy', 'first']);
  sb.ok(['snapshot', 'snappy', 'second', '--ram']);
  for (const delay of [150, 300, 450, 600, 800]) {
    const done = cliBackground(['snapshot', 'snappy', `k${delay}`, '--ram']);
    await sleep(delay);
    process.kill(Number(readFileSync(path.join(sb.home, 'helper.pid'), 'utf8')), 'SIGKILL');
    await done;
    // The next call starts a helper, which settles what the killed one left.
    assert.equal(sb.json<Array<{ name: string; state: string }>>(['list']).find((v) => v.name === 'snappy')?.state, 'running');
    assertLayersConsistent();
  }
  sb.ok(['stop', 'snappy', '--force']);
  assertLayersConsistent();
  assert.equal(sha256(base), baseSum, 'base image unchanged');
});

test('kill -9 of QEMU during suspend and during a RAM snapshot: nothing half-saved is kept', async () => {
  for (const [what, delay] of [['suspend', 150], ['suspend', 400], ['snapshot', 150], ['snapshot', 400]] as const) {
    sb.ok(['start', 'snappy']);
    const { pid } = sb.json<{ pid: number }>(['info', 'snappy']);
    const done = cliBackground(what === 'suspend' ? ['suspend', 'snappy'] : ['snapshot', 'snappy', `q${delay}`, '--ram']);
    await sleep(delay);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // the suspend was quicker than the kill: QEMU already ended on its own
    }
    await done;
    await waitFor('QEMU to be gone', 10_000, () => processGone(pid));
    const state = sb.json<{ state: string }>(['info', 'snappy']).state;
    // Killed before it was done: an error (QEMU ended without being asked); a suspend that won the race: suspended.
    assert.ok(state === 'error' || state === 'stopped' || (what === 'suspend' && state === 'suspended'), `state ${state}`);
    if (state !== 'suspended') assert.ok(!existsSync(path.join(sb.home, 'vms', 'snappy', 'ram', 'suspend.ram')), 'no state file for a stopped VM');
    if (state === 'suspended') sb.ok(['start', 'snappy', '--discard-state']);
    sb.cli(['stop', 'snappy', '--force']);
    assertLayersConsistent();
  }
  sb.ok(['delete', 'snappy']);
  assertLayersConsistent();
});
