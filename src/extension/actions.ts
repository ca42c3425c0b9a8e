/**
 * Snapshots, clones, extra disks, NBD export, host USB and the layer tree: the commands,
 * and the prompt when a USB device is plugged in while VMs run. The decisions live in
 * model.ts, menus.ts and usbPrompt.ts (pure, unit-tested); this is the VS Code side.
 */
import * as vscode from 'vscode';
import { DevvmError } from '../shared/errors';
import { Rpc, type UsbEvent } from '../shared/rpc';
import type { AttachedDisk, HostUsbDevice, SnapshotInfo, VmInfo, VmSummary } from '../shared/types';
import * as validate from '../shared/validate';
import type { HelperClient } from './helperclient';
import type { ItemCommand, PaletteCommand, VmCommand } from './menus';
import { diskLabel, formatDate, layerTreeText, nbdUriProblem, nextFreeName, normalizeInfo, restoreDetail, sortedSnapshots, type Node } from './model';
import type { VmTree } from './trees';
import {
  answer,
  CHOICE,
  decide,
  deviceDetail,
  deviceLabel,
  forget,
  markHandled,
  parseRules,
  plugId,
  recheck,
  remember,
  ruleCount,
  USB_ALWAYS_KEY,
  USB_HANDLED_KEY,
  type UsbDecision,
} from './usbPrompt';

export interface ActionDeps {
  context: vscode.ExtensionContext;
  client: HelperClient;
  vms: VmTree;
  home: string;
  out: vscode.LogOutputChannel;
  report: (e: unknown, vm?: string) => void;
  withProgress: <T>(title: string, f: (token: string) => Promise<T>) => Promise<T>;
  /** Registers a command acting on one VM: the node or name it got, else a pick of the VMs it applies to. */
  vmCommand: (command: VmCommand | ItemCommand | PaletteCommand, placeHolder: string, f: (s: VmSummary, arg: unknown) => Promise<unknown>) => vscode.Disposable;
  reg: (id: string, f: (...args: unknown[]) => unknown) => vscode.Disposable;
  startVm: (name: string, waitSsh: boolean) => Promise<VmSummary>;
}

const LAYER_SCHEME = 'devvm-layers';

function nodeOf<K extends Node['kind']>(arg: unknown, kind: K): Extract<Node, { kind: K }> | undefined {
  return typeof arg === 'object' && arg !== null && (arg as { kind?: unknown }).kind === kind ? (arg as Extract<Node, { kind: K }>) : undefined;
}

/** An input box check from a validate.* rule: its message and hint, or undefined when fine. */
function check(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    const err = e as DevvmError;
    return err.hint ? `${err.message} — ${err.hint}` : err.message;
  }
}

