/** up() and down() against a fake helper connection: which requests, with what, in what order. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { MessageConnection } from 'vscode-jsonrpc';
import { ResponseError } from 'vscode-jsonrpc';
import { fingerprint } from '../../src/shared/devvmjson/changes';
import { parseManifest } from '../../src/shared/devvmjson/manifest';
import { makePlan } from '../../src/shared/devvmjson/plan';
import { down, findManifest, up, type UpReporter } from '../../src/shared/devvmjson/up';
import { RPC_ERROR } from '../../src/shared/rpc';
import type { VmOrigin, VmSummary } from '../../src/shared/types';

const root = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'devvm-up-')));
const dir = path.join(root, 'Web App');
mkdirSync(path.join(root, 'dots'), { recursive: true });
mkdirSync(dir);
after(() => rmSync(root, { recursive: true, force: true }));

const FILE = `{
  "cpus": 2,
  "user": "dev",
  "ports": [{ "guestPort": 8000, "hostPort": 18000 }],
  "env": { "A": "1" },
  "provision": [{ "when": "create", "as": "root", "run": "echo root" }, { "when": "start", "run": "echo start" }],
  "dotfiles": "../dots"
}`;
writeFileSync(path.join(dir, 'devvm.json'), FILE);

interface Call {
  method: string;
  params: Record<string, unknown>;
}

/** A helper connection that answers from `answers` (method -> value or function; a DevvmError-like object rejects). */
function fakeConn(answers: Record<string, unknown>) {
  const calls: Call[] = [];
  const handlers = new Map<string, (p: unknown) => void>();
  const conn = {
    onNotification(type: { method: string }, h: (p: unknown) => void) {
      handlers.set(type.method, h);
      return { dispose: () => handlers.delete(type.method) };
    },
    async sendRequest(type: { method: string }, params?: Record<string, unknown>) {
      calls.push({ method: type.method, params: params ?? {} });
      const a = answers[type.method];
      const r = typeof a === 'function' ? (a as (p: unknown, notify: typeof handlers) => unknown)(params, handlers) : a;
      if (r instanceof ResponseError) throw r;
      return r;
    },
  };
  return { conn: conn as unknown as MessageConnection, calls };
}

const rpcError = (code: string, message: string) => new ResponseError(RPC_ERROR, message, { code });

function reporter() {
  const steps: string[] = [];
  const output: string[] = [];
  const r: UpReporter = { step: (m) => steps.push(m), output: (t) => output.push(t) };
  return { r, steps, output };
}

const summary = (name: string, state: VmSummary['state'], origin?: VmOrigin): VmSummary => ({ name, state, image: 'debian-12', user: 'dev', sshHost: `devvm-${name}`, sshPort: 2222, cpus: 2, memoryMiB: 2048, ...(origin ? { origin } : {}) });
const currentOrigin = (over: Partial<VmOrigin> = {}): VmOrigin => ({ dir, ...fingerprint(makePlan(parseManifest(FILE, path.join(dir, 'devvm.json')), dir)), ...over });

test('an untrusted folder is refused before anything is read or sent', async () => {
  const { conn, calls } = fakeConn({});
  await assert.rejects(up(conn, { dir, trusted: false }, reporter().r), /is not trusted: its devvm\.json runs scripts in a VM/);
  assert.deepEqual(calls, []);
});

