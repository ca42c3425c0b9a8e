/**
 * Which VM commands apply in which state: one table used for the tree's context values,
 * the palette's quick picks (only VMs a command applies to are offered), and checked by a
 * unit test against the `when` clauses in package.json. No `vscode` import.
 */
import { VM_STATES, type VmState } from '../shared/types';

export interface VmRule {
  states: readonly VmState[];
  /** Needs SSH enabled for the VM. */
  ssh?: boolean;
}

const ALL_BUT_CREATING = VM_STATES.filter((s) => s !== 'creating');

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
} as const satisfies Record<string, VmRule>;

export type VmCommand = keyof typeof VM_COMMANDS;

export function vmContextValue(state: VmState, ssh: boolean): string {
  return `vm.${state}.${ssh ? 'ssh' : 'nossh'}`;
}

export function appliesTo(command: VmCommand, state: VmState, ssh: boolean): boolean {
  const rule: VmRule = VM_COMMANDS[command];
  return rule.states.includes(state) && (!rule.ssh || ssh);
}

/** The `viewItem` regex for a command, as written in package.json's menus. */
export function viewItemRegex(command: VmCommand): string {
  const rule: VmRule = VM_COMMANDS[command];
  const states = rule.states.length === VM_STATES.length ? '[a-z]+' : `(${rule.states.join('|')})`;
  return `/^vm\\.${states}\\.${rule.ssh ? 'ssh' : '[a-z]+'}$/`;
}

export const IMAGE_COMMANDS = {
  'devvm.deleteImage': ['image.unused'],
} as const;
