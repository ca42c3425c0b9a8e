/**
 * The Dev VMs extension: views, commands, status bar and the Create VM form. It only
 * talks RPC to the helper (started on demand); every state it shows comes from the
 * helper's notifications, never from polling.
 */
import os from 'node:os';
import path from 'node:path';
import * as vscode from 'vscode';
import { DevvmError } from '../shared/errors';
import { devvmHome } from '../shared/paths';
import { Rpc, type CreateParams } from '../shared/rpc';
import type { VmInfo, VmSummary } from '../shared/types';
import * as validate from '../shared/validate';
import { CreatePanel } from './createPanel';
import { checkForm, deriveShortName, type CreateForm } from './form';
import { HelperClient } from './helperclient';
import { VmLogs } from './logs';
import { registerActions } from './actions';
import { appliesTo, ruleApplies, VM_COMMANDS, vmRule, type ItemCommand, type PaletteCommand, type VmCommand } from './menus';
import { deleteDetail, formatBytes, nbdUriProblem, sshCommand, stateIcon, statusText, type Node } from './model';
import { installedRemoteSsh, preferredRemoteSsh, remoteFolderUri, vmFromRemoteAuthority } from './remote';
import { logTail, openSerialConsole, openSshShell } from './serial';
import { ImageTree, VmTree } from './trees';

declare const __devvmLoadStart: number | undefined;
/** Set by the bundle's first line (scripts/build.mjs) and here, after every import ran. */
const loadMs = typeof __devvmLoadStart === 'number' ? performance.now() - __devvmLoadStart : 0;