test('the first up creates the VM from the file, then runs the create steps and dotfiles once, then the start steps', async () => {
  const { conn, calls } = fakeConn({
    'vm/list': [summary('other', 'running')],
    'vm/create': {},
    'vm/start': {},
    'vm/provision': (p: { progressToken: string }, n: Map<string, (x: unknown) => void>) => {
      n.get('output')?.({ token: p.progressToken, text: 'hello from the guest\n' });
      n.get('output')?.({ token: 'another request', text: 'not ours\n' });
      return { steps: [] };
    },
  });
  const rep = reporter();
  const r = await up(conn, { dir, trusted: true, progressToken: 'tok' }, rep.r);
  assert.deepEqual(r, { name: 'web-app', created: true, guestPath: dir, sshHost: 'devvm-web-app', changed: [] });
  assert.deepEqual(calls.map((c) => c.method), ['vm/list', 'vm/create', 'vm/start', 'vm/provision', 'vm/provision']);
  const create = calls[1]!.params;
  assert.equal(create.name, 'web-app');
  assert.equal(create.image, 'debian-12');
  assert.equal(create.cpus, 2);
  assert.equal(create.progressToken, 'tok');
  assert.deepEqual(create.shares, [{ hostPath: dir, guestPath: dir, readOnly: false }]);
  assert.deepEqual(create.ports, [{ protocol: 'tcp', hostPort: 18000, guestPort: 8000, hostAddress: '127.0.0.1' }]);
  assert.deepEqual(create.origin, currentOrigin());
  assert.equal(create.start, true);
  // SSH is waited for by a start with a long timeout (first boots under TCG).
  assert.deepEqual(calls[2]!.params, { progressToken: 'tok', name: 'web-app', waitSsh: true, timeoutSec: 2700 });
  const [once, every] = [calls[3]!.params, calls[4]!.params];
  assert.deepEqual((once.steps as Array<{ label: string; as: string }>).map((s) => [s.label, s.as]), [['provision[0]', 'root'], ['dotfiles', 'user']]);
  assert.equal(once.markCreateDone, true);
  assert.deepEqual(once.env, { A: '1' });
  assert.equal(once.cwd, dir);
  assert.deepEqual((every.steps as Array<{ label: string }>).map((s) => s.label), ['provision[1]']);
  assert.equal(every.markCreateDone, undefined);
  assert.deepEqual(rep.output, ['hello from the guest\n', 'hello from the guest\n']);
});

test('a second up reuses the VM: it is started and only the start steps run', async () => {
  const { conn, calls } = fakeConn({ 'vm/list': [summary('web-app', 'suspended', currentOrigin({ createDone: true }))], 'vm/start': {}, 'vm/provision': { steps: [] } });
  const rep = reporter();
  const r = await up(conn, { dir, trusted: true }, rep.r);
  assert.equal(r.created, false);
  assert.deepEqual(r.changed, []);
  assert.deepEqual(calls.map((c) => c.method), ['vm/list', 'vm/start', 'vm/provision']);
  assert.equal(calls[1]!.params.waitSsh, true);
  assert.equal(calls[1]!.params.timeoutSec, 2700);
  assert.deepEqual((calls[2]!.params.steps as Array<{ label: string }>).map((s) => s.label), ['provision[1]']);
  assert.ok(rep.steps.includes('resuming VM web-app'));
});

test('create steps that never finished run again at the next up', async () => {
  const { conn, calls } = fakeConn({ 'vm/list': [summary('web-app', 'running', currentOrigin())], 'vm/start': {}, 'vm/provision': { steps: [] } });
  await up(conn, { dir, trusted: true }, reporter().r);
  assert.deepEqual(calls.filter((c) => c.method === 'vm/provision').map((c) => c.params.markCreateDone), [true, undefined]);
});

test('a changed file is reported and not acted on; --apply refuses what needs a new VM, changing nothing', async () => {
  const old = currentOrigin({ createDone: true, fields: { ...currentOrigin().fields, cpus: 'x', image: 'y' }, manifestHash: 'old' });
  const { conn, calls } = fakeConn({ 'vm/list': [summary('web-app', 'running', old)], 'vm/start': {}, 'vm/provision': { steps: [] } });
  const rep = reporter();
  const r = await up(conn, { dir, trusted: true }, rep.r);
  assert.deepEqual(r.changed, ['image', 'cpus']);
  assert.ok(rep.steps.some((s) => /devvm\.json changed since VM web-app was made: image, cpus/.test(s)));
  calls.length = 0;
  await assert.rejects(up(conn, { dir, trusted: true, apply: true }, reporter().r), /devvm\.json changed in ways that need a new VM: image/);
  assert.deepEqual(calls.map((c) => c.method), ['vm/list']);
});

