/**
 * What the Dev VMs views show, as plain data computed from RPC results. No `vscode`
 * import: the extension maps these specs onto TreeItems, and unit tests check them.
 */
import { bytes as formatBytes, date as formatDate, memory as formatMemory, outdatedImageNote } from '../shared/format';
import { asDevvmError } from '../shared/errors';
import { idleText } from '../shared/idle';
import { parseNbdUri } from '../shared/nbduri';
import { agentText } from '../shared/agent';
import type { AttachedDisk, HostUsbDevice, ImageInfo, LayerInfo, SnapshotInfo, VmInfo, VmState, VmSummary } from '../shared/types';
import { groupContextValue, vmContextValue } from './menus';
import { sortedForwards } from './sharesPorts';
import { deviceDetail, deviceLabel } from './usbPrompt';

export interface IconSpec {
  /** A codicon id, e.g. "vm-running" or "loading~spin". */
  id: string;
  /** A theme color id, e.g. "charts.green". */
  color?: string;
}

export interface ItemSpec {
  id: string;
  label: string;
  description?: string;
  /** Markdown. */
  tooltip: string;
  icon?: IconSpec;
  contextValue: string;
  collapsible: 'none' | 'collapsed' | 'expanded';
}

/** Tree nodes; the VM name is all a node keeps, so data always comes from the latest RPC result. */
export type Node =
  | { kind: 'vm'; vm: string }
  | { kind: 'group'; vm: string; group: GroupKind }
  | { kind: 'layer'; vm: string; index: number }
  | { kind: 'port'; vm: string }
  | { kind: 'forward'; vm: string; protocol: 'tcp' | 'udp'; hostPort: number }
  | { kind: 'share'; vm: string; guestPath: string }
  | { kind: 'snapshot'; vm: string; name: string }
  | { kind: 'disk'; vm: string; id: string }
  | { kind: 'usb'; vm: string; id: string }
  | { kind: 'note'; vm: string; group: GroupKind; text: string }
  | { kind: 'image'; image: string };

export type GroupKind = 'layers' | 'shares' | 'ports' | 'snapshots' | 'disks' | 'usb';
export const GROUPS: readonly GroupKind[] = ['layers', 'shares', 'ports', 'snapshots', 'disks', 'usb'];
/** Groups whose rows and children come from vm/info (ports: the forwards beside SSH's). */
export const INFO_GROUPS: readonly GroupKind[] = ['layers', 'shares', 'ports', 'snapshots', 'disks', 'usb'];

/**
 * The groups a VM shows. Shared folders and Ports show only when they have a row (SSH's
 * port counts), so a VM without them has no empty nodes; the first share or forward is
 * added from the VM's context menu, later ones from the group's inline "+" too. The older
 * groups always show, with a note saying when their action applies.
 */
export function visibleGroups(s: Pick<VmSummary, 'sshPort'>, info: Pick<VmInfo, 'shares' | 'ports'> | undefined): GroupKind[] {
  return GROUPS.filter((g) => {
    if (g === 'shares') return (info?.shares.length ?? 0) > 0;
    if (g === 'ports') return s.sshPort !== null || (info?.ports.length ?? 0) > 0;
    return true;
  });
}

const TRANSITIONAL: readonly VmState[] = ['creating', 'starting', 'stopping', 'suspending', 'deleting'];

export function stateIcon(state: VmState): IconSpec {
  if (TRANSITIONAL.includes(state)) return { id: 'loading~spin' };
  switch (state) {
    case 'running':
      return { id: 'vm-running', color: 'charts.green' };
    case 'suspended':
      return { id: 'debug-pause', color: 'charts.yellow' };
    case 'error':
      return { id: 'error', color: 'errorForeground' };
    default:
      return { id: 'vm-outline' };
  }
}

/** Markdown text with the characters that would format escaped (names are validated, but errors are free text). */
export function md(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, '\\$&');
}

