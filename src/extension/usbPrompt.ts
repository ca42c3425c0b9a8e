/**
 * What to do when the helper reports a host USB device (`usb/event`): nothing, attach it
 * at once (the user chose "Always for this device" for a running VM), or ask. Also the
 * "Always" choices as kept in globalState, and the bookkeeping that stops several VS Code
 * windows (each gets the event) from asking about the same plug-in twice. No `vscode`
 * import: src/extension/extension.ts shows the messages.
 */
import type { UsbEvent } from '../shared/rpc';
import type { HostUsbDevice } from '../shared/types';

export const USB_ALWAYS_KEY = 'devvm.usbAlways';
export const USB_HANDLED_KEY = 'devvm.usbHandled';

export const CHOICE = {
  attach: 'Attach',
  ignore: 'Ignore',
  always: 'Always for This Device',
} as const;

/** A device's identity across plug-ins and ports: vendor, product and serial number. */
export function deviceKey(d: Pick<HostUsbDevice, 'vendorId' | 'productId' | 'serial'>): string {
  return `${d.vendorId}:${d.productId}:${d.serial ?? ''}`.toLowerCase();
}

/** One plug-in of a device: the kernel gives it a new device number each time. */
export function plugId(d: Pick<HostUsbDevice, 'id' | 'busnum' | 'devnum'>): string {
  return `${d.id}@${d.busnum}.${d.devnum}`;
}

/** The product name the device reports, else VENDOR:PRODUCT. */
export function deviceLabel(d: Pick<HostUsbDevice, 'vendorId' | 'productId' | 'product'>): string {
  const product = d.product?.replace(/[\x00-\x1f\x7f]/g, '').trim();
  return product ? product : `${d.vendorId}:${d.productId}`;
}

/** A longer line for pick lists: manufacturer, ids, bus path, serial. */
export function deviceDetail(d: HostUsbDevice): string {
  const parts = [`${d.vendorId}:${d.productId}`];
  if (d.manufacturer?.trim()) parts.unshift(d.manufacturer.trim());
  parts.push(`bus ${d.id}`);
  if (d.serial) parts.push(`serial ${d.serial}`);
  return parts.join(' · ');
}

/** deviceKey -> VM names the device goes to without asking. */
export type AlwaysRules = Readonly<Record<string, readonly string[]>>;

/** globalState may hold anything (older versions, hand edits): keep only well-formed entries. */
export function parseRules(raw: unknown): AlwaysRules {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return {};
  const out: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (!Array.isArray(v)) continue;
    const vms = v.filter((x): x is string => typeof x === 'string' && x.length > 0);
    if (vms.length) out[k] = [...new Set(vms)];
  }
  return out;
}

export function remember(rules: AlwaysRules, device: HostUsbDevice, vm: string): AlwaysRules {
  const key = deviceKey(device);
  const have = rules[key] ?? [];
  return have.includes(vm) ? rules : { ...rules, [key]: [...have, vm] };
}

export function forget(rules: AlwaysRules, device: HostUsbDevice, vm?: string): AlwaysRules {
  const key = deviceKey(device);
  const left = vm === undefined ? [] : (rules[key] ?? []).filter((n) => n !== vm);
  const { [key]: _dropped, ...rest } = rules;
  return left.length ? { ...rest, [key]: left } : rest;
}

/** How many "Always" choices there are (for the reset command's message). */
export function ruleCount(rules: AlwaysRules): number {
  return Object.values(rules).reduce((a, v) => a + v.length, 0);
}

export type UsbDecision =
  | { kind: 'none'; reason: string }
  /** An "Always" choice names a running VM. */
  | { kind: 'attach'; vm: string }
  | { kind: 'ask'; vms: string[]; message: string };

export interface DecideContext {
  rules: AlwaysRules;
  /** Plug-ins some window already asked about (globalState, shared by windows). */
  handled?: readonly string[];
}

export function decide(ev: UsbEvent, ctx: DecideContext): UsbDecision {
  if (ev.action !== 'add') return { kind: 'none', reason: 'removed' };
  const d = ev.device;
  if (d.attachedTo) return { kind: 'none', reason: `already attached to ${d.attachedTo}` };
  const running = [...new Set(ev.runningVms)];
  if (!running.length) return { kind: 'none', reason: 'no VM is running' };
  const always = ctx.rules[deviceKey(d)] ?? [];
  const auto = running.find((vm) => always.includes(vm));
  if (auto) return { kind: 'attach', vm: auto };
  if (ctx.handled?.includes(plugId(d))) return { kind: 'none', reason: 'already asked' };
  return { kind: 'ask', vms: running, message: askMessage(d, running) };
}

export function askMessage(d: HostUsbDevice, vms: readonly string[]): string {
  const label = deviceLabel(d);
  return vms.length === 1 ? `Attach ${label} to ${vms[0]}?` : `Attach ${label} to a dev VM? Running: ${vms.join(', ')}.`;
}

export interface Answer {
  attach: boolean;
  /** Remember the VM for this device. */
  always: boolean;
  /** Several VMs run: ask which one (undefined: the only one). */
  pickVm: boolean;
  vm?: string;
}

/** What the user's button means; dismissing the message is Ignore. */
export function answer(choice: string | undefined, vms: readonly string[]): Answer {
  if (choice !== CHOICE.attach && choice !== CHOICE.always) return { attach: false, always: false, pickVm: false };
  const one = vms.length === 1 ? vms[0] : undefined;
  return { attach: true, always: choice === CHOICE.always, pickVm: one === undefined, vm: one };
}

/** The handled list with this plug-in added, newest last, bounded. */
export function markHandled(handled: readonly string[] | undefined, d: HostUsbDevice, max = 50): string[] {
  const id = plugId(d);
  const list = (Array.isArray(handled) ? handled.filter((x) => typeof x === 'string' && x !== id) : []).concat(id);
  return list.slice(-max);
}

/**
 * A deferred event (this window was not focused) re-checked against the current device
 * list and running VMs when the window gains focus: gone or attached meanwhile -> nothing.
 */
export function recheck(ev: UsbEvent, devices: readonly HostUsbDevice[], runningVms: readonly string[]): UsbEvent | undefined {
  const now = devices.find((x) => plugId(x) === plugId(ev.device));
  if (!now || now.attachedTo) return undefined;
  return { action: 'add', device: now, runningVms: [...runningVms] };
}
