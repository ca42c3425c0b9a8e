/**
 * Open Folder in Dev VM (src/extension/commands/openInVm.ts, manifestWatch.ts) with the
 * vscode fake and a fake up(): the exact Remote-SSH URI for a new VM, the Rebuild / Apply /
 * Open Anyway prompt when devvm.json changed, a provisioning failure through the one error
 * handler, Restricted Mode (asks for trust, runs nothing until the grant), and the question
 * when a window opens a folder with a devvm.json.
 */
import { fake, window } from './extension-vscode-fake';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { MessageConnection } from 'vscode-jsonrpc';
import { errorReporter, registerCommands, SHOW_HELPER_LOG, type Cx } from '../../src/extension/commands/command';
import { INCLUDE_CONSENT } from '../../src/extension/commands/connect';
import { CHANGED, MANAGE_TRUST, manifestFolder, OPEN_IN_VM, openInVmCommands, PROVISIONING_CHANNEL, SHOW_OUTPUT, type UpDeps } from '../../src/extension/commands/openInVm';
import { DONT_ASK_KEY, OFFER, offerOpenInVm } from '../../src/extension/manifestWatch';
import { REMOTE_SSH_OPEN_VSX } from '../../src/extension/remote';
import { up as realUp, type UpOptions, type UpReporter, type UpResult } from '../../src/shared/devvmjson/up';
import { DevvmError } from '../../src/shared/errors';

const DIR = '/work/proj';
const tick = () => new Promise((r) => setImmediate(r));
const CONN = { fake: 'connection' } as unknown as MessageConnection;

interface Script {
  /** What each up() call does, in order (the last one repeats). */
  runs: ((report: UpReporter, opts: UpOptions) => Promise<UpResult>)[];
  /** Folders that have a devvm.json. */
  manifests?: string[];
}

const result = (over: Partial<UpResult> = {}): UpResult => ({ name: 'proj', created: true, guestPath: DIR, sshHost: 'devvm-proj', changed: [], ...over });

function setup(script: Script) {
  fake.reset();
  fake.installed.add(REMOTE_SSH_OPEN_VSX);
  fake.folders = [fake.folder(DIR)];
  const calls: UpOptions[] = [];
  const connections: number[] = [];
  const tokens: string[] = [];
  const deps: UpDeps = {
    findManifest: (dir) => ((script.manifests ?? [DIR]).includes(dir) ? `${dir}/devvm.json` : null),
    up: async (conn, opts, report) => {
      assert.equal(conn, CONN);
      assert.equal(opts.progressToken, 'tok', 'the helper progress token goes to up()');
      const { progressToken: _t, ...rest } = opts;
      calls.push(rest);
      await tick(); // the helper's progress arrives meanwhile
      return script.runs[Math.min(calls.length, script.runs.length) - 1]!(report, opts);
    },
  };
  const log: string[] = [];
  const opened: string[] = [];
  const workspaceState = new Map<string, unknown>();
  const subscriptions: { dispose(): unknown }[] = [];
  const cx = {
    context: {
      subscriptions,
      // The Include question is connect.ts's own (tested with Connect); here it was answered before.
      globalState: { get: (k: string) => (k === INCLUDE_CONSENT ? 'declined' : undefined), update: async () => {} },
      workspaceState: { get: (k: string) => workspaceState.get(k), update: async (k: string, v: unknown) => void workspaceState.set(k, v) },
    },
    client: {
      connection: async () => (connections.push(1), CONN),
      // The helper's progress for the token up() passes on: one message, then disposed.
      progressToken: (l: (p: { token: string; message: string }) => void) => {
        tokens.push('open');
        queueMicrotask(() => l({ token: 'tok', message: 'booting (helper)' }));
        return { token: 'tok', dispose: () => tokens.push('disposed') };
      },
      request: async () => assert.fail('no helper request expected'),
    },
    home: '/h',
    out: { info: (m: string) => log.push(`info: ${m}`), warn: (m: string) => log.push(`warn: ${m}`), error: (m: string) => log.push(`error: ${m}`) },
    report: errorReporter({
      showError: (m, ...actions) => window.showErrorMessage(m, ...actions),
      log: (level, m) => log.push(`${level}: ${m}`),
      showHelperLog: () => opened.push('helper log'),
      showVmLogs: (vm) => opened.push(`logs ${vm}`),
    }),
  } as unknown as Cx;
  const regs = registerCommands(openInVmCommands(deps), cx, (id, f) => {
    fake.commands.set(id, f);
    return { dispose: () => fake.commands.delete(id) };
  });
  const run = (arg?: unknown) => fake.commands.get(OPEN_IN_VM)!(arg) as Promise<void>;
  const openFolders = () => fake.executed.filter((e) => e.id === 'vscode.openFolder').map((e) => e.args);
  const channel = () => fake.channels.find((c) => c.name === PROVISIONING_CHANNEL);
  const dispose = () => {
    for (const d of [...regs, ...subscriptions]) d.dispose();
  };
  return { deps, cx, calls, connections, tokens, log, opened, workspaceState, run, openFolders, channel, dispose };
}

