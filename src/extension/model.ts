/**
 * What the Dev VMs views show, as plain data computed from RPC results. No `vscode`
 * import: the extension maps these specs onto TreeItems, and unit tests check them.
 */
import type { ImageInfo, LayerInfo, VmInfo, VmState, VmSummary } from '../shared/types';
import { vmContextValue } from './menus';

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
  | { kind: 'snapshot'; vm: string; index: number }
  | { kind: 'note'; vm: string; group: GroupKind; text: string }
  | { kind: 'image'; image: string };

export type GroupKind = 'layers' | 'ports' | 'snapshots' | 'usb';
export const GROUPS: readonly GroupKind[] = ['layers', 'ports', 'snapshots', 'usb'];

const TRANSITIONAL: readonly VmState[] = ['creating', 'starting', 'stopping', 'suspending'];

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

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 -> "1.5 KiB"; one decimal below 10 units, none above. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '?';
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const s = i === 0 || v >= 10 ? Math.round(v).toString() : v.toFixed(1).replace(/\.0$/, '');
  return `${s} ${UNITS[i]}`;
}

export function formatMemory(mib: number): string {
  return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
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
  if (s.error) lines.push('', `$(error) ${md(s.error)}`);
  return {
    id: `vm:${s.name}`,
    label: s.name,
    description: parts.join(' · '),
    tooltip: lines.join('\n'),
    icon: s.error ? { id: 'warning', color: 'problemsWarningIcon.foreground' } : stateIcon(s.state),
    contextValue: vmContextValue(s.state, s.sshPort !== null),
    collapsible: 'collapsed',
  };
}

const GROUP_LABEL: Record<GroupKind, { label: string; icon: string }> = {
  layers: { label: 'Disk layers', icon: 'layers' },
  ports: { label: 'Ports', icon: 'plug' },
  snapshots: { label: 'Snapshots', icon: 'history' },
  usb: { label: 'USB devices', icon: 'circuit-board' },
};

export function groupItem(vm: string, group: GroupKind, info?: VmInfo): ItemSpec {
  let description: string | undefined;
  if (info && group === 'layers') description = `${info.layers.length} · ${formatBytes(info.layers.reduce((a, l) => a + l.actualSize, 0))} on disk`;
  if (info && group === 'snapshots') description = String(info.layers.filter((l) => l.role === 'snapshot').length);
  return {
    id: `vm:${vm}/${group}`,
    label: GROUP_LABEL[group].label,
    description,
    tooltip: GROUP_LABEL[group].label,
    icon: { id: GROUP_LABEL[group].icon },
    contextValue: `group.${group}`,
    collapsible: 'collapsed',
  };
}

const ROLE: Record<LayerInfo['role'], { icon: string; what: string }> = {
  overlay: { icon: 'edit', what: 'read-write overlay: everything this VM writes' },
  snapshot: { icon: 'history', what: 'snapshot: a frozen read-only layer' },
  cache: { icon: 'database', what: 'cache: base blocks copied on first read, so the base is read once' },
  base: { icon: 'lock', what: 'base image: read-only, shared' },
};

/** Layers top (overlay) to bottom (base), as vm/info returns them. */
export function layerItem(vm: string, layer: LayerInfo, index: number): ItemSpec {
  const others = layer.sharedBy.filter((n) => n !== vm);
  const desc = [`${formatBytes(layer.actualSize)} / ${formatBytes(layer.virtualSize)}`];
  if (layer.readOnly) desc.push('read-only');
  if (others.length) desc.push(`shared with ${others.length} other VM${others.length === 1 ? '' : 's'}`);
  return {
    id: `vm:${vm}/layers/${index}`,
    label: layer.role,
    description: desc.join(' · '),
    tooltip: [
      `**${layer.role}** — ${ROLE[layer.role].what}`,
      '',
      `File: \`${layer.file}\`  `,
      `Format: ${layer.format}  `,
      `Allocated: ${formatBytes(layer.actualSize)} of ${formatBytes(layer.virtualSize)}  `,
      `Used by: ${layer.sharedBy.map(md).join(', ') || 'no VM'}`,
    ].join('\n'),
    icon: { id: ROLE[layer.role].icon },
    contextValue: `layer.${layer.role}${others.length ? '.shared' : ''}`,
    collapsible: 'none',
  };
}

export function portItem(s: VmSummary): ItemSpec | null {
  if (s.sshPort === null) return null;
  const live = s.state === 'running';
  return {
    id: `vm:${s.name}/ports/ssh`,
    label: `127.0.0.1:${s.sshPort} → 22`,
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
  switch (group) {
    case 'layers':
      if (!info) return note('Loading…');
      return info.layers.length ? info.layers.map((_, index) => ({ kind: 'layer', vm: s.name, index })) : note('No disk layers');
    case 'ports':
      return s.sshPort === null ? note('No forwarded ports (SSH is off)') : [{ kind: 'port', vm: s.name }];
    case 'snapshots': {
      const snaps = info?.layers.flatMap((l, index) => (l.role === 'snapshot' ? [{ kind: 'snapshot' as const, vm: s.name, index }] : [])) ?? [];
      return snaps.length ? snaps : note('No snapshots');
    }
    case 'usb':
      return note('No USB devices attached');
  }
}

export function imageItem(img: ImageInfo): ItemSpec {
  const used = img.usedBy.length;
  return {
    id: `image:${img.name}`,
    label: img.name,
    description: `${formatBytes(img.actualSize)} · ${used ? `used by ${used} VM${used === 1 ? '' : 's'}` : 'unused'}`,
    tooltip: [
      `**${md(img.name)}** — read-only base image`,
      '',
      `File: \`${img.file}\`  `,
      `Format: ${img.format}, virtual size ${formatBytes(img.virtualSize)}, ${formatBytes(img.actualSize)} on disk  `,
      `sha256: \`${img.sha256.slice(0, 16)}…\`  `,
      `Source: ${md(img.source)}  `,
      img.kernel ? `Boot: direct kernel (\`${img.kernel.split('/').pop()}\`)  ` : 'Boot: firmware  ',
      `Used by: ${img.usedBy.map(md).join(', ') || 'no VM'}`,
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
