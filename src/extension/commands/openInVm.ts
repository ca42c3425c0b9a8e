/**
 * Open Folder in Dev VM (issue 14): make or reuse the VM a folder's devvm.json declares
 * (src/shared/devvmjson/up.ts does the work, as for `devvm up`), stream its provisioning
 * output to an output channel, then open the folder's path in the guest over Remote-SSH.
 *
 * devvm.json runs scripts from the repository, so in Restricted Mode nothing happens until
 * the user trusts the workspace; up() is also told whether it is trusted and refuses
 * otherwise (two layers). `up` and `findManifest` come in as dependencies so unit tests
 * drive the whole flow with a fake.
 */
import path from 'node:path';
import * as vscode from 'vscode';
import type { MessageConnection } from 'vscode-jsonrpc';
import * as devvmjson from '../../shared/devvmjson/up';
import type { UpOptions, UpReporter, UpResult } from '../../shared/devvmjson/up';
import { asDevvmError, DevvmError } from '../../shared/errors';
import { plain as plainText } from '../logs';
import { Cancelled, plain, withActions, type CommandEntry, type Cx } from './command';
import { openRemoteFolder } from './connect';

export interface UpDeps {
  up(conn: MessageConnection, opts: UpOptions, report: UpReporter): Promise<UpResult>;
  findManifest(dir: string): string | null;
}

export const OPEN_IN_VM = 'devvm.openFolderInVm';
export const PROVISIONING_CHANNEL = 'Dev VMs: Provisioning';
export const MANAGE_TRUST = 'Manage Workspace Trust';
export const SHOW_OUTPUT = 'Show Output';
export const CHANGED = { rebuild: 'Rebuild', apply: 'Apply', open: 'Open Anyway' } as const;

/** The folder a devvm.json belongs to: its own folder, or the parent of `.devvm/`. */
export function manifestFolder(file: string, p: Pick<typeof path, 'dirname' | 'basename'> = path): string {
  const dir = p.dirname(file);
  return p.basename(dir) === '.devvm' ? p.dirname(dir) : dir;
}

interface FileUri {
  scheme: string;
  fsPath: string;
}
const isFileUri = (x: unknown): x is FileUri => typeof x === 'object' && x !== null && (x as FileUri).scheme === 'file' && typeof (x as FileUri).fsPath === 'string';

/** The folder to open: the Explorer's folder (or devvm.json) it was run on, else the workspace folder with a devvm.json (a pick when several have one). */
async function folderFor(arg: unknown, deps: UpDeps): Promise<string> {
  if (isFileUri(arg)) {
    const dir = path.basename(arg.fsPath) === 'devvm.json' ? manifestFolder(arg.fsPath) : arg.fsPath;
    if (!deps.findManifest(dir)) throw new DevvmError('not-found', `no devvm.json in ${dir}`, 'add one at the folder\'s root or as .devvm/devvm.json');
    return dir;
  }
  const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file');
  if (folders.length === 0) {
    const open = 'Open Folder…';
    void vscode.window.showInformationMessage('Dev VMs: open a folder that has a devvm.json first, then run Open Folder in Dev VM.', open).then((a) => {
      if (a === open) void vscode.commands.executeCommand('workbench.action.files.openFolder');
    });
    throw new Cancelled('open folder in dev VM: no folder open');
  }
  const withManifest = folders.filter((f) => deps.findManifest(f.uri.fsPath));
  if (withManifest.length === 0) {
    const where = folders.map((f) => f.uri.fsPath).join(', ');
    throw new DevvmError('not-found', `no devvm.json in ${where}`, 'add one at the folder\'s root or as .devvm/devvm.json');
  }
  if (withManifest.length === 1) return withManifest[0]!.uri.fsPath;
  const picked = await vscode.window.showQuickPick(
    withManifest.map((f) => ({ label: f.name, description: f.uri.fsPath, dir: f.uri.fsPath })),
    { placeHolder: 'Folder to open in its dev VM' },
  );
  if (!picked) throw new Cancelled('open folder in dev VM: no folder picked');
  return picked.dir;
}

