/**
 * Hostile files and name collisions in image import and pull, against real qemu-img on
 * blank images (no guest boots). Most cases drive Images directly with a private home;
 * those about the helper process (event loop, start-up sweep) go through the CLI.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import { Rpc } from '../../src/shared/rpc';
import { Home } from '../../src/helper/filenames';
import { Images } from '../../src/helper/images';
import { processGone, Sandbox } from './harness';
import { rpc } from './rpc';

const work = mkdtempSync(path.join(os.tmpdir(), 'devvm-hostile-'));
const home = new Home(path.join(work, 'home'));
const images = new Images(home, path.join(work, 'cache'));
const src = path.join(work, 'src');
const keys = path.join(work, 'keys');
const secret = path.join(keys, 'id_ed25519');
const SECRET = 'BEGIN-OPENSSH-PRIVATE-KEY-do-not-leak-';
const quiet = () => {};
const sb = new Sandbox('hostile');

function qemuImg(args: string[]): void {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `qemu-img ${args.join(' ')}: ${r.stderr}`);
}

/** The guest-visible bytes of a registered base. */
function guestBytes(file: string): Buffer {
  const out = path.join(work, `read-${process.hrtime.bigint()}.raw`);
  qemuImg(['convert', '-f', 'qcow2', '-O', 'raw', file, out]);
  try {
    return readFileSync(out);
  } finally {
    rmSync(out, { force: true });
  }
}

const tmpEntries = () => (existsSync(home.tmpDir) ? readdirSync(home.tmpDir) : []);
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

async function refused(p: Promise<unknown>, pattern: RegExp, code?: string): Promise<DevvmError> {
  const e = await p.then(
    () => assert.fail(`expected a refusal matching ${pattern}`),
    (x: unknown) => x,
  );
  assert.ok(e instanceof DevvmError, `not a DevvmError: ${(e as Error)?.stack ?? e}`);
  assert.match(e.oneLine(), pattern);
  assert.equal(e.oneLine().includes('\n'), false);
  if (code) assert.equal(e.code, code);
  return e;
}

/** Fails (instead of hanging the run) when `p` does not settle within `ms`. */
function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

before(() => {
  mkdirSync(src, { recursive: true });
  mkdirSync(keys, { recursive: true });
  mkdirSync(home.root, { recursive: true });
  writeFileSync(secret, `${SECRET}\n`.repeat(64));
  qemuImg(['create', '-q', '-f', 'qcow2', path.join(src, 'blank.qcow2'), '64M']);
  // Backed by the host's "private key", absolute and relative (as qemu resolves it).
  qemuImg(['create', '-q', '-f', 'qcow2', '-b', secret, '-F', 'raw', path.join(src, 'abs.qcow2'), '1M']);
  qemuImg(['create', '-q', '-f', 'qcow2', '-b', '../keys/id_ed25519', '-F', 'raw', path.join(src, 'rel.qcow2'), '1M']);
  // No backing format: qemu would probe the backing file.
  // (qemu-img no longer writes one: turn the backing format extension into an unknown one).
  const probe = path.join(src, 'probe.qcow2');
  qemuImg(['create', '-q', '-f', 'qcow2', '-b', secret, '-F', 'raw', probe, '1M']);
  const img = readFileSync(probe);
  const at = img.subarray(0, 65536).indexOf(Buffer.from('e2792aca', 'hex'));
  assert.ok(at > 0);
  img.writeUInt32BE(0x0badf00d, at);
  writeFileSync(probe, img);
  // Guest data in a file of the host's choosing.
  // (create writes the data file: point it at a host file afterwards, as a hostile image would).
  qemuImg(['create', '-q', '-f', 'qcow2', '-o', `data_file=${path.join(keys, 'ssh_host_key')}`, path.join(src, 'datafile.qcow2'), '1M']);
  writeFileSync(path.join(keys, 'ssh_host_key'), `${SECRET}\n`.repeat(64));
  writeFileSync(path.join(src, 'notes.txt'), 'just some text\n'.repeat(200));
  spawnSync('mkfifo', [path.join(src, 'fifo')]);
});

