/** devvm.json parsing and checks: good files, JSONC, and every kind of bad value with its line:column. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import { findManifest, jsonPath, loadManifest, parseManifest } from '../../src/shared/devvmjson/manifest';

const parse = (text: string) => parseManifest(text, '/repo/devvm.json');

function refused(text: string, message: string | RegExp): void {
  assert.throws(
    () => parse(text),
    (e: unknown) => {
      assert.ok(e instanceof DevvmError, String(e));
      assert.equal(e.code, 'invalid-argument');
      if (typeof message === 'string') assert.equal(e.oneLine(), message);
      else assert.match(e.oneLine(), message);
      return true;
    },
  );
}

const FULL = `{
  // every field, with comments and trailing commas
  "$schema": "https://example.invalid/devvm.schema.json",
  "name": "web-1",
  "image": "debian-12",
  "cpus": 4, /* block comment */
  "memory": 4096,
  "disk": 40,
  "user": "alice",
  "shares": [{ "hostPath": ".", "guestPath": "/work", "readOnly": true }, { "hostPath": "/data" }],
  "ports": [{ "guestPort": 3000 }, { "guestPort": 8080, "hostPort": 18080, "protocol": "udp", "label": "api" }, { "guestPort": 5173, "label": "vite", "forward": "auto" }],
  "env": { "NODE_ENV": "development", "_X1": "" },
  "provision": [
    { "when": "create", "as": "root", "run": "apt-get install -y make" },
    { "when": "create", "script": "scripts/setup.sh" },
    { "when": "start", "as": "user", "run": "make dev" },
  ],
  "dotfiles": "https://github.com/alice/dotfiles.git",
  "idleSuspendMinutes": 30,
  "autostart": true,
}`;

test('a file with every field, comments and trailing commas parses to its fields', () => {
  const m = parse(FULL);
  assert.deepEqual(m.fields, {
    name: 'web-1',
    image: 'debian-12',
    cpus: 4,
    memory: 4096,
    disk: 40,
    user: 'alice',
    shares: [{ hostPath: '.', guestPath: '/work', readOnly: true }, { hostPath: '/data' }],
    ports: [{ guestPort: 3000 }, { guestPort: 8080, hostPort: 18080, protocol: 'udp', label: 'api' }, { guestPort: 5173, label: 'vite', forward: 'auto' }],
    env: { NODE_ENV: 'development', _X1: '' },
    provision: [
      { when: 'create', as: 'root', run: 'apt-get install -y make' },
      { when: 'create', script: 'scripts/setup.sh' },
      { when: 'start', as: 'user', run: 'make dev' },
    ],
    dotfiles: 'https://github.com/alice/dotfiles.git',
    idleSuspendMinutes: 30,
    autostart: true,
  });
  assert.equal(m.where(['provision', 1, 'script']), 'devvm.json:15:35');
});

test('an empty object is a valid devvm.json (everything has a default)', () => {
  assert.deepEqual(parse('{}').fields, {});
});

test('unknown fields are refused with their path, at the key', () => {
  refused('{\n  "cpus": 2,\n  "cpu": 4\n}', 'devvm.json:3:3: unknown field "cpu"');
  refused('{ "provision": [{ "when": "start", "run": "x", "cmd": "y" }] }', 'devvm.json:1:48: unknown field "provision[0].cmd"');
  refused('{ "shares": [{ "hostPath": ".", "mode": "rw" }] }', /^devvm\.json:1:33: unknown field "shares\[0\]\.mode"$/);
  refused('{ "ports": [{ "guestPort": 1, "hostAddress": "0.0.0.0" }] }', /unknown field "ports\[0\]\.hostAddress"/);
  // devcontainer.json's names are not devvm.json's: said plainly rather than ignored.
  refused('{ "postCreateCommand": "make" }', 'devvm.json:1:3: unknown field "postCreateCommand"');
});

test('wrong types name the field, the expected type and the value', () => {
  refused('{ "cpus": "2" }', 'devvm.json:1:11: cpus must be a whole number, got "2"');
  refused('{ "cpus": 1.5 }', /cpus must be a whole number, got "1.5"/);
  refused('{ "memory": true }', /memory must be a whole number/);
  refused('{ "disk": null }', /disk must be a whole number, got "null"/);
  refused('{ "name": 3 }', /^devvm\.json:1:11: name must be text, got "3"$/);
  refused('{ "image": [] }', /image must be text/);
  refused('{ "user": {} }', /user must be text/);
  refused('{ "shares": {} }', /shares must be a list/);
  refused('{ "shares": ["."] }', /shares\[0\] must be an object/);
  refused('{ "ports": [8080] }', /ports\[0\] must be an object, got "8080"/);
  refused('{ "env": { "A": 1 } }', /^devvm\.json:1:17: env\.A must be text, got "1"$/);
  refused('{ "env": [] }', /env must be an object/);
  refused('{ "provision": {} }', /provision must be a list/);
  refused('{ "provision": [{ "when": "start", "run": ["a"] }] }', /provision\[0\]\.run must be text/);
  refused('{ "dotfiles": false }', /dotfiles must be text/);
  refused('{ "idleSuspendMinutes": "30" }', /idleSuspendMinutes must be a whole number/);
  refused('{ "autostart": "yes" }', /autostart must be true or false, got "yes"/);
  refused('{ "shares": [{ "hostPath": ".", "readOnly": 1 }] }', /shares\[0\]\.readOnly must be true or false/);
});

test('bad values say which field and why', () => {
  refused('{ "cpus": 0 }', 'devvm.json:1:11: cpus 0 is out of range (at least 1)');
  refused('{ "cpus": 65 }', /cpus 65 is out of range \(at most 64\)/);
  refused('{ "memory": 100 }', /memory 100 is out of range \(at least 256\)/);
  refused('{ "disk": 0 }', /disk 0 is out of range/);
  refused('{ "ports": [{ "guestPort": 70000 }] }', /ports\[0\]\.guestPort 70000 is out of range \(at most 65535\)/);
  refused('{ "ports": [{ "guestPort": 80, "protocol": "sctp" }] }', /ports\[0\]\.protocol must be one of "tcp", "udp", got "sctp"/);
  refused('{ "ports": [{ "hostPort": 80 }] }', /^devvm\.json:1:13: ports\[0\] needs "guestPort"$/);
  refused('{ "ports": [{ "guestPort": 80 }, { "guestPort": 81, "hostPort": 80 }] }', /ports\[1\] uses host port tcp\/80 again \(ports\[0\] has it\)/);
  refused('{ "name": "Web_1" }', /^devvm\.json:1:11: name: invalid VM name "Web_1" \(use 1-63 lowercase/);
  refused('{ "name": "-web" }', /name: invalid VM name/);
  refused('{ "image": "../etc" }', /image: invalid image name/);
  refused('{ "image": "a..b" }', /image: invalid image name "a\.\.b"/);
  refused('{ "user": "Alice" }', /user: invalid user name "Alice"/);
  refused('{ "user": "root" }', 'devvm.json:1:11: user: user name "root" is reserved in the guest (pick another short name)');
  refused('{ "shares": [{ "hostPath": "" }] }', /shares\[0\]\.hostPath must not be empty/);
  refused('{ "shares": [{ "hostPath": ".", "guestPath": "work" }] }', /shares\[0\]\.guestPath must be an absolute path in the guest, got "work"/);
  refused('{ "env": { "1A": "x" } }', /^devvm\.json:1:12: env: "1A" is not a valid variable name/);
  refused('{ "env": { "A-B": "x" } }', /env: "A-B" is not a valid variable name/);
  refused('{ "env": { "A": "a\\u0000b" } }', /env\.A contains a NUL character/);
  refused('{ "provision": [{ "when": "boot", "run": "x" }] }', /^devvm\.json:1:27: provision\[0\]\.when must be one of "create", "start", got "boot"$/);
  refused('{ "provision": [{ "when": "start", "as": "admin", "run": "x" }] }', /provision\[0\]\.as must be one of "root", "user"/);
  refused('{ "provision": [{ "run": "x" }] }', /provision\[0\] needs "when"/);
  refused('{ "provision": [{ "when": "start" }] }', 'devvm.json:1:17: provision[0] needs "run" (inline shell) or "script" (a file in this folder)');
  refused('{ "provision": [{ "when": "start", "run": "x", "script": "a.sh" }] }', /provision\[0\] has both "run" and "script" \(give one\)/);
  refused('{ "provision": [{ "when": "start", "run": "" }] }', /provision\[0\]\.run must not be empty/);
  refused('{ "provision": [{ "when": "start", "script": "../outside.sh" }] }', /provision\[0\]\.script must be a path inside this folder, relative to it, got "\.\.\/outside\.sh"/);
  refused('{ "provision": [{ "when": "start", "script": "/etc/x.sh" }] }', /provision\[0\]\.script must be a path inside this folder/);
  refused('{ "dotfiles": "" }', /dotfiles must not be empty/);
  refused('{ "idleSuspendMinutes": -1 }', /idleSuspendMinutes -1 is out of range \(at least 0\)/);
});

test('the first problem in the file is the one reported', () => {
  refused('{\n  "autostart": 1,\n  "cpus": "x"\n}', /^devvm\.json:2:16: autostart must be true or false/);
});

test('syntax errors and duplicate keys have their line and column', () => {
  refused('{\n  "cpus": 2\n  "memory": 1024\n}', 'devvm.json:3:3: a "," was expected');
  refused('{ "cpus": 2 ', /^devvm\.json:1:13: a "}" was expected$/);
  refused('{ cpus: 2 }', /^devvm\.json:1:3: unexpected character \(names and text need double quotes\)$/);
  refused('{ "a": "x\ny" }', /^devvm\.json:1:\d+: /);
  refused('/* open', /a comment is not closed/);
  refused('[]', 'devvm.json:1:1: devvm.json must hold one object ({ ... })');
  refused('', /devvm\.json:1:1: /);
  refused('{\n  "cpus": 2,\n  "cpus": 3\n}', 'devvm.json:3:3: "cpus" is given twice');
  refused('{ "env": { "A": "1", "A": "2" } }', /"env\.A" is given twice/);
});

test('errors use the name of the file that was read (.devvm/devvm.json)', () => {
  assert.throws(() => parseManifest('{ "cpu": 1 }', '/r/.devvm/devvm.json', '.devvm/devvm.json'), /^DevvmError: \.devvm\/devvm\.json:1:3: unknown field "cpu"$/);
});

test('findManifest looks at the root first, then in .devvm/; loadManifest reads it', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-manifest-'));
  try {
    assert.equal(findManifest(dir), null);
    assert.throws(() => loadManifest(dir), /no devvm\.json in/);
    mkdirSync(path.join(dir, '.devvm'));
    writeFileSync(path.join(dir, '.devvm', 'devvm.json'), '{ "cpus": 3 }');
    assert.equal(findManifest(dir), path.join(dir, '.devvm', 'devvm.json'));
    assert.equal(loadManifest(dir).fields.cpus, 3);
    writeFileSync(path.join(dir, 'devvm.json'), '{ "cpus": "x" }');
    assert.equal(findManifest(dir), path.join(dir, 'devvm.json'));
    assert.throws(() => loadManifest(dir), /^DevvmError: devvm\.json:1:11: cpus must be a whole number/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('jsonPath writes paths as JavaScript would', () => {
  assert.equal(jsonPath(['provision', 2, 'run']), 'provision[2].run');
  assert.equal(jsonPath(['env', 'A B']), 'env["A B"]');
  assert.equal(jsonPath([]), '(the file)');
});

test('the compiled validator is the one the schema gives (scripts/gen-devvm-validator.mjs --check)', () => {
  const r = spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'scripts', 'gen-devvm-validator.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});