const INCLUDE_CONSENT = 'devvm.sshInclude';

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
  const vmView = vscode.window.createTreeView('devvm.vms', { treeDataProvider: vms, showCollapseAll: true });
  const imageView = vscode.window.createTreeView('devvm.images', { treeDataProvider: images });
  const status = vscode.window.createStatusBarItem('devvm.status', vscode.StatusBarAlignment.Left, 10);
  status.name = 'Dev VMs';
  status.command = 'devvm.statusMenu';

  // ---- errors and progress ---------------------------------------------------

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

  /** The helper's one-line message, with Show Logs (the VM's when there is one). */
  const report = (e: unknown, vm?: string) => {
    const err = e instanceof DevvmError ? e : new DevvmError('internal', e instanceof Error ? e.message : String(e));
    out.error(`${vm ? `${vm}: ` : ''}${err.oneLine()}`);
    void vscode.window.showErrorMessage(`Dev VMs: ${err.oneLine()}`, 'Show Logs').then((a) => {
      if (a) void showLogs(vm);
    });
  };

  /** Runs a long helper request under a notification that shows the helper's progress messages. */
  const withProgress = <T>(title: string, f: (token: string) => Promise<T>): Promise<T> =>
    Promise.resolve(vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: false }, async (progress) => {
      let last = 0;
      const t = client.progressToken((p) => {
        const pct = typeof p.fraction === 'number' ? Math.max(0, Math.min(1, p.fraction)) * 100 : undefined;
        progress.report({ message: p.message, increment: pct !== undefined && pct > last ? pct - last : undefined });
        if (pct !== undefined) last = Math.max(last, pct);
        out.info(`${title}: ${p.message}`);
      });
      try {
        return await f(t.token);
      } finally {
        t.dispose();
      }
    }));

  // ---- state from the helper -------------------------------------------------

  const loadVms = async () => {
    try {
      vms.replace(await client.request(Rpc.vmList));
      vmView.message = undefined;
    } catch (e) {
      const err = e as DevvmError;
      vmView.message = `The devvm helper is not available: ${err.message}`;
      void vscode.commands.executeCommand('setContext', 'devvm.helperFailed', true);
      out.error(err.oneLine?.() ?? String(e));
      return;
    }
    void vscode.commands.executeCommand('setContext', 'devvm.helperFailed', false);
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
      const d = await client.request(Rpc.doctor);
      const qemu = d.checks.find((c) => c.name === 'qemu-system');
      void vscode.commands.executeCommand('setContext', 'devvm.qemuMissing', qemu ? !qemu.ok : false);
    } catch {
      // the view's message already says what is wrong with the helper
    }
  };

  client.connected.on(() => void Promise.all([loadVms(), loadImages()]));
  client.vmChanged.on((s) => {
    const isNew = !vms.get(s.name);
    vms.upsert(s);
    if (isNew) void loadImages();
  });
  client.vmRemoved.on((name) => {
    vms.remove(name);
    logs.remove(name);
    void loadImages();
  });
  client.imagesChanged.on(() => void loadImages());
  client.disconnected.on(() => {
    vmView.message = 'The devvm helper stopped; the list updates when it is back (any command starts it).';
  });

  const connectedVm = vmFromRemoteAuthority(vscode.workspace.workspaceFolders?.[0]?.uri.authority);
  vms.onDidChangeVms((list) => {
    void vscode.commands.executeCommand('setContext', 'devvm.hasVms', list.length > 0);
    void vscode.commands.executeCommand('setContext', 'devvm.loaded', true);
    const st = statusText(list);
    const here = connectedVm ? list.find((s) => s.name === connectedVm) : undefined;
    status.text = here ? `$(vm) ${here.name}` : st.text;
    status.tooltip = here ? `Connected to dev VM ${here.name} (${here.state}). ${st.tooltip}` : st.tooltip;
    status.show();
    CreatePanel.vmsChanged(list.map((s) => s.name));
  });

  // ---- picking a VM ----------------------------------------------------------

  /** The VM a command acts on: the tree node or name it was given, or a quick pick of the VMs it applies to. */
  const pickVm = async (command: VmCommand | ItemCommand | PaletteCommand, arg: unknown, placeHolder: string): Promise<VmSummary | undefined> => {
    const name = typeof arg === 'string' ? arg : isNode(arg) && 'vm' in arg ? arg.vm : undefined;
    if (!vms.loaded) await loadVms();
    if (name) {
      const s = vms.get(name);
      if (!s) void vscode.window.showErrorMessage(`Dev VMs: no VM named "${name}"`);
      return s;
    }
    const rule = vmRule(command);
    const candidates = vms.list().filter((s) => ruleApplies(rule, s.state, s.sshPort !== null));
    if (candidates.length === 0) {
      const states = rule.states.join(', ');
      void vscode.window.showInformationMessage(vms.list().length ? `Dev VMs: no VM is in a state for this (${states}).` : 'Dev VMs: there are no VMs yet.', ...(vms.list().length ? [] : ['Create VM…'])).then((a) => {
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

  const vmCommand = (command: VmCommand | ItemCommand | PaletteCommand, placeHolder: string, f: (s: VmSummary, arg: unknown) => Promise<unknown>) =>
    vscode.commands.registerCommand(command, async (arg?: unknown) => {
      const s = await pickVm(command, arg, placeHolder);
      if (!s) return;
      try {
        await f(s, arg);
      } catch (e) {
        report(e, s.name);
      }
    });

  // ---- lifecycle ---------------------------------------------------------------

  const startVm = (name: string, waitSsh: boolean): Promise<VmSummary> =>
    withProgress(waitSsh ? `Starting ${name} and waiting for SSH` : `Starting ${name}`, (progressToken) => client.request(Rpc.vmStart, { name, waitSsh, progressToken }));

  const ensureInclude = async (): Promise<void> => {
    let consent = context.globalState.get<string>(INCLUDE_CONSENT);
    const includeFile = path.join(home, 'ssh_config');
    if (consent === undefined) {
      const add = 'Add Include';
      const choice = await vscode.window.showInformationMessage(
        'Let ssh and Remote-SSH find your dev VMs?',
        {
          modal: true,
          detail: `devvm writes a "Host devvm-<name>" entry for each VM to ${includeFile}. Adding one line, "Include ${includeFile}", at the top of ~/.ssh/config lets "ssh devvm-<name>" and Remote-SSH use them. A backup of ~/.ssh/config is kept. You are asked once.`,
        },
        add,
        "Don't Add",
      );
      if (choice === undefined) throw new DevvmError('invalid-state', 'connect cancelled');
      consent = choice === add ? 'added' : 'declined';
      await context.globalState.update(INCLUDE_CONSENT, consent);
    }
    if (consent !== 'added') {
      out.warn(`~/.ssh/config does not include ${includeFile} (declined); Remote-SSH needs it, or remote.SSH.configFile set to that file`);
      return;
    }
    const r = await client.request(Rpc.sshInclude, {});
    if (r.changed) out.info(`added "Include ${includeFile}" to ${r.file}${r.backup ? ` (backup: ${r.backup})` : ''}`);
  };

  const consoles = { extensionUri: context.extensionUri, log: (m: string) => out.info(m) };
  const openSshTerminal = async (name: string) => openSshShell(consoles, name, await client.request(Rpc.vmSshTarget, { name }));

  const connectVm = async (name: string, newWindow: boolean) => {
    const info = await client.request(Rpc.vmInfo, { name });
    if (!info.ssh) throw new DevvmError('invalid-state', `SSH is off for VM "${name}"`, 'use Open Serial Console');
    await startVm(name, true);
    await ensureInclude();
    const uri = remoteFolderUri(name, info.user);
    out.info(`connect: requesting ${uri} (${newWindow ? 'new window' : 'current window'})`);
    const remote = installedRemoteSsh((id) => vscode.extensions.getExtension(id) !== undefined);
    if (!remote) {
      const id = preferredRemoteSsh(vscode.env.appName, vscode.env.uriScheme);
      out.warn(`connect: no Remote-SSH extension installed; offering ${id}`);
      const install = `Install ${id === 'jeanp413.open-remote-ssh' ? 'Open Remote - SSH' : 'Remote - SSH'}`;
      const a = await vscode.window.showInformationMessage(
        `${name} is running and SSH answers. Opening it in VS Code needs a Remote-SSH extension (${id}). Use an SSH terminal meanwhile?`,
        install,
        'Open SSH Terminal',
      );
      if (a === 'Open SSH Terminal') await openSshTerminal(name);
      if (a === install) {
        await vscode.commands.executeCommand('workbench.extensions.installExtension', id);
        const again = await vscode.window.showInformationMessage(`Installed ${id}. Connect to ${name} now?`, 'Connect');
        if (again) await vscode.commands.executeCommand('vscode.openFolder', vscode.Uri.parse(uri), { forceNewWindow: newWindow });
      }
      return;
    }
    out.info(`connect: opening with ${remote}`);
    await vscode.commands.executeCommand('vscode.openFolder', vscode.Uri.parse(uri), { forceNewWindow: newWindow });
  };

  const afterCreate = (name: string, connect: boolean) => {
    void (async () => {
      try {
        if (connect) await connectVm(name, (vscode.workspace.workspaceFolders?.length ?? 0) > 0);
        else await startVm(name, false);
      } catch (e) {
        report(e, name);
      }
    })();
  };

  const formDefaults = (): Omit<CreateForm, 'password' | 'confirm'> => {
    const taken = new Set(vms.list().map((s) => s.name));
    let name = 'dev';
    for (let i = 2; taken.has(name); i++) name = `dev-${i}`;
    const c = settings();
    return {
      image: c.get<string>('defaultImage') || 'debian-12',
      name,
      fullName: '',
      user: '',
      autologin: false,
      ssh: true,
      cpus: String(c.get<number>('cpus') ?? 2),
      memoryMiB: String(c.get<number>('memory') ?? 2048),
      diskGiB: String(c.get<number>('disk') ?? 20),
      connect: c.get<boolean>('connectAfterCreate') ?? true,
    };
  };

  const createVm = async (p: CreateParams) => {
    await client.request(Rpc.vmCreate, { ...p, start: false });
  };

  /** The keyboard flow: one input after another, checked with the form's own rules. */
  const createQuick = async () => {
    const imageList = await client.request(Rpc.imageList);
    if (!imageList.length) {
      const a = await vscode.window.showWarningMessage('Dev VMs: there is no image yet.', 'Build Image…', 'Import Image…');
      if (a) void vscode.commands.executeCommand(a === 'Build Image…' ? 'devvm.buildImage' : 'devvm.importImage');
      return;
    }
    const d = formDefaults();
    const step = (n: number) => `Create Dev VM (${n}/8)`;
    const image = imageList.length === 1 ? imageList[0]!.name : (await vscode.window.showQuickPick(
      imageList.map((i) => ({ label: i.name, description: `${formatBytes(i.actualSize)} · ${i.source}`, picked: i.name === d.image })),
      { title: step(1), placeHolder: 'Image' },
    ))?.label;
    if (!image) return;
    const existing = vms.list().map((s) => s.name);
    const msg = (f: () => unknown) => {
      try {
        f();
        return undefined;
      } catch (e) {
        return (e as DevvmError).hint ? `${(e as DevvmError).message} — ${(e as DevvmError).hint}` : (e as Error).message;
      }
    };
    const name = await vscode.window.showInputBox({ title: step(2), prompt: 'VM name', value: d.name, validateInput: (v) => (existing.includes(v) ? `a VM named "${v}" already exists` : msg(() => validate.vmName(v))) });
    if (name === undefined) return;
    const fullName = await vscode.window.showInputBox({ title: step(3), prompt: 'Full name of the first user', placeHolder: 'Alice Example', validateInput: (v) => msg(() => validate.fullName(v)) });
    if (fullName === undefined) return;
    const user = await vscode.window.showInputBox({ title: step(4), prompt: 'Short name (account and /home folder)', value: deriveShortName(fullName), validateInput: (v) => msg(() => validate.userName(v)) });
    if (user === undefined) return;
    const password = await vscode.window.showInputBox({ title: step(5), prompt: 'Password (optional: leave empty for a key-only account with passwordless sudo)', password: true, validateInput: (v) => (v ? msg(() => validate.password(v)) : undefined) });
    if (password === undefined) return;
    let confirm = '';
    if (password) {
      const c = await vscode.window.showInputBox({ title: step(6), prompt: 'Confirm the password', password: true, validateInput: (v) => (v === password ? undefined : 'the passwords do not match') });
      if (c === undefined) return;
      confirm = c;
    }
    const opts = await vscode.window.showQuickPick(
      [
        { label: 'Enable SSH', id: 'ssh', picked: true },
        { label: 'Log in automatically on the console', id: 'autologin', picked: false },
        { label: 'Connect VS Code when ready', id: 'connect', picked: d.connect },
      ],
      { title: step(7), placeHolder: 'Options (Space toggles, Enter accepts)', canPickMany: true },
    );
    if (!opts) return;
    const has = (id: string) => opts.some((o) => o.id === id);
    const res = await vscode.window.showQuickPick(
      [
        { label: `${d.cpus} vCPU · ${d.memoryMiB} MiB · ${d.diskGiB} GiB disk`, description: 'from the devvm.* settings', change: false },
        { label: 'Change resources…', change: true },
      ],
      { title: step(8), placeHolder: 'Resources' },
    );
    if (!res) return;
    let { cpus, memoryMiB, diskGiB } = d;
    if (res.change) {
      const ask = async (prompt: string, value: string, f: (v: string) => unknown) => vscode.window.showInputBox({ title: step(8), prompt, value, validateInput: (v) => msg(() => f(v)) });
      const c = await ask('vCPUs', cpus, (v) => validate.cpus(v, os.cpus().length as 64) /* typed as its literal default */);
      if (c === undefined) return;
      const m = await ask('Memory (MiB)', memoryMiB, (v) => validate.memoryMiB(v, Math.floor(os.totalmem() / 1048576)));
      if (m === undefined) return;
      const g = await ask('Disk (GiB)', diskGiB, validate.diskGiB);
      if (g === undefined) return;
      [cpus, memoryMiB, diskGiB] = [c, m, g];
    }
    const form: CreateForm = { image, name, fullName, user, password, confirm, autologin: has('autologin'), ssh: has('ssh'), cpus, memoryMiB, diskGiB, connect: has('connect') };
    const checked = checkForm(form, { images: imageList.map((i) => i.name), existing, hostCpus: os.cpus().length, hostMiB: Math.floor(os.totalmem() / 1048576) });
    if (!checked.params) throw new DevvmError('invalid-argument', Object.values(checked.errors)[0] ?? 'invalid input');
    await createVm(checked.params);
    out.info(`created VM "${name}" (image ${image}, user ${user})`);
    afterCreate(name, checked.connect);
  };

  // ---- images ---------------------------------------------------------------

  const askImageName = (value: string) =>
    vscode.window.showInputBox({
      prompt: 'Image name',
      value,
      validateInput: (v) => {
        try {
          validate.imageName(v);
          return images.list().some((i) => i.name === v) ? `an image named "${v}" already exists` : undefined;
        } catch (e) {
          return (e as Error).message;
        }
      },
    });

  // ---- commands ---------------------------------------------------------------

  const reg = (id: string, f: (...args: unknown[]) => unknown) =>
    vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      try {
        await f(...args);
      } catch (e) {
        report(e);
      }
    });

  context.subscriptions.push(
    out,
    logs,
    status,
    vmView,
    imageView,
    { dispose: () => client.dispose() },
    reg('devvm.refresh', () => Promise.all([loadVms(), loadImages()])),
    reg('devvm.create', () => {
      CreatePanel.show({
        extensionUri: context.extensionUri,
        images: () => client.request(Rpc.imageList),
        vmNames: async () => (await client.request(Rpc.vmList)).map((s) => s.name),
        defaults: formDefaults,
        create: createVm,
        afterCreate,
        log: (m) => out.info(m),
      });
    }),
    reg('devvm.createQuick', createQuick),
    vmCommand('devvm.start', 'VM to start', (s) => startVm(s.name, false)),
    vmCommand('devvm.stop', 'VM to stop (ACPI power-off)', (s) => withProgress(`Stopping ${s.name}`, () => client.request(Rpc.vmStop, { name: s.name }))),
    vmCommand('devvm.suspend', 'VM to suspend (RAM saved to a file)', (s) => withProgress(`Suspending ${s.name}`, (token) => client.request(Rpc.vmSuspend, { name: s.name, progressToken: token }))),
    vmCommand('devvm.resume', 'VM to resume from its saved state', (s) => startVm(s.name, false)),
    vmCommand('devvm.forceStop', 'VM to force stop (like pulling the plug)', async (s) => {
      const ok = await vscode.window.showWarningMessage(`Force stop ${s.name}?`, { modal: true, detail: 'QEMU quits at once, like pulling the plug: unsaved data in the guest is lost.' }, 'Force Stop');
      if (ok) await client.request(Rpc.vmStop, { name: s.name, force: true });
    }),
    vmCommand('devvm.delete', 'VM to delete', async (s) => {
      const info: VmInfo = await client.request(Rpc.vmInfo, { name: s.name });
      const ok = await vscode.window.showWarningMessage(`Delete the VM "${s.name}"?`, { modal: true, detail: deleteDetail(info) }, 'Delete');
      if (!ok) return;
      await withProgress(`Deleting ${s.name}`, () => client.request(Rpc.vmDelete, { name: s.name, force: info.state !== 'stopped' }));
      out.info(`deleted VM "${s.name}"`);
    }),
    vmCommand('devvm.connect', 'VM to connect to in this window', (s) => connectVm(s.name, false)),
    vmCommand('devvm.connectNewWindow', 'VM to connect to in a new window', (s) => connectVm(s.name, true)),
    vmCommand('devvm.openSshTerminal', 'VM to open an SSH terminal on', (s) => openSshTerminal(s.name)),
    vmCommand('devvm.openSerial', 'VM whose serial console to open', async (s) => {
      const info = await client.request(Rpc.vmInfo, { name: s.name });
      openSerialConsole(consoles, s.name, info.dir, info.serialLog);
    }),
    vmCommand('devvm.showLogs', 'VM whose logs to show', (s) => showLogs(s.name)),
    vmCommand('devvm.copySshCommand', 'VM whose SSH command to copy', async (s) => {
      const t = await client.request(Rpc.vmSshTarget, { name: s.name });
      const cmd = context.globalState.get(INCLUDE_CONSENT) === 'added' ? `ssh ${t.host}` : sshCommand(s, t.configFile);
      await vscode.env.clipboard.writeText(cmd);
      void vscode.window.showInformationMessage(`Copied: ${cmd}`);
    }),
    reg('devvm.showHelperLog', showHelperLog),
    ...registerActions({ context, client, vms, home, out, report, withProgress, vmCommand, reg, startVm }),
    reg('devvm.buildImage', async () => {
      const recipe = await vscode.window.showQuickPick(
        [
          { label: 'Debian 12 (build locally)', description: 'from Debian packages with mmdebstrap; minutes, cached', recipe: 'debian-12', pull: false },
          { label: 'Debian 12 (download)', description: 'the official cloud image, checksum verified', recipe: 'debian-12', pull: true },
        ],
        { placeHolder: 'Image to build' },
      );
      if (!recipe) return;
      const name = await askImageName(recipe.recipe);
      if (!name) return;
      const img = await withProgress(`${recipe.pull ? 'Downloading' : 'Building'} image ${name}`, (progressToken) =>
        client.request(recipe.pull ? Rpc.imagePull : Rpc.imageBuild, { recipe: recipe.recipe, name, progressToken }),
      );
      void vscode.window.showInformationMessage(`Image ${img.name} is ready (${formatBytes(img.actualSize)}).`, 'Create VM…').then((a) => {
        if (a) void vscode.commands.executeCommand('devvm.create');
      });
    }),
    reg('devvm.importImage', async () => {
      const kind = await vscode.window.showQuickPick(
        [
          { label: 'Disk image file', description: 'qcow2 or raw, copied in', nbd: false },
          { label: 'NBD server', description: 'a remote base used in place: each VM reads it once into its cache layer', nbd: true },
        ],
        { placeHolder: 'Import a base image from' },
      );
      if (!kind) return;
      let source: string | undefined;
      let kernel: { kernel?: string; initrd?: string } = {};
      if (kind.nbd) {
        source = (await vscode.window.showInputBox({ prompt: 'NBD URI of the base', placeHolder: 'nbd://nas.local:10809/debian', validateInput: nbdUriProblem }))?.trim();
        if (!source) return;
        // A base built here boots a kernel from outside the disk: borrow one from a local image.
        const boot = await vscode.window.showQuickPick(
          [
            ...images.list().filter((i) => i.kernel && i.initrd).map((i) => ({ label: `Kernel and initrd of ${i.name}`, kernel: i.kernel!, initrd: i.initrd! })),
            { label: 'None', description: 'the disk boots by itself (firmware and bootloader)', kernel: undefined, initrd: undefined },
          ],
          { placeHolder: 'How VMs on this base boot' },
        );
        if (!boot) return;
        kernel = { kernel: boot.kernel, initrd: boot.initrd };
      } else {
        source = (await vscode.window.showOpenDialog({ canSelectMany: false, openLabel: 'Import', title: 'Disk image to import (qcow2 or raw)', filters: { 'Disk images': ['qcow2', 'img', 'raw'], 'All files': ['*'] } }))?.[0]?.fsPath;
        if (!source) return;
      }
      const stem = kind.nbd ? (source.split('/').pop() ?? '') : path.basename(source).replace(/\.(qcow2|img|raw)$/i, '');
      const base = stem.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
      const name = await askImageName(base || 'imported');
      if (!name) return;
      const file = source;
      const img = await withProgress(`Importing ${name}`, (progressToken) => client.request(Rpc.imageImport, { file, name, ...kernel, progressToken }));
      void vscode.window.showInformationMessage(img.sha256 ? `Image ${img.name} imported (${formatBytes(img.actualSize)}).` : `Image ${img.name} uses the base at ${img.file}; each VM reads it once into its cache layer.`);
    }),
    reg('devvm.deleteImage', async (arg) => {
      const name = isNode(arg) && arg.kind === 'image' ? arg.image : (await vscode.window.showQuickPick(images.list().filter((i) => !i.usedBy.length).map((i) => i.name), { placeHolder: 'Unused image to delete' }));
      if (!name) return;
      const img = images.list().find((i) => i.name === name);
      const ok = await vscode.window.showWarningMessage(`Delete the image "${name}"?`, { modal: true, detail: `This deletes ${img ? path.dirname(img.file) : 'its folder'} (${img ? formatBytes(img.actualSize) : '?'}). Images a VM uses cannot be deleted.` }, 'Delete');
      if (ok) await client.request(Rpc.imageDelete, { name });
    }),
    reg('devvm.doctor', async () => {
      const d = await withProgress('Checking this host', () => client.request(Rpc.doctor));
      out.info(`doctor: accelerator ${d.accelerator.name} (${d.accelerator.reason}); native addon: ${d.nativeAddon.loaded ? 'loaded' : 'missing'} (${d.nativeAddon.detail})`);
      for (const c of d.checks) out.info(`doctor: ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}${!c.ok && c.fix ? ` -> ${c.fix}` : ''}`);
      const bad = d.checks.filter((c) => !c.ok);
      void vscode.commands.executeCommand('setContext', 'devvm.qemuMissing', bad.some((c) => c.name === 'qemu-system'));
      out.show(true);
      const text = bad.length ? `Dev VMs doctor: ${bad.length} issue${bad.length === 1 ? '' : 's'}: ${bad.map((c) => `${c.name} (${c.fix ?? c.detail})`).join('; ')}` : `Dev VMs doctor: all checks pass (accelerator: ${d.accelerator.name}).`;
      void (bad.length ? vscode.window.showWarningMessage(text) : vscode.window.showInformationMessage(text));
    }),
    reg('devvm.statusMenu', async () => {
      const picked = await vscode.window.showQuickPick(
        [
          ...vms.list().map((s) => ({ label: s.name, description: s.state, iconPath: new vscode.ThemeIcon(stateIcon(s.state).id), s })),
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
      const actions = (Object.keys(VM_COMMANDS) as VmCommand[]).filter((c) => appliesTo(c, s.state, s.sshPort !== null));
      const titles = commandTitles(context);
      const action = await vscode.window.showQuickPick(actions.map((c) => ({ label: titles[c] ?? c, c })), { placeHolder: `${s.name} (${s.state})` });
      if (action) await vscode.commands.executeCommand(action.c, s.name);
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('devvm.home') || e.affectsConfiguration('devvm.qemuPath')) {
        void vscode.window.showInformationMessage('Dev VMs: reload the window to use the new data directory or QEMU path (a running helper keeps its QEMU).', 'Reload Window').then((a) => {
          if (a) void vscode.commands.executeCommand('workbench.action.reloadWindow');
        });
      }
    }),
  );

  // Connect in the background: activation must not wait for the helper.
  void client.connection().catch((e) => {
    vmView.message = `The devvm helper is not available: ${(e as Error).message}`;
    void vscode.commands.executeCommand('setContext', 'devvm.helperFailed', true);
    out.error((e as DevvmError).oneLine?.() ?? String(e));
  });
  const activateMs = performance.now() - started;
  const activationMs = Math.round((loadMs + activateMs) * 10) / 10;
  out.info(`activated in ${activationMs} ms (bundle load ${loadMs.toFixed(1)} ms, activate() ${activateMs.toFixed(1)} ms); DEVVM_HOME ${home}`);
  return { activationMs };
}

export function deactivate(): void {}

function isNode(x: unknown): x is Node {
  return typeof x === 'object' && x !== null && typeof (x as { kind?: unknown }).kind === 'string';
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

/** Command titles from the manifest, for the status bar's action list. */
function commandTitles(context: vscode.ExtensionContext): Record<string, string> {
  const cmds = (context.extension.packageJSON as { contributes?: { commands?: { command: string; title: string }[] } }).contributes?.commands ?? [];
  return Object.fromEntries(cmds.map((c) => [c.command, c.title]));
}
