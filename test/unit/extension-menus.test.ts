/**
 * Menu enablement: the `when` clauses in package.json must enable each command on exactly
 * the tree items src/extension/menus.ts says: VMs in the right states (which the palette's
 * quick picks use too), a VM's group rows, snapshots, attached disks and USB devices.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { appliesTo, GROUP_COMMANDS, noCandidateMessage, PORT_ITEMS, shareItems, groupContextValue, itemApplies, ITEM_COMMANDS, PALETTE_COMMANDS, VM_COMMANDS, vmContextValue, vmRule, type GroupCommand, type RuleCommand, type VmCommand, type VmRule } from '../../src/extension/menus';
import { GROUPS, stateIcon, vmItem } from '../../src/extension/model';
import { allows, OPERATIONS } from '../../src/shared/lifecycle';
import { VM_STATES, type VmState } from '../../src/shared/types';

interface MenuEntry {
  command: string;
  when?: string;
  group?: string;
}
const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
  contributes: {
    commands: { command: string; title: string; category?: string }[];
    menus: Record<string, MenuEntry[]>;
    jsonValidation: { fileMatch: string[]; url: string }[];
    languages: { id: string; filenames?: string[] }[];
  };
  activationEvents: string[];
  capabilities: { untrustedWorkspaces: { supported: boolean | 'limited'; description?: string; restrictedConfigurations?: string[] } };
};

/** Evaluates the subset of when-clause syntax the manifest uses: `a == b`, `a =~ /re/`, `&&`. */
function evaluate(when: string, ctx: Record<string, string>): boolean {
  return when.split('&&').every((part) => {
    const p = part.trim();
    let m = /^(\S+) == (\S+)$/.exec(p);
    if (m) return ctx[m[1]!] === m[2];
    m = /^(\S+) =~ \/(.*)\/([a-z]*)$/.exec(p);
    if (m) return new RegExp(m[2]!, m[3]).test(ctx[m[1]!] ?? '');
    throw new Error(`unsupported when clause part: ${p}`);
  });
}

const vmContexts = VM_STATES.flatMap((state) => [true, false].flatMap((ssh) => [true, false].map((display) => ({ state, ssh, display, value: vmContextValue(state, ssh, display) }))));
const groupContexts = GROUPS.flatMap((group) => VM_STATES.map((state) => ({ group, state, value: groupContextValue(group, state) })));
const itemContexts = ['snapshot.disk', 'snapshot.ram', 'disk.virtio', 'disk.usb', 'usb.device', 'layer.base.shared', 'layer.snapshot', 'layer.overlay', 'note', 'port.ssh', ...shareItems(VM_STATES), ...PORT_ITEMS];
const allContexts = [...vmContexts.map((c) => c.value), ...groupContexts.map((c) => c.value), ...itemContexts];

/** Where a command should show, from the tables in menus.ts. */
function expected(command: string, viewItem: string): boolean {
  const vm = vmContexts.find((c) => c.value === viewItem);
  if (vm) return command in VM_COMMANDS && appliesTo(command as VmCommand, vm.state, vm.ssh, vm.display);
  const group = groupContexts.find((c) => c.value === viewItem);
  if (group) return GROUP_COMMANDS[command as GroupCommand] === group.group && appliesTo(command as VmCommand, group.state, true);
  return itemApplies(command, viewItem);
}

const itemMenu = pkg.contributes.menus['view/item/context']!.filter((e) => e.when?.includes('view == devvm.vms'));
const commandsInItemMenu = [...new Set(itemMenu.map((e) => e.command))];

test('every VM command is contributed and has a context-menu entry', () => {
  const contributed = new Set(pkg.contributes.commands.map((c) => c.command));
  const inMenu = new Set(pkg.contributes.menus['view/item/context']!.filter((e) => !e.group?.startsWith('inline')).map((e) => e.command));
  for (const c of [...Object.keys(VM_COMMANDS), ...Object.keys(ITEM_COMMANDS), ...Object.keys(GROUP_COMMANDS)]) {
    assert.ok(contributed.has(c), `${c} not in contributes.commands`);
    assert.ok(inMenu.has(c), `${c} not in a context menu`);
  }
  for (const c of Object.keys(PALETTE_COMMANDS)) assert.ok(contributed.has(c), `${c} not in contributes.commands`);
});

test('every command is in the Dev VMs category', () => {
  for (const c of pkg.contributes.commands) assert.equal(c.category, 'Dev VMs', c.command);
});