export function registerActions(d: ActionDeps): vscode.Disposable[] {
  const { context, client, vms, out } = d;
  const info = async (name: string): Promise<VmInfo> => normalizeInfo(await client.request(Rpc.vmInfo, { name }));

  const pickSnapshot = async (i: VmInfo, placeHolder: string): Promise<SnapshotInfo | undefined> => {
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
  };

  /** The snapshot a command got as a tree node, or one picked from the VM's list. */
  const snapshotFor = async (s: VmSummary, arg: unknown, placeHolder: string): Promise<{ i: VmInfo; snap: SnapshotInfo } | undefined> => {
    const i = await info(s.name);
    const node = nodeOf(arg, 'snapshot');
    if (node) {
      const snap = i.snapshots.find((x) => x.name === node.name);
      if (!snap) throw new DevvmError('not-found', `VM "${s.name}" has no snapshot "${node.name}"`, 'it was deleted meanwhile');
      return { i, snap };
    }
    const snap = await pickSnapshot(i, placeHolder);
    return snap ? { i, snap } : undefined;
  };

  // ---- snapshots ------------------------------------------------------------------

  const takeSnapshot = async (s: VmSummary) => {
    const i = await info(s.name);
    const taken = i.snapshots.map((x) => x.name);
    let n = taken.length + 1;
    while (taken.includes(`snap-${n}`)) n++;
    const snapshot = await vscode.window.showInputBox({
      title: `Take Snapshot of ${s.name}`,
      prompt: 'Snapshot name',
      value: `snap-${n}`,
      validateInput: (v) => (taken.includes(v) ? `${s.name} already has a snapshot "${v}"` : check(() => validate.snapshotName(v))),
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
    const r = (await d.withProgress(`Taking snapshot ${snapshot} of ${s.name}`, (progressToken) => client.request(Rpc.vmSnapshot, { name: s.name, snapshot, ram, progressToken }))) as SnapshotInfo & { pauseMs?: number };
    const paused = typeof r.pauseMs === 'number' && s.state === 'running' ? ` (guest paused ${r.pauseMs < 10 ? r.pauseMs.toFixed(1) : Math.round(r.pauseMs)} ms)` : '';
    out.info(`${s.name}: snapshot ${r.name} taken${r.ram ? ' with RAM' : ''}, layer ${r.layer}${paused}`);
    void vscode.window.showInformationMessage(`Snapshot "${r.name}" of ${s.name} taken${r.ram ? ' with RAM' : ''}${paused}.`);
  };

  const restoreSnapshot = async (s: VmSummary, arg: unknown) => {
    const got = await snapshotFor(s, arg, `Snapshot of ${s.name} to restore`);
    if (!got) return;
    const { snap } = got;
    const current = vms.get(s.name) ?? s;
    const ok = await vscode.window.showWarningMessage(`Restore ${s.name} to snapshot "${snap.name}"?`, { modal: true, detail: restoreDetail(current, snap) }, 'Restore');
    if (!ok) return;
    const r = await d.withProgress(`Restoring ${s.name} to ${snap.name}`, (progressToken) => client.request(Rpc.vmRestore, { name: s.name, snapshot: snap.name, progressToken }));
    out.info(`${s.name}: restored snapshot ${snap.name}; now ${r.state}`);
    const extra = r.state === 'suspended' ? ' Resume continues from the moment it was taken.' : '';
    const a = await vscode.window.showInformationMessage(`${s.name} is back at snapshot "${snap.name}" (${r.state}).${extra}`, ...(r.state === 'suspended' ? ['Resume'] : r.state === 'stopped' ? ['Start'] : []));
    if (a) await d.startVm(s.name, false);
  };

  const deleteSnapshot = async (s: VmSummary, arg: unknown) => {
    const got = await snapshotFor(s, arg, `Snapshot of ${s.name} to delete`);
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
    await client.request(Rpc.vmSnapshotDelete, { name: s.name, snapshot: snap.name });
    out.info(`${s.name}: deleted snapshot ${snap.name}`);
    vms.refreshInfo(s.name);
  };

  const clone = async (s: VmSummary, arg: unknown) => {
    const snapshot = nodeOf(arg, 'snapshot')?.name;
    const existing = vms.list().map((x) => x.name);
    const name = await vscode.window.showInputBox({
      title: snapshot ? `Clone ${s.name} at snapshot ${snapshot}` : `Clone ${s.name}`,
      prompt: `Name of the new VM. It keeps the user and files${snapshot ? ' of the snapshot' : s.state === 'running' ? ' (the disk as it is now; the source keeps running)' : ''} and gets its own host key, MAC and SSH port; its disk is a new layer, so cloning takes no copy.`,
      value: nextFreeName(`${s.name}-clone`, existing),
      validateInput: (v) => (existing.includes(v) ? `a VM named "${v}" already exists` : check(() => validate.vmName(v))),
    });
    if (!name) return;
    const r = await d.withProgress(`Cloning ${s.name}${snapshot ? ` at ${snapshot}` : ''} to ${name}`, (progressToken) => client.request(Rpc.vmClone, { source: s.name, name, snapshot, progressToken }));
    out.info(`cloned ${s.name}${snapshot ? ` (snapshot ${snapshot})` : ''} to ${r.name}`);
    const actions = r.sshPort !== null ? ['Start', 'Connect'] : ['Start'];
    const a = await vscode.window.showInformationMessage(`Cloned ${s.name} to ${r.name}.`, ...actions);
    if (a === 'Start') await d.startVm(r.name, false);
    if (a === 'Connect') await vscode.commands.executeCommand('devvm.connect', r.name);
  };

  // ---- disks ----------------------------------------------------------------------

  const exportDisk = async (s: VmSummary, arg: unknown) => {
    let snapshot = nodeOf(arg, 'snapshot')?.name;
    if (!nodeOf(arg, 'snapshot')) {
      const i = await info(s.name);
      if (i.snapshots.length) {
        const picked = await vscode.window.showQuickPick(
          [
            { label: 'Current disk', description: s.state === 'running' ? 'frozen now, live' : 'frozen now', snap: undefined as string | undefined },
            ...sortedSnapshots(i.snapshots)
              .reverse()
              .map((x) => ({ label: x.name, description: `snapshot · ${formatDate(x.createdAt)}`, snap: x.name as string | undefined })),
          ],
          { title: `Export Disk of ${s.name} over NBD`, placeHolder: 'What to serve (read-only)' },
        );
        if (!picked) return;
        snapshot = picked.snap;
      }
    }
    const what = snapshot ? `Snapshot "${snapshot}" of ${s.name}` : `The disk of ${s.name}`;
    const r = await d.withProgress(`Exporting ${snapshot ? `snapshot ${snapshot} of ` : ''}${s.name} over NBD`, (progressToken) => client.request(Rpc.diskExport, { name: s.name, snapshot, progressToken }));
    out.info(`${s.name}: exporting layer ${r.layer} read-only at ${r.uri}`);
    const a = await vscode.window.showInformationMessage(`${what} is served read-only at ${r.uri} (this host only).`, 'Copy URI', 'Stop Export');
    if (a === 'Copy URI') {
      await vscode.env.clipboard.writeText(r.uri);
      void vscode.window.showInformationMessage(`Copied: ${r.uri}`);
    }
    if (a === 'Stop Export') await unexport(s);
  };

  const unexport = async (s: VmSummary) => {
    await client.request(Rpc.diskUnexport, { name: s.name });
    out.info(`${s.name}: NBD export stopped`);
    void vscode.window.showInformationMessage(`Stopped the NBD export of ${s.name}.`);
  };

  const attachDisk = async (s: VmSummary) => {
    const title = (n: number) => `Attach Disk to ${s.name} (${n}/2)`;
    const kind = await vscode.window.showQuickPick(
      [
        { label: 'Disk image file', description: 'qcow2 or raw, as a virtio disk', iconPath: new vscode.ThemeIcon('file-binary'), k: 'file' as const },
        { label: 'NBD URI', description: 'nbd://HOST:PORT/EXPORT', iconPath: new vscode.ThemeIcon('globe'), k: 'nbd' as const },
        { label: 'Disk image as USB storage', description: 'qcow2 or raw, as a USB mass-storage device', iconPath: new vscode.ThemeIcon('save'), k: 'usb' as const },
      ],
      { title: title(1), placeHolder: 'What to attach' },
    );
    if (!kind) return;
    let source: string | undefined;
    if (kind.k === 'nbd') {
      source = (await vscode.window.showInputBox({ title: title(1), prompt: 'NBD URI (an export from "Export Disk over NBD" works here)', placeHolder: 'nbd://127.0.0.1:10809/export', validateInput: nbdUriProblem }))?.trim();
    } else {
      const files = await vscode.window.showOpenDialog({ canSelectMany: false, openLabel: 'Attach', title: `Disk image to attach to ${s.name}${kind.k === 'usb' ? ' as USB storage' : ''}`, filters: { 'Disk images': ['qcow2', 'img', 'raw', 'iso'], 'All files': ['*'] } });
      source = files?.[0]?.fsPath;
    }
    if (!source) return;
    const modes = [
      { label: 'Read-write', description: 'the guest can change it', readOnly: false },
      { label: 'Read-only', description: kind.k === 'nbd' ? 'devvm exports are read-only' : 'the file is never written', readOnly: true },
    ];
    const mode = await vscode.window.showQuickPick(kind.k === 'nbd' ? modes.reverse() : modes, { title: title(2), placeHolder: diskLabel(source) });
    if (!mode) return;
    const usb = kind.k === 'usb';
    const r: AttachedDisk = await d.withProgress(`Attaching ${diskLabel(source)} to ${s.name}`, () => client.request(Rpc.diskAttach, { name: s.name, source, usb, readOnly: mode.readOnly }));
    out.info(`${s.name}: attached ${r.source} as ${r.id} (${r.bus}${r.readOnly ? ', read-only' : ''})`);
    void vscode.window.showInformationMessage(`Attached ${diskLabel(r.source)} to ${s.name} as ${r.bus === 'usb' ? 'USB storage' : 'a virtio disk'}${r.readOnly ? ', read-only' : ''}. In the guest, lsblk lists it.`);
  };

  const detachDisk = async (s: VmSummary, arg: unknown) => {
    const i = await info(s.name);
    const node = nodeOf(arg, 'disk');
    let disk = node ? i.disks.find((x) => x.id === node.id) : undefined;
    if (node && !disk) throw new DevvmError('not-found', `VM "${s.name}" has no attached disk "${node.id}"`, 'it was detached meanwhile');
    if (!disk) {
      if (!i.disks.length) {
        void vscode.window.showInformationMessage(`Dev VMs: ${s.name} has no attached disks.`);
        return;
      }
      disk = (await vscode.window.showQuickPick(i.disks.map((x) => ({ label: diskLabel(x.source), description: `${x.bus === 'usb' ? 'USB storage' : 'virtio'}${x.readOnly ? ' · read-only' : ''}`, detail: x.source, x })), { placeHolder: `Disk to detach from ${s.name}` }))?.x;
      if (!disk) return;
    }
    const ok = await vscode.window.showWarningMessage(`Detach ${diskLabel(disk.source)} from ${s.name}?`, { modal: true, detail: 'Unmount it in the guest first: data the guest has not written out yet would be lost.' }, 'Detach');
    if (!ok) return;
    const id = disk.id;
    await d.withProgress(`Detaching ${diskLabel(disk.source)} from ${s.name}`, () => client.request(Rpc.diskDetach, { name: s.name, id }));
    out.info(`${s.name}: detached ${disk.source} (${id})`);
  };

  // ---- USB ------------------------------------------------------------------------

  const rules = () => parseRules(context.globalState.get(USB_ALWAYS_KEY));
  const handled = () => context.globalState.get<string[]>(USB_HANDLED_KEY) ?? [];

  /** Where the device is attached now, per the helper (undefined: nowhere, or gone). */
  const attachedNow = async (device: HostUsbDevice): Promise<string | undefined> => {
    try {
      return (await client.request(Rpc.usbList)).find((x) => plugId(x) === plugId(device))?.attachedTo;
    } catch {
      return undefined;
    }
  };

  const attachUsb = async (vm: string, device: HostUsbDevice): Promise<void> => {
    await d.withProgress(`Attaching ${deviceLabel(device)} to ${vm}`, () => client.request(Rpc.usbAttach, { name: vm, device: device.id }));
    out.info(`${vm}: attached USB device ${deviceLabel(device)} (${deviceDetail(device)})`);
    vms.refreshInfo(vm);
  };

  const attachUsbCommand = async (s: VmSummary) => {
    const list = await client.request(Rpc.usbList);
    if (!list.length) {
      void vscode.window.showInformationMessage('Dev VMs: no USB devices on this host.');
      return;
    }
    const free = list.filter((x) => !x.attachedTo);
    const taken = list.filter((x) => x.attachedTo);
    type Item = vscode.QuickPickItem & { dev?: HostUsbDevice };
    const items: Item[] = [
      ...free.map((x) => ({ label: deviceLabel(x), description: `${x.vendorId}:${x.productId}`, detail: deviceDetail(x), dev: x })),
      ...(taken.length ? [{ label: 'Attached to a VM', kind: vscode.QuickPickItemKind.Separator } as Item] : []),
      ...taken.map((x) => ({ label: deviceLabel(x), description: `attached to ${x.attachedTo}`, detail: deviceDetail(x), dev: x })),
    ];
    const picked = await vscode.window.showQuickPick(items, { title: `Attach USB Device to ${s.name}`, placeHolder: 'Host USB device', matchOnDescription: true, matchOnDetail: true });
    const dev = picked?.dev;
    if (!dev) return;
    if (dev.attachedTo) {
      void vscode.window.showWarningMessage(`Dev VMs: ${deviceLabel(dev)} is attached to ${dev.attachedTo}; detach it there first.`);
      return;
    }
    await attachUsb(s.name, dev);
    void vscode.window.showInformationMessage(`Attached ${deviceLabel(dev)} to ${s.name}.`);
  };

  const detachUsb = async (s: VmSummary, arg: unknown) => {
    const i = await info(s.name);
    const node = nodeOf(arg, 'usb');
    let dev = node ? i.usb.find((x) => x.id === node.id) : undefined;
    if (node && !dev) throw new DevvmError('not-found', `no USB device "${node.id}" is attached to VM "${s.name}"`, 'it was detached or unplugged meanwhile');
    if (!dev) {
      if (!i.usb.length) {
        void vscode.window.showInformationMessage(`Dev VMs: no USB devices are attached to ${s.name}.`);
        return;
      }
      dev = (await vscode.window.showQuickPick(i.usb.map((x) => ({ label: deviceLabel(x), description: `${x.vendorId}:${x.productId}`, detail: deviceDetail(x), x })), { placeHolder: `USB device to detach from ${s.name}` }))?.x;
      if (!dev) return;
    }
    await client.request(Rpc.usbDetach, { name: s.name, device: dev.id });
    out.info(`${s.name}: detached USB device ${deviceLabel(dev)}`);
    vms.refreshInfo(s.name);
  };

  /** "Always": attach without asking, say so, and offer to undo. Other windows race for it; the loser stays quiet. */
  const autoAttach = async (device: HostUsbDevice, vm: string) => {
    try {
      await client.request(Rpc.usbAttach, { name: vm, device: device.id });
    } catch (e) {
      if ((await attachedNow(device)) !== undefined) return;
      d.report(e, vm);
      return;
    }
    out.info(`${vm}: attached USB device ${deviceLabel(device)} (always for this device)`);
    vms.refreshInfo(vm);
    const a = await vscode.window.showInformationMessage(`Attached ${deviceLabel(device)} to ${vm} (always for this device).`, 'Detach', 'Stop Always');
    if (a === 'Stop Always') await context.globalState.update(USB_ALWAYS_KEY, forget(rules(), device, vm));
    if (a === 'Detach') {
      await client.request(Rpc.usbDetach, { name: vm, device: device.id });
      vms.refreshInfo(vm);
    }
  };

  const asking = new Set<string>();
  const ask = async (device: HostUsbDevice, decision: Extract<UsbDecision, { kind: 'ask' }>) => {
    const pid = plugId(device);
    if (asking.has(pid)) return;
    asking.add(pid);
    let vm: string | undefined;
    try {
      // Other windows get the same event: the first to ask claims it.
      await context.globalState.update(USB_HANDLED_KEY, markHandled(handled(), device));
      const choice = await vscode.window.showInformationMessage(decision.message, CHOICE.attach, CHOICE.ignore, CHOICE.always);
      const a = answer(choice, decision.vms);
      out.info(`usb: ${deviceLabel(device)}: ${choice ?? 'dismissed'}`);
      if (!a.attach) return;
      vm = a.vm ?? (await vscode.window.showQuickPick(decision.vms, { placeHolder: `VM to attach ${deviceLabel(device)} to` }));
      if (!vm) return;
      if (a.always) await context.globalState.update(USB_ALWAYS_KEY, remember(rules(), device, vm));
      const where = await attachedNow(device);
      if (where === vm) return;
      await attachUsb(vm, device);
    } catch (e) {
      if (vm && (await attachedNow(device)) === vm) return;
      d.report(e, vm);
    } finally {
      asking.delete(pid);
    }
  };

  /** Asks arriving while this window is not focused wait for focus (the focused window asks). */
  const deferred = new Map<string, UsbEvent>();
  const act = (ev: UsbEvent, decision: UsbDecision) => {
    if (decision.kind === 'attach') return void autoAttach(ev.device, decision.vm);
    if (decision.kind !== 'ask') return;
    if (!vscode.window.state.focused) {
      deferred.set(plugId(ev.device), ev);
      return;
    }
    void ask(ev.device, decision);
  };

  const onUsb = (ev: UsbEvent) => {
    const label = `${deviceLabel(ev.device)} (${deviceDetail(ev.device)})`;
    if (ev.action === 'remove') {
      deferred.delete(plugId(ev.device));
      out.info(`usb: ${label} unplugged${ev.device.attachedTo ? ` from ${ev.device.attachedTo}` : ''}`);
      for (const vm of new Set([ev.device.attachedTo, ...ev.runningVms])) if (vm) vms.refreshInfo(vm);
      return;
    }
    const decision = decide(ev, { rules: rules(), handled: handled() });
    out.info(`usb: ${label} plugged in: ${decision.kind === 'none' ? decision.reason : decision.kind === 'attach' ? `attaching to ${decision.vm} (always)` : 'asking'}`);
    act(ev, decision);
  };

  const onFocus = async (st: vscode.WindowState) => {
    if (!st.focused || !deferred.size) return;
    const events = [...deferred.values()];
    deferred.clear();
    let devices: HostUsbDevice[];
    try {
      devices = await client.request(Rpc.usbList);
    } catch {
      return;
    }
    const running = vms.list().filter((s) => s.state === 'running').map((s) => s.name);
    for (const ev of events) {
      const fresh = recheck(ev, devices, running);
      if (fresh) act(fresh, decide(fresh, { rules: rules(), handled: handled() }));
    }
  };

  // ---- layer tree -----------------------------------------------------------------

  const layerUri = vscode.Uri.from({ scheme: LAYER_SCHEME, path: '/Layer Tree.txt' });
  const layerChanged = new vscode.EventEmitter<vscode.Uri>();
  let layerTimer: NodeJS.Timeout | undefined;
  const layersMaybeChanged = () => {
    if (!vscode.workspace.textDocuments.some((doc) => doc.uri.toString() === layerUri.toString())) return;
    clearTimeout(layerTimer);
    layerTimer = setTimeout(() => layerChanged.fire(layerUri), 500);
  };
  const layerProvider: vscode.TextDocumentContentProvider = {
    onDidChange: layerChanged.event,
    provideTextDocumentContent: async () => {
      try {
        return layerTreeText(await client.request(Rpc.layerTree), d.home);
      } catch (e) {
        return `The layer tree is not available: ${(e as Error).message}\n`;
      }
    },
  };

  return [
    layerChanged,
    { dispose: () => clearTimeout(layerTimer) },
    vscode.workspace.registerTextDocumentContentProvider(LAYER_SCHEME, layerProvider),
    client.vmChanged.on(layersMaybeChanged),
    client.vmRemoved.on(layersMaybeChanged),
    client.usb.on(onUsb),
    vscode.window.onDidChangeWindowState((st) => void onFocus(st)),
    d.vmCommand('devvm.snapshot', 'VM to snapshot', takeSnapshot),
    d.vmCommand('devvm.restoreSnapshot', 'VM to restore to a snapshot', restoreSnapshot),
    d.vmCommand('devvm.deleteSnapshot', 'VM whose snapshot to delete', deleteSnapshot),
    d.vmCommand('devvm.clone', 'VM to clone', clone),
    d.vmCommand('devvm.exportDisk', 'VM whose disk to export over NBD', exportDisk),
    d.vmCommand('devvm.unexportDisk', 'VM whose NBD export to stop', unexport),
    d.vmCommand('devvm.attachDisk', 'VM to attach a disk to', attachDisk),
    d.vmCommand('devvm.detachDisk', 'VM to detach a disk from', detachDisk),
    d.vmCommand('devvm.attachUsb', 'VM to attach a USB device to', attachUsbCommand),
    d.vmCommand('devvm.detachUsb', 'VM to detach a USB device from', detachUsb),
    d.reg('devvm.showLayerTree', async () => {
      const doc = await vscode.workspace.openTextDocument(layerUri);
      layerChanged.fire(layerUri);
      await vscode.window.showTextDocument(doc, { preview: true });
    }),
    d.reg('devvm.resetUsbChoices', async () => {
      const n = ruleCount(rules());
      if (!n) {
        void vscode.window.showInformationMessage('Dev VMs: no USB device is set to attach without asking.');
        return;
      }
      const ok = await vscode.window.showWarningMessage(`Forget ${n} "Always for This Device" choice${n === 1 ? '' : 's'}?`, { modal: true, detail: 'Plugging those devices in asks again.' }, 'Forget');
      if (ok) await context.globalState.update(USB_ALWAYS_KEY, undefined);
    }),
  ];
}
