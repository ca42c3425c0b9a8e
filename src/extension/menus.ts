/**
 * Which commands apply where: one table for VM commands (the tree's context values, the
 * palette's quick picks: only VMs a command applies to are offered), one for commands on
 * a VM's group rows, one for commands on other tree items (snapshots, attached disks, USB
 * devices). A unit test checks the `when` clauses in package.json against these tables.
 *
 * The states come from the lifecycle table (src/shared/lifecycle.ts), the one the helper
 * refuses through: a command is never offered where the helper would refuse it. A rule
 * may hide states the helper accepts but where the command does nothing (Start on a
 * running VM) or another command is the one to use (Resume, not Start, on a suspended
 * one); each such narrowing is written here with its reason. No `vscode` import.
 */
import { OPERATIONS, refusal, type Operation } from '../shared/lifecycle';
import { VM_STATES, type VmState } from '../shared/types';

export interface VmRule {
  states: readonly VmState[];
  /** Needs SSH enabled for the VM. */
  ssh?: boolean;
  /** Needs the VM to have a display (VmSummary.display). */
  display?: boolean;
  /** The helper operation it runs: `states` are those OPERATIONS[op] allows (minus `hidden`). */
  op?: Operation;
  /** States the operation allows but the menu does not offer it in (no-op, or another command's job). */
  hidden?: readonly VmState[];
}

/** A rule from the lifecycle table: the operation's states, minus those where offering it makes no sense. */
function op(operation: Operation, o: { hide?: readonly VmState[]; ssh?: boolean } = {}): VmRule {
  const hidden = o.hide ?? [];
  return {
    op: operation,
    states: (OPERATIONS[operation] as readonly VmState[]).filter((s) => !hidden.includes(s)),
    ...(o.ssh ? { ssh: true } : {}),
    ...(hidden.length ? { hidden } : {}),
  };
}

/** UI-only commands (no helper operation behind them): every state with a VM directory to read. */
const HAS_FILES = VM_STATES.filter((s) => s !== 'creating');
/** A VM being deleted offers nothing but its logs. */
const HAS_CONFIG = HAS_FILES.filter((s) => s !== 'deleting');

export const VM_COMMANDS = {
  // Running: nothing to start; suspended: Resume is the command (start resumes too).
  'devvm.start': op('start', { hide: ['running', 'suspended'] }),
  // Elsewhere stop is a no-op; an error is cleared by Start or Force Stop.
  'devvm.stop': op('stop', { hide: ['stopped', 'suspended', 'error'] }),
  'devvm.suspend': op('suspend'),
  'devvm.resume': op('resume'),
  // Stopped or suspended: no QEMU to kill.
  'devvm.forceStop': op('forceStop', { hide: ['stopped', 'suspended'] }),
  // The extension confirms, then deletes with force where a plain delete is refused.
  'devvm.delete': op('forceDelete'),
  // Connect starts (or resumes) the VM and waits for SSH: wherever start works, as it ends running.
  'devvm.connect': op('start', { ssh: true }),
  'devvm.connectNewWindow': op('start', { ssh: true }),
  'devvm.openSshTerminal': op('ssh', { ssh: true }),
  'devvm.openSerial': op('console'),
  'devvm.showLogs': { states: HAS_FILES },
  // The tab says when the VM is stopped or suspended and connects once it runs: offered in any state.
  'devvm.openDisplay': { states: HAS_CONFIG, display: true },
  'devvm.copySshCommand': { states: HAS_CONFIG, ssh: true },
  // RAM is offered only when running or suspended (OPERATIONS.snapshotRam), in the command itself.
  'devvm.snapshot': op('snapshot'),
  'devvm.restoreSnapshot': op('restore'),
  'devvm.clone': op('clone'),
  'devvm.exportDisk': op('exportDisk'),
  'devvm.attachDisk': op('attachDisk'),
  'devvm.attachUsb': op('attachUsb'),
  'devvm.addShare': op('share'),
  'devvm.addPort': op('portAdd'),
  // Only where the helper changes the machine: never offered on a running or suspended VM.
  'devvm.changeSize': op('set'),
} as const satisfies Record<string, VmRule>;

export type VmCommand = keyof typeof VM_COMMANDS;

