/**
 * The Dev VMs extension: views, commands, status bar and the Create VM form. It only
 * talks RPC to the helper (started on demand); every state it shows comes from the
 * helper's notifications, never from polling. The commands are one table
 * (commands/index.ts), registered in one loop with one error handler (commands/command.ts).
 */
import os from 'node:os';
import path from 'node:path';
import * as vscode from 'vscode';
import { findManifest } from '../shared/devvmjson/up';
import { devvmHome } from '../shared/paths';
import { Rpc } from '../shared/rpc';
import type { VmSummary } from '../shared/types';
import { errorReporter, progressIncrement, registerCommands, type Cx } from './commands/command';
import { COMMANDS } from './commands/index';
import { isNode } from './commands/util';
import { HelperClient } from './helperclient';
import { LayerTreeDocument } from './layerTree';
import { offerOpenInVm, watchManifestFolders } from './manifestWatch';
import { VmLogs } from './logs';
import { noCandidateMessage, ruleApplies, type VmRule } from './menus';
import { stateIcon, statusText } from './model';
import { vmFromRemoteAuthority } from './remote';
import { logTail } from './serial';
import { CreatePanel } from './createPanel';
import { ImageTree, VmTree } from './trees';
import { watchUsb } from './usbWatch';

declare const __devvmLoadStart: number | undefined;
/** Set by the bundle's first line (scripts/build.mjs) and here, after every import ran. */
const loadMs = typeof __devvmLoadStart === 'number' ? performance.now() - __devvmLoadStart : 0;

export interface DevvmApi {
  /** Milliseconds to load the bundle plus run activate() (VS Code's own gaps excluded). */
  activationMs: number;
}

