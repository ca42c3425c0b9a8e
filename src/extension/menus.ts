/**
 * Which commands apply where: one table for VM commands (the tree's context values, the
 * palette's quick picks: only VMs a command applies to are offered), one for commands on
 * a VM's group rows, one for commands on other tree items (snapshots, attached disks, USB
 * devices). A unit test checks the `when` clauses in package.json against these tables.
 * No `vscode` import.
 */
import { VM_STATES, type VmState } from '../shared/types';

export interface VmRule {
  states: readonly VmState[];
  /** Needs SSH enabled for the VM. */
  ssh?: boolean;
}

const ALL_BUT_CREATING = VM_STATES.filter((s) => s !== 'creating');
/** A VM no operation runs on: snapshots, restores, clones and exports are possible. */
const SETTLED = ['stopped', 'running', 'suspended'] as const satisfies readonly VmState[];

export const VM_COMMANDS = {
  'devvm.start': { states: ['stopped', 'error'] },
  'devvm.stop': { states: ['running'] },
  'devvm.suspend': { states: ['running'] },
  'devvm.resume': { states: ['suspended'] },
  'devvm.forceStop': { states: ['running', 'starting', 'stopping', 'suspending', 'error'] },
  'devvm.delete': { states: ['stopped', 'running', 'suspended', 'error'] },
  'devvm.connect': { states: ['stopped', 'starting', 'running', 'error'], ssh: true },
  'devvm.connectNewWindow': { states: ['stopped', 'starting', 'running', 'error'], ssh: true },
  'devvm.openSshTerminal': { states: ['running'], ssh: true },
  'devvm.openSerial': { states: ['starting', 'running'] },
  'devvm.showLogs': { states: ALL_BUT_CREATING },
  'devvm.copySshCommand': { states: ALL_BUT_CREATING, ssh: true },
  // Disk-only snapshots in any settled state; RAM is offered only when running or suspended.
  'devvm.snapshot': { states: SETTLED },
  'devvm.restoreSnapshot': { states: [...SETTLED, 'error'] },
  'devvm.clone': { states: SETTLED },
  'devvm.exportDisk': { states: SETTLED },
  'devvm.attachDisk': { states: ['running'] },
  'devvm.attachUsb': { states: ['running'] },
} as const satisfies Record<string, VmRule>;

export type VmCommand = keyof typeof VM_COMMANDS;

export function vmContextValue(state: VmState, ssh: boolean): string {
  return `vm.${state}.${ssh ? 'ssh' : 'nossh'}`;
}

export function appliesTo(command: VmCommand, state: VmState, ssh: boolean): boolean {
  return ruleApplies(VM_COMMANDS[command], state, ssh);
}

export function ruleApplies(rule: VmRule, state: VmState, ssh: boolean): boolean {
  return rule.states.includes(state) && (!rule.ssh || ssh);
}

function statesRe(states: readonly VmState[]): string {
  return states.length === VM_STATES.length ? '[a-z]+' : `(${states.join('|')})`;
}

/** The `viewItem` regex for a command, as written in package.json's menus. */
export function viewItemRegex(command: VmCommand): string {
  const rule: VmRule = VM_COMMANDS[command];
  return `/^vm\\.${statesRe(rule.states)}\\.${rule.ssh ? 'ssh' : '[a-z]+'}$/`;
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
} as const satisfies Partial<Record<VmCommand, string>>;

export type GroupCommand = keyof typeof GROUP_COMMANDS;

export function groupItemRegex(command: GroupCommand): string {
  return `/^group\\.${GROUP_COMMANDS[command]}\\.${statesRe(VM_COMMANDS[command].states)}$/`;
}

// ---- other items -----------------------------------------------------------------

export const SNAPSHOT_ITEMS = ['snapshot.disk', 'snapshot.ram'] as const;
export const DISK_ITEMS = ['disk.virtio', 'disk.usb'] as const;
export const USB_ITEMS = ['usb.device'] as const;

export interface ItemRule {
  /** The tree items' context values it shows on. */
  items: readonly string[];
  /** From the palette a VM is picked first: the states it needs then. */
  vm: VmRule;
}

export const ITEM_COMMANDS = {
  'devvm.restoreSnapshot': { items: SNAPSHOT_ITEMS, vm: VM_COMMANDS['devvm.restoreSnapshot'] },
  'devvm.deleteSnapshot': { items: SNAPSHOT_ITEMS, vm: { states: [...SETTLED, 'error'] } },
  'devvm.clone': { items: SNAPSHOT_ITEMS, vm: VM_COMMANDS['devvm.clone'] },
  'devvm.exportDisk': { items: SNAPSHOT_ITEMS, vm: VM_COMMANDS['devvm.exportDisk'] },
  'devvm.detachDisk': { items: DISK_ITEMS, vm: { states: ['running'] } },
  'devvm.detachUsb': { items: USB_ITEMS, vm: { states: ['running'] } },
} as const satisfies Record<string, ItemRule>;

export type ItemCommand = keyof typeof ITEM_COMMANDS;

/** Commands only in the palette (and in notifications), acting on a picked VM. */
export const PALETTE_COMMANDS = {
  'devvm.unexportDisk': { states: ALL_BUT_CREATING },
} as const satisfies Record<string, VmRule>;

export type PaletteCommand = keyof typeof PALETTE_COMMANDS;

/** The VM rule of any command that acts on one VM. */
export function vmRule(command: VmCommand | ItemCommand | PaletteCommand): VmRule {
  if (command in VM_COMMANDS) return VM_COMMANDS[command as VmCommand];
  if (command in ITEM_COMMANDS) return ITEM_COMMANDS[command as ItemCommand].vm;
  return PALETTE_COMMANDS[command as PaletteCommand];
}

export function itemApplies(command: string, contextValue: string): boolean {
  const rule: ItemRule | undefined = (ITEM_COMMANDS as Record<string, ItemRule>)[command];
  return !!rule && rule.items.includes(contextValue);
}

export const IMAGE_COMMANDS = {
  'devvm.deleteImage': ['image.unused'],
} as const;