test('context menus: each command on exactly the VMs, group rows and items of the tables', () => {
  for (const command of commandsInItemMenu) {
    const entries = itemMenu.filter((e) => e.command === command && !e.group?.startsWith('inline'));
    for (const viewItem of allContexts) {
      const shown = entries.some((e) => evaluate(e.when!, { view: 'devvm.vms', viewItem }));
      assert.equal(shown, expected(command, viewItem), `${command} in the context menu of ${viewItem}`);
    }
  }
});

test('inline actions: only where the context menu has the command too', () => {
  for (const e of itemMenu.filter((x) => x.group?.startsWith('inline'))) {
    for (const viewItem of allContexts) {
      if (evaluate(e.when!, { view: 'devvm.vms', viewItem })) assert.ok(expected(e.command, viewItem), `${e.command} inline on ${viewItem}`);
    }
  }
});

test('nothing from the VM view shows in the Images view', () => {
  for (const e of itemMenu) assert.equal(evaluate(e.when!, { view: 'devvm.images', viewItem: 'image.unused' }), false);
});

test('commands on items and groups: their VM rule matches the VM command where there is one', () => {
  for (const c of Object.keys(ITEM_COMMANDS) as (keyof typeof ITEM_COMMANDS)[]) {
    if (c in VM_COMMANDS) assert.deepEqual(vmRule(c), VM_COMMANDS[c as VmCommand], c);
  }
  // RAM snapshots need a running or suspended VM; attaching needs a running one.
  assert.ok(appliesTo('devvm.snapshot', 'stopped', false));
  assert.ok(!appliesTo('devvm.snapshot', 'starting', false));
  assert.ok(!appliesTo('devvm.attachDisk', 'stopped', true));
  assert.ok(!appliesTo('devvm.attachUsb', 'suspended', true));
  assert.ok(appliesTo('devvm.attachUsb', 'running', false));
  assert.ok(appliesTo('devvm.clone', 'running', false), 'a running VM can be cloned');
  assert.deepEqual(vmRule('devvm.detachUsb').states, ['running']);
  assert.ok(vmRule('devvm.unexportDisk').states.includes('stopped'));
});

test('state rules: the obvious cases', () => {
  assert.ok(appliesTo('devvm.start', 'stopped', true));
  assert.ok(!appliesTo('devvm.start', 'running', true));
  assert.ok(appliesTo('devvm.stop', 'running', false));
  assert.ok(!appliesTo('devvm.connect', 'running', false), 'connect needs SSH');
  assert.ok(appliesTo('devvm.connect', 'stopped', true), 'connect starts a stopped VM');
  assert.ok(appliesTo('devvm.openSerial', 'running', false), 'the serial console works without SSH');
  assert.ok(appliesTo('devvm.delete', 'starting', true), 'delete --force stops a starting VM first (OPERATIONS.forceDelete)');
  assert.ok(!appliesTo('devvm.showLogs', 'creating', true));
});

const ruleCommands = [...Object.keys(VM_COMMANDS), ...Object.keys(ITEM_COMMANDS), ...Object.keys(PALETTE_COMMANDS)] as RuleCommand[];

test('lifecycle table wins: no command is offered in a state its helper operation refuses', () => {
  for (const c of ruleCommands) {
    const rule: VmRule = vmRule(c);
    if (!rule.op) continue;
    for (const s of rule.states) assert.ok(allows(rule.op, s), `${c} offered on a ${s} VM, but OPERATIONS.${rule.op} refuses it`);
    // The states a rule hides are the operation's own, so the rule is the operation's list minus them.
    for (const s of rule.hidden ?? []) assert.ok(allows(rule.op, s), `${c} hides ${s}, which OPERATIONS.${rule.op} does not allow anyway`);
    assert.deepEqual([...rule.states].sort(), OPERATIONS[rule.op].filter((s) => !(rule.hidden ?? []).includes(s)).sort(), c);
  }
});

test('only UI commands go without a lifecycle operation', () => {
  const local = ruleCommands.filter((c) => !vmRule(c).op).sort();
  assert.deepEqual(local, ['devvm.copyPortAddress', 'devvm.copySshCommand', 'devvm.openDisplay', 'devvm.openPort', 'devvm.showLogs']);
});

test('connect works from every state start+ssh works from', () => {
  const viaStart = VM_STATES.filter((s) => allows('start', s));
  for (const s of VM_STATES) {
    assert.equal(appliesTo('devvm.connect', s, true), viaStart.includes(s), `connect on ${s}`);
    assert.equal(appliesTo('devvm.connectNewWindow', s, true), viaStart.includes(s), `connectNewWindow on ${s}`);
  }
  assert.ok(appliesTo('devvm.connect', 'suspended', true), 'connect resumes a suspended VM');
});

