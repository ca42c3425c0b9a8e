import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bytes, date, doctorCheckLine, doctorLines, doctorSummary, layerForest, layerRow, layerTreeLines, layerTreeText, memory, plural, table, vmStateLine } from '../../src/shared/format';
import type { DoctorReport, LayerNode } from '../../src/shared/types';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

test('bytes: binary units, one decimal under 10, no ".0", "?" for what is not a size', () => {
  assert.equal(bytes(0), '0 B');
  assert.equal(bytes(1023), '1023 B');
  assert.equal(bytes(1024), '1 KiB');
  assert.equal(bytes(1536), '1.5 KiB');
  assert.equal(bytes(20 * GiB), '20 GiB');
  assert.equal(bytes(1.25 * GiB), '1.3 GiB');
  assert.equal(bytes(1023.7 * 1024), '1 MiB', 'no "1024 KiB"');
  assert.equal(bytes(3 * 1024 ** 5), '3072 TiB', 'TiB is the largest unit');
  assert.equal(bytes(-1), '?');
  assert.equal(bytes(Number.NaN), '?');
});

test('memory, date, plural', () => {
  assert.equal(memory(2048), '2 GiB');
  assert.equal(memory(1536), '1536 MiB');
  assert.equal(memory(512), '512 MiB');
  const d = new Date(2026, 0, 5, 7, 3);
  assert.equal(date(d.toISOString()), '2026-01-05 07:03');
  assert.equal(date('garbage'), 'garbage');
  assert.equal(plural(1, 'VM'), '1 VM');
  assert.equal(plural(2, 'VM'), '2 VMs');
});

test('table: columns padded to the widest cell, no trailing blanks, ragged rows allowed', () => {
  assert.equal(table([['NAME', 'STATE'], ['web-server', 'running'], ['a', 'stopped']]), 'NAME        STATE\nweb-server  running\na           stopped');
  assert.equal(table([['a', 'b', ''], ['ccc']]), 'a    b\nccc');
  assert.equal(table([]), '');
});

test('vmStateLine and layerRow', () => {
  assert.equal(vmStateLine({ name: 'web', state: 'running' }), 'web is running');
  assert.equal(vmStateLine({ name: 'web', state: 'error', error: 'QEMU was killed' }), 'web is error (QEMU was killed)');
  assert.deepEqual(
    layerRow({ role: 'snapshot', file: '/l/a.qcow2', format: 'qcow2', virtualSize: 2 * GiB, actualSize: 3 * MiB, readOnly: true, sharedBy: ['web', 'api'], snapshots: ['clean'] }, '  '),
    ['  snapshot', '/l/a.qcow2', '3 MiB / 2 GiB', 'ro', 'used by web, api', 'snapshot clean'],
  );
});

const report: DoctorReport = {
  accelerator: { name: 'tcg', reason: '/dev/kvm is missing' },
  nativeAddon: { loaded: false, detail: 'not built' },
  checks: [
    { name: 'qemu-img', ok: true, detail: '8.2.2', fix: 'never shown when ok' },
    { name: 'genisoimage', ok: false, detail: 'not found', fix: 'apt install genisoimage' },
    { name: 'ssh', ok: false, detail: 'not found' },
  ],
};

test('doctor lines: accelerator, addon, one line per check; the fix only for a failing check', () => {
  assert.equal(doctorCheckLine(report.checks[0]!), 'ok   qemu-img: 8.2.2');
  assert.equal(doctorCheckLine(report.checks[1]!), 'FAIL genisoimage: not found -> apt install genisoimage');
  assert.equal(doctorCheckLine(report.checks[2]!), 'FAIL ssh: not found');
  assert.deepEqual(doctorLines(report).slice(0, 2), ['accelerator: tcg (/dev/kvm is missing)', 'native addon: not loaded (not built)']);
  assert.equal(doctorLines(report).length, 5);
  assert.equal(doctorSummary(report), 'Dev VMs doctor: 2 issues: genisoimage (apt install genisoimage); ssh (not found)');
  assert.equal(doctorSummary({ ...report, checks: [report.checks[0]!] }), 'Dev VMs doctor: all checks pass (accelerator: tcg).');
});

const node = (id: string, parent: string | null, image: string, createdAt: string, extra: Partial<LayerNode> = {}): LayerNode => ({
  id, parent, image, file: `/d/layers/${id}.qcow2`, actualSize: MiB, createdAt, snapshots: [], usedBy: [], ...extra,
});

const nodes: LayerNode[] = [
  node('b2', 'a1', 'debian-12', '2026-01-02T00:00:00Z', { snapshots: ['web/later'], usedBy: ['web'] }),
  node('a1', null, 'debian-12', '2026-01-01T00:00:00Z', { snapshots: ['web/clean'], usedBy: ['web', 'web-clone'], actualSize: 10 * MiB }),
  node('c3', 'a1', 'debian-12', '2026-01-03T00:00:00Z', { usedBy: ['web-clone'] }),
  node('z9', null, 'alpine', '2026-01-01T00:00:00Z'),
];

test('layerForest: one tree per image (sorted), siblings oldest first, box prefixes', () => {
  const f = layerForest(nodes);
  assert.deepEqual(f.map((t) => t.image), ['alpine', 'debian-12']);
  assert.deepEqual(f[1]!.rows.map((r) => [r.node.id, r.depth, r.prefix]), [['a1', 0, '└─ '], ['b2', 1, '   ├─ '], ['c3', 1, '   └─ ']]);
});

test('layerTreeLines (devvm layers): each root only under its own image', () => {
  // The CLI's old inline walk listed every parentless layer under every image, so with
  // two images z9 also appeared under debian-12 and a1 under alpine.
  assert.deepEqual(layerTreeLines(nodes), [
    'image alpine',
    '  z9 1 MiB (unused)',
    'image debian-12',
    '  a1 10 MiB (snapshot web/clean; in web, web-clone)',
    '    b2 1 MiB (snapshot web/later; in web)',
    '    c3 1 MiB (in web-clone)',
  ]);
  assert.deepEqual(layerTreeLines([]), []);
});

test('layer tree: a layer whose parent is missing is shown at the root and flagged; a cycle still prints', () => {
  // The old CLI walk started at parent === null only, so such a layer vanished from `devvm layers`.
  assert.deepEqual(layerTreeLines([node('b2', 'gone', 'debian-12', '2026-01-02T00:00:00Z')]), ['image debian-12', '  b2 1 MiB (unused; parent gone missing)']);
  const cyc = layerTreeLines([node('x', 'y', 'i', '1'), node('y', 'x', 'i', '2')]);
  assert.ok(cyc.some((l) => l.includes('x ')) && cyc.some((l) => l.includes('y ')), cyc.join('\n'));
});

test('layerTreeText (extension document): header with count, total and pool; box-drawn rows', () => {
  const lines = layerTreeText(nodes, '/d/layers').split('\n');
  assert.match(lines[0]!, /4 frozen layers, 13 MiB \(\/d\/layers\)/);
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  assert.ok(at(/^alpine \(base image\)$/) < at(/^debian-12 \(base image\)$/));
  assert.match(lines[at(/a1/)]!, /^└─ a1  10 MiB  .*snapshots: web\/clean  used by: web, web-clone$/);
  assert.match(lines[at(/b2/)]!, /^   ├─ b2 .*snapshots: web\/later  used by: web$/);
  assert.match(lines[at(/z9/)]!, /used by: no VM$/);
  assert.match(layerTreeText([]), /No frozen layers yet/);
  assert.match(layerTreeText([{ ...nodes[0]!, parent: 'gone' }]), /^└─ b2 .*parent gone missing$/m);
});