after(() => {
  sb.cleanup();
  rmSync(work, { recursive: true, force: true });
});

// Each test starts with no images, so one failure does not cascade.
beforeEach(() => rmSync(home.imagesDir, { recursive: true, force: true }));

test('a qcow2 backed by a host file (absolute, relative, or unformatted) is refused; nothing registered, nothing in tmp', async () => {
  for (const f of ['abs.qcow2', 'rel.qcow2', 'probe.qcow2']) {
    const file = path.join(src, f);
    await refused(images.import(file, 'evil', undefined, undefined, quiet), new RegExp(`^${file.replace(/[.]/g, '\\.')} has a backing file \\(.*id_ed25519\\); pass --flatten to copy it into one standalone base$`), 'invalid-argument');
    assert.deepEqual(images.names(), []);
    assert.deepEqual(tmpEntries(), []);
  }
});

test('--flatten copies the backing chain into one standalone base', async () => {
  const meta = await images.import(path.join(src, 'rel.qcow2'), 'flat', undefined, undefined, quiet, false, { flatten: true });
  const info = JSON.parse(spawnSync('qemu-img', ['info', '-f', 'qcow2', '--output=json', meta.file], { encoding: 'utf8' }).stdout) as Record<string, unknown>;
  assert.equal(info['backing-filename'], undefined, 'the base stands alone');
  const bytes = guestBytes(meta.file).toString('latin1');
  assert.ok(bytes.startsWith(SECRET), `the base holds the backing data: ${JSON.stringify(bytes.slice(0, 40))}`);
  assert.equal(meta.sha256, sha(meta.file));
  assert.deepEqual(tmpEntries(), []);
  images.delete('flat', []);
});

test('a qcow2 with an external data file is refused, even with --flatten', async () => {
  for (const flatten of [false, true]) {
    await refused(images.import(path.join(src, 'datafile.qcow2'), 'evil', undefined, undefined, quiet, false, { flatten }), /datafile\.qcow2 has an external data file/, 'invalid-argument');
  }
  assert.deepEqual(images.names(), []);
  assert.deepEqual(tmpEntries(), []);
});

test('a qcow2 marked corrupt, or using incompatible features unknown here, is refused before qemu-img reads it', async () => {
  // qemu-img convert reads a corrupt image (read-only) without complaint: the header decides.
  for (const [tag, at, bit, pattern] of [
    ['corrupt', 79, 2, /corrupt\.qcow2 is a qcow2 image marked corrupt \(repair it with qemu-img check -r all first\)$/],
    ['unknown', 74, 1, /unknown\.qcow2 uses qcow2 incompatible features unknown here \(0x10000000000\)/],
  ] as const) {
    const file = path.join(src, `${tag}.qcow2`);
    qemuImg(['create', '-q', '-f', 'qcow2', file, '1M']);
    const b = readFileSync(file);
    b[at] = b[at]! | bit;
    writeFileSync(file, b);
    for (const flatten of [false, true]) await refused(images.import(file, 'evil', undefined, undefined, quiet, false, { flatten }), pattern, 'invalid-argument');
  }
  assert.deepEqual(images.names(), []);
  assert.deepEqual(tmpEntries(), []);
});