export function sshCommand(s: Pick<VmSummary, 'sshHost'>, configFile: string): string {
  const cfg = /[\s"'$`\\]/.test(configFile) ? `'${configFile.replace(/'/g, `'\\''`)}'` : configFile;
  return `ssh -F ${cfg} ${s.sshHost}`;
}

export function vmItem(s: VmSummary): ItemSpec {
  const parts: string[] = [s.state];
  if (s.cpus) parts.push(`${s.cpus} vCPU`);
  if (s.memoryMiB) parts.push(formatMemory(s.memoryMiB));
  if (s.state === 'running' && s.sshPort) parts.push(`ssh :${s.sshPort}`);
  const lines = [
    `**${md(s.name)}** — ${s.state}`,
    '',
    `Image: ${md(s.image || '?')}  `,
    `User: ${md(s.user || '?')}  `,
    `CPUs: ${s.cpus}, memory: ${formatMemory(s.memoryMiB)}  `,
    s.sshPort ? `SSH: \`ssh ${s.sshHost}\` (127.0.0.1:${s.sshPort})` : 'SSH: disabled',
  ];
  const power = [s.idleSuspendMin ? idleText(s.idleSuspendMin) : '', s.autostart ? 'starts with the helper' : ''].filter(Boolean);
  if (power.length) {
    lines[lines.length - 1] += '  ';
    lines.push(`Power: ${power.join(', ')}`);
  }
  if (s.state === 'deleting') lines.push('', '$(trash) Being deleted: its folder goes once the helper is done. Until then only Show Logs applies.');
  if (s.error) lines.push('', `$(error) ${md(s.error)}`);
  return {
    id: `vm:${s.name}`,
    label: s.name,
    description: parts.join(' · '),
    tooltip: lines.join('\n'),
    icon: s.error ? { id: 'warning', color: 'problemsWarningIcon.foreground' } : stateIcon(s.state),
    contextValue: vmContextValue(s.state, s.sshPort !== null, !!s.display),
    collapsible: 'collapsed',
  };
}

const GROUP_LABEL: Record<GroupKind, { label: string; icon: string }> = {
  layers: { label: 'Disk layers', icon: 'layers' },
  shares: { label: 'Shared folders', icon: 'folder-library' },
  ports: { label: 'Ports', icon: 'plug' },
  snapshots: { label: 'Snapshots', icon: 'history' },
  disks: { label: 'Attached disks', icon: 'database' },
  usb: { label: 'USB devices', icon: 'circuit-board' },
};

export function groupItem(s: Pick<VmSummary, 'name' | 'state'> & Partial<Pick<VmSummary, 'sshPort'>>, group: GroupKind, info?: VmInfo): ItemSpec {
  let description: string | undefined;
  if (info && group === 'layers') description = `${info.layers.length} · ${formatBytes(info.layers.reduce((a, l) => a + l.actualSize, 0))} on disk`;
  if (info && group === 'snapshots') description = String(info.snapshots.length);
  if (info && group === 'disks' && info.disks.length) description = String(info.disks.length);
  if (info && group === 'usb' && info.usb.length) description = String(info.usb.length);
  // A partial info (an older helper, a test's stand-in) may lack the newer lists.
  if (info && group === 'shares' && info.shares?.length) {
    const problems = info.shares.filter((x) => x.problem).length;
    description = `${info.shares.length}${problems ? ` · ${problems} with a problem` : ''}`;
  }
  if (info && group === 'ports' && info.ports?.length) description = String(info.ports.length + ('sshPort' in s && s.sshPort !== null ? 1 : 0));
  return {
    id: `vm:${s.name}/${group}`,
    label: GROUP_LABEL[group].label,
    description,
    // The guest's address and release sit with its ports (from the guest agent, while it runs).
    tooltip: info?.agent && group === 'ports' ? `${GROUP_LABEL[group].label}\n\nGuest agent: ${md(agentText(info.agent))}` : GROUP_LABEL[group].label,
    icon: { id: GROUP_LABEL[group].icon },
    contextValue: groupContextValue(group, s.state),
    collapsible: 'collapsed',
  };
}

const ROLE: Record<LayerInfo['role'], { icon: string; what: string }> = {
  overlay: { icon: 'edit', what: 'read-write overlay: everything this VM writes' },
  snapshot: { icon: 'history', what: 'frozen read-only layer (a snapshot, or the point a clone or an export started from)' },
  cache: { icon: 'database', what: 'cache: base blocks copied on first read, so the base is read once' },
  base: { icon: 'lock', what: 'base image: read-only, shared' },
};

/** Layers top (overlay) to bottom (base), as vm/info returns them. */
export function layerItem(vm: string, layer: LayerInfo, index: number): ItemSpec {
  const others = layer.sharedBy.filter((n) => n !== vm);
  const snaps = layer.snapshots ?? [];
  const desc = [`${formatBytes(layer.actualSize)} / ${formatBytes(layer.virtualSize)}`];
  if (snaps.length) desc.unshift(snaps.join(', '));
  if (layer.readOnly) desc.push('read-only');
  if (others.length) desc.push(`shared with ${others.length} other VM${others.length === 1 ? '' : 's'}`);
  const lines = [`**${layer.role}** — ${ROLE[layer.role].what}`, ''];
  if (layer.id) lines.push(`Layer: \`${layer.id}\`  `);
  if (layer.role === 'snapshot') lines.push(`Snapshots: ${snaps.map(md).join(', ') || 'none (kept for a clone or an export)'}  `);
  lines.push(
    `File: \`${layer.file}\`  `,
    `Format: ${layer.format}  `,
    `Allocated: ${formatBytes(layer.actualSize)} of ${formatBytes(layer.virtualSize)}  `,
    `Used by: ${layer.sharedBy.map(md).join(', ') || 'no VM'}`,
  );
  return {
    id: `vm:${vm}/layers/${index}`,
    label: layer.role,
    description: desc.join(' · '),
    tooltip: lines.join('\n'),
    icon: { id: ROLE[layer.role].icon },
    contextValue: `layer.${layer.role}${others.length ? '.shared' : ''}`,
    collapsible: 'none',
  };
}

/** Snapshots oldest first. */
export function sortedSnapshots(list: readonly SnapshotInfo[]): SnapshotInfo[] {
  return [...list].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name));
}