test('--apply changes the size (stopping first), the ports, and records the new file', async () => {
  const old = currentOrigin({ createDone: true, fields: { ...currentOrigin().fields, cpus: 'x', ports: 'y' }, manifestHash: 'old' });
  const { conn, calls } = fakeConn({
    'vm/list': [summary('web-app', 'running', old)],
    'vm/info': { ports: [{ kind: 'static', protocol: 'tcp', hostPort: 9000, guestPort: 9000 }, { kind: 'auto', protocol: 'tcp', hostPort: 5000, guestPort: 5000 }], shares: [] },
    'vm/stop': {}, 'vm/set': {}, 'vm/portRemove': undefined, 'vm/portAdd': {}, 'vm/start': {}, 'vm/provision': { steps: [] },
  });
  const r = await up(conn, { dir, trusted: true, apply: true }, reporter().r);
  assert.deepEqual(r.changed, ['cpus', 'ports']);
  assert.deepEqual(calls.map((c) => c.method), ['vm/list', 'vm/stop', 'vm/set', 'vm/info', 'vm/portRemove', 'vm/portAdd', 'vm/set', 'vm/start', 'vm/provision']);
  assert.deepEqual(calls[2]!.params, { name: 'web-app', cpus: 2 });
  assert.deepEqual(calls[4]!.params, { name: 'web-app', protocol: 'tcp', hostPort: 9000 });
  assert.deepEqual(calls[5]!.params, { name: 'web-app', protocol: 'tcp', hostPort: 18000, guestPort: 8000, hostAddress: '127.0.0.1' });
  assert.deepEqual(calls[6]!.params, { name: 'web-app', origin: currentOrigin({ createDone: true }) });
});

test('--rebuild makes a new VM beside the old one (stopped, kept until the new one is provisioned), then deletes the old one', async () => {
  const old = currentOrigin({ createDone: true, fields: { ...currentOrigin().fields, image: 'y' }, manifestHash: 'old' });
  const { conn, calls } = fakeConn({ 'vm/list': [summary('web-app', 'running', old)], 'vm/stop': {}, 'vm/create': {}, 'vm/start': {}, 'vm/provision': { steps: [] }, 'vm/delete': undefined });
  const r = await up(conn, { dir, trusted: true, rebuild: true }, reporter().r);
  assert.equal(r.name, 'web-app-2');
  assert.equal(r.replaced, 'web-app');
  assert.deepEqual(calls.map((c) => `${c.method} ${String(c.params.name)}`), ['vm/list undefined', 'vm/stop web-app', 'vm/create web-app-2', 'vm/start web-app-2', 'vm/provision web-app-2', 'vm/provision web-app-2', 'vm/delete web-app']);
});

test('a failed rebuild keeps the old VM', async () => {
  const old = currentOrigin({ fields: {}, manifestHash: 'old' });
  const { conn, calls } = fakeConn({ 'vm/list': [summary('web-app', 'stopped', old)], 'vm/create': {}, 'vm/start': {}, 'vm/provision': rpcError('provisioning-failed', 'provision[0] failed with exit code 1') });
  await assert.rejects(up(conn, { dir, trusted: true, rebuild: true }, reporter().r), /provision\[0\] failed with exit code 1/);
  assert.ok(!calls.some((c) => c.method === 'vm/delete'));
});

test('a helper without shares or ports yet: the VM is made without them, and the result says so', async () => {
  let creates = 0;
  const { conn, calls } = fakeConn({
    'vm/list': [],
    'vm/create': () => (++creates === 1 ? rpcError('not-supported', 'shared folders are not built yet') : {}),
    'vm/start': {},
    'vm/provision': { steps: [] },
  });
  const rep = reporter();
  const r = await up(conn, { dir, trusted: true }, rep.r);
  assert.deepEqual(r.unsupported, ['shares', 'ports']);
  const [first, second] = calls.filter((c) => c.method === 'vm/create');
  assert.equal((first!.params.shares as unknown[]).length, 1);
  assert.deepEqual([second!.params.shares, second!.params.ports], [[], []]);
  assert.ok(rep.steps.some((s) => /cannot set up shares and ports yet/.test(s)));
});

test('other errors from create are not retried', async () => {
  const { conn, calls } = fakeConn({ 'vm/list': [], 'vm/create': rpcError('not-found', 'no image named "debian-12"') });
  await assert.rejects(up(conn, { dir, trusted: true }, reporter().r), /no image named "debian-12"/);
  assert.equal(calls.filter((c) => c.method === 'vm/create').length, 1);
});

test('down stops the folder\'s VM; a folder without one is not-found', async () => {
  const { conn, calls } = fakeConn({ 'vm/list': [summary('x', 'running'), summary('web-app', 'running', currentOrigin())], 'vm/stop': {} });
  assert.equal(await down(conn, dir), 'web-app');
  assert.deepEqual(calls.at(-1), { method: 'vm/stop', params: { name: 'web-app' } });
  const none = fakeConn({ 'vm/list': [] });
  await assert.rejects(down(none.conn, dir), /no VM was made for/);
});

test('findManifest: the folder\'s devvm.json, or null', () => {
  assert.equal(findManifest(dir), path.join(dir, 'devvm.json'));
  assert.equal(findManifest(root), null);
});