test('a file is a raw disk only when declared raw; a declared qcow2 must be one', async () => {
  const txt = path.join(src, 'notes.txt');
  await refused(images.import(txt, 'txt', undefined, undefined, quiet), /notes\.txt is not a qcow2 image \(pass --format raw to import a raw disk\)$/, 'invalid-argument');
  await refused(images.import(txt, 'txt', undefined, undefined, quiet, false, { format: 'qcow2' }), /notes\.txt is not a qcow2 image/, 'invalid-argument');
  await refused(images.import(txt, 'txt', undefined, undefined, quiet, false, { format: 'vmdk' as 'raw' }), /format/, 'invalid-argument');
  assert.deepEqual(images.names(), []);
  const meta = await images.import(txt, 'txt', undefined, undefined, quiet, false, { format: 'raw' });
  assert.equal(meta.format, 'qcow2');
  assert.ok(guestBytes(meta.file).toString('latin1').startsWith('just some text'));
  images.delete('txt', []);
});

test('a qcow2 declared raw is imported as its bytes: its backing file is never opened', async () => {
  const meta = await images.import(path.join(src, 'abs.qcow2'), 'asraw', undefined, undefined, quiet, false, { format: 'raw' });
  const bytes = guestBytes(meta.file);
  assert.equal(bytes.subarray(0, 4).toString('latin1'), 'QFI\xfb');
  assert.equal(bytes.includes(SECRET), false);
  images.delete('asraw', []);
});

test('a FIFO, a directory or a device as disk, kernel or initrd is refused at once', async () => {
  const fifo = path.join(src, 'fifo');
  const blank = path.join(src, 'blank.qcow2');
  for (const odd of [fifo, src, '/dev/zero']) {
    await within(2000, refused(images.import(odd, 'odd', undefined, undefined, quiet), /is not a regular file/, 'invalid-argument'));
    await within(2000, refused(images.import(odd, 'odd', undefined, undefined, quiet, false, { format: 'raw' }), /is not a regular file/, 'invalid-argument'));
    await within(2000, refused(images.import(blank, 'odd', odd, undefined, quiet), /kernel .* is not a regular file/, 'invalid-argument'));
    await within(2000, refused(images.import(blank, 'odd', undefined, odd, quiet), /initrd .* is not a regular file/, 'invalid-argument'));
  }
  assert.deepEqual(images.names(), []);
  assert.deepEqual(tmpEntries(), []);
});

test('importing "c" leaves an image named like a staging folder ("c.tmp-<pid>") alone', async () => {
  const blank = path.join(src, 'blank.qcow2');
  const other = `c.tmp-${process.pid}`;
  await images.import(blank, other, undefined, undefined, quiet);
  await images.import(blank, 'c', undefined, undefined, quiet);
  assert.deepEqual(images.names(), ['c', other]);
  assert.equal(images.get(other).sha256, sha(home.image(other).disk));
  for (const n of ['c', other]) images.delete(n, []);
});

test('two concurrent imports of one name: one wins, the other is refused, the checksum matches the disk', async () => {
  const files = ['x', 'y'].map((tag, i) => {
    const raw = path.join(src, `${tag}.raw`);
    writeFileSync(raw, Buffer.alloc(8 << 20, i + 1));
    const q = path.join(src, `${tag}.qcow2`);
    qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, q]);
    return q;
  });
  for (let round = 0; round < 3; round++) {
    const r = await Promise.allSettled(files.map((f) => images.import(f, 'same', undefined, undefined, quiet)));
    const won = r.filter((x) => x.status === 'fulfilled');
    assert.equal(won.length, 1, `round ${round}: ${r.map((x) => (x.status === 'rejected' ? (x.reason as Error).message : 'ok')).join(', ')}`);
    const lost = r.find((x) => x.status === 'rejected') as PromiseRejectedResult;
    assert.ok(lost.reason instanceof DevvmError && ['busy', 'already-exists'].includes(lost.reason.code), String(lost.reason));
    assert.equal(images.get('same').sha256, sha(home.image('same').disk));
    assert.deepEqual(tmpEntries(), []);
    images.delete('same', []);
  }
});

