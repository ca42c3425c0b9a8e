/**
 * Provisioning steps as the guest gets them: the bash program sent on ssh's stdin, run here
 * by the host's own bash (what the guest's does with it), with hostile environment values
 * and scripts; the dotfiles step; the failure line.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { createSteps, dotfilesScript, startSteps } from '../../src/shared/devvmjson/steps';
import type { Plan } from '../../src/shared/devvmjson/plan';
import { failedLine, renderStep, shellQuote, type StepProgram } from '../../src/helper/vm/stepscript';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-steps-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** What the guest's `bash -s` does with the program. */
function guest(p: StepProgram, home = tmp) {
  const r = spawnSync('bash', ['-s'], { input: renderStep(p), encoding: 'utf8', env: { PATH: process.env.PATH, HOME: home } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const HOSTILE = [
  "it's",
  '"double" and \\backslash\\',
  '$(touch /tmp/devvm-pwned) `touch /tmp/devvm-pwned` ${HOME}',
  "'; touch /tmp/devvm-pwned; echo '",
  'line one\nline two\n',
  '\n',
  '',
  '-n',
  '*',
  '!!',
  'DEVVM_B64_END',
  'tab\there\r\n',
  'émoji 🎉 \u2028 \u202e',
  "'''",
  '\\',
  '%s %n',
];

test('hostile environment values arrive byte for byte, and none of them runs', () => {
  rmSync('/tmp/devvm-pwned', { force: true });
  const env = Object.fromEntries(HOSTILE.map((v, i) => [`V${i}`, v]));
  const script = HOSTILE.map((_, i) => `printf '%s\\0' "$V${i}"`).join('\n');
  const r = guest({ script, env });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.split('\0').slice(0, -1), HOSTILE);
  assert.equal(existsSync('/tmp/devvm-pwned'), false);
});

test('shellQuote: one word for bash, whatever the text; NUL refused', () => {
  for (const v of HOSTILE) {
    const r = spawnSync('bash', ['-c', `printf '%s' ${shellQuote(v)}`], { encoding: 'utf8' });
    assert.equal(r.stdout, v);
  }
  assert.equal(shellQuote("a'b"), `'a'\\''b'`);
  assert.throws(() => shellQuote('a\0b'), /NUL/);
});

test('environment names must be shell names', () => {
  assert.throws(() => renderStep({ script: 'true', env: { 'A;rm': 'x' } }), /invalid environment variable name/);
  assert.throws(() => renderStep({ script: 'true', env: { '1A': 'x' } }), /invalid environment variable name/);
});

test('the script travels as base64: text that looks like the program\'s own markers changes nothing', () => {
  const script = "cat <<'DEVVM_B64_END'\nnot the end\nDEVVM_B64_END\necho \"after: $((1+1))\"\n";
  const r = guest({ script });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'not the end\nafter: 2\n');
  // No trailing newline, and a NUL-free binary-ish text.
  assert.equal(guest({ script: 'printf ok' }).stdout, 'ok');
});

test('a script that reads stdin gets nothing, not the rest of the program', () => {
  const r = guest({ script: 'if read -r line; then echo "read: $line"; else echo "stdin is empty"; fi\necho done' });
  assert.equal(r.stdout, 'stdin is empty\ndone\n');
});

test('a failing command stops the script; its line and command are reported', () => {
  const r = guest({ script: 'echo one\n\nls /nonexistent-devvm\necho never' });
  assert.equal(r.code, 2);
  assert.equal(r.stdout, 'one\n');
  assert.equal(failedLine(r.stderr), 'at line 3: ls /nonexistent-devvm');
  const f = guest({ script: 'f() {\n  false\n}\nf\n' });
  assert.equal(f.code, 1);
  assert.equal(failedLine(f.stderr), 'at line 2: false');
  // exit N is not a failing command: the code says it all.
  const e = guest({ script: 'exit 7' });
  assert.equal(e.code, 7);
  assert.equal(failedLine(e.stderr), '');
});

test('the working directory is the given one when it exists, else $HOME', () => {
  mkdirSync(path.join(tmp, 'a dir'), { recursive: true });
  assert.equal(guest({ script: 'pwd', cwd: path.join(tmp, 'a dir') }).stdout, `${path.join(tmp, 'a dir')}\n`);
  assert.equal(guest({ script: 'pwd', cwd: '/nonexistent-devvm/x' }).stdout, `${tmp}\n`);
});

test('the temporary files are removed when the step ends', () => {
  const r = guest({ script: 'echo "$DEVVM_SCRIPT"' });
  const file = r.stdout.trim();
  assert.match(file, /^\/tmp\/devvm-step\.[A-Za-z0-9]+\/script$/);
  assert.equal(existsSync(path.dirname(file)), false);
});

function tarOf(dir: string): Buffer {
  return spawnSync('tar', ['-C', dir, '-c', '-f', '-', '--', '.']).stdout;
}

test('dotfiles (a local folder): install.sh runs when there is one', () => {
  const dots = path.join(tmp, 'dots1');
  const home = path.join(tmp, 'home1');
  mkdirSync(dots);
  mkdirSync(home);
  writeFileSync(path.join(dots, 'install.sh'), '#!/bin/sh\necho "installed in $(pwd)" > "$HOME/marker"\n', { mode: 0o755 });
  writeFileSync(path.join(dots, 'setup.sh'), '#!/bin/sh\necho wrong > "$HOME/marker"\n', { mode: 0o755 });
  writeFileSync(path.join(dots, '.bashrc'), '# mine\n');
  const r = guest({ script: dotfilesScript({ kind: 'local', path: dots }), files: tarOf(dots) }, home);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(path.join(home, 'marker'), 'utf8'), `installed in ${home}/dotfiles\n`);
  assert.equal(existsSync(path.join(home, '.bashrc')), false);
});

