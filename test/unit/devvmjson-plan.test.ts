/** devvm.json's plan (defaults, scripts read), VM name derivation and change detection. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { changes, fingerprint } from '../../src/shared/devvmjson/changes';
import { parseManifest } from '../../src/shared/devvmjson/manifest';
import { folderVmName, newVmName, rebuildName, vmsOf } from '../../src/shared/devvmjson/name';
import { defaultUser, isGitUrl, makePlan, type Plan } from '../../src/shared/devvmjson/plan';
import type { VmOrigin, VmSummary } from '../../src/shared/types';

const root = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'devvm-plan-')));
const dir = path.join(root, 'proj');
mkdirSync(path.join(dir, 'scripts'), { recursive: true });
mkdirSync(path.join(root, 'dots'));
writeFileSync(path.join(dir, 'scripts', 'setup.sh'), 'echo setup\n');
after(() => rmSync(root, { recursive: true, force: true }));

const plan = (text: string, user = 'alice'): Plan => makePlan(parseManifest(text, path.join(dir, 'devvm.json')), dir, user);

test('defaults: debian-12, the host user, this folder shared at the same path', () => {
  const p = plan('{}');
  assert.equal(p.image, 'debian-12');
  assert.equal(p.user, 'alice');
  assert.deepEqual(p.shares, [{ hostPath: dir, guestPath: dir, readOnly: false }]);
  assert.equal(p.guestPath, dir);
  assert.deepEqual(p.ports, []);
  assert.deepEqual(p.steps, []);
  assert.equal(p.dotfiles, null);
  assert.equal(p.cpus, undefined);
});

test('the host user name is used only when the guest can have it', () => {
  assert.equal(defaultUser('bob'), 'bob');
  assert.equal(defaultUser('root'), 'dev');
  assert.equal(defaultUser('Bob Smith'), 'dev');
  assert.equal(defaultUser(''), 'dev');
  assert.equal(plan('{ "user": "carol" }', 'root').user, 'carol');
});

test('shares, ports, steps and dotfiles are resolved; scripts are read', () => {
  const p = plan(`{
    "shares": [{ "hostPath": "..", "guestPath": "/src" }],
    "ports": [{ "guestPort": 3000, "label": "web" }, { "guestPort": 53, "hostPort": 5353, "protocol": "udp" }, { "guestPort": 5173, "label": "vite", "forward": "auto" }],
    "provision": [{ "when": "create", "as": "root", "script": "scripts/setup.sh" }, { "when": "start", "run": "make" }],
    "dotfiles": "../dots",
    "idleSuspendMinutes": 0,
    "memory": 4096
  }`);
  assert.deepEqual(p.shares, [{ hostPath: root, guestPath: '/src', readOnly: false }]);
  // The folder sits inside the share: its guest path follows.
  assert.equal(p.guestPath, '/src/proj');
  assert.deepEqual(p.ports, [{ protocol: 'tcp', hostPort: 3000, guestPort: 3000 }, { protocol: 'udp', hostPort: 5353, guestPort: 53 }]);
  assert.deepEqual(p.labels, { 3000: 'web', 5173: 'vite' });
  assert.deepEqual(p.steps, [
    { when: 'create', as: 'root', label: 'scripts/setup.sh', text: 'echo setup\n' },
    { when: 'start', as: 'user', label: 'provision[1]', text: 'make' },
  ]);
  assert.deepEqual(p.dotfiles, { kind: 'local', path: path.join(root, 'dots') });
  assert.equal(p.idleSuspend, 'off');
  assert.equal(p.memoryMiB, 4096);
});

test('missing files are errors at the field that names them', () => {
  assert.throws(() => plan('{\n "provision": [{ "when": "start", "script": "nope.sh" }] }'), /^DevvmError: devvm\.json:2:45: script "nope\.sh" cannot be read: ENOENT$/);
  assert.throws(() => plan('{ "provision": [{ "when": "start", "script": "scripts" }] }'), /script "scripts" is not a file/);
  assert.throws(() => plan('{ "dotfiles": "../nothing" }'), /^DevvmError: devvm\.json:1:15: dotfiles folder "\.\.\/nothing" does not exist/);
  assert.throws(() => plan('{ "shares": [{ "hostPath": "scripts/setup.sh" }] }'), /shared folder "scripts\/setup\.sh" is not a folder/);
});

test('git URLs and paths are told apart', () => {
  for (const u of ['https://github.com/a/dotfiles', 'git@github.com:a/dotfiles.git', 'ssh://git@host/x', 'file:///srv/dots']) assert.ok(isGitUrl(u), u);
  for (const p of ['../dots', '~/dotfiles', '/home/a/dots', 'dots']) assert.ok(!isGitUrl(p), p);
  assert.deepEqual(plan('{ "dotfiles": "git@github.com:a/d.git" }').dotfiles, { kind: 'git', url: 'git@github.com:a/d.git' });
});

test('folder names become VM names', () => {
  assert.equal(folderVmName('/home/a/My Project'), 'my-project');
  assert.equal(folderVmName('/x/web_app.v2'), 'web-app-v2');
  assert.equal(folderVmName('/x/--Café--'), 'cafe');
  assert.equal(folderVmName('/x/日本'), 'devvm');
  assert.equal(folderVmName(`/x/${'a'.repeat(70)}`), 'a'.repeat(63));
  assert.equal(folderVmName(`/x/${'a'.repeat(62)}-b`), 'a'.repeat(62));
});

const vm = (name: string, origin?: VmOrigin): VmSummary => ({ name, state: 'stopped', image: 'debian-12', user: 'dev', sshHost: `devvm-${name}`, sshPort: 2222, cpus: 2, memoryMiB: 2048, ...(origin ? { origin } : {}) });

test('a derived name steps aside for another folder\'s VM, the same way every time', () => {
  assert.equal(newVmName('/a/web', undefined, []), 'web');
  const taken = [vm('web', { dir: '/b/web', manifestHash: 'x' })];
  const alt = newVmName('/a/web', undefined, taken);
  assert.match(alt, /^web-[0-9a-f]{6}$/);
  assert.equal(newVmName('/a/web', undefined, taken), alt);
  assert.notEqual(newVmName('/c/web', undefined, taken), alt);
  // The file's own name is used as given, and must be free.
  assert.equal(newVmName('/a/web', 'api', taken), 'api');
  assert.throws(() => newVmName('/a/web', 'web', taken), /a VM named "web" already exists for \/b\/web$/);
});

test('a folder\'s VM is found by its origin, the one made from the current file first', () => {
  const list = [vm('old', { dir: '/a', manifestHash: 'h1' }), vm('other', { dir: '/b', manifestHash: 'h2' }), vm('new', { dir: '/a', manifestHash: 'h2' }), vm('plain')];
  assert.deepEqual(vmsOf('/a', list, 'h2').map((s) => s.name), ['new', 'old']);
  assert.deepEqual(vmsOf('/a', list, 'h1').map((s) => s.name), ['old', 'new']);
  assert.deepEqual(vmsOf('/none', list), []);
});

test('a rebuild takes the "-2" twin of the name, and back', () => {
  assert.equal(rebuildName('web', [vm('web')]), 'web-2');
  assert.equal(rebuildName('web-2', [vm('web-2')]), 'web');
  assert.equal(rebuildName('a'.repeat(63), []), `${'a'.repeat(61)}-2`);
  assert.throws(() => rebuildName('web', [vm('web'), vm('web-2')]), /a VM named "web-2" already exists/);
});

const BASE = '{ "cpus": 2, "env": { "A": "1" }, "provision": [{ "when": "create", "script": "scripts/setup.sh" }, { "when": "start", "run": "make" }] }';
const originOf = (p: Plan): VmOrigin => ({ dir, ...fingerprint(p) });

test('no change: same file, or the same values written differently (comments, order, spacing)', () => {
  const o = originOf(plan(BASE));
  assert.deepEqual(changes(o, plan(BASE)), { changed: [], needRebuild: [], parts: [] });
  const same = '{\n // the same\n "provision": [{ "when": "create", "script": "scripts/setup.sh" }, { "when": "start", "run": "make" },],\n "env": { "A": "1" }, "cpus": 2 }';
  assert.deepEqual(changes(o, plan(same)).changed, []);
});

test('changes name their fields and say what needs a new VM', () => {
  const o = originOf(plan(BASE));
  assert.deepEqual(changes(o, plan(BASE.replace('"cpus": 2', '"cpus": 4'))), { changed: ['cpus'], needRebuild: [], parts: ['cpus'] });
  assert.deepEqual(changes(o, plan(BASE.replace('"A": "1"', '"A": "2"'))).changed, ['env']);
  const start = changes(o, plan(BASE.replace('"run": "make"', '"run": "make dev"')));
  assert.deepEqual(start, { changed: ['provision'], needRebuild: [], parts: ['provision:start'] });
  const image = changes(o, plan(BASE.replace('{', '{ "image": "debian-12-desktop", "ports": [{ "guestPort": 80 }],')));
  assert.deepEqual(image.changed, ['image', 'ports']);
  assert.deepEqual(image.needRebuild, ['image']);
  // A default written out is no change: the plan is compared, not the text.
  assert.deepEqual(changes(o, plan(BASE.replace('{', '{ "image": "debian-12",'))).changed, []);
});

test('a create script whose contents changed is a change that needs a new VM', () => {
  const o = originOf(plan(BASE));
  writeFileSync(path.join(dir, 'scripts', 'setup.sh'), 'echo setup v2\n');
  try {
    assert.deepEqual(changes(o, plan(BASE)), { changed: ['provision'], needRebuild: ['provision:create'], parts: ['provision:create'] });
  } finally {
    writeFileSync(path.join(dir, 'scripts', 'setup.sh'), 'echo setup\n');
  }
});

test('a VM without field hashes counts every field as changed', () => {
  const c = changes({ dir, manifestHash: 'old' }, plan(BASE));
  assert.ok(c.changed.includes('cpus') && c.changed.includes('provision') && c.changed.includes('image'));
});
