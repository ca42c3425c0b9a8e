/** Creating a VM: the Create VM form (a webview), or the same questions one input box after another. */
import os from 'node:os';
import * as vscode from 'vscode';
import { DevvmError } from '../../shared/errors';
import { bytes } from '../../shared/format';
import { Rpc, type CreateParams } from '../../shared/rpc';
import * as validate from '../../shared/validate';
import { CreatePanel } from '../createPanel';
import { checkForm, deriveShortName, type CreateForm } from '../form';
import { plain, type CommandEntry, type Cx } from './command';
import { connectVm } from './connect';
import { startVm } from './lifecycle';

/** After a create: start it, or connect (which starts it); in the background, failures reported once. */
function afterCreate(cx: Cx, name: string, connect: boolean): void {
  void (async () => {
    try {
      if (connect) await connectVm(cx, name, (vscode.workspace.workspaceFolders?.length ?? 0) > 0);
      else await startVm(cx, name, false);
    } catch (e) {
      cx.report(e, name);
    }
  })();
}

function formDefaults(cx: Cx): Omit<CreateForm, 'password' | 'confirm'> {
  const taken = new Set(cx.vms.list().map((s) => s.name));
  let name = 'dev';
  for (let i = 2; taken.has(name); i++) name = `dev-${i}`;
  const c = cx.settings();
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
    display: false,
    displaySize: 'auto',
    shares: [],
    ports: '',
    connect: c.get<boolean>('connectAfterCreate') ?? true,
  };
}

async function createVm(cx: Cx, p: CreateParams): Promise<void> {
  await cx.client.request(Rpc.vmCreate, { ...p, start: false });
}

/** The keyboard flow: one input after another, checked with the form's own rules. */
async function createQuick(cx: Cx): Promise<void> {
  const imageList = await cx.client.request(Rpc.imageList);
  if (!imageList.length) {
    const a = await vscode.window.showWarningMessage('Dev VMs: there is no image yet.', 'Build Image…', 'Import Image…');
    if (a) void vscode.commands.executeCommand(a === 'Build Image…' ? 'devvm.buildImage' : 'devvm.importImage');
    return;
  }
  const d = formDefaults(cx);
  const step = (n: number) => `Create Dev VM (${n}/8)`;
  const image = imageList.length === 1 ? imageList[0]!.name : (await vscode.window.showQuickPick(
    imageList.map((i) => ({ label: i.name, description: `${bytes(i.actualSize)} · ${i.source}`, picked: i.name === d.image })),
    { title: step(1), placeHolder: 'Image' },
  ))?.label;
  if (!image) return;
  const existing = cx.vms.list().map((s) => s.name);
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
      { label: 'Display (a screen for Open Display, following the tab\'s size)', id: 'display', picked: false },
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
  const form: CreateForm = { image, name, fullName, user, password, confirm, autologin: has('autologin'), ssh: has('ssh'), cpus, memoryMiB, diskGiB, display: has('display'), displaySize: 'auto', shares: [], ports: '', connect: has('connect') };
  const checked = checkForm(form, { images: imageList.map((i) => i.name), existing, hostCpus: os.cpus().length, hostMiB: Math.floor(os.totalmem() / 1048576) });
  if (!checked.params) throw new DevvmError('invalid-argument', Object.values(checked.errors)[0] ?? 'invalid input');
  await createVm(cx, checked.params);
  cx.out.info(`created VM "${name}" (image ${image}, user ${user})`);
  afterCreate(cx, name, checked.connect);
}

export const CREATE: CommandEntry[] = [
  plain('devvm.create', (cx) => {
    CreatePanel.show({
      extensionUri: cx.context.extensionUri,
      images: () => cx.client.request(Rpc.imageList),
      vmNames: async () => (await cx.client.request(Rpc.vmList)).map((s) => s.name),
      defaults: () => formDefaults(cx),
      create: (p) => createVm(cx, p),
      afterCreate: (name, connect) => afterCreate(cx, name, connect),
      log: (m) => cx.out.info(m),
    });
  }),
  plain('devvm.createQuick', createQuick),
];