export function vmContextValue(state: VmState, ssh: boolean, display = false): string {
  return `vm.${state}.${ssh ? 'ssh' : 'nossh'}.${display ? 'display' : 'nodisplay'}`;
}

export function appliesTo(command: VmCommand, state: VmState, ssh: boolean, display = false): boolean {
  return ruleApplies(VM_COMMANDS[command], state, ssh, display);
}

export function ruleApplies(rule: VmRule, state: VmState, ssh: boolean, display = false): boolean {
  return rule.states.includes(state) && (!rule.ssh || ssh) && (!rule.display || display);
}

/**
 * What the palette says when no VM fits a command's rule: why, per VM (one VM: the
 * helper's own refusal, with its way out), not just the states it needs.
 */
export function noCandidateMessage(rule: VmRule, vms: readonly { name: string; state: VmState; ssh: boolean; display: boolean }[]): string {
  if (!vms.length) return 'Dev VMs: there are no VMs yet.';
  const why = (v: (typeof vms)[number]) => (!rule.states.includes(v.state) ? `${v.name} is ${v.state}` : rule.ssh && !v.ssh ? `${v.name} has SSH off` : `${v.name} has no display`);
  const only = vms.length === 1 ? vms[0]! : undefined;
  const no = only && rule.op && !rule.states.includes(only.state) ? refusal(rule.op, only.name, only.state) : null;
  if (no) return `Dev VMs: ${no.oneLine()}`;
  return `Dev VMs: no VM is in a state for this (it needs ${rule.states.filter((x) => x !== 'error').join(' or ')}${rule.ssh ? ', with SSH' : ''}${rule.display ? ', with a display' : ''}): ${vms.map(why).join(', ')}.`;
}

function statesRe(states: readonly VmState[]): string {
  return states.length === VM_STATES.length ? '[a-z]+' : `(${states.join('|')})`;
}

/** The `viewItem` regex for a command, as written in package.json's menus. */
export function viewItemRegex(command: VmCommand): string {
  const rule: VmRule = VM_COMMANDS[command];
  return `/^vm\\.${statesRe(rule.states)}\\.${rule.ssh ? 'ssh' : '[a-z]+'}\\.${rule.display ? 'display' : '[a-z]+'}$/`;
}

// ---- group rows ------------------------------------------------------------------

/** A VM's group rows carry the VM's state, so their inline actions follow the VM's rules. */
export function groupContextValue(group: string, state: VmState): string {
  return `group.${group}.${state}`;
}

/** Inline actions on a VM's group rows ("+" on Snapshots, Attached disks, USB devices). */
export const GROUP_COMMANDS = {
  'devvm.snapshot': 'snapshots',
  'devvm.attachDisk': 'disks',
  'devvm.attachUsb': 'usb',
  'devvm.addShare': 'shares',
  'devvm.addPort': 'ports',
} as const satisfies Partial<Record<VmCommand, string>>;

export type GroupCommand = keyof typeof GROUP_COMMANDS;

export function groupItemRegex(command: GroupCommand): string {
  return `/^group\\.${GROUP_COMMANDS[command]}\\.${statesRe(VM_COMMANDS[command].states)}$/`;
}

// ---- other items -----------------------------------------------------------------

export const SNAPSHOT_ITEMS = ['snapshot.disk', 'snapshot.ram'] as const;
export const DISK_ITEMS = ['disk.virtio', 'disk.usb'] as const;
export const USB_ITEMS = ['usb.device'] as const;

// Share and forward rows carry their VM's state, as group rows do, so Remove is offered
// only where the helper takes it (not on a suspended VM's share, say).

/** A shared folder's context value: `share.<rw|ro>.<VM state>`. */
export function shareContextValue(readOnly: boolean, state: VmState): string {
  return `share.${readOnly ? 'ro' : 'rw'}.${state}`;
}
export const shareItems = (states: readonly VmState[]) => states.flatMap((s) => [shareContextValue(false, s), shareContextValue(true, s)]);
/** Shared folders Remove applies to. */
export const SHARE_ITEMS = shareItems(OPERATIONS.unshare);

