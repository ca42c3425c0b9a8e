/**
 * The attach checks' logic on hand-made files: which pool layers count as frozen, and the
 * NBD rules. What attach refuses in a qcow2 header: test/unit/diskformat.
 * The same attacks against real qemu-img / QEMU images: test/integration/hostile-disks.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { checkDiskSource } from '../../src/helper/disksource';
import { Home } from '../../src/helper/filenames';
import { DevvmError } from '../../src/shared/errors';

/** A plain qcow2 header as qemu-img writes one (v3, 64 KiB clusters); the header reading itself: test/unit/diskformat. */
function qcow2(): Buffer {
  const buf = Buffer.alloc(65536);
  buf.write('QFI\xfb', 0, 'latin1');
  buf.writeUInt32BE(3, 4);
  buf.writeUInt32BE(16, 20);
  buf.writeBigUInt64BE(1n << 30n, 24);
  buf.writeUInt32BE(4, 96);
  buf.writeUInt32BE(112, 100);
  return buf;
}

const root = mkdtempSync(path.join(os.tmpdir(), 'devvm-disksource-'));
after(() => rmSync(root, { recursive: true, force: true }));

function layout(vms: Record<string, unknown>, layers: Record<string, string | null>): Home {
  const home = new Home(mkdtempSync(path.join(root, 'home-')));
  mkdirSync(home.layersDir);
  for (const [id, parent] of Object.entries(layers)) {
    writeFileSync(path.join(home.layersDir, `${id}.qcow2`), qcow2());
    writeFileSync(path.join(home.layersDir, `${id}.json`), JSON.stringify({ id, parent }));
  }
  for (const [name, cfg] of Object.entries(vms)) {
    mkdirSync(home.vm(name).dir, { recursive: true });
    if (cfg !== undefined) writeFileSync(home.vm(name).meta, typeof cfg === 'string' ? cfg : JSON.stringify(cfg));
  }
  return home;
}

async function verdict(home: Home, id: string, readOnly: boolean): Promise<string> {
  try {
    const c = await checkDiskSource(home, path.join(home.layersDir, `${id}.qcow2`), { readOnly });
    await c.close();
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof DevvmError);
    return /own file/.test(e.message) ? 'private' : /never written/.test(e.message) ? 'read-only' : e.message;
  }
}

test('pool layers: frozen only on evidence (a snapshot, a clone, a parent); overlays and pending overlays never', async () => {
  const home = layout(
    { a: { overlay: 'l0000000000a3', snapshots: [{ name: 's', layer: 'l0000000000a1' }], pending: { newOverlay: 'l0000000000a4' } }, b: { overlay: 'l0000000000b1', clonedFrom: { vm: 'a', layer: 'l0000000000a2' } } },
    { l0000000000a1: null, l0000000000a2: 'l0000000000a1', l0000000000a3: 'l0000000000a2', l0000000000a4: 'l0000000000a3', l0000000000b1: 'l0000000000a2', l0000000000c1: null },
  );
  assert.equal(await verdict(home, 'l0000000000a1', true), 'ok', 'a snapshot layer');
  assert.equal(await verdict(home, 'l0000000000a1', false), 'read-only');
  assert.equal(await verdict(home, 'l0000000000a2', true), 'ok', 'a clone source and parent');
  // a3 is a's overlay and, as pending's parent, would look frozen: the overlay record wins.
  assert.equal(await verdict(home, 'l0000000000a3', true), 'private');
  assert.equal(await verdict(home, 'l0000000000a4', true), 'private', 'an overlay being switched to');
  assert.equal(await verdict(home, 'l0000000000b1', true), 'private');
  assert.equal(await verdict(home, 'l0000000000c1', true), 'private', 'no evidence (a VM mid-create): not frozen');
});

test('pool layers: an unreadable vm.json could name any layer its overlay, so none is attachable', async () => {
  const home = layout({ a: { overlay: 'l0000000000a2', snapshots: [{ name: 's', layer: 'l0000000000a1' }] }, broken: '{"overlay": "l00' }, { l0000000000a1: null, l0000000000a2: 'l0000000000a1' });
  assert.equal(await verdict(home, 'l0000000000a1', true), 'private');
});

test('a file inside the home the walk did not list (made just now, deeper than the walk) is still refused by its real path', async () => {
  const home = layout({}, {});
  const deep = path.join(home.root, 'a', 'b', 'c', 'd', 'e', 'f', 'g');
  mkdirSync(deep, { recursive: true });
  writeFileSync(path.join(deep, 'x.qcow2'), qcow2());
  await assert.rejects(checkDiskSource(home, path.join(deep, 'x.qcow2'), { readOnly: true }), /devvm's own file a\/b\/c/);
});

test('NBD sources: always raw; a unix socket inside the home only when it is a VM export socket', async () => {
  const home = layout({ web: {} }, {});
  assert.equal((await checkDiskSource(home, 'nbd://127.0.0.1:10809/x', { readOnly: false })).format, 'raw');
  await assert.rejects(checkDiskSource(home, 'nbd://127.0.0.1:10809/x', { readOnly: true, format: 'qcow2' }), /attached as raw/);
  assert.equal((await checkDiskSource(home, `nbd+unix:///e?socket=${home.vm('web').nbdSocket}`, { readOnly: true })).kind, 'nbd');
  assert.equal((await checkDiskSource(home, 'nbd+unix:///e?socket=/run/elsewhere.sock', { readOnly: true })).kind, 'nbd');
  for (const s of [home.vm('web').qmp, home.vm('web').serial, home.socket, `/${home.vm('web').qmp}`]) {
    await assert.rejects(checkDiskSource(home, `nbd+unix:///e?socket=${s}`, { readOnly: true }), /own socket .* not an NBD export/, s);
  }
  await assert.rejects(checkDiskSource(home, 'nbd://u:p@h/x', { readOnly: true }), /credentials/);
});
