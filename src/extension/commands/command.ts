/**
 * The command table's shape, its one registration loop and its one error handler, as
 * VS Code's git extension does (extensions/git/src/commands.ts: every command an entry,
 * registered in one place, every failure shown by one handler). Each family of commands
 * lives in its own file beside this one; index.ts joins them into COMMANDS.
 *
 * Only type imports from `vscode` here, so unit tests run the loop and the handler with
 * fakes.
 */
import type * as vscode from 'vscode';
import { DevvmError } from '../../shared/errors';
import type { ProgressParams } from '../../shared/rpc';
import type { VmSummary } from '../../shared/types';
import type { HelperClient } from '../helperclient';
import type { VmLogs } from '../logs';
import { vmRule, type RuleCommand, type VmRule } from '../menus';
import type { ImageTree, VmTree } from '../trees';

/** What every command handler may use: built once in activate(). */
export interface Cx {
  context: vscode.ExtensionContext;
  client: HelperClient;
  vms: VmTree;
  images: ImageTree;
  logs: VmLogs;
  home: string;
  out: vscode.LogOutputChannel;
  settings(): vscode.WorkspaceConfiguration;
  /** The one error handler (see `errorReporter`). */
  report(e: unknown, vm?: string): void;
  /** Runs a long helper request under a notification showing the helper's progress messages. */
  withProgress<T>(title: string, f: (progressToken: string) => Promise<T>): Promise<T>;
  /** The VM a command acts on: the node or name it got, else a quick pick of the VMs `rule` allows. */
  pickVm(rule: VmRule, arg: unknown, placeHolder: string): Promise<VmSummary | undefined>;
  loadVms(): Promise<void>;
  loadImages(): Promise<void>;
  showHelperLog(): void;
  showLogs(vm?: string): Promise<void>;
  /** Opens the layer tree document. */
  showLayerTree(): Promise<void>;
}

/** A command acting on one VM: `rule` (from menus.ts, so from the lifecycle table) says which states it needs. */
export interface VmCommandEntry {
  id: RuleCommand;
  vm: { rule: VmRule; placeHolder: string };
  run(cx: Cx, vm: VmSummary, arg: unknown): unknown;
}

export interface PlainCommandEntry {
  id: string;
  vm?: undefined;
  run(cx: Cx, ...args: unknown[]): unknown;
}

export type CommandEntry = VmCommandEntry | PlainCommandEntry;

/** An entry for a command on one VM; its states are the ones menus.ts derives for `id`. */
export function onVm(id: RuleCommand, placeHolder: string, run: VmCommandEntry['run']): VmCommandEntry {
  return { id, vm: { rule: vmRule(id), placeHolder }, run };
}

export function plain(id: string, run: PlainCommandEntry['run']): PlainCommandEntry {
  return { id, run };
}

/** The user backed out of a dialog the command needed: nothing to report. */
export class Cancelled extends Error {
  constructor(what: string) {
    super(what);
    this.name = 'Cancelled';
  }
}

export const SHOW_HELPER_LOG = 'Show Helper Log';
export const SHOW_VM_LOGS = 'Show VM Logs';

/** A button on an error message beyond the logs (e.g. Show Output after a provisioning failure). */
export interface ErrorAction {
  title: string;
  run(): void;
}

const errorActions = new WeakMap<object, readonly ErrorAction[]>();

/** Gives an error buttons of its own, offered first by the one error handler; returns it. */
export function withActions<E extends object>(e: E, ...actions: ErrorAction[]): E {
  errorActions.set(e, [...(errorActions.get(e) ?? []), ...actions]);
  return e;
}

export interface ErrorUi {
  /** vscode.window.showErrorMessage */
  showError(message: string, ...actions: string[]): PromiseLike<string | undefined>;
  log(level: 'error' | 'info', message: string): void;
  showHelperLog(): void;
  showVmLogs(vm: string): void;
}

/**
 * The one error handler: a thrown DevvmError (or anything else, wrapped) becomes one
 * error message, its one line `<what> (<hint>)`, with Show Helper Log (and the VM's logs
 * when it concerns one VM). An error object is shown once, however many handlers it passes
 * through on its way up.
 */
export function errorReporter(ui: ErrorUi): (e: unknown, vm?: string) => void {
  const shown = new WeakSet<object>();
  return (e, vm) => {
    if (typeof e === 'object' && e !== null) {
      if (shown.has(e)) return;
      shown.add(e);
    }
    if (e instanceof Cancelled) {
      ui.log('info', `${vm ? `${vm}: ` : ''}${e.message}`);
      return;
    }
    const err = e instanceof DevvmError ? e : new DevvmError('internal', e instanceof Error ? e.message : String(e));
    ui.log('error', `${vm ? `${vm}: ` : ''}${err.oneLine()}`);
    const own = (typeof e === 'object' && e !== null && errorActions.get(e)) || [];
    const actions = [...own.map((a) => a.title), ...(vm ? [SHOW_VM_LOGS, SHOW_HELPER_LOG] : [SHOW_HELPER_LOG])];
    void Promise.resolve(ui.showError(`Dev VMs: ${err.oneLine()}`, ...actions)).then((a) => {
      own.find((x) => x.title === a)?.run();
      if (a === SHOW_HELPER_LOG) ui.showHelperLog();
      if (a === SHOW_VM_LOGS && vm) ui.showVmLogs(vm);
    });
  };
}

export interface Disposable {
  dispose(): unknown;
}

/**
 * Registers every entry (vscode.commands.registerCommand as `register`): a VM command
 * first resolves its VM (a pick when it got none), then runs; whatever it throws goes to
 * `cx.report` once. Registering one id twice is a bug in the table.
 */
export function registerCommands(table: readonly CommandEntry[], cx: Cx, register: (id: string, f: (...args: unknown[]) => Promise<void>) => Disposable): Disposable[] {
  const seen = new Set<string>();
  return table.map((entry) => {
    if (seen.has(entry.id)) throw new DevvmError('internal', `command ${entry.id} is in the command table twice`);
    seen.add(entry.id);
    return register(entry.id, async (...args: unknown[]) => {
      let vm: string | undefined;
      try {
        if (entry.vm) {
          const s = await cx.pickVm(entry.vm.rule, args[0], entry.vm.placeHolder);
          if (!s) return;
          vm = s.name;
          await entry.run(cx, s, args[0]);
        } else {
          await entry.run(cx, ...args);
        }
      } catch (e) {
        cx.report(e, vm);
      }
    });
  });
}

/** For withProgress implementations: a notification's increments from the helper's fractions. */
export function progressIncrement(last: number, p: ProgressParams): { increment?: number; last: number } {
  const pct = typeof p.fraction === 'number' ? Math.max(0, Math.min(1, p.fraction)) * 100 : undefined;
  if (pct === undefined) return { last };
  return { increment: pct > last ? pct - last : undefined, last: Math.max(last, pct) };
}
