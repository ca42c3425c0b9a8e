/**
 * The tree items of a VM's shared folders and port forwards, as plain data from vm/info
 * and `vm/ports` notifications. No `vscode` import: trees.ts maps these onto TreeItems.
 */
import type { PortForward, ShareInfo, VmState } from '../shared/types';
import { portContextValue, shareContextValue } from './menus';
import { md, type ItemSpec } from './model';

export function shareItem(vm: string, state: VmState, s: ShareInfo): ItemSpec {
  const desc = [s.readOnly ? 'read-only' : 'read-write', s.transport ?? 'transport chosen at start'];
  if (state === 'running') desc.push(s.mounted ? 'mounted' : 'not mounted');
  const lines = [
    `**${md(s.guestPath)}** in the guest — ${s.readOnly ? 'read-only' : 'read-write'}`,
    '',
    `Host folder: \`${s.hostPath}\`  `,
    `Guest folder: \`${s.guestPath}\`  `,
    `Transport: ${s.transport === 'virtiofs' ? 'virtiofs (virtiofsd, shared memory)' : s.transport === '9p' ? '9p (virtio-9p-pci)' : 'decided when the VM starts'}  `,
    state === 'running' ? `Mounted: ${s.mounted ? 'yes' : 'no'}` : 'Mounted at every boot',
  ];
  if (s.problem) lines.push('', `$(warning) ${md(s.problem)}`);
  return {
    id: `vm:${vm}/shares/${s.guestPath}`,
    label: `${s.guestPath} ← ${s.hostPath}`,
    description: desc.join(' · '),
    tooltip: lines.join('\n'),
    icon: s.problem ? { id: 'warning', color: 'problemsWarningIcon.foreground' } : { id: s.mounted ? 'folder-opened' : 'folder' },
    contextValue: shareContextValue(s.readOnly, state),
    collapsible: 'none',
  };
}

/** Static forwards first, then automatic ones; each by guest port. */
export function sortedForwards(list: readonly PortForward[]): PortForward[] {
  const rank = (f: PortForward) => (f.kind === 'static' ? 0 : 1);
  return [...list].sort((a, b) => rank(a) - rank(b) || a.guestPort - b.guestPort || a.hostPort - b.hostPort || a.protocol.localeCompare(b.protocol));
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;
/** A wildcard bind answers on loopback too; that is the address this host's tools use. */
const WILDCARD = /^(0\.0\.0\.0|::|\*)?$/;

/** host:port as this host reaches it (a wildcard bind through 127.0.0.1; IPv6 in brackets). */
export function forwardAddress(f: Pick<PortForward, 'hostAddress' | 'hostPort'>): string {
  const host = WILDCARD.test(f.hostAddress) ? '127.0.0.1' : f.hostAddress;
  return `${host.includes(':') ? `[${host}]` : host}:${f.hostPort}`;
}

export function forwardUrl(f: Pick<PortForward, 'hostAddress' | 'hostPort'>): string {
  return `http://${forwardAddress(f)}/`;
}

/** "8123 → 127.0.0.1:8123"; UDP says so. */
export function forwardLabel(f: PortForward): string {
  return `${f.guestPort}${f.protocol === 'udp' ? '/udp' : ''} → ${forwardAddress({ hostAddress: f.hostAddress || '127.0.0.1', hostPort: f.hostPort })}`;
}

export function forwardItem(vm: string, state: VmState, f: PortForward): ItemSpec {
  const remapped = f.hostPort !== f.guestPort;
  const desc: string[] = [];
  if (f.process) desc.push(f.process);
  desc.push(f.kind);
  if (!f.active) desc.push(state === 'running' ? 'not forwarded' : 'when running');
  if (f.note) desc.push(f.note);
  else if (remapped && f.kind === 'auto') desc.push(`remapped: host port ${f.guestPort} was taken`);
  const exposed = !LOOPBACK.test(f.hostAddress) && f.hostAddress !== '';
  const lines = [
    `**${md(forwardLabel(f))}** — ${f.kind === 'static' ? 'a static forward (kept in the configuration)' : 'automatic: a guest process listens on it'}`,
    '',
    `Guest port ${f.guestPort} (${f.protocol}) is reachable at ${md(forwardAddress(f))} on this host${exposed ? ', and from other hosts (an explicit address)' : ' (loopback only)'}.  `,
    ...(f.process ? [`Listening in the guest: ${md(f.process)}  `] : []),
    f.active ? 'Forwarded now' : state === 'running' ? 'Not forwarded now' : 'Forwarded while the VM runs',
  ];
  if (f.note) lines.push('', md(f.note));
  return {
    id: `vm:${vm}/ports/${f.protocol}/${f.hostPort}`,
    label: forwardLabel(f),
    description: desc.join(' · '),
    tooltip: lines.join('\n'),
    icon: exposed ? { id: 'broadcast', color: 'problemsWarningIcon.foreground' } : { id: 'plug', color: f.active ? 'charts.green' : undefined },
    contextValue: portContextValue(f.kind, f.protocol, f.active, state),
    collapsible: 'none',
  };
}