test('dotfiles without an install script: every dotfile is linked into $HOME (not .git)', () => {
  const dots = path.join(tmp, 'dots2');
  const home = path.join(tmp, 'home2');
  mkdirSync(path.join(dots, '.git'), { recursive: true });
  mkdirSync(path.join(dots, '.config'));
  mkdirSync(home);
  writeFileSync(path.join(dots, '.vimrc'), 'set nu\n');
  writeFileSync(path.join(dots, 'README.md'), 'readme\n');
  writeFileSync(path.join(home, '.vimrc'), 'old\n');
  const r = guest({ script: dotfilesScript({ kind: 'local', path: dots }), files: tarOf(dots) }, home);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readlinkSync(path.join(home, '.vimrc')), path.join(home, 'dotfiles', '.vimrc'));
  assert.ok(lstatSync(path.join(home, '.config')).isSymbolicLink());
  assert.equal(existsSync(path.join(home, '.git')), false);
  assert.equal(existsSync(path.join(home, 'README.md')), false);
  assert.match(r.stdout, /dotfiles: linked ~\/\.vimrc/);
});

test('dotfiles from git: the URL is one quoted word of the clone, and a missing git is said plainly', () => {
  const s = dotfilesScript({ kind: 'git', url: "https://example.invalid/x'; touch /tmp/devvm-pwned; '" });
  assert.ok(s.includes(`git clone --depth 1 -- 'https://example.invalid/x'\\''; touch /tmp/devvm-pwned; '\\''' "$target"`));
  // A PATH with what the program needs, and no git.
  const bin = path.join(tmp, 'bin-nogit');
  mkdirSync(bin);
  for (const tool of ['bash', 'mktemp', 'base64', 'rm']) {
    const found = spawnSync('bash', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    symlinkSync(found, path.join(bin, tool));
  }
  const r = spawnSync(path.join(bin, 'bash'), ['-s'], { input: renderStep({ script: s }), encoding: 'utf8', env: { PATH: bin, HOME: tmp } });
  assert.equal(r.status, 127);
  assert.match(r.stderr, /dotfiles: git is not installed in the guest/);
});

test('steps from a plan: create steps then dotfiles (once), start steps (every up)', () => {
  const p = {
    steps: [
      { when: 'create', as: 'root', label: 'a.sh', text: 'A' },
      { when: 'start', as: 'user', label: 'provision[1]', text: 'B' },
      { when: 'create', as: 'user', label: 'provision[2]', text: 'C' },
    ],
    dotfiles: { kind: 'local', path: '/home/a/dots' },
  } as unknown as Plan;
  const c = createSteps(p);
  assert.deepEqual(c.map((s) => [s.label, s.as]), [['a.sh', 'root'], ['provision[2]', 'user'], ['dotfiles', 'user']]);
  assert.equal(c[2]!.files, '/home/a/dots');
  assert.deepEqual(startSteps(p), [{ label: 'provision[1]', as: 'user', script: 'B' }]);
  assert.equal(createSteps({ ...p, dotfiles: { kind: 'git', url: 'https://x/y' } }).at(-1)!.files, undefined);
});
