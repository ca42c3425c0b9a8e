/** Change Size…: CPUs, memory and disk of a stopped VM, one input after another (vm/set). */
import os from 'node:os';
import * as vscode from 'vscode';
import { DevvmError } from '../../shared/errors';
import { memory as formatMemory } from '../../shared/format';
import { refusal } from '../../shared/lifecycle';
import { Rpc, type SetParams } from '../../shared/rpc';
import type { VmSummary } from '../../shared/types';
import * as validate from '../../shared/validate';
import { onVm, type CommandEntry, type Cx } from './command';
import { inputCheck, vmInfo } from './util';

export interface Size {
  cpus: number;
  memoryMiB: number;
  diskGiB: number;
}

export interface HostLimits {
  cpus: number;
  memoryMiB: number;
}

export function hostLimits(): HostLimits {
  return { cpus: os.cpus().length || 1, memoryMiB: Math.floor(os.totalmem() / 1048576) };
}

/** Why a disk size cannot be used: the helper's rule, and the disk only grows. */
export function diskProblem(value: string, current: number): string | undefined {
  const bad = inputCheck(() => validate.diskGiB(value));
  if (bad) return bad;
  return validate.diskGiB(value) < current ? `the disk only grows: at least ${current} GiB (it has ${current} GiB)` : undefined;
}

/** vm/set's parameters for what changed (nothing: null). */
export function sizeChange(name: string, from: Size, to: Size): SetParams | null {
  const p: SetParams = { name };
  if (to.cpus !== from.cpus) p.cpus = to.cpus;
  if (to.memoryMiB !== from.memoryMiB) p.memoryMiB = to.memoryMiB;
  if (to.diskGiB !== from.diskGiB) p.diskGiB = to.diskGiB;
  return Object.keys(p).length > 1 ? p : null;
}

async function changeSize(cx: Cx, s: VmSummary, host: HostLimits = hostLimits()): Promise<void> {
  // From the palette with a VM named, or a tree that has not redrawn yet: say why, as the helper would.
  const no = refusal('set', s.name, cx.vms.get(s.name)?.state ?? s.state);
  if (no) throw no;
  const info = await vmInfo(cx, s.name);
  const from: Size = { cpus: info.cpus, memoryMiB: info.memoryMiB, diskGiB: info.diskGiB };
  const title = (n: number) => `Change Size of ${s.name} (${n}/3)`;
  const cpus = await vscode.window.showInputBox({
    title: title(1),
    prompt: `vCPUs (now ${from.cpus}; this host has ${host.cpus})`,
    value: String(from.cpus),
    // validate.cpus types its limit as the literal 64 (its default); any host count is meant.
    validateInput: (v) => inputCheck(() => validate.cpus(v, host.cpus as 64)),
  });
  if (cpus === undefined) return;
  const memory = await vscode.window.showInputBox({
    title: title(2),
    prompt: `Memory in MiB (now ${from.memoryMiB}; this host has ${host.memoryMiB})`,
    value: String(from.memoryMiB),
    validateInput: (v) => inputCheck(() => validate.memoryMiB(v, host.memoryMiB)),
  });
  if (memory === undefined) return;
  const disk = await vscode.window.showInputBox({
    title: title(3),
    prompt: `Disk in GiB (now ${from.diskGiB}). It only grows; the guest's root filesystem fills it at the next boot.`,
    value: String(from.diskGiB),
    validateInput: (v) => diskProblem(v, from.diskGiB),
  });
  if (disk === undefined) return;
  // The input boxes checked these; checked again, as anything could have been returned.
  const to: Size = { cpus: validate.cpus(cpus, host.cpus as 64), memoryMiB: validate.memoryMiB(memory, host.memoryMiB), diskGiB: validate.diskGiB(disk) };
  const problem = diskProblem(disk, from.diskGiB);
  if (problem) throw new DevvmError('invalid-argument', problem);
  const p = sizeChange(s.name, from, to);
  if (!p) {
    void vscode.window.showInformationMessage(`Dev VMs: ${s.name} keeps its size (nothing changed).`);
    return;
  }
  const r = await cx.withProgress(`Changing the size of ${s.name}`, () => cx.client.request(Rpc.vmSet, p));
  cx.out.info(`${s.name}: size now ${r.cpus} vCPU, ${r.memoryMiB} MiB${p.diskGiB ? `, disk ${p.diskGiB} GiB` : ''}`);
  cx.vms.refreshInfo(s.name);
  const grown = p.diskGiB ? `, ${p.diskGiB} GiB disk (the root filesystem grows at the next boot)` : '';
  void vscode.window.showInformationMessage(`${s.name}: ${r.cpus} vCPU, ${formatMemory(r.memoryMiB)}${grown}.`);
}

export const SIZE: CommandEntry[] = [onVm('devvm.changeSize', 'Stopped VM to change the size of', (cx, s) => changeSize(cx, s))];
