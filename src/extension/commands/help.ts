/** The views and help: refresh, doctor, logs, the layer tree, and the status bar's VM menu. */
import * as vscode from 'vscode';
import { doctorLines, doctorSummary } from '../../shared/format';
import { Rpc } from '../../shared/rpc';
import { appliesTo, VM_COMMANDS, type VmCommand } from '../menus';
import { stateIcon } from '../model';
import { onVm, plain, type CommandEntry, type Cx } from './command';

async function doctor(cx: Cx): Promise<void> {
  const d = await cx.withProgress('Checking this host', () => cx.client.request(Rpc.doctor));
  for (const line of doctorLines(d)) cx.out.info(`doctor: ${line}`);
  const bad = d.checks.filter((c) => !c.ok);
  void vscode.commands.executeCommand('setContext', 'devvm.qemuMissing', bad.some((c) => c.name === 'qemu-system'));
  cx.out.show(true);
  void (bad.length ? vscode.window.showWarningMessage(doctorSummary(d)) : vscode.window.showInformationMessage(doctorSummary(d)));
}

/** The status bar item's menu: pick a VM, then one of the commands its state allows. */
async function statusMenu(cx: Cx): Promise<void> {
  const picked = await vscode.window.showQuickPick(
    [
      ...cx.vms.list().map((s) => ({ label: s.name, description: s.state, iconPath: new vscode.ThemeIcon(stateIcon(s.state).id), s })),
      { label: 'Create VM…', iconPath: new vscode.ThemeIcon('add'), s: undefined },
    ],
    { placeHolder: 'Dev VMs' },
  );
  if (!picked) return;
  if (!picked.s) {
    await vscode.commands.executeCommand('devvm.create');
    return;
  }
  const s = picked.s;
  const actions = (Object.keys(VM_COMMANDS) as VmCommand[]).filter((c) => appliesTo(c, s.state, s.sshPort !== null, !!s.display));
  const titles = commandTitles(cx.context);
  const action = await vscode.window.showQuickPick(actions.map((c) => ({ label: titles[c] ?? c, c })), { placeHolder: `${s.name} (${s.state})` });
  if (action) await vscode.commands.executeCommand(action.c, s.name);
}

/** Command titles from the manifest, for the status bar's action list. */
function commandTitles(context: vscode.ExtensionContext): Record<string, string> {
  const cmds = (context.extension.packageJSON as { contributes?: { commands?: { command: string; title: string }[] } }).contributes?.commands ?? [];
  return Object.fromEntries(cmds.map((c) => [c.command, c.title]));
}

export const HELP: CommandEntry[] = [
  plain('devvm.refresh', async (cx) => {
    await Promise.all([cx.loadVms(), cx.loadImages()]);
  }),
  plain('devvm.doctor', doctor),
  plain('devvm.showHelperLog', (cx) => cx.showHelperLog()),
  onVm('devvm.showLogs', 'VM whose logs to show', (cx, s) => cx.showLogs(s.name)),
  plain('devvm.showLayerTree', (cx) => cx.showLayerTree()),
  plain('devvm.statusMenu', statusMenu),
];
