/**
 * The command table: every command package.json contributes has exactly one entry and
 * every entry is contributed; commands on one VM take their states from menus.ts (so from
 * the lifecycle table); the one registration loop and the one error handler turn a thrown
 * DevvmError into exactly one error message.
 */
import { fake } from './extension-vscode-fake';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createMessageConnection, SocketMessageReader, SocketMessageWriter } from 'vscode-jsonrpc/node';
import { Cancelled, errorReporter, onVm, plain, registerCommands, SHOW_HELPER_LOG, SHOW_VM_LOGS, type CommandEntry, type Cx, type ErrorUi } from '../../src/extension/commands/command';
import { COMMANDS } from '../../src/extension/commands/index';
import { activate } from '../../src/extension/extension';
import { isRuleCommand, ITEM_COMMANDS, PALETTE_COMMANDS, VM_COMMANDS, vmRule, type RuleCommand } from '../../src/extension/menus';
import { DevvmError } from '../../src/shared/errors';
import { helperSocket } from '../../src/shared/paths';
import { Rpc } from '../../src/shared/rpc';
import type { VmSummary } from '../../src/shared/types';

const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
  contributes: { commands: { command: string }[]; menus: Record<string, { command: string }[]>; viewsWelcome: { contents: string }[] };
};

test('every contributed command has exactly one table entry, and every entry is contributed', () => {
  const ids = COMMANDS.map((c) => c.id);
  const dupes = ids.filter((id, i) => ids.indexOf(id) !== i);
  assert.deepEqual(dupes, [], 'ids in the table twice');
  const contributed = pkg.contributes.commands.map((c) => c.command);
  assert.deepEqual([...ids].sort(), [...contributed].sort());
});

test('every command a menu, welcome view or walkthrough names is in the table', () => {
  const ids = new Set(COMMANDS.map((c) => c.id));
  for (const [menu, entries] of Object.entries(pkg.contributes.menus)) for (const e of entries) assert.ok(ids.has(e.command), `${e.command} in ${menu}`);
  const text = readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8');
  for (const m of text.matchAll(/command:(devvm\.[A-Za-z]+)/g)) assert.ok(ids.has(m[1]!), `${m[1]} linked from a welcome view or walkthrough`);
});

test('commands on one VM take their states from menus.ts, and only those do', () => {
  const rules = [...Object.keys(VM_COMMANDS), ...Object.keys(ITEM_COMMANDS), ...Object.keys(PALETTE_COMMANDS)];
  for (const e of COMMANDS) {
    if (e.vm) {
      assert.ok(isRuleCommand(e.id), `${e.id} picks a VM but has no rule in menus.ts`);
      assert.deepEqual(e.vm.rule, vmRule(e.id as RuleCommand), e.id);
      assert.ok(e.vm.placeHolder.length > 0, `${e.id} quick pick placeholder`);
    } else {
      assert.ok(!rules.includes(e.id), `${e.id} has a VM rule but does not pick a VM`);
    }
  }
});

// ---- the loop and the error handler, with fakes --------------------------------------

function fakeUi() {
  const shown: { message: string; actions: string[] }[] = [];
  const logged: string[] = [];
  const opened: string[] = [];
  let click: string | undefined;
  const ui: ErrorUi = {
    showError: async (message, ...actions) => {
      shown.push({ message, actions });
      return click;
    },
    log: (level, m) => logged.push(`${level}: ${m}`),
    showHelperLog: () => opened.push('helper'),
    showVmLogs: (vm) => opened.push(`vm:${vm}`),
  };
  return { ui, shown, logged, opened, clickNext: (a: string) => (click = a) };
}

const web: VmSummary = { name: 'web', state: 'running', image: 'debian-12', user: 'al', sshHost: 'devvm-web', sshPort: 2222, cpus: 2, memoryMiB: 2048 };

/** `picked`: the VM the quick pick returns (null: the user dismissed it). */
function fakeCx(report: Cx['report'], picked: VmSummary | null = web): Cx {
  return { report, pickVm: async () => picked ?? undefined } as unknown as Cx;
}

function register(table: readonly CommandEntry[], cx: Cx) {
  const handlers = new Map<string, (...args: unknown[]) => Promise<void>>();
  registerCommands(table, cx, (id, f) => {
    handlers.set(id, f);
    return { dispose: () => handlers.delete(id) };
  });
  return handlers;
}

const tick = () => new Promise((r) => setImmediate(r));

test('a thrown DevvmError becomes one error message: its one line and Show Helper Log', async () => {
  const f = fakeUi();
  const handlers = register([plain('devvm.doctor', () => Promise.reject(new DevvmError('missing-dependency', 'qemu-img is not installed', 'apt-get install qemu-utils')))], fakeCx(errorReporter(f.ui)));
  await handlers.get('devvm.doctor')!();
  await tick();
  assert.deepEqual(f.shown, [{ message: 'Dev VMs: qemu-img is not installed (apt-get install qemu-utils)', actions: [SHOW_HELPER_LOG] }]);
  assert.deepEqual(f.logged, ['error: qemu-img is not installed (apt-get install qemu-utils)']);
});

