/**
 * The cache layer over a slow remote base, on a real Debian guest: the debian-12 base is
 * served over NBD through a throttled relay that counts what it sends, imported by URI,
 * and booted twice. The second boot must read (almost) nothing from the base.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { debianImage, Sandbox } from './harness';
import { serveSlowly, type SlowNbd } from './slownbd';

const sb = new Sandbox('cache');
let base: SlowNbd;
let firstBootBytes = 0;
const MiB = 2 ** 20;

interface Img {
  name: string;
  file: string;
  format: string;
  virtualSize: number;
  sha256: string | null;
  kernel: string;
  initrd: string;
}

before(async () => {
  debianImage(sb);
  const local = sb.json<Img[]>(['image', 'list']).find((i) => i.name === 'debian-12')!;
  base = await serveSlowly(local.file, 32 * MiB);
  const remote = sb.json<Img>(['image', 'import', base.uri, '--name', 'netbase', '--kernel', local.kernel, '--initrd', local.initrd]);
  assert.equal(remote.file, base.uri);
  assert.equal(remote.sha256, null);
  assert.equal(remote.virtualSize, local.virtualSize);
});

after(async () => {
  sb.cleanup();
  await base?.close();
});

const cacheBytes = () => sb.json<{ layers: Array<{ role: string; actualSize: number }> }>(['info', 'net']).layers.find((l) => l.role === 'cache')!.actualSize;

test('an nbd:// import is used in place; an unreachable one is refused and registers nothing', () => {
  const before = sb.json<Img[]>(['image', 'list']).map((i) => i.name);
  const r = sb.cli(['image', 'import', 'nbd://127.0.0.1:1/base', '--name', 'nowhere']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /not a readable disk image/);
  assert.equal(r.stderr.trim().split('\n').length <= 2, true, r.stderr);
  assert.deepEqual(sb.json<Img[]>(['image', 'list']).map((i) => i.name), before);
});

test('first boot over the slow base copies what it reads into the cache layer', async () => {
  sb.ok(['create', 'net', '--image', 'netbase', '--user', 'alice', '--memory', '1024']);
  await base.reset();
  sb.ok(['start', 'net', '--wait-ssh']);
  firstBootBytes = await base.bytes();
  assert.ok(firstBootBytes > 16 * MiB, `only ${firstBootBytes} bytes came from the base`);
  assert.equal(sb.ssh('net', ['cat', '/etc/debian_version']).stdout.trim().split('.')[0], '12');
  // What came over the wire is now in the cache (allocated in whole clusters).
  assert.ok(cacheBytes() >= firstBootBytes * 0.8, `cache holds ${cacheBytes()} bytes after ${firstBootBytes} were read`);
});

test('the second boot reads at most 5% of the first from the base', async (t) => {
  sb.ok(['stop', 'net']);
  await base.reset();
  sb.ok(['start', 'net', '--wait-ssh']);
  const second = await base.bytes();
  t.diagnostic(`base bytes: first boot ${firstBootBytes}, second ${second} (${((second / firstBootBytes) * 100).toFixed(2)}%)`);
  assert.ok(second <= firstBootBytes * 0.05, `second boot read ${second} bytes from the base (first: ${firstBootBytes})`);
});

test('a base whose server is down: start says so in one line and the VM stays stopped', async () => {
  sb.ok(['stop', 'net']);
  await base.close();
  const r = sb.cli(['start', 'net']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /base of image "netbase" at nbd:\/\/127\.0\.0\.1:\d+\/base does not answer/);
  assert.equal(sb.json<{ state: string }>(['info', 'net']).state, 'stopped');
});
