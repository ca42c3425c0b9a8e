/**
 * Images and layers without booting: import (qcow2, and raw when declared), pull against a local HTTP
 * server with checksum verification, O(1) layer creation, and `info --json` layers.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { softwareOnlyKvm } from '../hostfacts';
import { Rpc } from '../../src/shared/rpc';
import { debianImage, Sandbox } from './harness';
import { rpc } from './rpc';

const sb = new Sandbox('images');
const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-images-src-'));
let server: http.Server;
let base = '';
const served = new Map<string, Buffer>();

before(async () => {
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(dir, 'a.qcow2'), '1G']);
  const raw = Buffer.alloc(4 * 1024 * 1024);
  raw.write('hello from a raw disk', 1024 * 1024);
  writeFileSync(path.join(dir, 'b.raw'), raw);
  const cloud = readFileSync(path.join(dir, 'a.qcow2'));
  const file = 'debian-12-genericcloud-amd64.qcow2';
  served.set(`/good/${file}`, cloud);
  served.set('/good/SHA512SUMS', Buffer.from(`${'0'.repeat(128)}  other.qcow2\n${createHash('sha512').update(cloud).digest('hex')}  ${file}\n`));
  served.set(`/bad/${file}`, Buffer.concat([cloud, Buffer.from('tampered')]));
  served.set('/bad/SHA512SUMS', served.get('/good/SHA512SUMS')!);
  server = http.createServer((req, res) => {
    const body = served.get(req.url ?? '');
    if (body) res.writeHead(200, { 'content-length': body.length }).end(body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

after(() => {
  server.close();
  sb.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

interface Img { name: string; file: string; format: string; sha256: string; virtualSize: number; usedBy: string[] }

test('import registers a read-only base with its sha256', async () => {
  sb.ok(['image', 'import', path.join(dir, 'a.qcow2'), '--name', 'a']);
  // A raw disk is taken only when declared raw (the RPC's format; the CLI's --format).
  const r = sb.cli(['image', 'import', path.join(dir, 'b.raw'), '--name', 'b']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^devvm: .*b\.raw is not a qcow2 image \(pass --format raw to import a raw disk\)\n$/);
  await rpc(sb, Rpc.imageImport, { file: path.join(dir, 'b.raw'), name: 'b', format: 'raw' });
  const list = sb.json<Img[]>(['image', 'list']);
  assert.deepEqual(list.map((i) => i.name), ['a', 'b']);
  for (const i of list) {
    assert.equal(i.format, 'qcow2');
    assert.equal(statSync(i.file).mode & 0o222, 0, 'base is read-only');
    assert.equal(i.sha256, createHash('sha256').update(readFileSync(i.file)).digest('hex'));
  }
  assert.equal(list[1]!.virtualSize, 4 * 1024 * 1024);
});

// The HTTP server lives in this process: pulls must not block its event loop (cliAsync).
test('pull downloads, verifies SHA512SUMS and registers', async () => {
  sb.env.DEVVM_PULL_BASE = `${base}/good/`;
  sb.cli(['helper', 'stop']); // the helper reads DEVVM_PULL_BASE at start
  const r = await sb.cliAsync(['image', 'pull', 'debian-12', '--name', 'cloud', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const i = JSON.parse(r.stdout) as Img;
  assert.equal(i.name, 'cloud');
  assert.equal(i.virtualSize, 1024 ** 3);
  // Pulled again: the image there is the pull's, kept; a name held by an import is refused.
  assert.equal((await sb.cliAsync(['image', 'pull', 'debian-12', '--name', 'cloud'])).code, 0);
  const taken = await sb.cliAsync(['image', 'pull', 'debian-12', '--name', 'a']);
  assert.match(taken.stderr, /^devvm: image "a" exists and is not a pull of debian-12-genericcloud-amd64\.qcow2 \(it came from .*a\.qcow2\)/);
});

test('pull refuses a download whose checksum does not match, and registers nothing', async () => {
  sb.env.DEVVM_PULL_BASE = `${base}/bad/`;
  sb.cli(['helper', 'stop']);
  const before = sb.ok(['image', 'list', '--json']);
  const r = await sb.cliAsync(['image', 'pull', 'debian-12', '--name', 'evil']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^devvm: checksum mismatch/);
  assert.equal(sb.ok(['image', 'list', '--json']), before);
  sb.env.DEVVM_PULL_BASE = `${base}/missing/`;
  sb.cli(['helper', 'stop']);
  assert.match((await sb.cliAsync(['image', 'pull', 'debian-12', '--name', 'evil'])).stderr, /HTTP 404/);
});

test('create makes a cache and an overlay in O(1); info lists every layer and who shares the base', () => {
  sb.ok(['create', 'one', '--image', 'a', '--user', 'alice', '--disk', '30']);
  sb.ok(['create', 'two', '--image', 'a', '--user', 'bob']);
  const info = sb.json<{ layers: Array<{ role: string; file: string; virtualSize: number; actualSize: number; readOnly: boolean; sharedBy: string[]; format: string }> }>(['info', 'one']);
  assert.deepEqual(info.layers.map((l) => l.role), ['overlay', 'cache', 'base']);
  const [overlay, cache, baseLayer] = info.layers;
  assert.equal(overlay!.virtualSize, 30 * 1024 ** 3);
  assert.equal(cache!.virtualSize, 1024 ** 3);
  assert.ok(overlay!.actualSize + cache!.actualSize < 2 * 1024 * 1024, 'fresh layers are tiny');
  assert.deepEqual(baseLayer!.sharedBy, ['one', 'two']);
  assert.deepEqual(overlay!.sharedBy, ['one']);
  assert.equal(baseLayer!.readOnly, true);
  // On disk the overlay names the base itself: the cache is a run-time node (copy-on-read
  // over the base), so a layer stays readable by any VM or tool. Both name the base.
  for (const file of [overlay!.file, cache!.file]) {
    const chain = JSON.parse(spawnSync('qemu-img', ['info', '--backing-chain', '--output=json', file], { encoding: 'utf8' }).stdout) as Array<{ filename: string }>;
    assert.deepEqual(chain.map((c) => c.filename), [file, baseLayer!.file]);
  }
  assert.equal(path.dirname(overlay!.file), path.join(sb.home, 'layers'), 'overlays live in the layer pool');
  assert.deepEqual(sb.json<Img[]>(['image', 'list']).find((i) => i.name === 'a')!.usedBy, ['one', 'two']);
});

test('ssh_config has a pinned block per VM, files are private', () => {
  const cfg = path.join(sb.home, 'ssh_config');
  const text = readFileSync(cfg, 'utf8');
  assert.match(text, /Host devvm-one\n/);
  assert.match(text, /Host devvm-two\n/);
  for (const f of [cfg, path.join(sb.home, 'keys', 'id_ed25519'), path.join(sb.home, 'vms', 'one', 'seed.iso'), path.join(sb.home, 'vms', 'one', 'vm.json'), path.join(sb.home, 'helper.sock')]) {
    assert.equal(statSync(f).mode & 0o077, 0, `${f} is private`);
  }
});

test('ssh-config --include adds one Include line, once', () => {
  const userCfg = path.join(dir, 'user_ssh_config');
  writeFileSync(userCfg, 'Host example\n  User me\n');
  sb.ok(['ssh-config', '--include', '--user-config', userCfg]);
  sb.ok(['ssh-config', '--include', '--user-config', userCfg]);
  const text = readFileSync(userCfg, 'utf8');
  assert.equal(text.split(`Include ${path.join(sb.home, 'ssh_config')}`).length, 2);
  assert.equal(readFileSync(`${userCfg}.devvm-backup`, 'utf8'), 'Host example\n  User me\n');
});

test('delete removes the VM, its pinned key and its ssh block; unused images can go', () => {
  sb.ok(['delete', 'two']);
  assert.doesNotMatch(readFileSync(path.join(sb.home, 'ssh_config'), 'utf8'), /devvm-two/);
  assert.deepEqual(sb.json<Array<{ name: string }>>(['list']).map((v) => v.name), ['one']);
  sb.ok(['image', 'delete', 'b']);
  assert.deepEqual(sb.json<Img[]>(['image', 'list']).map((i) => i.name), ['a', 'cloud']);
});

test('doctor reports the accelerator with its reason and every tool', () => {
  const d = sb.json<{ accelerator: { name: string; reason: string }; nativeAddon: { loaded: boolean; detail: string }; checks: Array<{ name: string; ok: boolean; detail: string }> }>(['doctor']);
  assert.ok(['kvm', 'tcg'].includes(d.accelerator.name));
  assert.ok(d.accelerator.reason.length > 10, d.accelerator.reason);
  for (const tool of ['qemu-system', 'qemu-img', 'genisoimage', 'ssh', 'ssh-keygen', 'openssl']) {
    const c = d.checks.find((x) => x.name === tool);
    assert.ok(c?.ok, `${tool}: ${c?.detail}`);
  }
  // On a machine whose /dev/kvm crawls (nested without hardware help) the probe must say TCG.
  if (softwareOnlyKvm()) {
    assert.equal(d.accelerator.name, 'tcg');
  }
});

test('image build replaces a build of an older recipe once no VM uses it, and keeps it while one does', () => {
  debianImage(sb);
  const meta = path.join(sb.home, 'images', 'debian-12', 'image.json');
  const current = JSON.parse(readFileSync(meta, 'utf8')) as { source: string; file: string };
  // What a devvm update leaves: the registered build's recipe hash is no longer the recipe's.
  writeFileSync(meta, JSON.stringify({ ...current, source: current.source.replace(/#[0-9a-f]+$/, '#00000000deadbeef') }));
  const listed = () => sb.json<Array<Img & { outdated?: boolean; source: string }>>(['image', 'list']).find((i) => i.name === 'debian-12')!;
  assert.equal(listed().outdated, true);
  assert.match(sb.ok(['image', 'list']), /debian-12 .*recipe:debian-12#00000000deadbeef \(older recipe\)/);

  sb.ok(['create', 'old', '--image', 'debian-12', '--user', 'dev']);
  const kept = sb.ok(['image', 'build', 'debian-12']);
  assert.match(kept, /\nimage debian-12 was built from an older debian-12 recipe and is kept because old uses it; "devvm image build debian-12 --name NAME" builds the current one beside it\n$/);
  assert.match(listed().source, /deadbeef/);

  sb.ok(['delete', 'old']);
  const rebuilt = sb.ok(['image', 'build', 'debian-12']);
  assert.match(rebuilt, /^image debian-12 ready: [^\n]*\n$/);
  assert.equal(listed().source, current.source);
  assert.equal(listed().outdated, undefined);
  // A VM made over the replaced base layers on the current build's disk.
  sb.ok(['create', 'new', '--image', 'debian-12', '--user', 'dev']);
  assert.equal(sb.json<{ layers: Array<{ role: string; file: string }> }>(['info', 'new']).layers.at(-1)!.file, current.file);
  sb.ok(['delete', 'new']);
});