export function snapshotItem(vm: string, snap: SnapshotInfo): ItemSpec {
  return {
    id: `vm:${vm}/snapshots/${snap.name}`,
    label: snap.name,
    description: `${snap.ram ? 'RAM · ' : ''}${formatDate(snap.createdAt)}`,
    tooltip: [
      `**${md(snap.name)}** — ${snap.ram ? 'disk and RAM: restoring continues from that moment' : 'disk only: restoring boots from that disk'}`,
      '',
      `Taken: ${md(formatDate(snap.createdAt))}  `,
      `Layer: \`${snap.layer}\``,
    ].join('\n'),
    icon: { id: snap.ram ? 'debug-pause' : 'history' },
    contextValue: snap.ram ? 'snapshot.ram' : 'snapshot.disk',
    collapsible: 'none',
  };
}

/** An nbd:// URI's export name, else a file's base name. */
export function diskLabel(source: string): string {
  if (/^nbd(\+[a-z]+)?:\/\//i.test(source)) return source;
  return source.split('/').filter(Boolean).pop() ?? source;
}

export function diskItem(vm: string, d: AttachedDisk): ItemSpec {
  const nbd = /^nbd/i.test(d.source);
  const desc = [d.bus === 'usb' ? 'USB storage' : 'virtio disk'];
  if (d.readOnly) desc.push('read-only');
  return {
    id: `vm:${vm}/disks/${d.id}`,
    label: diskLabel(d.source),
    description: desc.join(' · '),
    tooltip: [
      `**${md(diskLabel(d.source))}** — ${d.bus === 'usb' ? 'a USB mass-storage device' : 'a virtio block device'}${d.readOnly ? ', read-only' : ''}`,
      '',
      `Source: \`${d.source}\`  `,
      `Device id: \`${d.id}\`  `,
      'Unmount it in the guest before detaching.',
    ].join('\n'),
    icon: { id: nbd ? 'globe' : d.bus === 'usb' ? 'save' : 'file-binary' },
    contextValue: `disk.${d.bus}`,
    collapsible: 'none',
  };
}

export function usbItem(vm: string, d: HostUsbDevice): ItemSpec {
  return {
    id: `vm:${vm}/usb/${d.id}`,
    label: deviceLabel(d),
    description: `${d.vendorId}:${d.productId} · bus ${d.id}`,
    tooltip: [
      `**${md(deviceLabel(d))}** — host USB device passed to ${md(vm)}`,
      '',
      `${md(deviceDetail(d))}  `,
      `Device node: \`${d.devnode}\``,
    ].join('\n'),
    icon: { id: 'circuit-board' },
    contextValue: 'usb.device',
    collapsible: 'none',
  };
}

export function portItem(s: VmSummary): ItemSpec | null {
  if (s.sshPort === null) return null;
  const live = s.state === 'running';
  return {
    id: `vm:${s.name}/ports/ssh`,
    // Guest port first, as every forward reads (sharesPorts.ts).
    label: `22 → 127.0.0.1:${s.sshPort}`,
    description: live ? 'ssh · forwarded' : 'ssh · when running',
    tooltip: `Host port ${s.sshPort} on 127.0.0.1 (loopback only) forwards to guest port 22.\n\n\`ssh ${s.sshHost}\``,
    icon: { id: 'plug', color: live ? 'charts.green' : undefined },
    contextValue: 'port.ssh',
    collapsible: 'none',
  };
}

export function noteItem(vm: string, group: GroupKind, text: string): ItemSpec {
  return { id: `vm:${vm}/${group}/note`, label: text, tooltip: text, contextValue: 'note', collapsible: 'none' };
}

/** The children of a VM's group, given the VM's latest summary and info (info may be missing while loading). */
export function groupChildren(s: VmSummary, group: GroupKind, info: VmInfo | undefined): Node[] {
  const note = (text: string): Node[] => [{ kind: 'note', vm: s.name, group, text }];
  if (group === 'ports') {
    const ssh: Node[] = s.sshPort === null ? [] : [{ kind: 'port', vm: s.name }];
    const forwards: Node[] = sortedForwards(info?.ports ?? []).map((f) => ({ kind: 'forward', vm: s.name, protocol: f.protocol, hostPort: f.hostPort }));
    if (ssh.length || forwards.length) return [...ssh, ...forwards];
    return note('No forwarded ports (SSH is off)');
  }
  if (!info) return note('Loading…');
  switch (group) {
    case 'layers':
      return info.layers.length ? info.layers.map((_, index) => ({ kind: 'layer', vm: s.name, index })) : note('No disk layers');
    case 'snapshots':
      return info.snapshots.length ? sortedSnapshots(info.snapshots).map((x) => ({ kind: 'snapshot', vm: s.name, name: x.name })) : note('No snapshots');
    case 'disks':
      if (info.disks.length) return info.disks.map((d) => ({ kind: 'disk', vm: s.name, id: d.id }));
      return note(s.state === 'running' ? 'No disks attached' : 'Disks can be attached while the VM runs');
    case 'shares':
      if (info.shares.length) return [...info.shares].sort((a, b) => a.guestPath.localeCompare(b.guestPath)).map((x) => ({ kind: 'share', vm: s.name, guestPath: x.guestPath }));
      return note('No shared folders');
    case 'usb':
      if (info.usb.length) return info.usb.map((d) => ({ kind: 'usb', vm: s.name, id: d.id }));
      return note(s.state === 'running' ? 'No USB devices attached' : 'USB devices can be attached while the VM runs');
  }
}

/** vm/info from a helper older than this extension (it outlives VS Code updates) lacks the newer lists. */
export function normalizeInfo(i: VmInfo): VmInfo {
  return { ...i, layers: i.layers ?? [], snapshots: i.snapshots ?? [], disks: i.disks ?? [], usb: i.usb ?? [], shares: i.shares ?? [], ports: i.ports ?? [] };
}

/** The first of `base`, `base-2`, `base-3`… not in `taken`. */
export function nextFreeName(base: string, taken: Iterable<string>): string {
  const set = new Set(taken);
  if (!set.has(base)) return base;
  for (let i = 2; ; i++) if (!set.has(`${base}-${i}`)) return `${base}-${i}`;
}

/** Why an NBD URI typed by the user cannot be used, or undefined when it looks right (the helper's own rule). */
export function nbdUriProblem(value: string): string | undefined {
  const v = value.trim();
  if (!v) return 'enter an nbd:// or nbd+unix:// URI';
  try {
    parseNbdUri(v);
    return undefined;
  } catch (e) {
    return asDevvmError(e).oneLine();
  }
}

/** What a Restore confirmation says happens. */
export function restoreDetail(s: Pick<VmSummary, 'name' | 'state'>, snap: SnapshotInfo): string {
  const lines = [`Everything written to the disk of ${s.name} since ${formatDate(snap.createdAt)} is discarded. Take a snapshot first to keep it.`];
  if (s.state === 'running') lines.push(snap.ram ? 'The VM is stopped at once and continues from the moment of the snapshot.' : 'The VM is stopped at once (like pulling the plug) and boots again from the snapshot.');
  else if (snap.ram) lines.push('The VM becomes suspended at the moment of the snapshot; Resume continues from there.');
  if (s.state === 'suspended' && !snap.ram) lines.push('Its saved RAM state is discarded: it boots from the snapshot.');
  return lines.join('\n\n');
}

export function imageItem(img: ImageInfo): ItemSpec {
  const used = img.usedBy.length;
  return {
    id: `image:${img.name}`,
    label: img.name,
    description: `${formatBytes(img.actualSize)} · ${used ? `used by ${used} VM${used === 1 ? '' : 's'}` : 'unused'}${img.outdated ? ' · older recipe' : ''}`,
    tooltip: [
      `**${md(img.name)}** — read-only base image`,
      '',
      `File: \`${img.file}\`  `,
      `Format: ${img.format}, virtual size ${formatBytes(img.virtualSize)}, ${formatBytes(img.actualSize)} on disk  `,
      img.sha256 ? `sha256: \`${img.sha256.slice(0, 16)}…\`  ` : 'remote base, read through each VM\'s cache layer  ',
      `Source: ${md(img.source)}  `,
      img.kernel ? `Boot: direct kernel (\`${img.kernel.split('/').pop()}\`)  ` : 'Boot: firmware  ',
      `Used by: ${img.usedBy.map(md).join(', ') || 'no VM'}`,
      ...(img.outdated ? ['', `${md(outdatedImageNote(img))}.`] : []),
    ].join('\n'),
    icon: { id: 'package' },
    contextValue: used ? 'image.inuse' : 'image.unused',
    collapsible: 'none',
  };
}

/** The status bar text: running VMs out of all. */
export function statusText(vms: readonly VmSummary[]): { text: string; tooltip: string } {
  const running = vms.filter((s) => s.state === 'running');
  const busy = vms.filter((s) => TRANSITIONAL.includes(s.state));
  const icon = busy.length ? '$(loading~spin)' : '$(vm)';
  return {
    text: `${icon} ${running.length}`,
    tooltip: vms.length
      ? `Dev VMs: ${running.length} of ${vms.length} running${running.length ? ` (${running.map((s) => s.name).join(', ')})` : ''}`
      : 'Dev VMs: none yet',
  };
}

/** What a Delete confirmation says is deleted, from vm/info (the base is never deleted). */
export function deleteDetail(info: VmInfo): string {
  const own = info.layers.filter((l) => l.role !== 'base' && l.sharedBy.every((n) => n === info.name));
  const bytes = own.reduce((a, l) => a + l.actualSize, 0);
  const lines = [
    `This deletes ${info.dir} and everything in it: ${own.map((l) => l.role).join(', ') || 'its disk layers'} (${formatBytes(bytes)}), its logs and its pinned SSH host key.`,
    `Everything written inside the VM, including /home/${info.user}, is lost.`,
    `The base image "${info.image}" is kept.`,
  ];
  if (info.state !== 'stopped') lines.unshift(`The VM is ${info.state}; it is powered off first.`);
  return lines.join('\n\n');
}