test('Open Display: only on VMs with a display, in every state but creating and deleting (the tab says stopped or suspended)', () => {
  for (const s of VM_STATES) {
    assert.equal(appliesTo('devvm.openDisplay', s, false, true), s !== 'creating' && s !== 'deleting', s);
    assert.equal(appliesTo('devvm.openDisplay', s, true, false), false, `${s} without a display`);
  }
  const item = vmItem({ name: 'web', state: 'running', image: 'debian-12', user: 'al', sshHost: 'devvm-web', sshPort: null, cpus: 2, memoryMiB: 2048, display: 'auto' });
  assert.equal(item.contextValue, 'vm.running.nossh.display');
  const inline = pkg.contributes.menus['view/item/context']!.filter((e) => e.command === 'devvm.openDisplay' && e.group?.startsWith('inline'));
  assert.equal(inline.length, 1, 'an inline action');
  assert.ok(evaluate(inline[0]!.when!, { view: 'devvm.vms', viewItem: item.contextValue }));
  assert.ok(!evaluate(inline[0]!.when!, { view: 'devvm.vms', viewItem: 'vm.running.nossh.nodisplay' }));
});

test('a deleting VM: a spinning icon, a tooltip saying so, and no action but Show Logs', () => {
  const offered = (state: VmState) => (Object.keys(VM_COMMANDS) as VmCommand[]).filter((c) => appliesTo(c, state, true));
  assert.deepEqual(offered('deleting'), ['devvm.showLogs']);
  assert.deepEqual(offered('creating'), []);
  assert.equal(stateIcon('deleting').id, 'loading~spin');
  const item = vmItem({ name: 'web', state: 'deleting', image: 'debian-12', user: 'al', sshHost: 'devvm-web', sshPort: 2222, cpus: 2, memoryMiB: 2048 });
  assert.match(item.tooltip, /Being deleted/);
  assert.equal(item.contextValue, 'vm.deleting.ssh.nodisplay');
  // Nothing on its group rows either.
  for (const c of Object.keys(GROUP_COMMANDS) as GroupCommand[]) assert.ok(!appliesTo(c, 'deleting', true), c);
});

test('image delete only for unused images', () => {
  const entries = pkg.contributes.menus['view/item/context']!.filter((e) => e.command === 'devvm.deleteImage');
  assert.ok(entries.length > 0);
  for (const e of entries) {
    assert.equal(evaluate(e.when!, { view: 'devvm.images', viewItem: 'image.unused' }), true);
    assert.equal(evaluate(e.when!, { view: 'devvm.images', viewItem: 'image.inuse' }), false);
  }
});

test('lazy activation (a folder with a devvm.json activates, to ask about it) and Restricted Mode support', () => {
  assert.ok(!pkg.activationEvents.includes('*') && !pkg.activationEvents.includes('onStartupFinished'));
  assert.deepEqual(pkg.activationEvents, ['workspaceContains:devvm.json', 'workspaceContains:.devvm/devvm.json']);
  // Enabled in Restricted Mode, but Open Folder in Dev VM (repo scripts) waits for trust: 'limited', saying so.
  const trust = pkg.capabilities.untrustedWorkspaces;
  assert.equal(trust.supported, 'limited');
  assert.match(trust.description ?? '', /Open Folder in Dev VM.*trusted/);
  // The settings that name programs or data directories cannot come from a workspace at all.
  const props = (JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { contributes: { configuration: { properties: Record<string, { scope?: string }> } } }).contributes.configuration.properties;
  for (const k of ['devvm.home', 'devvm.qemuPath']) assert.equal(props[k]?.scope, 'machine', k);
});

test('devvm.json: JSON with comments, validated by the packaged schema', () => {
  assert.deepEqual(pkg.contributes.jsonValidation, [{ fileMatch: ['devvm.json', '.devvm/devvm.json'], url: './schemas/devvm.schema.json' }]);
  assert.ok(pkg.contributes.languages.some((l) => l.id === 'jsonc' && l.filenames?.includes('devvm.json')));
  const schema = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'schemas', 'devvm.schema.json'), 'utf8')) as { type?: string };
  assert.equal(schema.type, 'object');
  const ignore = readFileSync(path.join(__dirname, '..', '..', '.vscodeignore'), 'utf8').split('\n');
  assert.ok(ignore.includes('!schemas/*.json'), '.vscodeignore ships the schema');
});

