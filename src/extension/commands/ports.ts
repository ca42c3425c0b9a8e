/** Port forwards: add and remove static ones, open or copy any one's address. */
import * as vscode from 'vscode';
import { DevvmError } from '../../shared/errors';
import { Rpc } from '../../shared/rpc';
import type { PortForward, VmSummary } from '../../shared/types';
import { parsePortInput } from '../../shared/portspec';
import { forwardAddress, forwardLabel, forwardUrl, sortedForwards } from '../sharesPorts';
import { onVm, type CommandEntry, type Cx } from './command';
import { inputCheck, nodeOf } from './util';

/** The VM's forwards as the tree has them (vm/info, then `vm/ports` notifications). */
async function forwards(cx: Cx, name: string): Promise<PortForward[]> {
  return (await cx.vms.info(name))?.ports ?? [];
}

/** The forward a command was invoked on, else a pick among those `which` allows. */
async function forwardFor(cx: Cx, s: VmSummary, arg: unknown, which: (f: PortForward) => boolean, placeHolder: string, none: string): Promise<PortForward | undefined> {
  const list = await forwards(cx, s.name);
  const node = nodeOf(arg, 'forward');
  if (node) {
    const f = list.find((x) => x.protocol === node.protocol && x.hostPort === node.hostPort);
    if (!f) throw new DevvmError('not-found', `VM "${s.name}" has no forward from host port ${node.hostPort}`, 'it went away meanwhile');
    return f;
  }
  const candidates = sortedForwards(list.filter(which));
  if (!candidates.length) {
    void vscode.window.showInformationMessage(`Dev VMs: ${s.name} ${none}.`);
    return undefined;
  }
  return (await vscode.window.showQuickPick(candidates.map((f) => ({ label: forwardLabel(f), description: [f.process, f.kind].filter(Boolean).join(' · '), f })), { placeHolder }))?.f;
}

async function addPort(cx: Cx, s: VmSummary): Promise<void> {
  const text = await vscode.window.showInputBox({
    title: `Add Port Forward to ${s.name}`,
    prompt: 'HOST:GUEST (8080:80), or one port for both; /udp for UDP. It binds 127.0.0.1 unless you write an address (ADDRESS:HOST:GUEST).',
    placeHolder: '8080:80',
    validateInput: (v) => (v.trim() ? inputCheck(() => parsePortInput(v)) : 'enter HOST:GUEST, like 8080:80'),
  });
  if (!text?.trim()) return;
  const spec = parsePortInput(text);
  const r = await cx.client.request(Rpc.vmPortAdd, { name: s.name, ...spec });
  cx.out.info(`${s.name}: static forward ${forwardLabel(r)}${r.note ? ` (${r.note})` : ''}`);
  cx.vms.refreshInfo(s.name);
  const when = r.active ? '' : s.state === 'running' ? ' (not forwarded now)' : ' (forwarded while it runs)';
  void vscode.window.showInformationMessage(`${forwardAddress(r)} forwards to port ${r.guestPort} of ${s.name}${when}.${r.note ? ` ${r.note}.` : ''}`);
}

async function removePort(cx: Cx, s: VmSummary, arg: unknown): Promise<void> {
  const f = await forwardFor(cx, s, arg, (x) => x.kind === 'static', `Static forward of ${s.name} to remove`, 'has no static port forwards');
  if (!f) return;
  if (f.kind !== 'static') throw new DevvmError('invalid-argument', `the forward from host port ${f.hostPort} follows a guest process`, 'it goes when the process stops listening');
  await cx.client.request(Rpc.vmPortRemove, { name: s.name, protocol: f.protocol, hostPort: f.hostPort });
  cx.out.info(`${s.name}: removed static forward ${forwardLabel(f)}`);
  cx.vms.refreshInfo(s.name);
}

async function openPort(cx: Cx, s: VmSummary, arg: unknown): Promise<void> {
  const f = await forwardFor(cx, s, arg, (x) => x.active && x.protocol === 'tcp', `Forwarded port of ${s.name} to open in a browser`, 'has no TCP port forwarded now');
  if (!f) return;
  const url = forwardUrl(f);
  cx.out.info(`${s.name}: opening ${url}`);
  await vscode.env.openExternal(vscode.Uri.parse(url));
}

async function copyPortAddress(cx: Cx, s: VmSummary, arg: unknown): Promise<void> {
  const f = await forwardFor(cx, s, arg, () => true, `Forwarded port of ${s.name} whose address to copy`, 'has no port forwards');
  if (!f) return;
  const address = forwardAddress(f);
  await vscode.env.clipboard.writeText(address);
  void vscode.window.showInformationMessage(`Copied: ${address}`);
}

export const PORTS: CommandEntry[] = [
  onVm('devvm.addPort', 'VM to add a port forward to', addPort),
  onVm('devvm.removePort', 'VM whose static port forward to remove', removePort),
  onVm('devvm.openPort', 'VM whose forwarded port to open in a browser', openPort),
  onVm('devvm.copyPortAddress', 'VM whose forwarded port address to copy', copyPortAddress),
];
