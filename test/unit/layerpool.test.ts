import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { LayerPool } from '../../src/helper/layerpool';

const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-pool-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('gc removes a layer file left without metadata at once, but not one this process is still creating', async () => {
  const pool = new LayerPool(path.join(dir, 'layers'));
  const base = path.join(dir, 'base.qcow2');
  writeFileSync(base, '');
  const creating = pool.create({ parent: null, baseFile: base, baseFormat: 'raw', image: 'img', vm: 'vm', sizeBytes: 1 << 20 });
  // A helper killed while its qemu-img ran leaves exactly this behind.
  const leftover = path.join(pool.dir, 'l0123456789ab.qcow2');
  writeFileSync(leftover, '');
  const keep = await creating;
  pool.gc([keep.id]);
  assert.equal(existsSync(leftover), false);
  assert.ok(existsSync(pool.file(keep.id)));
  // gc while the create runs: its file has no metadata yet and must survive.
  const second = pool.create({ parent: keep.id, baseFile: base, baseFormat: 'raw', image: 'img', vm: 'vm', sizeBytes: 1 << 20 });
  const fresh = () => readdirSync(pool.dir).filter((f) => f.endsWith('.qcow2') && f !== `${keep.id}.qcow2`);
  while (!fresh().length) await new Promise((r) => setTimeout(r, 1));
  pool.gc([keep.id]);
  assert.equal(fresh().length, 1, 'the layer being created was left alone');
  const made = await second;
  assert.ok(existsSync(pool.file(made.id)), 'the layer being created was left alone');
  assert.deepEqual(pool.ids().sort(), [keep.id, made.id].sort());
});

test('gc keeps reserved layers and their ancestors until the reservation is released', async () => {
  const pool = new LayerPool(path.join(dir, 'layers-r'));
  const base = path.join(dir, 'base-r.qcow2');
  writeFileSync(base, '');
  const parent = await pool.create({ parent: null, baseFile: base, baseFormat: 'raw', image: 'img', vm: 'vm', sizeBytes: 1 << 20 });
  const hold = pool.reserve();
  const child = await pool.create({ parent: parent.id, baseFile: base, baseFormat: 'raw', image: 'img', vm: 'new', sizeBytes: 1 << 20 }, hold);
  // No VM names either layer yet (its vm.json is not written): a collection now must keep both.
  assert.deepEqual(pool.gc([]), []);
  assert.deepEqual(pool.ids().sort(), [parent.id, child.id].sort());
  hold.release();
  assert.deepEqual(pool.gc([]).sort(), [parent.id, child.id].sort());
  assert.deepEqual(pool.ids(), []);
});

test('create on a parent that is gone fails before qemu-img runs, and leaves nothing', async () => {
  const pool = new LayerPool(path.join(dir, 'layers-g'));
  await assert.rejects(pool.create({ parent: 'l000000000000', baseFile: '/nonexistent', baseFormat: 'raw', image: 'img', vm: 'vm', sizeBytes: 1 << 20 }), /missing/);
  assert.deepEqual(existsSync(pool.dir) ? readdirSync(pool.dir) : [], []);
});