test('Explorer: Open Folder in Dev VM on folders with a devvm.json (context key) and on devvm.json itself', () => {
  const entries = pkg.contributes.menus['explorer/context']!.filter((e) => e.command === 'devvm.openFolderInVm');
  assert.deepEqual(entries.map((e) => e.when), ['explorerResourceIsFolder && resourcePath in devvm.manifestFolders', '!explorerResourceIsFolder && resourceFilename == devvm.json']);
});

// ---- shares, ports, Change Size… ---------------------------------------------------

const shownOn = (command: string, viewItem: string) =>
  itemMenu.filter((e) => e.command === command).some((e) => evaluate(e.when!, { view: 'devvm.vms', viewItem }));

test('Change Size…: on stopped VMs (and after a crash), never on running or suspended ones', () => {
  for (const state of VM_STATES) {
    assert.equal(shownOn('devvm.changeSize', vmContextValue(state, true)), state === 'stopped' || state === 'error', state);
  }
  assert.equal(VM_COMMANDS['devvm.changeSize'].op, 'set', 'the helper refuses through the same table');
});

test('Shared folders and Ports: "+" inline on the group rows where the helper takes it; Remove on each share, only on static forwards', () => {
  const inline = (command: string, viewItem: string) =>
    itemMenu.filter((e) => e.command === command && e.group?.startsWith('inline')).some((e) => evaluate(e.when!, { view: 'devvm.vms', viewItem }));
  assert.ok(inline('devvm.addShare', groupContextValue('shares', 'stopped')));
  assert.ok(inline('devvm.addShare', groupContextValue('shares', 'running')));
  assert.ok(!inline('devvm.addShare', groupContextValue('shares', 'suspended')), "a suspended VM's saved state has no device for it");
  assert.ok(inline('devvm.addPort', groupContextValue('ports', 'suspended')));
  assert.ok(!inline('devvm.addPort', groupContextValue('shares', 'running')), 'not on another group');
  assert.ok(inline('devvm.removeShare', 'share.ro.running') && inline('devvm.removeShare', 'share.rw.stopped'));
  assert.ok(!shownOn('devvm.removeShare', 'share.rw.suspended'), 'the helper keeps a suspended VM\'s shares (OPERATIONS.unshare)');
  assert.ok(shownOn('devvm.removePort', 'port.static.udp.inactive.stopped'));
  assert.ok(!shownOn('devvm.removePort', 'port.static.tcp.active.stopping'));
  assert.ok(!shownOn('devvm.removePort', 'port.auto.tcp.active.running'), 'automatic forwards follow the guest');
  assert.ok(!shownOn('devvm.removePort', 'port.ssh'));
  assert.ok(inline('devvm.openPort', 'port.auto.tcp.active.running'));
  assert.ok(!shownOn('devvm.openPort', 'port.auto.tcp.inactive.running'), 'nothing to open while not forwarded');
  assert.ok(!shownOn('devvm.openPort', 'port.static.udp.active.running'), 'a browser speaks TCP');
  assert.ok(shownOn('devvm.copyPortAddress', 'port.static.tcp.inactive.stopped'));
  // The first share or forward: from the VM's own context menu (the groups show only with rows).
  assert.ok(shownOn('devvm.addShare', vmContextValue('stopped', false)));
  assert.ok(shownOn('devvm.addPort', vmContextValue('stopped', false)));
  assert.ok(!shownOn('devvm.addShare', vmContextValue('deleting', true)));
});

test('the palette says why no VM fits: one VM, the helper\'s refusal with its way out; several, each one\'s reason', () => {
  const rule = VM_COMMANDS['devvm.changeSize'];
  assert.equal(
    noCandidateMessage(rule, [{ name: 'web', state: 'running', ssh: true, display: false }]),
    'Dev VMs: cannot change VM "web": it is running (expected stopped; stop it first: devvm stop web)',
  );
  assert.match(noCandidateMessage(rule, [{ name: 'web', state: 'suspended', ssh: true, display: false }]), /it is suspended \(expected stopped; its saved state needs the machine it was saved from/);
  assert.equal(
    noCandidateMessage(rule, [
      { name: 'api', state: 'suspended', ssh: true, display: false },
      { name: 'web', state: 'running', ssh: true, display: false },
    ]),
    'Dev VMs: no VM is in a state for this (it needs stopped): api is suspended, web is running.',
  );
  assert.equal(noCandidateMessage(VM_COMMANDS['devvm.openSshTerminal'], [{ name: 'web', state: 'running', ssh: false, display: false }]), 'Dev VMs: no VM is in a state for this (it needs running, with SSH): web has SSH off.');
  assert.equal(noCandidateMessage(rule, []), 'Dev VMs: there are no VMs yet.');
});
