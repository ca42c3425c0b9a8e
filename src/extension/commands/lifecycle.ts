/** Start, stop, suspend, resume, force stop and delete a VM. */
import * as vscode from 'vscode';
import { allows } from '../../shared/lifecycle';
import { Rpc } from '../../shared/rpc';
import type { VmInfo, VmSummary } from '../../shared/types';
import { deleteDetail } from '../model';
import { onVm, type CommandEntry, type Cx } from './command';

/** Starts (or resumes) a VM under a progress notification; with `waitSsh` until SSH answers. */
export function startVm(cx: Cx, name: string, waitSsh: boolean): Promise<VmSummary> {
  return cx.withProgress(waitSsh ? `Starting ${name} and waiting for SSH` : `Starting ${name}`, (progressToken) => cx.client.request(Rpc.vmStart, { name, waitSsh, progressToken }));
}

export const LIFECYCLE: CommandEntry[] = [
  onVm('devvm.start', 'VM to start', (cx, s) => startVm(cx, s.name, false)),
  onVm('devvm.stop', 'VM to stop (ACPI power-off)', (cx, s) => cx.withProgress(`Stopping ${s.name}`, () => cx.client.request(Rpc.vmStop, { name: s.name }))),
  onVm('devvm.suspend', 'VM to suspend (RAM saved to a file)', (cx, s) =>
    cx.withProgress(`Suspending ${s.name}`, (progressToken) => cx.client.request(Rpc.vmSuspend, { name: s.name, progressToken })),
  ),
  onVm('devvm.resume', 'VM to resume from its saved state', (cx, s) => startVm(cx, s.name, false)),
  onVm('devvm.forceStop', 'VM to force stop (like pulling the plug)', async (cx, s) => {
    const ok = await vscode.window.showWarningMessage(`Force stop ${s.name}?`, { modal: true, detail: 'QEMU quits at once, like pulling the plug: unsaved data in the guest is lost.' }, 'Force Stop');
    if (ok) await cx.client.request(Rpc.vmStop, { name: s.name, force: true });
  }),
  onVm('devvm.delete', 'VM to delete', async (cx, s) => {
    const info: VmInfo = await cx.client.request(Rpc.vmInfo, { name: s.name });
    const ok = await vscode.window.showWarningMessage(`Delete the VM "${s.name}"?`, { modal: true, detail: deleteDetail(info) }, 'Delete');
    if (!ok) return;
    // The confirmation said it is powered off first: --force wherever a plain delete is refused.
    await cx.withProgress(`Deleting ${s.name}`, () => cx.client.request(Rpc.vmDelete, { name: s.name, force: !allows('delete', info.state) }));
    cx.out.info(`deleted VM "${s.name}"`);
  }),
];