test('a new VM: up() with the folder (trusted), steps in the notification, output in its channel, then exactly ssh-remote+devvm-<name><guestPath>', async () => {
  const s = setup({
    runs: [
      async (report) => {
        report.step('creating VM proj');
        report.step('provisioning 1/1: setup.sh');
        report.output('\x1b[32mhello from setup.sh\x1b[0m\r\n');
        report.output('setup.sh: exit 0\n');
        return result();
      },
    ],
  });
  try {
    await s.run();
    assert.deepEqual(s.calls, [{ dir: DIR, trusted: true }]);
    assert.deepEqual(fake.progress, ['booting (helper)', 'creating VM proj', 'provisioning 1/1: setup.sh'], 'helper progress and up() steps');
    assert.deepEqual(s.tokens, ['open', 'disposed']);
    const ch = s.channel()!;
    assert.ok(ch.shown >= 1, 'the channel is shown when provisioning starts');
    assert.match(ch.text, /\n> provisioning 1\/1: setup.sh\nhello from setup.sh\nsetup.sh: exit 0\n/, 'output as it came, terminal escapes dropped');
    const opens = s.openFolders();
    assert.equal(opens.length, 1);
    const [uri, opts] = opens[0] as [{ scheme: string; authority: string; path: string }, unknown];
    assert.deepEqual({ scheme: uri.scheme, authority: uri.authority, path: uri.path }, { scheme: 'vscode-remote', authority: 'ssh-remote+devvm-proj', path: DIR });
    assert.deepEqual(opts, { forceNewWindow: false });
    assert.ok(s.log.includes(`info: connect: requesting vscode-remote://ssh-remote+devvm-proj${DIR} (current window)`), s.log.join('\n'));
    assert.deepEqual(fake.errors, []);
  } finally {
    s.dispose();
  }
});