export function activate(context: vscode.ExtensionContext): DevvmApi {
  const started = performance.now();
  const out = vscode.window.createOutputChannel('Dev VMs', { log: true });
  const settings = () => vscode.workspace.getConfiguration('devvm');
  const home = expandHome(settings().get<string>('home')?.trim() || devvmHome(process.env));
  const qemuPath = settings().get<string>('qemuPath')?.trim();
  const client = new HelperClient({
    home,
    helperScript: path.join(context.extensionPath, 'dist', 'helper.js'),
    // Only a helper this window starts sees these; a running helper keeps its own.
    env: qemuPath ? { ...process.env, DEVVM_QEMU: expandHome(qemuPath) } : process.env,
    log: (level, msg) => out[level](msg),
  });
  const vms = new VmTree(client);
  const images = new ImageTree();
  const logs = new VmLogs();
  const layerTree = new LayerTreeDocument(client, home);
  const vmView = vscode.window.createTreeView('devvm.vms', { treeDataProvider: vms, showCollapseAll: true });
  const imageView = vscode.window.createTreeView('devvm.images', { treeDataProvider: images });
  const status = vscode.window.createStatusBarItem('devvm.status', vscode.StatusBarAlignment.Left, 10);
  status.name = 'Dev VMs';
  status.command = 'devvm.statusMenu';
  const setContext = (key: string, value: boolean) => void vscode.commands.executeCommand('setContext', key, value);

  // ---- logs and errors ------------------------------------------------------------

  const showHelperLog = () => {
    const tail = logTail(path.join(home, 'helper.log'), 8192).replace(/\r\n/g, '\n').trimEnd();
    if (tail) out.info(`last lines of ${path.join(home, 'helper.log')}:\n${tail}`);
    out.show(true);
  };
  const showLogs = async (vm?: string) => {
    if (!vm) return showHelperLog();
    try {
      const info = await client.request(Rpc.vmInfo, { name: vm });
      logs.show(vm, info.dir, info.serialLog);
    } catch {
      showHelperLog();
    }
  };
  const report = errorReporter({
    showError: (message, ...actions) => vscode.window.showErrorMessage(message, ...actions),
    log: (level, message) => out[level](message),
    showHelperLog,
    showVmLogs: (vm) => void showLogs(vm),
  });
  const helperUnavailable = (e: unknown) => {
    vmView.message = `The devvm helper is not available: ${(e as Error).message}`;
    setContext('devvm.helperFailed', true);
    out.error((e as { oneLine?: () => string }).oneLine?.() ?? String(e));
  };

  // ---- state from the helper -------------------------------------------------------

  const loadVms = async () => {
    try {
      vms.replace(await client.request(Rpc.vmList));
      vmView.message = undefined;
    } catch (e) {
      helperUnavailable(e);
      return;
    }
    setContext('devvm.helperFailed', false);
    if (vms.list().length === 0) void checkQemu();
  };
  const loadImages = async () => {
    try {
      images.replace(await client.request(Rpc.imageList));
    } catch (e) {
      out.warn(`image list: ${(e as Error).message}`);
    }
  };
  /** Welcome content shows the fix when QEMU is missing (asked only while there is no VM). */
  const checkQemu = async () => {
    try {
      const qemu = (await client.request(Rpc.doctor)).checks.find((c) => c.name === 'qemu-system');
      setContext('devvm.qemuMissing', qemu ? !qemu.ok : false);
    } catch {
      // the view's message already says what is wrong with the helper
    }
  };

  const connectedVm = vmFromRemoteAuthority(vscode.workspace.workspaceFolders?.[0]?.uri.authority);
  const wiring = [
    client.connected.on(() => void Promise.all([loadVms(), loadImages()])),
    client.vmChanged.on((s) => {
      const isNew = !vms.get(s.name);
      vms.upsert(s);
      if (isNew) void loadImages();
    }),
    client.vmRemoved.on((name) => {
      vms.remove(name);
      logs.remove(name);
      void loadImages();
    }),
    client.imagesChanged.on(() => void loadImages()),
    client.ports.on((p) => {
      if (typeof p?.name === 'string' && Array.isArray(p.ports)) vms.setPorts(p.name, p.ports);
    }),
    client.disconnected.on(() => {
      vmView.message = 'The devvm helper stopped; the list updates when it is back (any command starts it).';
    }),
    vms.onDidChangeVms((list) => {
      setContext('devvm.hasVms', list.length > 0);
      setContext('devvm.loaded', true);
      const st = statusText(list);
      const here = connectedVm ? list.find((s) => s.name === connectedVm) : undefined;
      status.text = here ? `$(vm) ${here.name}` : st.text;
      status.tooltip = here ? `Connected to dev VM ${here.name} (${here.state}). ${st.tooltip}` : st.tooltip;
      status.show();
      CreatePanel.vmsChanged(list.map((s) => s.name));
    }),
  ];

  // ---- what commands use -------------------------------------------------------------

  const withProgress = <T>(title: string, f: (token: string) => Promise<T>): Promise<T> =>
    Promise.resolve(
      vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: false }, async (progress) => {
        let last = 0;
        const t = client.progressToken((p) => {
          const step = progressIncrement(last, p);
          last = step.last;
          progress.report({ message: p.message, increment: step.increment });
          out.info(`${title}: ${p.message}`);
        });
        try {
          return await f(t.token);
        } finally {
          t.dispose();
        }
      }),
    );

  /** The VM a command acts on: the tree node or name it was given, or a quick pick of the VMs its rule allows. */
  const pickVm = async (rule: VmRule, arg: unknown, placeHolder: string): Promise<VmSummary | undefined> => {
    const name = typeof arg === 'string' ? arg : isNode(arg) && 'vm' in arg ? arg.vm : undefined;
    if (!vms.loaded) await loadVms();
    if (name) {
      const s = vms.get(name);
      if (!s) void vscode.window.showErrorMessage(`Dev VMs: no VM named "${name}"`);
      return s;
    }
    const candidates = vms.list().filter((s) => ruleApplies(rule, s.state, s.sshPort !== null, !!s.display));
    if (candidates.length === 0) {
      const any = vms.list().length > 0;
      const why = noCandidateMessage(rule, vms.list().map((s) => ({ name: s.name, state: s.state, ssh: s.sshPort !== null, display: !!s.display })));
      void vscode.window.showInformationMessage(why, ...(any ? [] : ['Create VM…'])).then((a) => {
        if (a) void vscode.commands.executeCommand('devvm.create');
      });
      return undefined;
    }
    const picked = await vscode.window.showQuickPick(
      candidates.map((s) => ({ label: s.name, description: s.state, detail: `${s.image} · ${s.user}`, iconPath: new vscode.ThemeIcon(stateIcon(s.state).id), s })),
      { placeHolder, matchOnDescription: true },
    );
    return picked?.s;
  };

  const cx: Cx = { context, client, vms, images, logs, home, out, settings, report, withProgress, pickVm, loadVms, loadImages, showHelperLog, showLogs, showLayerTree: () => layerTree.show() };

  context.subscriptions.push(
    out,
    logs,
    status,
    vmView,
    imageView,
    layerTree,
    ...wiring,
    { dispose: () => client.dispose() },
    ...registerCommands(COMMANDS, cx, (id, f) => vscode.commands.registerCommand(id, f)),
    ...watchUsb(cx),
    ...watchManifestFolders(),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('devvm.home') || e.affectsConfiguration('devvm.qemuPath')) {
        void vscode.window.showInformationMessage('Dev VMs: reload the window to use the new data directory or QEMU path (a running helper keeps its QEMU).', 'Reload Window').then((a) => {
          if (a) void vscode.commands.executeCommand('workbench.action.reloadWindow');
        });
      }
    }),
  );

  // A folder with a devvm.json: one question (not awaited: activation must not wait for it).
  void offerOpenInVm(cx, { findManifest }).catch((e) => report(e));
  // Connect in the background: activation must not wait for the helper.
  void client.connection().catch(helperUnavailable);
  const activateMs = performance.now() - started;
  const activationMs = Math.round((loadMs + activateMs) * 10) / 10;
  out.info(`activated in ${activationMs} ms (bundle load ${loadMs.toFixed(1)} ms, activate() ${activateMs.toFixed(1)} ms); DEVVM_HOME ${home}`);
  return { activationMs };
}

export function deactivate(): void {}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}
