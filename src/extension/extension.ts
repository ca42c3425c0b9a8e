/**
 * VS Code side: a Dev VMs view fed by helper notifications, and a few commands.
 * Talks to the helper over RPC only; starts it when the socket does not answer.
 */
import path from 'node:path';
import * as vscode from 'vscode';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { connect, fromRpcError } from '../shared/client';
import { devvmHome } from '../shared/paths';
import { Notify, Rpc } from '../shared/rpc';
import type { VmSummary } from '../shared/types';

const STATE_ICON: Record<string, string> = {
  running: 'vm-running',
  stopped: 'vm-outline',
  starting: 'loading~spin',
  stopping: 'loading~spin',
  creating: 'loading~spin',
  suspending: 'loading~spin',
  suspended: 'debug-pause',
  error: 'error',
};

class VmTree implements vscode.TreeDataProvider<VmSummary> {
  private vms = new Map<string, VmSummary>();
  private readonly emitter = new vscode.EventEmitter<VmSummary | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;

  replace(list: VmSummary[]): void {
    this.vms = new Map(list.map((s) => [s.name, s]));
    this.emitter.fire(undefined);
  }

  upsert(s: VmSummary): void {
    this.vms.set(s.name, s);
    this.emitter.fire(undefined);
  }

  remove(name: string): void {
    this.vms.delete(name);
    this.emitter.fire(undefined);
  }

  getChildren(el?: VmSummary): VmSummary[] {
    return el ? [] : [...this.vms.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  getTreeItem(s: VmSummary): vscode.TreeItem {
    const item = new vscode.TreeItem(s.name, vscode.TreeItemCollapsibleState.None);
    item.description = [s.state, `${s.cpus} vCPU`, `${s.memoryMiB} MiB`, s.sshPort ? `ssh :${s.sshPort}` : ''].filter(Boolean).join(' · ');
    item.iconPath = new vscode.ThemeIcon(STATE_ICON[s.state] ?? 'vm');
    item.contextValue = `vm-${s.state}`;
    item.tooltip = `${s.name}: ${s.state}\nimage ${s.image}, user ${s.user}${s.error ? `\n${s.error}` : ''}`;
    return item;
  }
}

export function activate(context: vscode.ExtensionContext): void {
  const started = performance.now();
  const out = vscode.window.createOutputChannel('Dev VMs', { log: true });
  const tree = new VmTree();
  const home = vscode.workspace.getConfiguration('devvm').get<string>('home') || devvmHome();
  let conn: Promise<MessageConnection> | null = null;

  const rpc = (): Promise<MessageConnection> =>
    (conn ??= connect({ home, helperScript: path.join(context.extensionPath, 'dist', 'helper.js') }).then((c) => {
      c.onNotification(Notify.vmChanged, (s) => tree.upsert(s));
      c.onNotification(Notify.vmRemoved, (p) => tree.remove(p.name));
      c.onClose(() => {
        conn = null;
        out.warn('helper connection closed');
      });
      out.info(`connected to the devvm helper at ${home}`);
      return c;
    }, (e) => {
      conn = null;
      throw e;
    }));

  const refresh = async () => {
    try {
      tree.replace(await (await rpc()).sendRequest(Rpc.vmList));
    } catch (e) {
      const err = fromRpcError(e);
      out.error(err.oneLine());
      void vscode.window.showErrorMessage(`Dev VMs: ${err.oneLine()}`);
    }
  };

  const vmCommand = (title: string, f: (c: MessageConnection, s: VmSummary) => Promise<unknown>) => async (s?: VmSummary) => {
    if (!s) return;
    try {
      await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `${title} ${s.name}` }, async () => f(await rpc(), s));
    } catch (e) {
      void vscode.window.showErrorMessage(`Dev VMs: ${fromRpcError(e).oneLine()}`);
    }
  };

  context.subscriptions.push(
    out,
    vscode.window.createTreeView('devvm.vms', { treeDataProvider: tree, showCollapseAll: false }),
    vscode.commands.registerCommand('devvm.refresh', refresh),
    vscode.commands.registerCommand('devvm.start', vmCommand('Starting', (c, s) => c.sendRequest(Rpc.vmStart, { name: s.name }))),
    vscode.commands.registerCommand('devvm.stop', vmCommand('Stopping', (c, s) => c.sendRequest(Rpc.vmStop, { name: s.name }))),
    vscode.commands.registerCommand('devvm.doctor', async () => {
      try {
        const d = await (await rpc()).sendRequest(Rpc.doctor);
        out.info(`accelerator: ${d.accelerator.name} (${d.accelerator.reason})`);
        for (const c of d.checks) out.info(`${c.ok ? 'ok' : 'FAIL'} ${c.name}: ${c.detail}${c.fix && !c.ok ? ` -> ${c.fix}` : ''}`);
        out.show();
      } catch (e) {
        void vscode.window.showErrorMessage(`Dev VMs: ${fromRpcError(e).oneLine()}`);
      }
    }),
    { dispose: () => void conn?.then((c) => c.dispose()) },
  );
  void refresh();
  out.info(`activated in ${Math.round(performance.now() - started)} ms`);
}

export function deactivate(): void {}
