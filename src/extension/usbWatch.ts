/**
 * The prompt when a USB device is plugged in while VMs run: attach it to one (asking, or
 * without asking when the user chose "Always"), once across windows. The decisions live
 * in usbPrompt.ts (pure, unit-tested); this is the VS Code side.
 */
import * as vscode from 'vscode';
import { Rpc, type UsbEvent } from '../shared/rpc';
import type { HostUsbDevice } from '../shared/types';
import type { Cx } from './commands/command';
import { attachUsbDevice } from './commands/devices';
import { answer, CHOICE, decide, deviceDetail, deviceLabel, forget, markHandled, parseRules, plugId, recheck, remember, USB_ALWAYS_KEY, USB_HANDLED_KEY, type UsbDecision } from './usbPrompt';

export function watchUsb(cx: Cx): vscode.Disposable[] {
  const rules = () => parseRules(cx.context.globalState.get(USB_ALWAYS_KEY));
  const handled = () => cx.context.globalState.get<string[]>(USB_HANDLED_KEY) ?? [];

  /** Where the device is attached now, per the helper (undefined: nowhere, or gone). */
  const attachedNow = async (device: HostUsbDevice): Promise<string | undefined> => {
    try {
      return (await cx.client.request(Rpc.usbList)).find((x) => plugId(x) === plugId(device))?.attachedTo;
    } catch {
      return undefined;
    }
  };

  /** "Always": attach without asking, say so, and offer to undo. Other windows race for it; the loser stays quiet. */
  const autoAttach = async (device: HostUsbDevice, vm: string) => {
    try {
      await cx.client.request(Rpc.usbAttach, { name: vm, device: device.id });
    } catch (e) {
      if ((await attachedNow(device)) !== undefined) return;
      cx.report(e, vm);
      return;
    }
    cx.out.info(`${vm}: attached USB device ${deviceLabel(device)} (always for this device)`);
    cx.vms.refreshInfo(vm);
    const a = await vscode.window.showInformationMessage(`Attached ${deviceLabel(device)} to ${vm} (always for this device).`, 'Detach', 'Stop Always');
    if (a === 'Stop Always') await cx.context.globalState.update(USB_ALWAYS_KEY, forget(rules(), device, vm));
    if (a === 'Detach') {
      await cx.client.request(Rpc.usbDetach, { name: vm, device: device.id });
      cx.vms.refreshInfo(vm);
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
      await cx.context.globalState.update(USB_HANDLED_KEY, markHandled(handled(), device));
      const choice = await vscode.window.showInformationMessage(decision.message, CHOICE.attach, CHOICE.ignore, CHOICE.always);
      const a = answer(choice, decision.vms);
      cx.out.info(`usb: ${deviceLabel(device)}: ${choice ?? 'dismissed'}`);
      if (!a.attach) return;
      vm = a.vm ?? (await vscode.window.showQuickPick(decision.vms, { placeHolder: `VM to attach ${deviceLabel(device)} to` }));
      if (!vm) return;
      if (a.always) await cx.context.globalState.update(USB_ALWAYS_KEY, remember(rules(), device, vm));
      const where = await attachedNow(device);
      if (where === vm) return;
      await attachUsbDevice(cx, vm, device);
    } catch (e) {
      if (vm && (await attachedNow(device)) === vm) return;
      cx.report(e, vm);
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
      cx.out.info(`usb: ${label} unplugged${ev.device.attachedTo ? ` from ${ev.device.attachedTo}` : ''}`);
      for (const vm of new Set([ev.device.attachedTo, ...ev.runningVms])) if (vm) cx.vms.refreshInfo(vm);
      return;
    }
    const decision = decide(ev, { rules: rules(), handled: handled() });
    cx.out.info(`usb: ${label} plugged in: ${decision.kind === 'none' ? decision.reason : decision.kind === 'attach' ? `attaching to ${decision.vm} (always)` : 'asking'}`);
    act(ev, decision);
  };

  const onFocus = async (st: vscode.WindowState) => {
    if (!st.focused || !deferred.size) return;
    const events = [...deferred.values()];
    deferred.clear();
    let devices: HostUsbDevice[];
    try {
      devices = await cx.client.request(Rpc.usbList);
    } catch {
      return;
    }
    const running = cx.vms.list().filter((s) => s.state === 'running').map((s) => s.name);
    for (const ev of events) {
      const fresh = recheck(ev, devices, running);
      if (fresh) act(fresh, decide(fresh, { rules: rules(), handled: handled() }));
    }
  };

  return [cx.client.usb.on(onUsb), vscode.window.onDidChangeWindowState((st) => void onFocus(st))];
}
