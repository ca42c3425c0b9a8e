/** Shared folders: add one (folder picker, guest path, read-only) and remove one. */
import * as vscode from 'vscode';
import { DevvmError } from '../../shared/errors';
import { Rpc } from '../../shared/rpc';
import type { ShareInfo, VmSummary } from '../../shared/types';
import * as validate from '../../shared/validate';
import { onVm, type CommandEntry, type Cx } from './command';
import { inputCheck, nodeOf, vmInfo } from './util';

async function addShare(cx: Cx, s: VmSummary): Promise<void> {
  const title = (n: number) => `Add Shared Folder to ${s.name} (${n}/3)`;
  const picked = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, canSelectMany: false, openLabel: 'Share', title: title(1) });
  const hostPath = picked?.[0]?.fsPath;
  if (!hostPath) return;
  const taken = (await vmInfo(cx, s.name)).shares.map((x) => x.guestPath);
  const guestPath = await vscode.window.showInputBox({
    title: title(2),
    prompt: `Where ${hostPath} appears in the guest (the same path by default, so paths in logs and tools match)`,
    value: hostPath,
    validateInput: (v) => (taken.includes(v.trim()) ? `${v.trim()} is shared already` : inputCheck(() => validate.absolutePath('guest folder', v.trim()))),
  });
  if (guestPath === undefined) return;
  const mode = await vscode.window.showQuickPick(
    [
      { label: 'Read-write', description: 'the guest can change the files', readOnly: false },
      { label: 'Read-only', description: 'writes in the guest are refused', readOnly: true },
    ],
    { title: title(3), placeHolder: `${guestPath.trim()} ← ${hostPath}` },
  );
  if (!mode) return;
  const r: ShareInfo = await cx.withProgress(`Sharing ${hostPath} with ${s.name}`, () =>
    cx.client.request(Rpc.vmShare, { name: s.name, hostPath, guestPath: guestPath.trim(), readOnly: mode.readOnly }),
  );
  cx.out.info(`${s.name}: shared ${r.hostPath} at ${r.guestPath}${r.readOnly ? ' (read-only)' : ''}, ${r.transport ?? 'transport at start'}${r.mounted ? ', mounted' : ''}`);
  cx.vms.refreshInfo(s.name);
  const when = r.mounted ? 'mounted now' : r.problem ? `not mounted now: ${r.problem}` : s.state === 'running' ? 'mounted at the next boot' : 'mounted when it starts';
  const msg = `Shared ${r.hostPath} with ${s.name} at ${r.guestPath}${r.readOnly ? ', read-only' : ''} (${when}).`;
  void (r.problem ? vscode.window.showWarningMessage(msg) : vscode.window.showInformationMessage(msg));
}

async function removeShare(cx: Cx, s: VmSummary, arg: unknown): Promise<void> {
  const shares = (await vmInfo(cx, s.name)).shares;
  const node = nodeOf(arg, 'share');
  let share = node ? shares.find((x) => x.guestPath === node.guestPath) : undefined;
  if (node && !share) throw new DevvmError('not-found', `VM "${s.name}" has no shared folder at ${node.guestPath}`, 'it was removed meanwhile');
  if (!share) {
    if (!shares.length) {
      void vscode.window.showInformationMessage(`Dev VMs: ${s.name} has no shared folders.`);
      return;
    }
    share = (await vscode.window.showQuickPick(shares.map((x) => ({ label: x.guestPath, description: `← ${x.hostPath}${x.readOnly ? ' · read-only' : ''}`, x })), { placeHolder: `Shared folder to remove from ${s.name}` }))?.x;
    if (!share) return;
  }
  const guestPath = share.guestPath;
  await cx.withProgress(`Removing the shared folder ${guestPath} from ${s.name}`, () => cx.client.request(Rpc.vmUnshare, { name: s.name, guestPath }));
  cx.out.info(`${s.name}: unshared ${share.hostPath} (${guestPath})`);
  cx.vms.refreshInfo(s.name);
  void vscode.window.showInformationMessage(`${s.name} no longer shares ${share.hostPath} (the files on the host are untouched).`);
}

export const SHARES: CommandEntry[] = [
  onVm('devvm.addShare', 'VM to share a folder with', addShare),
  onVm('devvm.removeShare', 'VM whose shared folder to remove', removeShare),
];