export function openInVmCommands(deps: UpDeps): CommandEntry[] {
  let channel: vscode.OutputChannel | undefined;
  /** The one command waiting for trust; a newer run replaces it. */
  let waiting: { cancel(): void } | undefined;

  const provisioning = (cx: Cx): vscode.OutputChannel => {
    if (!channel) {
      const c = vscode.window.createOutputChannel(PROVISIONING_CHANNEL);
      channel = c;
      cx.context.subscriptions.push(c, { dispose: () => waiting?.cancel() });
    }
    return channel;
  };

  /** Resolves on the next trust grant after `ask` ran; a newer wait cancels it. */
  const grantOf = (ask: () => void) =>
    new Promise<void>((resolve, reject) => {
      const sub = vscode.workspace.onDidGrantWorkspaceTrust(() => {
        sub.dispose();
        waiting = undefined;
        resolve();
      });
      waiting = {
        cancel: () => {
          sub.dispose();
          waiting = undefined;
          reject(new Cancelled('open folder in dev VM: superseded while waiting for trust'));
        },
      };
      ask();
    });

  /**
   * Restricted Mode: explain, offer Manage Workspace Trust, and continue only once trust is
   * granted. Dismissing the message, or a later run, ends the wait without running anything.
   */
  const ensureTrusted = async (cx: Cx, dir: string): Promise<void> => {
    if (vscode.workspace.isTrusted) return;
    waiting?.cancel();
    cx.out.info(`open folder in dev VM: ${dir} is in Restricted Mode; asking for trust (nothing from it runs until then)`);
    const a = await vscode.window.showWarningMessage(
      `Dev VMs: ${path.basename(dir)}'s devvm.json runs provisioning scripts from this folder, and the window is in Restricted Mode. Trust the folder first, then the dev VM is made.`,
      MANAGE_TRUST,
    );
    if (a !== MANAGE_TRUST) throw new Cancelled('open folder in dev VM: the folder is not trusted');
    // Trusted meanwhile (the Restricted Mode banner): no grant event is coming.
    if (!vscode.workspace.isTrusted) await grantOf(() => void vscode.commands.executeCommand('workbench.trust.manage'));
    cx.out.info(`open folder in dev VM: trust granted for ${dir}`);
  };

  const runUp = async (cx: Cx, dir: string, mode: Pick<UpOptions, 'rebuild' | 'apply'>): Promise<UpResult> => {
    const out = provisioning(cx);
    const how = mode.rebuild ? ' (rebuild)' : mode.apply ? ' (apply)' : '';
    out.appendLine(`[${new Date().toISOString()}] ${dir}${how}`);
    let lastStep: string | undefined;
    let shown = false;
    const conn = await cx.client.connection();
    const reporter = (progress: vscode.Progress<{ message?: string }>): UpReporter => ({
      step: (message) => {
        lastStep = message;
        progress.report({ message });
        out.appendLine(`> ${message}`);
        cx.out.info(`open folder in dev VM: ${message}`);
      },
      output: (chunk) => {
        // Provisioning has started: show what it prints, without taking the focus.
        if (!shown) out.show(true);
        shown = true;
        out.append(plainText(chunk));
      },
    });
    try {
      const r = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Dev VM for ${path.basename(dir)}`, cancellable: false }, async (progress) => {
        // The helper's own progress (booting, first setup) between up()'s steps.
        const helper = cx.client.progressToken((p) => {
          progress.report({ message: p.message });
          cx.out.info(`open folder in dev VM: ${p.message}`);
        });
        try {
          return await deps.up(conn, { dir, trusted: vscode.workspace.isTrusted, ...mode, progressToken: helper.token }, reporter(progress));
        } finally {
          helper.dispose();
        }
      });
      out.appendLine(`VM ${r.name} ready${r.created ? ' (created)' : ''}${r.replaced ? ` (replaces ${r.replaced}, deleted)` : ''}; ${dir} is ${r.guestPath} in the guest`);
      if (r.unsupported?.length) {
        const what = r.unsupported.join(' and ');
        out.appendLine(`made without ${what}: the helper cannot set them up yet`);
        void vscode.window.showWarningMessage(`Dev VMs: ${r.name} was made without ${what} (the helper cannot set them up yet), so ${r.guestPath} may be missing in the guest.`);
      }
      return r;
    } catch (e) {
      const err = asDevvmError(e);
      // Which step failed, with the exit code up() names, and the output it printed.
      const message = err.code === 'provisioning-failed' && lastStep && !err.message.includes(lastStep) ? `${lastStep}: ${err.message}` : err.message;
      out.appendLine(`failed: ${message}${err.hint ? ` (${err.hint})` : ''}`);
      throw withActions(new DevvmError(err.code, message, err.hint), { title: SHOW_OUTPUT, run: () => out.show() });
    }
  };

  /** Folders being brought up: a second run meanwhile would race the first to make the VM. */
  const busy = new Set<string>();

  const openFolderInVm = async (cx: Cx, arg: unknown): Promise<void> => {
    const dir = await folderFor(arg, deps);
    await ensureTrusted(cx, dir);
    if (busy.has(dir)) {
      void vscode.window.showInformationMessage(`Dev VMs: ${path.basename(dir)} is already being opened in its dev VM.`);
      return;
    }
    busy.add(dir);
    try {
      await bringUp(cx, dir);
    } finally {
      busy.delete(dir);
    }
  };

  const bringUp = async (cx: Cx, dir: string): Promise<void> => {
    let r = await runUp(cx, dir, {});
    if (r.changed.length > 0) {
      const a = await vscode.window.showInformationMessage(`devvm.json changed since VM ${r.name} was made (${r.changed.join(', ')})`, CHANGED.rebuild, CHANGED.apply, CHANGED.open);
      if (a === undefined) throw new Cancelled(`open folder in dev VM: devvm.json changed since ${r.name} was made; nothing chosen`);
      // (Its `changed` then lists what was rebuilt or applied.)
      if (a !== CHANGED.open) r = await runUp(cx, dir, a === CHANGED.rebuild ? { rebuild: true } : { apply: true });
    }
    await openRemoteFolder(cx, r.name, r.guestPath, false);
  };

  return [plain(OPEN_IN_VM, (cx, arg) => openFolderInVm(cx, arg))];
}

export const OPEN_IN_DEV_VM: CommandEntry[] = openInVmCommands({ up: (conn, opts, report) => devvmjson.up(conn, opts, report), findManifest: (dir) => devvmjson.findManifest(dir) });
