/**
 * Folders with a devvm.json: the `devvm.manifestFolders` context key (the Explorer's
 * context menu offers Open Folder in Dev VM on them), kept current by a file watcher, and
 * the one question when a window opens such a folder ("Open in Dev VM" / "Don't Ask Again
 * for This Folder", remembered in workspaceState). Reads file names only: nothing from the
 * folder runs here, so this works in Restricted Mode too.
 */
import path from 'node:path';
import * as vscode from 'vscode';
import type { Cx } from './commands/command';
import { manifestFolder, OPEN_IN_VM, type UpDeps } from './commands/openInVm';

export const MANIFEST_FOLDERS_KEY = 'devvm.manifestFolders';
/** workspaceState: folders (fsPath) whose devvm.json question the user turned off. */
export const DONT_ASK_KEY = 'devvm.openInVm.dontAsk';
export const OFFER = { open: 'Open in Dev VM', never: "Don't Ask Again for This Folder" } as const;

const GLOBS = ['**/devvm.json', '**/.devvm/devvm.json'];
const EXCLUDE = '**/node_modules/**';
const MAX = 200;

/** Asks once per window about the first workspace folder with a devvm.json the user did not turn the question off for. */
export async function offerOpenInVm(cx: Cx, deps: Pick<UpDeps, 'findManifest'>): Promise<void> {
  const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file' && deps.findManifest(f.uri.fsPath));
  if (folders.length === 0) return;
  const dontAsk = cx.context.workspaceState.get<unknown>(DONT_ASK_KEY);
  const never = Array.isArray(dontAsk) ? dontAsk.filter((x): x is string => typeof x === 'string') : [];
  const folder = folders.find((f) => !never.includes(f.uri.fsPath));
  if (!folder) return;
  const a = await vscode.window.showInformationMessage(`${folder.name} declares a dev VM (devvm.json). Open the folder in it?`, OFFER.open, OFFER.never);
  if (a === OFFER.open) await vscode.commands.executeCommand(OPEN_IN_VM, folder.uri);
  if (a === OFFER.never) {
    await cx.context.workspaceState.update(DONT_ASK_KEY, [...never, folder.uri.fsPath]);
    cx.out.info(`open folder in dev VM: not asking again for ${folder.uri.fsPath}`);
  }
}

/** Sets the context key from a search of the workspace, again whenever a devvm.json comes or goes. */
export function watchManifestFolders(): vscode.Disposable[] {
  let timer: NodeJS.Timeout | undefined;
  const update = async () => {
    const found = await Promise.all(GLOBS.map((g) => Promise.resolve(vscode.workspace.findFiles(g, EXCLUDE, MAX)).catch(() => [] as vscode.Uri[])));
    // `resourcePath` in when clauses is the URI's path.
    const folders = [...new Set(found.flat().map((u) => manifestFolder(u.path, path.posix)))].sort();
    void vscode.commands.executeCommand('setContext', MANIFEST_FOLDERS_KEY, folders);
  };
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(() => void update(), 300);
  };
  const watchers = GLOBS.map((g) => vscode.workspace.createFileSystemWatcher(g, false, true, false));
  const subs = watchers.flatMap((w) => [w.onDidCreate(later), w.onDidDelete(later)]);
  void update();
  return [...watchers, ...subs, vscode.workspace.onDidChangeWorkspaceFolders(later), { dispose: () => clearTimeout(timer) }];
}
