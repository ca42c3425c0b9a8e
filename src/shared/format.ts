/**
 * Text both clients show: sizes, dates, tables, the layer tree, doctor lines, VM state
 * lines. Pure functions over RPC results (no vscode, no fs), so the CLI and the
 * extension say the same thing the same way and unit tests pin it.
 */
import type { DoctorCheck, DoctorReport, ImageInfo, LayerInfo, LayerNode, PortForward, VmSummary } from './types';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 -> "1.5 KiB"; binary units, one decimal below 10 units ("1 KiB", not "1.0"), "?" when not a size. */
export function bytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '?';
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const s = i === 0 || v >= 10 ? Math.round(v).toString() : v.toFixed(1).replace(/\.0$/, '');
  // 1023.7 KiB rounds to "1024 KiB"; say "1 MiB" instead.
  if (s === '1024' && i < UNITS.length - 1) return `1 ${UNITS[i + 1]}`;
  return `${s} ${UNITS[i]}`;
}

/** 2048 -> "2 GiB", 1536 -> "1536 MiB": memory sizes are given in MiB. */
export function memory(mib: number): string {
  return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

/** "2026-01-31 14:05" in local time; the ISO text itself when it does not parse. */
export function date(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** "1 VM", "2 VMs". */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. Rows may be ragged. */
export function table(rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return '';
  const cols = Math.max(...rows.map((r) => r.length));
  const w = Array.from({ length: cols }, (_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()).join('\n');
}

// ---- VM state -------------------------------------------------------------------------

/** "web is running", or "web is error (qemu exited with signal 9)" when the helper gave a reason. */
export function vmStateLine(s: Pick<VmSummary, 'name' | 'state' | 'error'>): string {
  return `${s.name} is ${s.state}${s.error ? ` (${s.error})` : ''}`;
}

/** One row of a VM's layer table (`devvm info`): role, file, allocated/virtual, ro|rw, users, snapshots. */
export function layerRow(l: LayerInfo, indent = ''): string[] {
  return [
    `${indent}${l.role}`,
    l.file,
    `${bytes(l.actualSize)} / ${bytes(l.virtualSize)}`,
    l.readOnly ? 'ro' : 'rw',
    `used by ${l.sharedBy.join(', ') || 'no VM'}`,
    l.snapshots?.length ? `snapshot ${l.snapshots.join(', ')}` : '',
  ];
}

// ---- doctor ---------------------------------------------------------------------------

/** "ok   qemu-img: 8.2.2" or "FAIL kvm: /dev/kvm missing -> <fix>". */
/** Why an image built from an older recipe is still there, and how to get the current one. */
export function outdatedImageNote(i: Pick<ImageInfo, 'name' | 'source' | 'usedBy'>): string {
  const recipe = /^recipe:([^#]+)#/.exec(i.source)?.[1] ?? i.name;
  const users = i.usedBy.join(', ');
  return i.usedBy.length
    ? `image ${i.name} was built from an older ${recipe} recipe and is kept because ${users} ${i.usedBy.length === 1 ? 'uses' : 'use'} it; "devvm image build ${recipe} --name NAME" builds the current one beside it`
    : `image ${i.name} was built from an older ${recipe} recipe; "devvm image build ${recipe}${recipe === i.name ? '' : ` --name ${i.name}`}" replaces it`;
}

export function doctorCheckLine(c: DoctorCheck): string {
  return `${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}${!c.ok && c.fix ? ` -> ${c.fix}` : ''}`;
}

/** The whole report, one line each: accelerator, native addon, then every check. */
export function doctorLines(d: DoctorReport): string[] {
  return [
    `accelerator: ${d.accelerator.name} (${d.accelerator.reason})`,
    `native addon: ${d.nativeAddon.loaded ? 'loaded' : 'not loaded'} (${d.nativeAddon.detail})`,
    ...d.checks.map(doctorCheckLine),
  ];
}

/** One sentence for a notification: the failing checks and their fixes, or that all pass. */
export function doctorSummary(d: DoctorReport): string {
  const bad = d.checks.filter((c) => !c.ok);
  return bad.length
    ? `Dev VMs doctor: ${plural(bad.length, 'issue')}: ${bad.map((c) => `${c.name} (${c.fix ?? c.detail})`).join('; ')}`
    : `Dev VMs doctor: all checks pass (accelerator: ${d.accelerator.name}).`;
}

// ---- layer tree -----------------------------------------------------------------------

export interface LayerTreeRow {
  node: LayerNode;
  /** 0 for a layer directly on the image. */
  depth: number;
  /** Box-drawing prefix, e.g. "│  └─ ". */
  prefix: string;
  /** Its parent is named but not listed (shown at the root instead). */
  missingParent: boolean;
}

export interface LayerTreeImage {
  image: string;
  rows: LayerTreeRow[];
}

/**
 * The pool's frozen layers as one tree per base image, images sorted by name, siblings
 * oldest first. A layer whose parent is not listed goes to its image's root (flagged);
 * a cycle is cut where it closes, so a damaged pool still prints.
 */
export function layerForest(nodes: readonly LayerNode[]): LayerTreeImage[] {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const children = new Map<string, LayerNode[]>();
  const roots = new Map<string, LayerNode[]>();
  for (const n of nodes) {
    const into = n.parent !== null && byId.has(n.parent) ? children : roots;
    const key = into === children ? n.parent! : n.image;
    into.set(key, [...(into.get(key) ?? []), n]);
  }
  const order = (a: LayerNode, b: LayerNode) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id);
  const forest: LayerTreeImage[] = [];
  const placed = new Set<string>();
  const walk = (rows: LayerTreeRow[], n: LayerNode, depth: number, indent: string, last: boolean) => {
    rows.push({ node: n, depth, prefix: `${indent}${last ? '└─ ' : '├─ '}`, missingParent: n.parent !== null && !byId.has(n.parent) });
    if (placed.has(n.id)) return;
    placed.add(n.id);
    const kids = [...(children.get(n.id) ?? [])].sort(order);
    kids.forEach((k, i) => walk(rows, k, depth + 1, `${indent}${last ? '   ' : '│  '}`, i === kids.length - 1));
  };
  for (const image of [...roots.keys()].sort()) {
    const rows: LayerTreeRow[] = [];
    const list = [...roots.get(image)!].sort(order);
    list.forEach((n, i) => walk(rows, n, 0, '', i === list.length - 1));
    forest.push({ image, rows });
  }
  // Layers only reachable through a cycle have no root: list them so nothing is hidden.
  const rest = nodes.filter((n) => !placed.has(n.id)).sort(order);
  for (const n of rest) {
    if (placed.has(n.id)) continue;
    let img = forest.find((f) => f.image === n.image);
    if (!img) forest.push((img = { image: n.image, rows: [] }));
    walk(img.rows, n, 0, '', true);
  }
  return forest;
}

/** `devvm layers`: "image X", then each layer indented by depth with size, snapshots and users. */
export function layerTreeLines(nodes: readonly LayerNode[]): string[] {
  const lines: string[] = [];
  for (const { image, rows } of layerForest(nodes)) {
    lines.push(`image ${image}`);
    for (const { node: n, depth, missingParent } of rows) {
      const what = [...n.snapshots.map((x) => `snapshot ${x}`), n.usedBy.length ? `in ${n.usedBy.join(', ')}` : 'unused'];
      if (missingParent) what.push(`parent ${n.parent} missing`);
      lines.push(`${'  '.repeat(depth + 1)}${n.id} ${bytes(n.actualSize)} (${what.join('; ')})`);
    }
  }
  return lines;
}

/**
 * The layer tree as a text document (the extension's Show Layer Tree): a header with the
 * count and total size (and where the pool is, when given), then box-drawn trees.
 */
export function layerTreeText(nodes: readonly LayerNode[], poolDir?: string): string {
  const total = nodes.reduce((a, n) => a + n.actualSize, 0);
  const out = [
    `Dev VMs layer tree — ${nodes.length} frozen layer${nodes.length === 1 ? '' : 's'}, ${bytes(total)}${poolDir ? ` (${poolDir})` : ''}`,
    '',
    'Each VM runs on its own read-write overlay on top of one path through this tree; the base',
    'image is at the bottom. A layer is deleted only when no VM, snapshot or clone uses it.',
    '',
  ];
  if (!nodes.length) out.push('No frozen layers yet: take a snapshot, clone a VM or export a disk.');
  for (const { image, rows } of layerForest(nodes)) {
    out.push(`${image} (base image)`);
    for (const { node: n, prefix, missingParent } of rows) {
      const parts = [n.id, bytes(n.actualSize), date(n.createdAt)];
      if (n.snapshots.length) parts.push(`snapshots: ${n.snapshots.join(', ')}`);
      parts.push(n.usedBy.length ? `used by: ${n.usedBy.join(', ')}` : 'used by: no VM');
      if (missingParent) parts.push(`parent ${n.parent} missing`);
      out.push(`${prefix}${parts.join('  ')}`);
    }
    out.push('');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

// ---- port forwards --------------------------------------------------------------------

/** One row of `devvm ports` / `info`: kind, host address:port, guest port, process, state and note. */
export function portRow(p: PortForward, indent = ''): string[] {
  const guest = `${p.guestAddress && p.guestAddress !== '0.0.0.0' && p.guestAddress !== '::' ? `${p.guestAddress}:` : ''}${p.guestPort}${p.protocol === 'udp' ? '/udp' : ''}`;
  const state = p.active ? (p.via === 'ssh' ? 'active (over SSH)' : 'active') : 'inactive';
  return [`${indent}${p.kind}`, `${p.hostAddress}:${p.hostPort}`, guest, p.process ?? '-', state, p.note ?? ''];
}

/** The table of `devvm ports`, with a line on automatic forwarding when it is off. */
export function portsText(ports: readonly PortForward[], auto?: { on: boolean; reason?: string }, indent = ''): string {
  const lines: string[] = [];
  if (auto && !auto.on) lines.push(`${indent}automatic forwarding is off: ${auto.reason ?? 'unknown reason'}`);
  if (ports.length) lines.push(table([[`${indent}KIND`, 'HOST', 'GUEST', 'PROCESS', 'STATE', 'NOTE'], ...ports.map((p) => portRow(p, indent))]));
  else lines.push(`${indent}no forwards${auto?.on ? ' (none of the guest\'s processes listens on TCP yet)' : ''}`);
  return lines.join('\n');
}
