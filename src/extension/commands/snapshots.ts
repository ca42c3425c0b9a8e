/** Snapshots and clones: take, restore and delete a VM's snapshots, clone a VM (now or at a snapshot). */
import * as vscode from 'vscode';
import { DevvmError } from '../../shared/errors';
import { date as formatDate } from '../../shared/format';
import { Rpc } from '../../shared/rpc';
import type { SnapshotInfo, VmInfo, VmSummary } from '../../shared/types';
import * as validate from '../../shared/validate';
import { nextFreeName, restoreDetail, sortedSnapshots } from '../model';
import { onVm, type CommandEntry, type Cx } from './command';
import { startVm } from './lifecycle';
import { inputCheck, nodeOf, vmInfo } from './util';

async function pickSnapshot(i: VmInfo, placeHolder: string): Promise<SnapshotInfo | undefined> {
  if (!i.snapshots.length) {
    void vscode.window.showInformationMessage(`Dev VMs: ${i.name} has no snapshots yet.`, 'Take Snapshot…').then((a) => {
      if (a) void vscode.commands.executeCommand('devvm.snapshot', i.name);
    });
    return undefined;
  }
  const picked = await vscode.window.showQuickPick(
    sortedSnapshots(i.snapshots)
      .reverse()
      .map((s) => ({ label: s.name, description: `${s.ram ? 'RAM · ' : ''}${formatDate(s.createdAt)}`, iconPath: new vscode.ThemeIcon(s.ram ? 'debug-pause' : 'history'), s })),
    { placeHolder },
  );
  return picked?.s;
}

/** The snapshot a command got as a tree node, or one picked from the VM's list. */
async function snapshotFor(cx: Cx, s: VmSummary, arg: unknown, placeHolder: string): Promise<{ i: VmInfo; snap: SnapshotInfo } | undefined> {
  const i = await vmInfo(cx, s.name);
  const node = nodeOf(arg, 'snapshot');
  if (node) {
    const snap = i.snapshots.find((x) => x.name === node.name);
    if (!snap) throw new DevvmError('not-found', `VM "${s.name}" has no snapshot "${node.name}"`, 'it was deleted meanwhile');
    return { i, snap };
  }
  const snap = await pickSnapshot(i, placeHolder);
  return snap ? { i, snap } : undefined;
}

async function takeSnapshot(cx: Cx, s: VmSummary): Promise<void> {
  const i = await vmInfo(cx, s.name);
  const taken = i.snapshots.map((x) => x.name);
  let n = taken.length + 1;
  while (taken.includes(`snap-${n}`)) n++;
  const snapshot = await vscode.window.showInputBox({
    title: `Take Snapshot of ${s.name}`,
    prompt: 'Snapshot name',
    value: `snap-${n}`,
    validateInput: (v) => (taken.includes(v) ? `${s.name} already has a snapshot "${v}"` : inputCheck(() => validate.snapshotName(v))),
  });
  if (snapshot === undefined) return;
  let ram = false;
  if (i.state === 'running' || i.state === 'suspended') {
    const running = i.state === 'running';
    const kind = await vscode.window.showQuickPick(
      [
        {
          label: 'Disk only',
          description: running ? 'live: the guest keeps running' : 'the suspended state is kept',
          detail: 'Restoring it boots from this disk.',
          ram: false,
        },
        {
          label: 'Disk and RAM (pause, save, resume)',
          description: running ? 'the guest pauses while its RAM is saved' : 'from the suspended state',
          detail: running && i.disks.length ? 'Detach the hot-plugged disks first: a RAM state cannot bring them back.' : 'Restoring it continues from this moment, programs still running.',
          ram: true,
        },
      ],
      { title: `Take Snapshot of ${s.name}: ${snapshot}`, placeHolder: 'What to save' },
    );
    if (!kind) return;
    ram = kind.ram;
  }
  const r = (await cx.withProgress(`Taking snapshot ${snapshot} of ${s.name}`, (progressToken) => cx.client.request(Rpc.vmSnapshot, { name: s.name, snapshot, ram, progressToken }))) as SnapshotInfo & { pauseMs?: number };
  const paused = typeof r.pauseMs === 'number' && s.state === 'running' ? ` (guest paused ${r.pauseMs < 10 ? r.pauseMs.toFixed(1) : Math.round(r.pauseMs)} ms)` : '';
  cx.out.info(`${s.name}: snapshot ${r.name} taken${r.ram ? ' with RAM' : ''}, layer ${r.layer}${paused}`);
  void vscode.window.showInformationMessage(`Snapshot "${r.name}" of ${s.name} taken${r.ram ? ' with RAM' : ''}${paused}.`);
}