test('from the Explorer: a folder, or a .devvm/devvm.json (its folder is the one above); a folder without one is an error', async () => {
  const s = setup({ runs: [async () => result()], manifests: [DIR, `${DIR}/sub`] });
  try {
    await s.run(fake.fileUri(`${DIR}/sub`));
    await s.run(fake.fileUri(`${DIR}/.devvm/devvm.json`));
    assert.deepEqual(s.calls.map((c) => c.dir), [`${DIR}/sub`, DIR]);
    await s.run(fake.fileUri('/elsewhere'));
    await tick();
    assert.equal(s.calls.length, 2);
    assert.match(fake.messages.find((m) => m.kind === 'error')!.message, /^Dev VMs: no devvm\.json in \/elsewhere \(add one/);
    assert.equal(manifestFolder('/a/b/devvm.json'), '/a/b');
  } finally {
    s.dispose();
  }
});

test('no folder with a devvm.json in the window: says so and runs nothing', async () => {
  const s = setup({ runs: [async () => result()], manifests: [] });
  try {
    await s.run();
    await tick();
    assert.match(fake.errors[0] ?? '', /no devvm\.json in \/work\/proj/);
    fake.folders = undefined;
    await s.run();
    assert.ok(fake.messages.some((m) => m.kind === 'info' && /open a folder that has a devvm\.json first/.test(m.message)));
    assert.deepEqual(s.calls, []);
    assert.deepEqual(s.connections, []);
  } finally {
    s.dispose();
  }
});

test('devvm.json changed: "changed since VM proj was made (fields)", then up() again with rebuild or apply, or open as is', async () => {
  for (const [choice, second] of [
    [CHANGED.rebuild, { rebuild: true }],
    [CHANGED.apply, { apply: true }],
    [CHANGED.open, undefined],
  ] as const) {
    const s = setup({ runs: [async () => result({ created: false, changed: ['cpus', 'ports'] }), async () => result({ name: 'proj', created: choice === CHANGED.rebuild })] });
    const asked: { message: string; actions: string[] }[] = [];
    fake.answer = (message, actions) => (/changed since/.test(message) ? (asked.push({ message, actions }), choice) : undefined);
    try {
      await s.run();
      assert.deepEqual(asked, [{ message: 'devvm.json changed since VM proj was made (cpus, ports)', actions: ['Rebuild', 'Apply', 'Open Anyway'] }]);
      assert.equal(fake.messages.find((m) => /changed since/.test(m.message))!.kind, 'info', 'a notification, not a modal dialog');
      assert.deepEqual(s.calls, second ? [{ dir: DIR, trusted: true }, { dir: DIR, trusted: true, ...second }] : [{ dir: DIR, trusted: true }], choice);
      assert.equal(s.openFolders().length, 1, `${choice} opens the folder`);
      assert.deepEqual(fake.errors, []);
    } finally {
      s.dispose();
    }
  }
  // Dismissed: nothing more is done, nothing is opened.
  const s = setup({ runs: [async () => result({ changed: ['image'] })] });
  try {
    await s.run();
    assert.equal(s.calls.length, 1);
    assert.equal(s.openFolders().length, 0);
    assert.deepEqual(fake.errors, []);
  } finally {
    s.dispose();
  }
});

test('a provisioning failure: one error naming the step and the exit code, with Show Output; nothing is opened', async () => {
  const s = setup({
    runs: [
      async (report) => {
        report.step('provisioning 2/3: setup.sh');
        report.output('E: Unable to locate package nope\n');
        throw new DevvmError('provisioning-failed', 'exit code 100 at line 4', 'the VM is left running: devvm ssh proj');
      },
    ],
  });
  fake.answer = (_m, actions) => (actions.includes(SHOW_OUTPUT) ? SHOW_OUTPUT : undefined);
  try {
    await s.run();
    await tick();
    const errors = fake.messages.filter((m) => m.kind === 'error');
    assert.deepEqual(errors, [{ kind: 'error', message: 'Dev VMs: provisioning 2/3: setup.sh: exit code 100 at line 4 (the VM is left running: devvm ssh proj)', actions: [SHOW_OUTPUT, SHOW_HELPER_LOG] }]);
    const ch = s.channel()!;
    assert.equal(ch.shown, 2, 'shown when provisioning started, and again by Show Output');
    assert.match(ch.text, /E: Unable to locate package nope\nfailed: provisioning 2\/3: setup.sh: exit code 100 at line 4/);
    assert.equal(s.openFolders().length, 0);
  } finally {
    s.dispose();
  }
});

test('a second run while the folder is being brought up does not start another up()', async () => {
  const pending: (() => void)[] = [];
  const s = setup({ runs: [() => new Promise<UpResult>((r) => pending.push(() => r(result())))] });
  const finish = async (run: Promise<void>) => {
    while (!pending.length) await tick();
    pending.shift()!();
    await run;
  };
  try {
    const first = s.run();
    while (!pending.length) await tick();
    await s.run();
    assert.ok(fake.messages.some((m) => /already being opened/.test(m.message)));
    await finish(first);
    assert.equal(s.calls.length, 1);
    await finish(s.run());
    assert.equal(s.calls.length, 2, 'free again afterwards');
  } finally {
    s.dispose();
  }
});

test('made without shares (the helper cannot yet): says so, and still opens; a rebuild names the VM it replaced', async () => {
  const s = setup({ runs: [async () => result({ unsupported: ['shares', 'ports'], replaced: 'proj-old' })] });
  try {
    await s.run();
    assert.ok(fake.messages.some((m) => m.kind === 'warning' && m.message === `Dev VMs: proj was made without shares and ports (the helper cannot set them up yet), so ${DIR} may be missing in the guest.`));
    assert.match(s.channel()!.text, /replaces proj-old, deleted/);
    assert.equal(s.openFolders().length, 1);
  } finally {
    s.dispose();
  }
});

test('other up() failures keep their message, and offer the output too', async () => {
  const s = setup({ runs: [async () => Promise.reject(new DevvmError('invalid-argument', 'devvm.json: cpus: must be an integer from 1 to 64'))] });
  try {
    await s.run();
    await tick();
    assert.deepEqual(fake.messages.filter((m) => m.kind === 'error').map((m) => [m.message, m.actions]), [['Dev VMs: devvm.json: cpus: must be an integer from 1 to 64', [SHOW_OUTPUT, SHOW_HELPER_LOG]]]);
  } finally {
    s.dispose();
  }
});

test('Restricted Mode: explains, offers Manage Workspace Trust, runs nothing; continues only after the grant', async () => {
  const s = setup({ runs: [async () => result()] });
  fake.trusted = false;
  try {
    // Dismissed: nothing runs, nothing waits.
    await s.run();
    const ask = fake.messages.find((m) => m.actions.includes(MANAGE_TRUST))!;
    assert.match(ask.message, /runs provisioning scripts from this folder.*Restricted Mode.*Trust the folder first/);
    assert.deepEqual(s.calls, []);
    assert.deepEqual(s.connections, [], 'not even a helper connection');
    assert.equal(fake.trustWaiters, 0);
    assert.equal(s.openFolders().length, 0);

    // Manage Workspace Trust: the trust editor opens; still nothing runs until trust is granted.
    fake.answer = (_m, actions) => (actions.includes(MANAGE_TRUST) ? MANAGE_TRUST : undefined);
    const pending = s.run();
    for (let i = 0; i < 5; i++) await tick();
    assert.ok(fake.executed.some((e) => e.id === 'workbench.trust.manage'));
    assert.deepEqual(s.calls, []);
    assert.deepEqual(s.connections, []);
    assert.equal(fake.trustWaiters, 1);
    fake.grantTrust();
    await pending;
    assert.deepEqual(s.calls, [{ dir: DIR, trusted: true }]);
    assert.equal(s.openFolders().length, 1);
    assert.equal(fake.trustWaiters, 0);
    assert.deepEqual(fake.errors, []);
  } finally {
    s.dispose();
  }
});

test('Restricted Mode: a second run replaces the first one waiting for trust (one run after the grant)', async () => {
  const s = setup({ runs: [async () => result()] });
  fake.trusted = false;
  fake.answer = (_m, actions) => (actions.includes(MANAGE_TRUST) ? MANAGE_TRUST : undefined);
  try {
    const first = s.run();
    for (let i = 0; i < 5; i++) await tick();
    const second = s.run();
    for (let i = 0; i < 5; i++) await tick();
    assert.equal(fake.trustWaiters, 1);
    await first; // ended quietly (logged, no error)
    fake.grantTrust();
    await second;
    assert.equal(s.calls.length, 1);
    assert.deepEqual(fake.errors, []);
    assert.ok(s.log.some((l) => /superseded while waiting for trust/.test(l)));
  } finally {
    s.dispose();
  }
});

test('Restricted Mode: trusted some other way before Manage Workspace Trust is clicked: goes on without waiting', async () => {
  const s = setup({ runs: [async () => result()] });
  fake.trusted = false;
  fake.answer = (_m, actions) => (actions.includes(MANAGE_TRUST) ? ((fake.trusted = true), MANAGE_TRUST) : undefined);
  try {
    await s.run();
    assert.equal(s.calls.length, 1);
    assert.equal(fake.trustWaiters, 0);
  } finally {
    s.dispose();
  }
});

test('the second layer: up() itself refuses an untrusted folder, before it reads devvm.json or asks the helper', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-untrusted-'));
  // A file that would fail to parse: refused for trust, not for the file.
  writeFileSync(path.join(dir, 'devvm.json'), '{ "provision": [{ "run": "touch /tmp/pwned" }], nonsense');
  const conn = new Proxy({}, { get: () => assert.fail('up() used the helper connection for an untrusted folder') }) as MessageConnection;
  const steps: string[] = [];
  try {
    await assert.rejects(realUp(conn, { dir, trusted: false }, { step: (m) => steps.push(m), output: (m) => steps.push(m) }), (e: unknown) => {
      assert.ok(e instanceof DevvmError, String(e));
      assert.match(e.message, /not trusted/);
      return true;
    });
    assert.deepEqual(steps, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a window opening a folder with a devvm.json asks once: Open in Dev VM runs the command; Don\'t Ask Again is remembered', async () => {
  const s = setup({ runs: [async () => result()] });
  try {
    fake.answer = (m, actions) => (/declares a dev VM/.test(m) ? (assert.deepEqual(actions, [OFFER.open, OFFER.never]), OFFER.open) : undefined);
    await offerOpenInVm(s.cx, s.deps);
    assert.deepEqual(fake.messages.filter((m) => /declares a dev VM/.test(m.message)).map((m) => m.message), ['proj declares a dev VM (devvm.json). Open the folder in it?']);
    assert.equal(fake.executed.find((e) => e.id === OPEN_IN_VM)?.args.length, 1, 'the folder is passed to the command');
    assert.deepEqual(s.calls, [{ dir: DIR, trusted: true }]);
    assert.equal(s.openFolders().length, 1);

    fake.messages.length = 0;
    fake.answer = (m) => (/declares a dev VM/.test(m) ? OFFER.never : undefined);
    await offerOpenInVm(s.cx, s.deps);
    assert.deepEqual(s.workspaceState.get(DONT_ASK_KEY), [DIR]);
    assert.equal(s.calls.length, 1, 'nothing run');
    fake.messages.length = 0;
    await offerOpenInVm(s.cx, s.deps);
    assert.deepEqual(fake.messages, [], 'not asked again for this folder');

    // A folder without a devvm.json, or a remote window: no question.
    s.workspaceState.clear();
    await offerOpenInVm(s.cx, { findManifest: () => null });
    fake.folders = [{ name: 'r', uri: { scheme: 'vscode-remote', path: DIR, fsPath: DIR, toString: () => 'vscode-remote://x' + DIR }, index: 0 }];
    await offerOpenInVm(s.cx, s.deps);
    assert.deepEqual(fake.messages, []);
  } finally {
    s.dispose();
  }
});

test('the question in Restricted Mode: Open in Dev VM leads to the trust request, not to up()', async () => {
  const s = setup({ runs: [async () => result()] });
  fake.trusted = false;
  fake.answer = (m) => (/declares a dev VM/.test(m) ? OFFER.open : undefined);
  try {
    await offerOpenInVm(s.cx, s.deps);
    assert.ok(fake.messages.some((m) => m.actions.includes(MANAGE_TRUST)));
    assert.deepEqual(s.calls, []);
  } finally {
    s.dispose();
  }
});
