/**
 * `image build` when an image of that name exists: a build of the recipe as it is now is
 * returned, one of an older recipe is replaced when unused and kept when a VM uses it, an
 * image from elsewhere is refused. A fake builder stands in for mmdebstrap.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Home } from '../../src/helper/filenames';
import { Images } from '../../src/helper/images';
import type { BuiltImage } from '../../src/helper/images/cachedir';
import type { DebianRecipe } from '../../src/helper/images/recipe';
import { recipeHash } from '../../src/helper/images/recipe';
import { run } from '../../src/helper/proc';
import { outdatedImageNote } from '../../src/shared/format';

async function setup() {
  const root = mkdtempSync(path.join(os.tmpdir(), 'devvm-rebuild-'));
  const home = new Home(root);
  let builds = 0;
  const buildImage = async (recipe: DebianRecipe, opts: { cacheRoot: string }): Promise<BuiltImage> => {
    builds++;
    const hash = recipeHash(recipe);
    const dir = path.join(opts.cacheRoot, 'images', `${recipe.name}-${hash}`);
    mkdirSync(dir, { recursive: true });
    const disk = path.join(dir, 'disk.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '16M']);
    for (const f of ['vmlinuz', 'initrd.img']) writeFileSync(path.join(dir, f), `${f} ${hash}\n`);
    return { disk, kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.img'), recipeHash: hash, dir };
  };
  const images = new Images(home, path.join(root, 'cache'), { buildImage, fsync: () => {} });
  /** Makes the registered image look like a build of an older version of its recipe. */
  const age = (name: string) => {
    const meta = home.image(name).meta;
    const m = JSON.parse(readFileSync(meta, 'utf8'));
    writeFileSync(meta, JSON.stringify({ ...m, source: m.source.replace(/#[0-9a-f]+$/, '#00000000deadbeef') }));
  };
  return { root, home, images, age, builds: () => builds, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

test('image build of an existing current build returns it without building', async (t) => {
  const s = await setup();
  t.after(s.cleanup);
  const a = await s.images.build('debian-12', undefined, () => {}, () => []);
  const b = await s.images.build('debian-12', undefined, () => {}, () => []);
  assert.equal(s.builds(), 1);
  assert.deepEqual(b, a);
  assert.equal((await s.images.info('debian-12', [])).outdated, undefined);
});

test('an unused image from an older recipe is rebuilt and replaced in place', async (t) => {
  const s = await setup();
  t.after(s.cleanup);
  await s.images.build('debian-12', undefined, () => {}, () => []);
  s.age('debian-12');
  assert.equal((await s.images.info('debian-12', [])).outdated, true);
  const said: string[] = [];
  const c = await s.images.build('debian-12', undefined, (m) => said.push(m), () => []);
  assert.equal(s.builds(), 2);
  assert.match(c.source, /#[0-9a-f]{16}$/);
  assert.doesNotMatch(c.source, /deadbeef/);
  assert.equal((await s.images.info('debian-12', [])).outdated, undefined);
  assert.ok(said.some((m) => /older debian-12 recipe: building the current one/.test(m)), said.join('\n'));
  assert.deepEqual(s.images.names(), ['debian-12']);
});

test('an image from an older recipe that a VM uses is kept, and says so', async (t) => {
  const s = await setup();
  t.after(s.cleanup);
  await s.images.build('debian-12', undefined, () => {}, () => []);
  s.age('debian-12');
  const c = await s.images.build('debian-12', undefined, () => {}, () => ['dev', 'web']);
  assert.equal(s.builds(), 1, 'nothing is built for an image that cannot be replaced');
  assert.match(c.source, /deadbeef/);
  const info = await s.images.info('debian-12', ['dev', 'web']);
  assert.equal(info.outdated, true);
  assert.equal(outdatedImageNote(info), 'image debian-12 was built from an older debian-12 recipe and is kept because dev, web use it; "devvm image build debian-12 --name NAME" builds the current one beside it');
  // A create in progress holds it too.
  const release = s.images.hold('debian-12');
  assert.match((await s.images.build('debian-12', undefined, () => {}, () => [])).source, /deadbeef/);
  release();
  assert.equal(s.builds(), 1);
  // Under another name, the current recipe builds beside it.
  const d = await s.images.build('debian-12', 'debian-12-new', () => {}, () => []);
  assert.doesNotMatch(d.source, /deadbeef/);
  assert.deepEqual(s.images.names(), ['debian-12', 'debian-12-new']);
});

test('an image that comes into use while its rebuild runs is kept, with one line', async (t) => {
  const s = await setup();
  t.after(s.cleanup);
  await s.images.build('debian-12', undefined, () => {}, () => []);
  s.age('debian-12');
  const before = readFileSync(s.home.image('debian-12').meta, 'utf8');
  let asked = 0;
  // Unused when the rebuild starts, used by the time it is ready.
  const users = () => (asked++ === 0 ? [] : ['dev']);
  await assert.rejects(s.images.build('debian-12', undefined, () => {}, users), (e: Error) => {
    assert.equal(e.message, 'image "debian-12" came into use while its rebuild ran (dev uses it); it is kept');
    return true;
  });
  assert.equal(readFileSync(s.home.image('debian-12').meta, 'utf8'), before);
});

test('image build refuses a name held by an image that is not a build of that recipe', async (t) => {
  const s = await setup();
  t.after(s.cleanup);
  await s.images.build('debian-12', 'mine', () => {}, () => []);
  const meta = s.home.image('mine').meta;
  writeFileSync(meta, JSON.stringify({ ...JSON.parse(readFileSync(meta, 'utf8')), source: '/home/u/disk.qcow2' }));
  const before = readFileSync(meta, 'utf8');
  await assert.rejects(s.images.build('debian-12', 'mine', () => {}, () => []), /image "mine" exists and is not a build of recipe debian-12 \(it came from \/home\/u\/disk.qcow2\)/);
  await assert.rejects(s.images.build('debian-12-desktop', 'mine', () => {}, () => []), /not a build of recipe debian-12-desktop/);
  assert.equal(readFileSync(meta, 'utf8'), before);
  assert.equal(s.builds(), 1);
});
