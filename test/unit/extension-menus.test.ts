/**
 * Menu enablement: the `when` clauses in package.json must enable each VM command in
 * exactly the states src/extension/menus.ts says (which the palette's quick picks use).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { appliesTo, VM_COMMANDS, vmContextValue, type VmCommand } from '../../src/extension/menus';
import { VM_STATES } from '../../src/shared/types';

interface MenuEntry {
  command: string;
  when?: string;
  group?: string;
}
const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
  contributes: { commands: { command: string }[]; menus: Record<string, MenuEntry[]> };
  activationEvents: string[];
  capabilities: { untrustedWorkspaces: { supported: boolean } };
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

const contexts = VM_STATES.flatMap((state) => [true, false].map((ssh) => ({ state, ssh, value: vmContextValue(state, ssh) })));

test('every VM command is contributed and has a context-menu entry', () => {
  const contributed = new Set(pkg.contributes.commands.map((c) => c.command));
  const inMenu = new Set(pkg.contributes.menus['view/item/context']!.filter((e) => !e.group?.startsWith('inline')).map((e) => e.command));
  for (const c of Object.keys(VM_COMMANDS)) {
    assert.ok(contributed.has(c), `${c} not in contributes.commands`);
    assert.ok(inMenu.has(c), `${c} not in the VM context menu`);
  }
});

test('view/item/context when clauses enable VM commands in exactly the states of the table', () => {
  for (const entry of pkg.contributes.menus['view/item/context']!) {
    if (!(entry.command in VM_COMMANDS)) continue;
    for (const c of contexts) {
      const shown = evaluate(entry.when ?? 'true', { view: 'devvm.vms', viewItem: c.value });
      assert.equal(shown, appliesTo(entry.command as VmCommand, c.state, c.ssh), `${entry.command} (${entry.group}) for ${c.value}`);
    }
    // Never on other kinds of nodes.
    for (const other of ['group.layers', 'layer.base.shared', 'note', 'port.ssh']) {
      assert.equal(evaluate(entry.when!, { view: 'devvm.vms', viewItem: other }), false, `${entry.command} on ${other}`);
    }
  }
});

test('state rules: the obvious cases', () => {
  assert.ok(appliesTo('devvm.start', 'stopped', true));
  assert.ok(!appliesTo('devvm.start', 'running', true));
  assert.ok(appliesTo('devvm.stop', 'running', false));
  assert.ok(!appliesTo('devvm.connect', 'running', false), 'connect needs SSH');
  assert.ok(appliesTo('devvm.connect', 'stopped', true), 'connect starts a stopped VM');
  assert.ok(appliesTo('devvm.openSerial', 'running', false), 'the serial console works without SSH');
  assert.ok(!appliesTo('devvm.delete', 'starting', true));
  assert.ok(!appliesTo('devvm.showLogs', 'creating', true));
});

test('image delete only for unused images', () => {
  const entries = pkg.contributes.menus['view/item/context']!.filter((e) => e.command === 'devvm.deleteImage');
  assert.ok(entries.length > 0);
  for (const e of entries) {
    assert.equal(evaluate(e.when!, { view: 'devvm.images', viewItem: 'image.unused' }), true);
    assert.equal(evaluate(e.when!, { view: 'devvm.images', viewItem: 'image.inuse' }), false);
  }
});

test('lazy activation and Restricted Mode support', () => {
  assert.ok(!pkg.activationEvents.includes('*') && !pkg.activationEvents.includes('onStartupFinished'));
  assert.equal(pkg.capabilities.untrustedWorkspaces.supported, true);
});