test('a VM command\'s error names the VM and offers its logs too; the actions open them', async () => {
  const f = fakeUi();
  f.clickNext(SHOW_VM_LOGS);
  const handlers = register([onVm('devvm.suspend', 'VM to suspend', () => Promise.reject(new DevvmError('invalid-state', 'cannot suspend VM "web": it is stopped', 'start it first: devvm start web')))], fakeCx(errorReporter(f.ui)));
  await handlers.get('devvm.suspend')!('web');
  await tick();
  assert.equal(f.shown.length, 1);
  assert.deepEqual(f.shown[0]!.actions, [SHOW_VM_LOGS, SHOW_HELPER_LOG]);
  assert.deepEqual(f.logged, ['error: web: cannot suspend VM "web": it is stopped (start it first: devvm start web)']);
  assert.deepEqual(f.opened, ['vm:web']);
});

test('never twice: an error reported on its way up (a background step, a nested command) is shown once', async () => {
  const f = fakeUi();
  const report = errorReporter(f.ui);
  const err = new DevvmError('timeout', 'SSH did not answer', 'see the serial log');
  const handlers = register(
    [
      plain('devvm.create', async () => {
        try {
          throw err;
        } catch (e) {
          report(e, 'web'); // e.g. afterCreate's own catch
          throw e;
        }
      }),
    ],
    fakeCx(report),
  );
  await handlers.get('devvm.create')!();
  report(err);
  await tick();
  assert.equal(f.shown.length, 1);
});

test('anything else thrown is shown as one line too; a dialog the user backed out of is not an error', async () => {
  const f = fakeUi();
  const handlers = register(
    [plain('devvm.refresh', () => Promise.reject(new Error('boom\nwith a second line'))), plain('devvm.connect', () => Promise.reject(new Cancelled('connect cancelled')))],
    fakeCx(errorReporter(f.ui)),
  );
  await handlers.get('devvm.refresh')!();
  await handlers.get('devvm.connect')!();
  await tick();
  assert.deepEqual(f.shown.map((s) => s.message), ['Dev VMs: boom with a second line']);
  assert.ok(f.logged.includes('info: connect cancelled'));
});

test('a VM command runs on the picked VM, and not at all when none is picked', async () => {
  const ran: string[] = [];
  const entry = onVm('devvm.start', 'VM to start', (_cx, s) => void ran.push(s.name));
  await register([entry], fakeCx(() => assert.fail('reported')))
    .get('devvm.start')!();
  await register([entry], fakeCx(() => assert.fail('reported'), null))
    .get('devvm.start')!();
  assert.deepEqual(ran, ['web']);
});

test('the whole table registers, each id once; a repeated id is refused', () => {
  const handlers = register(COMMANDS, fakeCx(() => {}));
  assert.equal(handlers.size, pkg.contributes.commands.length);
  assert.throws(() => register([plain('devvm.refresh', () => {}), plain('devvm.refresh', () => {})], fakeCx(() => {})), /twice/);
});

// ---- activate() with the fake vscode and a fake helper ------------------------------------

test('activate() registers every contributed command once, connects, and disposes cleanly', async () => {
  const home = mkdtempSync(path.join(os.tmpdir(), 'devvm-act-'));
  const asked: string[] = [];
  const server = net.createServer((sock) => {
    const c = createMessageConnection(new SocketMessageReader(sock), new SocketMessageWriter(sock));
    c.onRequest(Rpc.vmList.method, () => (asked.push('vm/list'), [web]));
    c.onRequest(Rpc.imageList.method, () => (asked.push('image/list'), []));
    c.listen();
  });
  await new Promise<void>((r) => server.listen(helperSocket(home), r));
  fake.settings.home = home;
  const subscriptions: { dispose(): unknown }[] = [];
  const state = new Map<string, unknown>();
  const context = {
    subscriptions,
    extensionPath: path.join(home, 'ext'),
    extensionUri: { toString: () => 'file:///ext' },
    globalState: { get: (k: string) => state.get(k), update: async (k: string, v: unknown) => void state.set(k, v) },
    extension: { packageJSON: pkg },
  };
  try {
    const api = activate(context as never);
    assert.ok(api.activationMs >= 0);
    assert.deepEqual([...fake.commands.keys()].sort(), pkg.contributes.commands.map((c) => c.command).sort());
    for (let i = 0; i < 100 && asked.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(asked.sort(), ['image/list', 'vm/list'], 'it lists VMs and images once connected');
    // A command whose VM is named but does not exist: one error message, nothing run.
    await fake.commands.get('devvm.stop')!('no-such-vm');
    assert.deepEqual(fake.errors, ['Dev VMs: no VM named "no-such-vm"']);
  } finally {
    for (const d of subscriptions) d.dispose();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(home, { recursive: true, force: true });
  }
  assert.equal(fake.commands.size, 0, 'every command is disposed with the context');
});
