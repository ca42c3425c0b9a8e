/** The USB hot-plug prompt's decisions (src/extension/usbPrompt.ts, no vscode). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  answer,
  askMessage,
  CHOICE,
  decide,
  deviceKey,
  deviceLabel,
  forget,
  markHandled,
  parseRules,
  plugId,
  recheck,
  remember,
  ruleCount,
} from '../../src/extension/usbPrompt';
import type { UsbEvent } from '../../src/shared/rpc';
import type { HostUsbDevice } from '../../src/shared/types';

const dev = (over: Partial<HostUsbDevice> = {}): HostUsbDevice => ({
  id: '1-2',
  busnum: 1,
  devnum: 5,
  vendorId: '0781',
  productId: '5583',
  manufacturer: 'SanDisk',
  product: 'Ultra Fit',
  serial: '4C53000',
  devnode: '/dev/bus/usb/001/005',
  ...over,
});
const add = (runningVms: string[], over: Partial<HostUsbDevice> = {}): UsbEvent => ({ action: 'add', device: dev(over), runningVms });

test('identity: vendor, product and serial (not the port); a plug-in adds the device number', () => {
  assert.equal(deviceKey(dev()), '0781:5583:4c53000');
  assert.equal(deviceKey(dev({ id: '3-1', busnum: 3 })), deviceKey(dev()), 'same device in another port');
  assert.notEqual(deviceKey(dev({ serial: 'OTHER' })), deviceKey(dev()), 'a second stick of the same model');
  assert.equal(deviceKey(dev({ serial: undefined })), '0781:5583:');
  assert.equal(plugId(dev()), '1-2@1.5');
  assert.notEqual(plugId(dev({ devnum: 6 })), plugId(dev()), 'unplugged and plugged again');
});

test('label: the product name, else vendor:product; control characters from the device dropped', () => {
  assert.equal(deviceLabel(dev()), 'Ultra Fit');
  assert.equal(deviceLabel(dev({ product: undefined })), '0781:5583');
  assert.equal(deviceLabel(dev({ product: '  \x1b[31m ' })), '[31m');
  assert.equal(deviceLabel(dev({ product: ' \t' })), '0781:5583');
});

test('no prompt: removal, no running VM, or a device already attached', () => {
  assert.equal(decide({ ...add(['web']), action: 'remove' }, { rules: {} }).kind, 'none');
  assert.deepEqual(decide(add([]), { rules: {} }), { kind: 'none', reason: 'no VM is running' });
  assert.deepEqual(decide(add(['web'], { attachedTo: 'api' }), { rules: {} }), { kind: 'none', reason: 'already attached to api' });
});

test('one running VM: "Attach Ultra Fit to web?"', () => {
  assert.deepEqual(decide(add(['web']), { rules: {} }), { kind: 'ask', vms: ['web'], message: 'Attach Ultra Fit to web?' });
  assert.equal(askMessage(dev({ product: undefined }), ['web']), 'Attach 0781:5583 to web?');
});

test('several running VMs: one question, Attach then asks which', () => {
  const d = decide(add(['web', 'api', 'web']), { rules: {} });
  assert.equal(d.kind, 'ask');
  assert.deepEqual(d.kind === 'ask' && d.vms, ['web', 'api'], 'deduplicated');
  assert.match(d.kind === 'ask' ? d.message : '', /^Attach Ultra Fit to a dev VM\? Running: web, api\.$/);
  assert.deepEqual(answer(CHOICE.attach, ['web', 'api']), { attach: true, always: false, pickVm: true, vm: undefined });
  assert.deepEqual(answer(CHOICE.attach, ['web']), { attach: true, always: false, pickVm: false, vm: 'web' });
});

test('answers: Ignore and dismissing do nothing; Always attaches and remembers', () => {
  assert.deepEqual(answer(CHOICE.ignore, ['web']), { attach: false, always: false, pickVm: false });
  assert.deepEqual(answer(undefined, ['web']), { attach: false, always: false, pickVm: false });
  assert.deepEqual(answer(CHOICE.always, ['web']), { attach: true, always: true, pickVm: false, vm: 'web' });
  assert.deepEqual(answer(CHOICE.always, ['web', 'api']), { attach: true, always: true, pickVm: true, vm: undefined });
});

test('Always: remembered per device identity and VM; later events attach without asking', () => {
  let rules = remember({}, dev(), 'web');
  assert.deepEqual(rules, { '0781:5583:4c53000': ['web'] });
  assert.equal(remember(rules, dev(), 'web'), rules, 'no duplicate');
  // Plugged again, into another port: attached at once.
  assert.deepEqual(decide(add(['web'], { id: '3-1', busnum: 3, devnum: 9 }), { rules }), { kind: 'attach', vm: 'web' });
  // The VM it is remembered for is not running: ask about the ones that are.
  assert.equal(decide(add(['api']), { rules }).kind, 'ask');
  // Several running, one remembered: that one.
  assert.deepEqual(decide(add(['api', 'web']), { rules }), { kind: 'attach', vm: 'web' });
  // Another stick of the same model (other serial) is asked about.
  assert.equal(decide(add(['web'], { serial: 'OTHER' }), { rules }).kind, 'ask');
  rules = remember(rules, dev(), 'api');
  assert.equal(ruleCount(rules), 2);
  assert.deepEqual(decide(add(['api', 'web']), { rules }), { kind: 'attach', vm: 'api' }, 'first running VM that has a rule');
  rules = forget(rules, dev(), 'api');
  assert.deepEqual(rules, { '0781:5583:4c53000': ['web'] });
  assert.deepEqual(forget(rules, dev(), 'web'), {});
  assert.deepEqual(forget(remember(rules, dev(), 'api'), dev()), {}, 'all VMs at once');
});

test('rules from globalState: anything malformed is dropped', () => {
  assert.deepEqual(parseRules(undefined), {});
  assert.deepEqual(parseRules('x'), {});
  assert.deepEqual(parseRules([1]), {});
  assert.deepEqual(parseRules({ a: ['web', 'web', 3, ''], b: 'web', c: [] }), { a: ['web'] });
});

test('several windows: a plug-in one window asked about is not asked again; an Always still attaches', () => {
  const handled = markHandled([], dev());
  assert.deepEqual(decide(add(['web']), { rules: {}, handled }), { kind: 'none', reason: 'already asked' });
  assert.equal(decide(add(['web'], { devnum: 6 }), { rules: {}, handled }).kind, 'ask', 'plugged in again: a new question');
  assert.equal(decide(add(['web']), { rules: remember({}, dev(), 'web'), handled }).kind, 'attach');
  // Bounded, newest last, no duplicates, tolerant of junk.
  let list: string[] = [];
  for (let n = 0; n < 60; n++) list = markHandled(list, dev({ devnum: n }), 50);
  assert.equal(list.length, 50);
  assert.equal(list.at(-1), plugId(dev({ devnum: 59 })));
  assert.deepEqual(markHandled([plugId(dev()), 'x'], dev()), ['x', plugId(dev())]);
  assert.deepEqual(markHandled(undefined, dev()), [plugId(dev())]);
});

test('an unfocused window asks later only if the device is still there and free', () => {
  const ev = add(['web']);
  assert.equal(recheck(ev, [], ['web']), undefined, 'unplugged meanwhile');
  assert.equal(recheck(ev, [dev({ attachedTo: 'web' })], ['web']), undefined, 'attached meanwhile (another window)');
  assert.equal(recheck(ev, [dev({ devnum: 8 })], ['web']), undefined, 'a new plug-in has its own event');
  assert.deepEqual(recheck(ev, [dev()], ['api']), { action: 'add', device: dev(), runningVms: ['api'] }, 'with the VMs running now');
  assert.equal(decide(recheck(ev, [dev()], [])!, { rules: {} }).kind, 'none', 'no VM runs any more');
});
