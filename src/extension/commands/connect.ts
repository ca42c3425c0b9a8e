/** Connecting to a VM: Remote-SSH in this or a new window, an SSH terminal, the serial console, the ssh command line. */
import path from 'node:path';
import * as vscode from 'vscode';
import { DevvmError } from '../../shared/errors';
import { Rpc } from '../../shared/rpc';
import { sshCommand } from '../model';
import { installedRemoteSsh, preferredRemoteSsh, remoteAuthority, remotePathUri } from '../remote';
import { openSerialConsole, openSshShell } from '../serial';
import { Cancelled, onVm, type CommandEntry, type Cx } from './command';
import { startVm } from './lifecycle';

/** globalState key: whether the user let devvm add its Include to ~/.ssh/config ('added' | 'declined'). */
export const INCLUDE_CONSENT = 'devvm.sshInclude';

const consoles = (cx: Cx) => ({ extensionUri: cx.context.extensionUri, log: (m: string) => cx.out.info(m) });

/** Asks once whether to add devvm's Include to ~/.ssh/config, and adds it when agreed. */
async function ensureInclude(cx: Cx): Promise<void> {
  let consent = cx.context.globalState.get<string>(INCLUDE_CONSENT);
  const includeFile = path.join(cx.home, 'ssh_config');
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
    if (choice === undefined) throw new Cancelled('connect cancelled');
    consent = choice === add ? 'added' : 'declined';
    await cx.context.globalState.update(INCLUDE_CONSENT, consent);
  }
  if (consent !== 'added') {
    cx.out.warn(`~/.ssh/config does not include ${includeFile} (declined); Remote-SSH needs it, or remote.SSH.configFile set to that file`);
    return;
  }
  const r = await cx.client.request(Rpc.sshInclude, {});
  if (r.changed) cx.out.info(`added "Include ${includeFile}" to ${r.file}${r.backup ? ` (backup: ${r.backup})` : ''}`);
}

export async function openSshTerminal(cx: Cx, name: string): Promise<void> {
  openSshShell(consoles(cx), name, await cx.client.request(Rpc.vmSshTarget, { name }));
}

/** Starts the VM until SSH answers, then opens its home folder over Remote-SSH (offering to install it). */
export async function connectVm(cx: Cx, name: string, newWindow: boolean): Promise<void> {
  const info = await cx.client.request(Rpc.vmInfo, { name });
  if (!info.ssh) throw new DevvmError('invalid-state', `SSH is off for VM "${name}"`, 'use Open Serial Console');
  await startVm(cx, name, true);
  await openRemoteFolder(cx, name, `/home/${info.user}`, newWindow);
}

/**
 * Opens `guestPath` in a running VM over Remote-SSH: the ~/.ssh/config Include consent
 * first, then `vscode.openFolder` on `vscode-remote://ssh-remote+devvm-<name><guestPath>`,
 * or, with no Remote-SSH extension installed, an offer to install one.
 */
export async function openRemoteFolder(cx: Cx, name: string, guestPath: string, newWindow: boolean): Promise<void> {
  if (!guestPath.startsWith('/')) throw new DevvmError('internal', `guest path "${guestPath}" of VM "${name}" is not absolute`);
  await ensureInclude(cx);
  const uri = remotePathUri(name, guestPath);
  // From parts, not parsed: a path may hold "#", "?" or "%".
  const target = vscode.Uri.from({ scheme: 'vscode-remote', authority: remoteAuthority(name), path: guestPath });
  cx.out.info(`connect: requesting ${uri} (${newWindow ? 'new window' : 'current window'})`);
  const remote = installedRemoteSsh((id) => vscode.extensions.getExtension(id) !== undefined);
  if (!remote) {
    const id = preferredRemoteSsh(vscode.env.appName, vscode.env.uriScheme);
    cx.out.warn(`connect: no Remote-SSH extension installed; offering ${id}`);
    const install = `Install ${id === 'jeanp413.open-remote-ssh' ? 'Open Remote - SSH' : 'Remote - SSH'}`;
    const a = await vscode.window.showInformationMessage(
      `${name} is running and SSH answers. Opening it in VS Code needs a Remote-SSH extension (${id}). Use an SSH terminal meanwhile?`,
      install,
      'Open SSH Terminal',
    );
    if (a === 'Open SSH Terminal') await openSshTerminal(cx, name);
    if (a === install) {
      await vscode.commands.executeCommand('workbench.extensions.installExtension', id);
      const again = await vscode.window.showInformationMessage(`Installed ${id}. Connect to ${name} now?`, 'Connect');
      if (again) await vscode.commands.executeCommand('vscode.openFolder', target, { forceNewWindow: newWindow });
    }
    return;
  }
  cx.out.info(`connect: opening with ${remote}`);
  await vscode.commands.executeCommand('vscode.openFolder', target, { forceNewWindow: newWindow });
}

export const CONNECT: CommandEntry[] = [
  onVm('devvm.connect', 'VM to connect to in this window', (cx, s) => connectVm(cx, s.name, false)),
  onVm('devvm.connectNewWindow', 'VM to connect to in a new window', (cx, s) => connectVm(cx, s.name, true)),
  onVm('devvm.openSshTerminal', 'VM to open an SSH terminal on', (cx, s) => openSshTerminal(cx, s.name)),
  onVm('devvm.openSerial', 'VM whose serial console to open', async (cx, s) => {
    const info = await cx.client.request(Rpc.vmInfo, { name: s.name });
    openSerialConsole(consoles(cx), s.name, info.dir, info.serialLog);
  }),
  onVm('devvm.copySshCommand', 'VM whose SSH command to copy', async (cx, s) => {
    const t = await cx.client.request(Rpc.vmSshTarget, { name: s.name });
    const cmd = cx.context.globalState.get(INCLUDE_CONSENT) === 'added' ? `ssh ${t.host}` : sshCommand(s, t.configFile);
    await vscode.env.clipboard.writeText(cmd);
    void vscode.window.showInformationMessage(`Copied: ${cmd}`);
  }),
];
