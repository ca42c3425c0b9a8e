/**
 * The attach checks' logic on hand-made files: our qcow2 header reading (what QEMU would
 * open besides the file itself), which pool layers count as frozen, and the NBD rules.
 * The same attacks against real qemu-img / QEMU images: test/integration/hostile-disks.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { checkDiskSource } from '../../src/helper/disksource';
import { Home } from '../../src/helper/filenames';
import { EXT_DATA_FILE, parseQcow2Header, qcow2Refusal } from '../../src/helper/qcow2header';
import { DevvmError } from '../../src/shared/errors';

/** A qcow2 header as qemu-img writes one: v3, 64 KiB clusters, `exts` after the header. */
function qcow2(o: { version?: number; backing?: string; exts?: Array<[number, Buffer]>; incompatible?: bigint; crypt?: number; headerLength?: number; clusterBits?: number } = {}): Buffer {
  const buf = Buffer.alloc(65536);
  buf.write('QFI\xfb', 0, 'latin1');
  const version = o.version ?? 3;
  buf.writeUInt32BE(version, 4);
  buf.writeUInt32BE(o.clusterBits ?? 16, 20);
  buf.writeBigUInt64BE(1n << 30n, 24);
  buf.writeUInt32BE(o.crypt ?? 0, 32);
  let off = 72;
  if (version === 3) {
    buf.writeBigUInt64BE(o.incompatible ?? 0n, 72);
    buf.writeUInt32BE(4, 96);
    buf.writeUInt32BE(o.headerLength ?? 112, 100);
    off = o.headerLength ?? 112;
  }
  for (const [type, data] of o.exts ?? []) {
    buf.writeUInt32BE(type, off);
    buf.writeUInt32BE(data.length, off + 4);
    data.copy(buf, off + 8);
    off += 8 + Math.ceil(data.length / 8) * 8;
  }
  off += 8; // end marker (zeros)
  if (o.backing) {
    buf.writeBigUInt64BE(BigInt(off), 8);
    buf.writeUInt32BE(o.backing.length, 16);
    buf.write(o.backing, off, 'latin1');
  }
  return buf;
}

test('qcow2 header: a plain v2 or v3 image may be opened', () => {
  for (const version of [2, 3]) {
    const h = parseQcow2Header(qcow2({ version }))!;
    assert.equal(h.version, version);
    assert.equal(h.virtualSize, 1n << 30n);
    assert.equal(qcow2Refusal(h), null);
  }
  assert.equal(parseQcow2Header(Buffer.from('just text')), null, 'no magic: not a qcow2');
  assert.equal(parseQcow2Header(Buffer.alloc(0)), null);
});

test('qcow2 header: backing files, external data files, encryption, unknown features are refused with a reason', () => {
  const why = (b: Buffer) => qcow2Refusal(parseQcow2Header(b)!);
  assert.match(why(qcow2({ backing: '/home/u/.local/share/devvm/keys/id_ed25519' }))!, /backing file \("\/home\/u\/\.local\/share\/devvm\/keys\/id_ed25519"\)/);
  assert.match(why(qcow2({ version: 2, backing: '../seed.iso' }))!, /backing file/);
  assert.match(why(qcow2({ exts: [[EXT_DATA_FILE, Buffer.from('/etc/shadow')]] }))!, /external data file \("\/etc\/shadow"\)/);
  assert.match(why(qcow2({ incompatible: 4n }))!, /external data file/, 'the data-file bit alone');
  assert.match(why(qcow2({ crypt: 1 }))!, /encrypted/);
  assert.match(why(qcow2({ exts: [[0x0537be77, Buffer.alloc(16)]] }))!, /encrypted/);
  assert.match(why(qcow2({ incompatible: 2n }))!, /corrupt/);
  assert.match(why(qcow2({ incompatible: 1n << 40n }))!, /unknown here/);
  // Other extensions (backing format, feature names) are skipped over to find a data file behind them.
  assert.match(why(qcow2({ exts: [[0x6803f857, Buffer.alloc(48)], [EXT_DATA_FILE, Buffer.from('d.bin')]] }))!, /data file/);
  // A size-only or offset-only backing field counts: QEMU would look.
  const sizeOnly = qcow2();
  sizeOnly.writeUInt32BE(5, 16);
  assert.match(why(sizeOnly)!, /backing file/);
});

test('qcow2 header: malformed ones throw a short reason', () => {
  assert.throws(() => parseQcow2Header(qcow2({ version: 1 })), /version 1/);
  assert.throws(() => parseQcow2Header(qcow2({ clusterBits: 30 })), /cluster_bits/);
  assert.throws(() => parseQcow2Header(qcow2({ headerLength: 60 })), /header_length/);
  assert.throws(() => parseQcow2Header(qcow2().subarray(0, 40)), /truncated/);
  const long = qcow2();
  long.writeUInt32BE(EXT_DATA_FILE, 112);
  long.writeUInt32BE(1 << 20, 116);
  assert.throws(() => parseQcow2Header(long), /runs past the header cluster/);
  const far = qcow2();
  far.writeBigUInt64BE(1n << 40n, 8);
  far.writeUInt32BE(8, 16);
  assert.throws(() => parseQcow2Header(far), /outside the header cluster/);
});

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
