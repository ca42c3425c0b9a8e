/** Disks and USB devices: NBD export of a VM's disk, hot-plugged disks, host USB devices. */
import path from 'node:path';
import * as vscode from 'vscode';
import { DevvmError } from '../../shared/errors';
import { Rpc } from '../../shared/rpc';
import type { AttachedDisk, HostUsbDevice, VmSummary } from '../../shared/types';
import { date as formatDate } from '../../shared/format';
import { diskLabel, nbdUriProblem, sortedSnapshots } from '../model';
import { deviceDetail, deviceLabel, parseRules, ruleCount, USB_ALWAYS_KEY } from '../usbPrompt';
import { onVm, plain, type CommandEntry, type Cx } from './command';
import { nodeOf, vmInfo } from './util';

/**
 * The format of a disk file: the helper takes a file as raw only when told so (a text file
 * is no disk), so a file whose name does not say (.qcow2, .iso) is asked about.
 */
export async function askDiskFormat(file: string): Promise<'qcow2' | 'raw' | undefined> {
  if (/\.qcow2$/i.test(file)) return 'qcow2';
  if (/\.iso$/i.test(file)) return 'raw';
  const f = await vscode.window.showQuickPick(
    [
      { label: 'qcow2', description: 'checked: refused if it is not one, or if it has a backing file', format: 'qcow2' as const },
      { label: 'raw', description: 'a plain disk image, used byte for byte', format: 'raw' as const },
    ],
    { placeHolder: `Format of ${path.basename(file)}` },
  );
  return f?.format;
}

async function exportDisk(cx: Cx, s: VmSummary, arg: unknown): Promise<void> {
  let snapshot = nodeOf(arg, 'snapshot')?.name;
  if (!nodeOf(arg, 'snapshot')) {
    const i = await vmInfo(cx, s.name);
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
  const r = await cx.withProgress(`Exporting ${snapshot ? `snapshot ${snapshot} of ` : ''}${s.name} over NBD`, (progressToken) => cx.client.request(Rpc.diskExport, { name: s.name, snapshot, progressToken }));
  cx.out.info(`${s.name}: exporting layer ${r.layer} read-only at ${r.uri}`);
  const a = await vscode.window.showInformationMessage(`${what} is served read-only at ${r.uri} (this host only).`, 'Copy URI', 'Stop Export');
  if (a === 'Copy URI') {
    await vscode.env.clipboard.writeText(r.uri);
    void vscode.window.showInformationMessage(`Copied: ${r.uri}`);
  }
  if (a === 'Stop Export') await unexport(cx, s);
}

async function unexport(cx: Cx, s: VmSummary): Promise<void> {
  await cx.client.request(Rpc.diskUnexport, { name: s.name });
  cx.out.info(`${s.name}: NBD export stopped`);
  void vscode.window.showInformationMessage(`Stopped the NBD export of ${s.name}.`);
}

async function attachDisk(cx: Cx, s: VmSummary): Promise<void> {
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
    source = (await vscode.window.showInputBox({ title: title(1), prompt: 'NBD URI (what "Export Disk over NBD" prints works here)', placeHolder: 'nbd://HOST:PORT/EXPORT or nbd+unix:///EXPORT?socket=PATH', validateInput: nbdUriProblem }))?.trim();
  } else {
    const files = await vscode.window.showOpenDialog({ canSelectMany: false, openLabel: 'Attach', title: `Disk image to attach to ${s.name}${kind.k === 'usb' ? ' as USB storage' : ''}`, filters: { 'Disk images': ['qcow2', 'img', 'raw', 'iso'], 'All files': ['*'] } });
    source = files?.[0]?.fsPath;
  }
  if (!source) return;
  let format: 'qcow2' | 'raw' | undefined;
  if (kind.k !== 'nbd') {
    format = await askDiskFormat(source);
    if (!format) return;
  }
  const modes = [
    { label: 'Read-write', description: 'the guest can change it', readOnly: false },
    { label: 'Read-only', description: kind.k === 'nbd' ? 'devvm exports are read-only' : 'the file is never written', readOnly: true },
  ];
  const mode = await vscode.window.showQuickPick(kind.k === 'nbd' ? modes.reverse() : modes, { title: title(2), placeHolder: diskLabel(source) });
  if (!mode) return;
  const usb = kind.k === 'usb';
  const r: AttachedDisk = await cx.withProgress(`Attaching ${diskLabel(source)} to ${s.name}`, () => cx.client.request(Rpc.diskAttach, { name: s.name, source, usb, readOnly: mode.readOnly, ...(format ? { format } : {}) }));
  cx.out.info(`${s.name}: attached ${r.source} as ${r.id} (${r.bus}${r.readOnly ? ', read-only' : ''})`);
  void vscode.window.showInformationMessage(`Attached ${diskLabel(r.source)} to ${s.name} as ${r.bus === 'usb' ? 'USB storage' : 'a virtio disk'}${r.readOnly ? ', read-only' : ''}. In the guest, lsblk lists it.`);
}