async function restoreSnapshot(cx: Cx, s: VmSummary, arg: unknown): Promise<void> {
  const got = await snapshotFor(cx, s, arg, `Snapshot of ${s.name} to restore`);
  if (!got) return;
  const { snap } = got;
  const current = cx.vms.get(s.name) ?? s;
  const ok = await vscode.window.showWarningMessage(`Restore ${s.name} to snapshot "${snap.name}"?`, { modal: true, detail: restoreDetail(current, snap) }, 'Restore');
  if (!ok) return;
  const r = await cx.withProgress(`Restoring ${s.name} to ${snap.name}`, (progressToken) => cx.client.request(Rpc.vmRestore, { name: s.name, snapshot: snap.name, progressToken }));
  cx.out.info(`${s.name}: restored snapshot ${snap.name}; now ${r.state}`);
  const extra = r.state === 'suspended' ? ' Resume continues from the moment it was taken.' : '';
  const a = await vscode.window.showInformationMessage(`${s.name} is back at snapshot "${snap.name}" (${r.state}).${extra}`, ...(r.state === 'suspended' ? ['Resume'] : r.state === 'stopped' ? ['Start'] : []));
  if (a) await startVm(cx, s.name, false);
}

async function deleteSnapshot(cx: Cx, s: VmSummary, arg: unknown): Promise<void> {
  const got = await snapshotFor(cx, s, arg, `Snapshot of ${s.name} to delete`);
  if (!got) return;
  const { snap } = got;
  const ok = await vscode.window.showWarningMessage(
    `Delete snapshot "${snap.name}" of ${s.name}?`,
    {
      modal: true,
      detail: [
        `You can no longer go back to ${formatDate(snap.createdAt)}${snap.ram ? ', and its saved RAM is deleted' : ''}. The VM's current disk is not affected.`,
        'Its disk layer stays as long as the VM, a later snapshot or a clone is built on it, and is deleted when nothing uses it any more.',
      ].join('\n\n'),
    },
    'Delete',
  );
  if (!ok) return;
  await cx.client.request(Rpc.vmSnapshotDelete, { name: s.name, snapshot: snap.name });
  cx.out.info(`${s.name}: deleted snapshot ${snap.name}`);
  cx.vms.refreshInfo(s.name);
}

async function clone(cx: Cx, s: VmSummary, arg: unknown): Promise<void> {
  const snapshot = nodeOf(arg, 'snapshot')?.name;
  const existing = cx.vms.list().map((x) => x.name);
  const name = await vscode.window.showInputBox({
    title: snapshot ? `Clone ${s.name} at snapshot ${snapshot}` : `Clone ${s.name}`,
    prompt: `Name of the new VM. It keeps the user and files${snapshot ? ' of the snapshot' : s.state === 'running' ? ' (the disk as it is now; the source keeps running)' : ''} and gets its own host key, MAC and SSH port; its disk is a new layer, so cloning takes no copy.`,
    value: nextFreeName(`${s.name}-clone`, existing),
    validateInput: (v) => (existing.includes(v) ? `a VM named "${v}" already exists` : inputCheck(() => validate.vmName(v))),
  });
  if (!name) return;
  const r = await cx.withProgress(`Cloning ${s.name}${snapshot ? ` at ${snapshot}` : ''} to ${name}`, (progressToken) => cx.client.request(Rpc.vmClone, { source: s.name, name, snapshot, progressToken }));
  cx.out.info(`cloned ${s.name}${snapshot ? ` (snapshot ${snapshot})` : ''} to ${r.name}`);
  const actions = r.sshPort !== null ? ['Start', 'Connect'] : ['Start'];
  const a = await vscode.window.showInformationMessage(`Cloned ${s.name} to ${r.name}.`, ...actions);
  if (a === 'Start') await startVm(cx, r.name, false);
  if (a === 'Connect') await vscode.commands.executeCommand('devvm.connect', r.name);
}

export const SNAPSHOTS: CommandEntry[] = [
  onVm('devvm.snapshot', 'VM to snapshot', takeSnapshot),
  onVm('devvm.restoreSnapshot', 'VM to restore to a snapshot', restoreSnapshot),
  onVm('devvm.deleteSnapshot', 'VM whose snapshot to delete', deleteSnapshot),
  onVm('devvm.clone', 'VM to clone', clone),
];
