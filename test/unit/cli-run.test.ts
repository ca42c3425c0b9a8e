/** The one error handler, the lifecycle check of resume, and what verbs print, without a helper. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import { run } from '../../src/cli/run';
import { cli, FakeSession } from './cli-fake';

const vm = (state: string) => ({ name: 'web', state, image: 'd', user: 'a', sshHost: 'devvm-web', sshPort: 2222, cpus: 1, memoryMiB: 256 });

test('a helper error: one line "devvm: <what> (<hint>)" on stderr, exit 1, nothing on stdout', async () => {
  const r = await cli(['info', 'ghost'], { 'vm/info': new DevvmError('not-found', 'no VM named "ghost"', 'see "devvm list"') });
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, 'devvm: no VM named "ghost" (see "devvm list")\n');
  assert.ok(r.session.closed, 'connection closed');
});

test('--json errors: {"error": {code, message}} on stdout, nothing on stderr; usage errors too (code "usage", exit 2)', async () => {
  const r = await cli(['info', 'ghost', '--json'], { 'vm/info': new DevvmError('not-found', 'no VM named "ghost"', 'see "devvm list"') });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, '');
  assert.deepEqual(JSON.parse(r.stdout), { error: { code: 'not-found', message: 'no VM named "ghost" (see "devvm list")' } });
  const u = await cli(['list', '--colour', '--json']);
  assert.equal(u.code, 2);
  assert.equal(u.stderr, '');
  assert.equal((JSON.parse(u.stdout) as { error: { code: string } }).error.code, 'usage');
});

test('a non-devvm failure (the helper went away) is still one line, exit 1', async () => {
  const r = await cli(['list'], { 'vm/list': () => { throw new Error('Connection got disposed.'); } });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'devvm: the devvm helper went away during the request (run the command again; the helper restarts on demand)\n');
});

test('resume: refused through the lifecycle table when the VM is not suspended, without calling start', async () => {
  for (const state of ['running', 'stopped', 'starting']) {
    const r = await cli(['resume', 'web'], { 'vm/list': [vm(state)] });
    assert.equal(r.code, 1, state);
    assert.match(r.stderr, new RegExp(`^devvm: cannot resume VM "web": it is ${state} \\(expected suspended; .*\\)\\n$`));
    assert.deepEqual(r.session.calls.map((c) => c.method), ['vm/list']);
  }
  const ok = await cli(['resume', 'web'], { 'vm/list': [vm('suspended')], 'vm/start': vm('running') });
  assert.equal(ok.code, 0);
  assert.deepEqual(ok.session.texts, ['web is running']);
});

test('--json prints the result; list --json keeps exactly the contract fields', async () => {
  const r = await cli(['list', '--json'], { 'vm/list': [{ ...vm('running'), error: 'x' }] });
  assert.deepEqual(r.session.printed, [[{ name: 'web', state: 'running', image: 'd', user: 'a', sshHost: 'devvm-web', sshPort: 2222 }]]);
  assert.equal(r.session.json, true);
});

test('disk export prints the URI; with --tcp also the PSK file and the identity', async () => {
  const unix = await cli(['disk', 'export', 'web'], { 'disk/export': { vm: 'web', layer: 'l1', uri: 'nbd+unix:///web?socket=/h/vms/web/nbd.sock' } });
  assert.match(unix.session.texts[0]!, /^serving layer l1 of web read-only at nbd\+unix:\/\/\/web\?socket=\/h\/vms\/web\/nbd\.sock \(try: qemu-img info /);
  const tcp = await cli(['disk', 'export', 'web', '--tcp'], { 'disk/export': { vm: 'web', layer: 'l1', uri: 'nbd://127.0.0.1:10809/web', tls: { pskFile: '/h/vms/web/nbd.psk', identity: 'devvm' } } });
  const [first, second] = tcp.session.texts[0]!.split('\n');
  assert.match(first!, /at nbd:\/\/127\.0\.0\.1:10809\/web; stop with: devvm disk unexport web$/);
  assert.match(second!, /identity devvm, key file \/h\/vms\/web\/nbd\.psk/);
});

test('ssh-config prints the ssh_config the helper reports (no path rebuilt from DEVVM_HOME)', async () => {
  const r = await cli(['ssh-config'], { 'helper/ping': { pid: 1, version: '0', home: '/h', startedAt: '', sshConfig: '/elsewhere/ssh_config' } });
  assert.equal(r.session.texts[0], '/elsewhere/ssh_config\nadd it to your ssh config with: devvm ssh-config --include');
});

test('doctor and layers print through shared/format', async () => {
  const d = await cli(['doctor'], { 'helper/doctor': { accelerator: { name: 'tcg', reason: 'r' }, nativeAddon: { loaded: false, detail: 'd' }, checks: [{ name: 'ssh', ok: false, detail: 'missing', fix: 'apt install openssh-client' }] } });
  assert.equal(d.session.texts[0], 'accelerator: tcg (r)\nnative addon: not loaded (d)\nFAIL ssh: missing -> apt install openssh-client');
  const l = await cli(['layers'], { 'layer/tree': [] });
  assert.equal(l.session.texts[0], 'no layers');
});

test('ssh hands back the exit code of ssh', async () => {
  const r = await cli(['ssh', 'web'], { 'vm/wake': { configFile: '/c', host: 'devvm-web', user: 'a', port: 1 } });
  assert.equal(r.code, 0);
});

test('helper stop: the helper exiting before its answer arrives is still "stopped"; a helper still there that fails is an error', async () => {
  const gone = new DevvmError('internal', 'the devvm helper went away during the request');
  const ok = await cli(['helper', 'stop'], { 'helper/shutdown': gone });
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(ok.session.texts, ['helper stopped']);
  // The fake's socket never closes here: the error is real.
  const s = new FakeSession({ 'helper/shutdown': gone });
  s.untilClosed = async () => ({ closed: new Promise<void>(() => {}) });
  let stderr = '';
  const code = await run(['helper', 'stop'], s, { stdout: () => {}, stderr: (t: string) => (stderr += t) });
  assert.equal(code, 1);
  assert.match(stderr, /went away/);
});