async function detachDisk(cx: Cx, s: VmSummary, arg: unknown): Promise<void> {
  const i = await vmInfo(cx, s.name);
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
  await cx.withProgress(`Detaching ${diskLabel(disk.source)} from ${s.name}`, () => cx.client.request(Rpc.diskDetach, { name: s.name, id }));
  cx.out.info(`${s.name}: detached ${disk.source} (${id})`);
}

export async function attachUsbDevice(cx: Cx, vm: string, device: HostUsbDevice): Promise<void> {
  await cx.withProgress(`Attaching ${deviceLabel(device)} to ${vm}`, () => cx.client.request(Rpc.usbAttach, { name: vm, device: device.id }));
  cx.out.info(`${vm}: attached USB device ${deviceLabel(device)} (${deviceDetail(device)})`);
  cx.vms.refreshInfo(vm);
}

async function attachUsb(cx: Cx, s: VmSummary): Promise<void> {
  const list = await cx.client.request(Rpc.usbList);
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
  await attachUsbDevice(cx, s.name, dev);
  void vscode.window.showInformationMessage(`Attached ${deviceLabel(dev)} to ${s.name}.`);
}

async function detachUsb(cx: Cx, s: VmSummary, arg: unknown): Promise<void> {
  const i = await vmInfo(cx, s.name);
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
  await cx.client.request(Rpc.usbDetach, { name: s.name, device: dev.id });
  cx.out.info(`${s.name}: detached USB device ${deviceLabel(dev)}`);
  cx.vms.refreshInfo(s.name);
}

async function resetUsbChoices(cx: Cx): Promise<void> {
  const n = ruleCount(parseRules(cx.context.globalState.get(USB_ALWAYS_KEY)));
  if (!n) {
    void vscode.window.showInformationMessage('Dev VMs: no USB device is set to attach without asking.');
    return;
  }
  const ok = await vscode.window.showWarningMessage(`Forget ${n} "Always for This Device" choice${n === 1 ? '' : 's'}?`, { modal: true, detail: 'Plugging those devices in asks again.' }, 'Forget');
  if (ok) await cx.context.globalState.update(USB_ALWAYS_KEY, undefined);
}

export const DEVICES: CommandEntry[] = [
  onVm('devvm.exportDisk', 'VM whose disk to export over NBD', exportDisk),
  onVm('devvm.unexportDisk', 'VM whose NBD export to stop', unexport),
  onVm('devvm.attachDisk', 'VM to attach a disk to', attachDisk),
  onVm('devvm.detachDisk', 'VM to detach a disk from', detachDisk),
  onVm('devvm.attachUsb', 'VM to attach a USB device to', attachUsb),
  onVm('devvm.detachUsb', 'VM to detach a USB device from', detachUsb),
  plain('devvm.resetUsbChoices', resetUsbChoices),
];