/** A forward's context value: `port.<static|auto>.<tcp|udp>.<active|inactive>.<VM state>` (SSH's is `port.ssh`). */
export function portContextValue(kind: 'static' | 'auto', protocol: 'tcp' | 'udp', active: boolean, state: VmState): string {
  return `port.${kind}.${protocol}.${active ? 'active' : 'inactive'}.${state}`;
}
export const portItems = (kinds: readonly ('static' | 'auto')[], protocols: readonly ('tcp' | 'udp')[], active: readonly boolean[], states: readonly VmState[]) =>
  kinds.flatMap((k) => protocols.flatMap((p) => active.flatMap((a) => states.map((s) => portContextValue(k, p, a, s)))));
/** Every forward but SSH's (its address is in Copy SSH Command), in any state: an address to copy. */
export const PORT_ITEMS = portItems(['static', 'auto'], ['tcp', 'udp'], [true, false], VM_STATES);
/** A browser only reaches a TCP port forwarded now, on a running VM. */
export const OPEN_PORT_ITEMS = portItems(['static', 'auto'], ['tcp'], [true], ['running']);
/** Automatic forwards follow the guest's listeners; only static ones are the user's to remove. */
export const STATIC_PORT_ITEMS = portItems(['static'], ['tcp', 'udp'], [true, false], OPERATIONS.portRemove);

export interface ItemRule {
  /** The tree items' context values it shows on. */
  items: readonly string[];
  /** From the palette a VM is picked first: the states it needs then. */
  vm: VmRule;
}

export const ITEM_COMMANDS = {
  'devvm.restoreSnapshot': { items: SNAPSHOT_ITEMS, vm: VM_COMMANDS['devvm.restoreSnapshot'] },
  'devvm.deleteSnapshot': { items: SNAPSHOT_ITEMS, vm: op('deleteSnapshot') },
  'devvm.clone': { items: SNAPSHOT_ITEMS, vm: VM_COMMANDS['devvm.clone'] },
  'devvm.exportDisk': { items: SNAPSHOT_ITEMS, vm: VM_COMMANDS['devvm.exportDisk'] },
  'devvm.detachDisk': { items: DISK_ITEMS, vm: op('detachDisk') },
  'devvm.detachUsb': { items: USB_ITEMS, vm: op('detachUsb') },
  'devvm.removeShare': { items: SHARE_ITEMS, vm: op('unshare') },
  'devvm.removePort': { items: STATIC_PORT_ITEMS, vm: op('portRemove') },
  // UI only. A browser needs the forward live, so a running VM; an address can be copied
  // wherever static forwards are kept (it answers once the VM runs).
  'devvm.openPort': { items: OPEN_PORT_ITEMS, vm: { states: ['running'] } },
  'devvm.copyPortAddress': { items: PORT_ITEMS, vm: { states: ['stopped', 'error', 'running', 'suspended'] } },
} as const satisfies Record<string, ItemRule>;

export type ItemCommand = keyof typeof ITEM_COMMANDS;

/** Commands only in the palette (and in notifications), acting on a picked VM. */
export const PALETTE_COMMANDS = {
  'devvm.unexportDisk': op('unexportDisk'),
} as const satisfies Record<string, VmRule>;

export type PaletteCommand = keyof typeof PALETTE_COMMANDS;

/** Any command that acts on one VM (picked when not given). */
export type RuleCommand = VmCommand | ItemCommand | PaletteCommand;

/** The VM rule of any command that acts on one VM. */
export function vmRule(command: RuleCommand): VmRule {
  if (command in VM_COMMANDS) return VM_COMMANDS[command as VmCommand];
  if (command in ITEM_COMMANDS) return ITEM_COMMANDS[command as ItemCommand].vm;
  return PALETTE_COMMANDS[command as PaletteCommand];
}

export function isRuleCommand(command: string): command is RuleCommand {
  return command in VM_COMMANDS || command in ITEM_COMMANDS || command in PALETTE_COMMANDS;
}

export function itemApplies(command: string, contextValue: string): boolean {
  const rule: ItemRule | undefined = (ITEM_COMMANDS as Record<string, ItemRule>)[command];
  return !!rule && rule.items.includes(contextValue);
}

export const IMAGE_COMMANDS = {
  'devvm.deleteImage': ['image.unused'],
} as const;