test('the imported disk is flushed before image.json names it', async () => {
  const seen: Array<{ file: string; metaExists: boolean }> = [];
  const spy = new Images(home, path.join(work, 'cache'), { fsync: (file) => void seen.push({ file, metaExists: existsSync(home.image('synced').meta) }) });
  await spy.import(path.join(src, 'blank.qcow2'), 'synced', undefined, undefined, quiet);
  const disk = seen.find((s) => path.basename(s.file) === 'disk.qcow2');
  assert.ok(disk, `fsync calls: ${JSON.stringify(seen)}`);
  assert.equal(disk.metaExists, false);
  images.delete('synced', []);
});

test('pull refuses a download with a backing file, or one that is not a qcow2', async () => {
  const file = 'debian-12-genericcloud-amd64.qcow2';
  const bodies: Record<string, Buffer> = { backed: readFileSync(path.join(src, 'abs.qcow2')), text: readFileSync(path.join(src, 'notes.txt')) };
  const server = http.createServer((req, res) => {
    const [, dir, name] = (req.url ?? '').split('/');
    const body = bodies[dir ?? ''];
    if (!body) return void res.writeHead(404).end();
    const out = name === 'SHA512SUMS' ? Buffer.from(`${createHash('sha512').update(body).digest('hex')}  ${file}\n`) : body;
    res.writeHead(200, { 'content-length': out.length }).end(out);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  try {
    process.env.DEVVM_PULL_BASE = `${base}/backed/`;
    await refused(images.pull('debian-12', 'evil', quiet), /has a backing file/, 'invalid-argument');
    process.env.DEVVM_PULL_BASE = `${base}/text/`;
    await refused(images.pull('debian-12', 'evil', quiet), /is not a qcow2 image/);
  } finally {
    delete process.env.DEVVM_PULL_BASE;
    server.close();
  }
  assert.deepEqual(images.names(), []);
  assert.deepEqual(tmpEntries(), []);
});

// Through the helper process.

test('helper: a FIFO as --kernel is refused in one line within a second, and the helper still answers', async (t) => {
  const blank = path.join(src, 'blank.qcow2');
  sb.ok(['image', 'list']); // the helper is up
  const t0 = performance.now();
  await within(
    5000,
    refused(rpc(sb, Rpc.imageImport, { file: blank, name: 'k', kernel: path.join(src, 'fifo') }), /kernel .*fifo is not a regular file/),
  );
  const ms = performance.now() - t0;
  t.diagnostic(`refused in ${ms.toFixed(0)} ms`);
  assert.ok(ms < 1000, `took ${ms} ms`);
  const r = sb.cli(['image', 'import', blank, '--name', 'k2', '--initrd', path.join(src, 'fifo')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^devvm: initrd .* is not a regular file.*\n$/);
  assert.deepEqual(JSON.parse(sb.ok(['image', 'list', '--json'])), []);
});

test('helper: stale temp files (a helper killed mid-import) are swept when the next helper starts', async () => {
  const big = path.join(src, 'big.raw');
  writeFileSync(big, Buffer.alloc(256 << 20, 7));
  sb.ok(['image', 'list']);
  const pid = Number(readFileSync(path.join(sb.home, 'helper.pid'), 'utf8'));
  // Not awaited: a request to a helper that dies is never answered (a client issue of its own).
  void rpc(sb, Rpc.imageImport, { file: big, name: 'big', format: 'raw' }).catch(() => {});
  const tmp = path.join(sb.home, 'tmp');
  const deadline = Date.now() + 20_000;
  while (!(existsSync(tmp) && readdirSync(tmp).length) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(readdirSync(tmp).length > 0, 'the import staged something');
  process.kill(pid, 'SIGKILL');
  while (!processGone(pid)) await new Promise((r) => setTimeout(r, 20));
  assert.ok(readdirSync(tmp).length > 0, 'the killed helper left its temp files');
  sb.ok(['image', 'list']); // the next helper starts
  assert.deepEqual(readdirSync(tmp), []);
  assert.equal(existsSync(path.join(sb.home, 'images', 'big')), false);
});
