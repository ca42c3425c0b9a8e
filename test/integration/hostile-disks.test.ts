/**
 * Hostile disk sources and exports, against real qemu-img, qemu-nbd and QEMU (blank
 * images, a machine that never runs: no guest boots). A DEVVM_HOME is laid out as the
 * helper lays it out (a base, a pool with a frozen layer and an overlay, a VM's cache,
 * seed and host key, the install's key, an import in tmp) and attacked by name.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import { checkDiskSource } from '../../src/helper/disksource';
import { exportAlive, listenerOwner, serveExport, stopExport, type ExportFiles } from '../../src/helper/exports';
import { Home } from '../../src/helper/filenames';
import { freePort } from '../../src/helper/ports';
import { loadNative } from '../../src/helper/native';
import { Qmp } from '../../src/helper/qemu/qmp';

const root = mkdtempSync(path.join(os.tmpdir(), 'devvm-hostile-'));
const home = new Home(path.join(root, 'home'));
const user = path.join(root, 'user');
const L1 = 'l000000000001'; // frozen: snapshot "s" of web
const L2 = 'l000000000002'; // web's writable overlay
const web = home.vm('web');

function img(...args: string[]): void {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

before(() => {
  for (const d of [home.image('base').dir, home.layersDir, web.dir, home.keysDir, home.tmpDir, user]) mkdirSync(d, { recursive: true, mode: 0o700 });
  img('create', '-q', '-f', 'qcow2', home.image('base').disk, '16M');
  chmodSync(home.image('base').disk, 0o444);
  writeFileSync(home.image('base').meta, '{}');
  img('create', '-q', '-f', 'qcow2', '-b', home.image('base').disk, '-F', 'qcow2', path.join(home.layersDir, `${L1}.qcow2`));
  writeFileSync(path.join(home.layersDir, `${L1}.json`), JSON.stringify({ id: L1, parent: null, image: 'base', vm: 'web' }));
  img('create', '-q', '-f', 'qcow2', '-b', path.join(home.layersDir, `${L1}.qcow2`), '-F', 'qcow2', path.join(home.layersDir, `${L2}.qcow2`));
  writeFileSync(path.join(home.layersDir, `${L2}.json`), JSON.stringify({ id: L2, parent: L1, image: 'base', vm: 'web' }));
  writeFileSync(web.meta, JSON.stringify({ name: 'web', overlay: L2, snapshots: [{ name: 's', layer: L1 }] }));
  img('create', '-q', '-f', 'qcow2', '-b', home.image('base').disk, '-F', 'qcow2', web.cache);
  writeFileSync(web.seed, 'hashed_passwd: $6$salt$hash\n');
  writeFileSync(web.hostKey, '-----BEGIN OPENSSH PRIVATE KEY-----\n', { mode: 0o600 });
  writeFileSync(home.privateKey, '-----BEGIN OPENSSH PRIVATE KEY-----\n', { mode: 0o600 });
  img('create', '-q', '-f', 'qcow2', path.join(home.tmpDir, 'import-1.qcow2'), '16M');
});

after(() => rmSync(root, { recursive: true, force: true }));

async function refused(source: string, o: { readOnly: boolean; format?: 'qcow2' | 'raw' }, why: RegExp): Promise<void> {
  await assert.rejects(checkDiskSource(home, source, o), (e: Error) => {
    assert.ok(e instanceof DevvmError, String(e));
    assert.match(e.oneLine(), why, `${source} ${JSON.stringify(o)}`);
    assert.doesNotMatch(e.oneLine(), /\n/);
    return true;
  });
}

async function accepted(source: string, o: { readOnly: boolean; format?: 'qcow2' | 'raw' }) {
  const c = await checkDiskSource(home, source, o);
  await c.close();
  return c;
}

test('private files are refused in any mode, whatever the spelling: symlink, hard link, /./, //', async () => {
  const link = path.join(user, 'innocent.img');
  const hard = path.join(user, 'hard.img');
  const cases: Array<[string, string]> = [];
  for (const [i, f] of [web.seed, web.cache, web.hostKey, home.privateKey, path.join(home.layersDir, `${L2}.qcow2`), path.join(home.tmpDir, 'import-1.qcow2'), web.meta].entries()) {
    symlinkSync(f, `${link}.${i}`);
    linkSync(f, `${hard}.${i}`);
    cases.push([`${link}.${i}`, f], [`${hard}.${i}`, f], [f.replace(root, `${root}/.`), f], [`/${f}`, f], [f.replace(/^\//, '/./'), f]);
  }
  for (const [spelling] of cases) {
    for (const readOnly of [true, false]) {
      for (const format of ['raw', undefined] as const) await refused(spelling, { readOnly, format }, /is devvm's own file/);
    }
  }
});

test("the shared base and frozen layers attach read-only only; the base's hard link outside the home too", async () => {
  const base = home.image('base').disk;
  const built = path.join(user, 'build-cache-base.qcow2'); // as the build cache shares the base's inode
  linkSync(base, built);
  for (const s of [base, `/${base}`, built]) {
    await refused(s, { readOnly: false, format: 'qcow2' }, /shared base .* never written/);
    const c = await accepted(s, { readOnly: true });
    assert.deepEqual([c.kind, c.format, c.source, typeof c.fd], ['file', 'qcow2', s === built ? built : base, 'number']);
  }
  const frozen = path.join(home.layersDir, `${L1}.qcow2`);
  await refused(frozen, { readOnly: false, format: 'raw' }, /frozen layer .* never written/);
  // Read-only and declared raw it may go (a qcow2 read through its chain never may: backing).
  assert.equal((await accepted(frozen, { readOnly: true, format: 'raw' })).format, 'raw');
  await refused(frozen, { readOnly: true }, /names a backing file/);
});

test("a user's own image outside the home opens read-write, through our own fd with the right mode", async () => {
  const mine = path.join(user, 'mine.qcow2');
  img('create', '-q', '-f', 'qcow2', mine, '8M');
  for (const readOnly of [false, true]) {
    const c = await checkDiskSource(home, mine, { readOnly });
    try {
      const flags = parseInt(/flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${c.fd}`, 'utf8'))![1]!, 8);
      assert.equal(flags & 3, readOnly ? 0 : 2, 'O_RDONLY / O_RDWR');
      assert.equal(readlinkSync(`/proc/self/fd/${c.fd}`), mine);
    } finally {
      await c.close();
    }
  }
});

test('the format is declared or read by us, never probed: raw with a qcow2 header, backing files, data files, text', async () => {
  // A raw disk to which a guest wrote a qcow2 header naming the install's private key.
  const hostile = path.join(user, 'guest-wrote.raw');
  img('create', '-q', '-f', 'qcow2', '-b', home.privateKey, '-F', 'raw', hostile, '1M');
  const probed = JSON.parse(spawnSync('qemu-img', ['info', '--output=json', '-U', hostile], { encoding: 'utf8' }).stdout) as { format: string; 'backing-filename'?: string };
  assert.equal(probed.format, 'qcow2', 'a probe takes it for a qcow2');
  assert.equal(probed['backing-filename'], home.privateKey, '...that makes QEMU open the key');
  await refused(hostile, { readOnly: false }, /names a backing file/);
  await refused(hostile, { readOnly: true, format: 'qcow2' }, /names a backing file/);
  assert.equal((await accepted(hostile, { readOnly: false, format: 'raw' })).format, 'raw');

  const relative = path.join(user, 'relative.qcow2');
  img('create', '-q', '-f', 'qcow2', '-b', 'mine.qcow2', '-F', 'qcow2', relative, '8M');
  await refused(relative, { readOnly: true }, /names a backing file/);

  const withData = path.join(user, 'data.qcow2');
  img('create', '-q', '-f', 'qcow2', '-o', `data_file=${path.join(user, 'data.bin')}`, withData, '1M');
  await refused(withData, { readOnly: true }, /external data file/);

  for (const [tag, at, bit, pattern] of [['corrupt', 79, 2, /marked corrupt/], ['unknown', 74, 1, /incompatible features unknown here/]] as const) {
    const file = path.join(user, `${tag}.qcow2`);
    img('create', '-q', '-f', 'qcow2', file, '1M');
    const b = readFileSync(file);
    b[at] = b[at]! | bit;
    writeFileSync(file, b);
    await refused(file, { readOnly: true }, pattern);
  }

  writeFileSync(path.join(user, 'notes.txt'), 'just text\n');
  await refused(path.join(user, 'notes.txt'), { readOnly: true }, /is not a qcow2 image .*--format raw/);
  const broken = Buffer.alloc(512);
  Buffer.from('QFI\xfb', 'latin1').copy(broken);
  broken.writeUInt32BE(9, 4);
  writeFileSync(path.join(user, 'broken.qcow2'), broken);
  await refused(path.join(user, 'broken.qcow2'), { readOnly: true }, /malformed qcow2 header: qcow2 version 9/);
});

test('FIFOs, devices, directories and relative paths are refused without being opened', async () => {
  const fifo = path.join(user, 'fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const t = Date.now();
  await refused(fifo, { readOnly: true, format: 'raw' }, /not a regular file/);
  await refused('/dev/zero', { readOnly: false, format: 'raw' }, /not a regular file/);
  await refused(user, { readOnly: true, format: 'raw' }, /not a regular file/);
  await refused('mine.qcow2', { readOnly: true }, /absolute path/);
  await assert.rejects(checkDiskSource(home, path.join(user, 'gone'), { readOnly: true }), /no such disk image/);
  assert.ok(Date.now() - t < 2000);
});

const addon = loadNative().addon;

test('QEMU opens the checked inode via add-fd (a swap after the check changes nothing), with explicit drivers and backing null', { skip: addon ? false : 'native addon not built' }, async () => {
  const qmpSock = path.join(root, 'q.sock');
  const qemu: ChildProcess = spawn('qemu-system-x86_64', ['-M', 'none', '-S', '-nodefaults', '-display', 'none', '-qmp', `unix:${qmpSock},server=on,wait=off`], { stdio: 'ignore' });
  try {
    let qmp: Qmp | undefined;
    for (let i = 0; i < 100 && !qmp; i++) {
      qmp = await Qmp.connect(qmpSock, 2000).catch(() => undefined);
      if (!qmp) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(qmp, 'QMP answers');
    const disk = path.join(user, 'swap.qcow2');
    img('create', '-q', '-f', 'qcow2', disk, '16M');
    const checked = await checkDiskSource(home, disk, { readOnly: true });
    // After the check, the name is pointed elsewhere (a rename over it).
    img('create', '-q', '-f', 'qcow2', `${disk}.other`, '32M');
    renameSync(`${disk}.other`, disk);
    const hostile = path.join(user, 'guest-wrote.raw'); // from the test above: qcow2 header naming the key
    const raw = await checkDiskSource(home, hostile, { readOnly: true, format: 'raw' });
    try {
      for (const [id, c] of [['xd1', checked], ['xd2', raw]] as const) {
        const { 'fdset-id': set } = await qmp.executeWithFd<{ 'fdset-id': number }>('add-fd', { opaque: `disk ${id}` }, c.fd!, addon!.sendFd);
        await qmp.execute('blockdev-add', { driver: 'file', 'node-name': `${id}-proto`, filename: `/dev/fdset/${set}`, 'read-only': true });
        await qmp.execute('blockdev-add', { driver: c.format, file: `${id}-proto`, 'node-name': id, 'read-only': true, ...(c.format === 'qcow2' ? { backing: null } : {}) });
        await qmp.execute('remove-fd', { 'fdset-id': set });
      }
    } finally {
      await checked.close();
      await raw.close();
    }
    const nodes = await qmp.execute<Array<{ 'node-name': string; drv: string; image: { 'virtual-size': number; 'backing-filename'?: string } }>>('query-named-block-nodes');
    const xd1 = nodes.find((n) => n['node-name'] === 'xd1')!;
    assert.equal(xd1.drv, 'qcow2');
    assert.equal(xd1.image['virtual-size'], 16 * 1024 * 1024, 'the checked file, not the one swapped in');
    const xd2 = nodes.find((n) => n['node-name'] === 'xd2')!;
    assert.equal(xd2.drv, 'raw');
    assert.equal(xd2.image['backing-filename'], undefined);
    const open = readdirSync(`/proc/${qemu.pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${qemu.pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    assert.ok(!open.includes(home.privateKey), 'QEMU never opened the key the header names');
    assert.equal(nodes.length, 4, 'two disks, two nodes each, nothing else opened');
    qmp.close();
  } finally {
    qemu.kill('SIGKILL');
  }
});

// ---- exports ---------------------------------------------------------------

function exportFiles(): ExportFiles {
  return { socket: web.nbdSocket, tlsDir: web.nbdTlsDir, pidFile: web.nbdPid, logFile: web.nbdLog };
}

function qemuImgInfo(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('qemu-img', ['info', '--output=json', ...args], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, out: r.stdout + r.stderr };
}

test('the default export is a 0600 unix socket in the 0700 VM directory, readable by qemu-img; exportAlive follows the process', async () => {
  chmodSync(web.dir, 0o755); // serveExport makes the directory private again
  const files = exportFiles();
  const rec = await serveExport({ file: path.join(home.layersDir, `${L1}.qcow2`), exportName: 'web-s', layer: L1, files, tcp: false });
  try {
    assert.equal(rec.uri, `nbd+unix:///web-s?socket=${web.nbdSocket}`);
    assert.equal(rec.port, undefined);
    assert.equal(statSync(web.nbdSocket).mode & 0o777, 0o600);
    assert.equal(statSync(web.dir).mode & 0o777, 0o700);
    const info = qemuImgInfo([rec.uri]);
    assert.equal(info.status, 0, info.out);
    assert.equal(JSON.parse(info.out)['virtual-size'], 16 * 1024 * 1024);
    assert.ok(exportAlive(rec, files.pidFile));
    assert.ok(!exportAlive({ ...rec, socket: '/elsewhere.sock' }, files.pidFile), 'another command line is not ours');
    writeFileSync(files.pidFile, `${process.pid}\n`);
    assert.ok(!exportAlive({ ...rec, pid: process.pid }, files.pidFile), 'a live pid that is not qemu-nbd is not ours');
    writeFileSync(files.pidFile, `${rec.pid}\n`);
    // The attach side accepts another VM's export socket as a source.
    assert.equal((await checkDiskSource(home, rec.uri, { readOnly: true })).format, 'raw');
    await assert.rejects(checkDiskSource(home, `nbd+unix:///x?socket=${web.qmp}`, { readOnly: true }), /own socket vms\/web\/qmp.sock, not an NBD export/);
  } finally {
    stopExport(rec, files);
  }
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(!exportAlive(rec, files.pidFile));
  assert.throws(() => statSync(web.nbdSocket), /ENOENT/);
});

test('a TCP export needs the PSK: a plain client is refused, a wrong key is refused, the right key reads', async () => {
  const files = exportFiles();
  const rec = await serveExport({ file: home.image('base').disk, exportName: 'web-base', layer: L1, files, tcp: true });
  try {
    assert.match(rec.uri, /^nbd:\/\/127\.0\.0\.1:\d+\/web-base$/);
    assert.equal(statSync(rec.tls!.pskFile).mode & 0o777, 0o600);
    assert.equal(statSync(rec.tls!.dir).mode & 0o777, 0o700);
    assert.match(readFileSync(rec.tls!.pskFile, 'utf8'), /^devvm:[0-9a-f]{64}\n$/);
    assert.equal(listenerOwner(rec.port!, rec.pid), rec.pid, "the listener is qemu-nbd's own socket");
    const plain = qemuImgInfo([rec.uri]);
    assert.notEqual(plain.status, 0);
    assert.match(plain.out, /TLS/);
    const client = (dir: string) =>
      qemuImgInfo(['--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${dir},username=${rec.tls!.identity}`, '--image-opts', `driver=nbd,host=127.0.0.1,port=${rec.port},export=web-base,tls-creds=tls0`]);
    const wrong = path.join(root, 'wrong-psk');
    mkdirSync(wrong, { mode: 0o700 });
    writeFileSync(path.join(wrong, 'keys.psk'), `devvm:${'ab'.repeat(32)}\n`, { mode: 0o600 });
    assert.notEqual(client(wrong).status, 0, 'a wrong key is refused');
    const good = client(rec.tls!.dir);
    assert.equal(good.status, 0, good.out);
    assert.equal(JSON.parse(good.out)['virtual-size'], 16 * 1024 * 1024);
    assert.ok(exportAlive(rec, files.pidFile));
  } finally {
    stopExport(rec, files);
  }
  assert.throws(() => statSync(web.nbdTlsDir), /ENOENT/, 'the key goes with the export');
});

test("a port someone else took between choosing and binding: qemu-nbd's bind fails and a fresh port is used", async () => {
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
  const taken = (squatter.address() as net.AddressInfo).port;
  assert.equal(listenerOwner(taken, process.pid), process.pid);
  const ports = [taken];
  const files = exportFiles();
  try {
    const rec = await serveExport({
      file: home.image('base').disk,
      exportName: 'web-base',
      layer: L1,
      files,
      tcp: true,
      pickPort: async () => ports.shift() ?? freePort(),
    });
    try {
      assert.notEqual(rec.port, taken);
      assert.equal(listenerOwner(rec.port!, rec.pid), rec.pid);
      assert.equal(listenerOwner(taken, rec.pid), -1, 'the taken port is not ours');
    } finally {
      stopExport(rec, files);
    }
  } finally {
    squatter.close();
  }
});
