/**
 * vm/provision's runner (src/helper/vm/guestrun.ts) with a stand-in `ssh` first on PATH
 * that runs the program with the host's bash, as the guest's would: labels, output as it
 * comes, the remote command words, exit codes and lines, and create steps recorded once.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { provision } from '../../src/helper/vm/guestrun';
import { Params } from '../../src/shared/rpc';
import type { VmContext } from '../../src/helper/vm/context';
import type { VmConfig } from '../../src/helper/vmconfig';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-guestrun-'));
const argvLog = path.join(tmp, 'ssh-argv');
let savedPath: string | undefined;

before(() => {
  const bin = path.join(tmp, 'bin');
  mkdirSync(bin);
  // Records its arguments, then does what sshd's shell would with the remote command: run bash on stdin.
  writeFileSync(path.join(bin, 'ssh'), `#!/bin/bash\nprintf '%s\\n' "$*" >> ${JSON.stringify(argvLog)}\nexec bash -s\n`);
  chmodSync(path.join(bin, 'ssh'), 0o755);
  savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${process.env.PATH}`;
});

after(() => {
  process.env.PATH = savedPath;
  rmSync(tmp, { recursive: true, force: true });
});

function fakeCtx(state = 'running', cfg: Partial<VmConfig> = {}) {
  let config = { name: 'web', ssh: true, user: 'dev', origin: { dir: '/src', manifestHash: 'h' }, ...cfg } as VmConfig;
  const changed: string[] = [];
  const ctx = {
    home: { sshConfig: path.join(tmp, 'ssh_config') },
    store: { read: () => config, update: (_n: string, f: (c: VmConfig) => VmConfig) => (config = f(config)) },
    state: () => state,
    changed: (n: string) => changed.push(n),
  } as unknown as VmContext;
  return { ctx, config: () => config, changed };
}

const step = (label: string, script: string, as: 'root' | 'user' = 'user') => ({ label, as, script });

test('steps run in order, output streams, create steps are recorded once all ran', async () => {
  rmSync(argvLog, { force: true });
  const { ctx, config, changed } = fakeCtx();
  const out: string[] = [];
  const progress: string[] = [];
  const r = await provision(ctx, { name: 'web', steps: [step('setup.sh', 'echo "one $A"', 'root'), step('provision[1]', 'echo two')], env: { A: "it's" }, markCreateDone: true }, (m) => progress.push(m), (t) => out.push(t));
  assert.deepEqual(r.steps.map((s) => [s.label, s.exitCode]), [['setup.sh', 0], ['provision[1]', 0]]);
  const text = out.join('');
  assert.match(text, /^==> setup\.sh \(as root\)\none it's\n<== setup\.sh: exit code 0 \([\d.]+ s\)\n==> provision\[1\] \(as dev\)\ntwo\n<== provision\[1\]: exit code 0/);
  assert.deepEqual(progress.slice(0, 2), ['provisioning 1/2: setup.sh', 'provisioning 2/2: provision[1]']);
  assert.equal(config().origin?.createDone, true);
  assert.deepEqual(changed, ['web']);
  // Constant remote words only: the script and env never reach ssh's command line.
  const argv = readFileSync(argvLog, 'utf8').trim().split('\n');
  assert.ok(argv[0]!.endsWith('devvm-web -- sudo -n -H bash -s'), argv[0]);
  assert.ok(argv[1]!.endsWith('devvm-web -- bash -s'), argv[1]);
  assert.ok(!argv.join('\n').includes("it's"));
  assert.ok(argv[0]!.includes('-o ProxyCommand=none') && argv[0]!.includes('-o BatchMode=yes'));
});

test('a failing step stops the sequence: its label, exit code and line; later steps do not run, nothing is recorded', async () => {
  const { ctx, config } = fakeCtx();
  const out: string[] = [];
  await assert.rejects(
    provision(ctx, { name: 'web', steps: [step('ok', 'true'), step('scripts/build.sh', "echo before\n\nsh -c 'exit 3'\necho after"), step('never', 'echo never')], markCreateDone: true }, () => {}, (t) => out.push(t)),
    (e: Error & { code?: string; hint?: string }) => {
      assert.equal(e.message, "scripts/build.sh failed with exit code 3 at line 3: sh -c 'exit 3'");
      assert.equal(e.code, 'provisioning-failed');
      assert.equal(e.hint, 'the VM is left running; look with: devvm ssh web');
      return true;
    },
  );
  const text = out.join('');
  assert.match(text, /before\n/);
  assert.match(text, /<== scripts\/build\.sh: exit code 3\n/);
  assert.doesNotMatch(text, /after|never/);
  assert.equal(config().origin?.createDone, undefined);
});

test('files are copied in with the step ($DEVVM_FILES)', async () => {
  const files = path.join(tmp, 'files');
  mkdirSync(files);
  writeFileSync(path.join(files, '.vimrc'), 'set nu\n');
  const { ctx } = fakeCtx();
  const out: string[] = [];
  await provision(ctx, { name: 'web', steps: [{ ...step('dotfiles', 'cat "$DEVVM_FILES/.vimrc"'), files }] }, () => {}, (t) => out.push(t));
  assert.match(out.join(''), /set nu\n/);
});

test('a VM that is not running, or has no SSH, is refused before anything runs', async () => {
  rmSync(argvLog, { force: true });
  await assert.rejects(provision(fakeCtx('stopped').ctx, { name: 'web', steps: [step('a', 'true')] }, () => {}, () => {}), /VM "web" is stopped$/);
  await assert.rejects(provision(fakeCtx('running', { ssh: false }).ctx, { name: 'web', steps: [step('a', 'true')] }, () => {}, () => {}), /SSH is disabled/);
  assert.throws(() => readFileSync(argvLog), /ENOENT/);
});

test('vm/provision and the origin field are checked before a handler runs', () => {
  const ok = Params.provision.parse({ name: 'web', steps: [{ label: 'a', as: 'root', script: 'true' }], env: { A: 'x' }, cwd: '/src', markCreateDone: true }, 'params');
  assert.deepEqual(ok.env, { A: 'x' });
  assert.throws(() => Params.provision.parse({ name: 'web', steps: [], env: { 'A;B': 'x' } }, 'params'), /env has an invalid key "A;B"/);
  assert.throws(() => Params.provision.parse({ name: 'web', steps: [{ label: 'a', as: 'admin', script: 'x' }] }, 'params'), /as must be one of root, user/);
  assert.throws(() => Params.provision.parse({ name: 'web', steps: [], cwd: 'rel' }, 'params'), /not an absolute path/);
  assert.throws(() => Params.provision.parse({ name: 'web', steps: [{ label: 'a', as: 'user', script: 'x', files: 'dots' }] }, 'params'), /not an absolute path/);
  assert.throws(() => Params.create.parse({ name: 'web', image: 'debian-12', user: 'dev', origin: { dir: 'rel', manifestHash: 'h' } }, 'params'), /folder "rel" is not an absolute path/);
  assert.throws(() => Params.set.parse({ name: 'web', origin: { dir: '/a', manifestHash: 'h', fields: { 'bad key': 'x' } } }, 'params'), /fields has an invalid key/);
  assert.deepEqual(Params.set.parse({ name: 'web', origin: { dir: '/a', manifestHash: 'h', fields: { 'provision:create': 'x' }, createDone: true } }, 'params').origin, { dir: '/a', manifestHash: 'h', fields: { 'provision:create': 'x' }, createDone: true });
});
