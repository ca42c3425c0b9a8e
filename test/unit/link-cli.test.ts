/** `npm run up` links `devvm` into the user's bin dir (scripts/link-cli.mjs), with a temp HOME. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

const load = () => import('../../scripts/link-cli.mjs');

/** A checkout whose dist/cli.js prints its arguments, at a path that needs shell quoting. */
function fixture(t: { after: (fn: () => void) => void }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-link-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = path.join(dir, "it's a repo");
  mkdirSync(path.join(root, 'dist'), { recursive: true });
  writeFileSync(path.join(root, 'dist', 'cli.js'), 'process.stdout.write(JSON.stringify(process.argv.slice(2)))\n');
  const home = path.join(dir, 'home');
  mkdirSync(home);
  return { dir, root, home };
}

test('creates ~/.local/bin/devvm that runs dist/cli.js, and says how to put it on PATH', async (t) => {
  const { linkCli } = await load();
  const { root, home } = fixture(t);
  const env = { HOME: home, PATH: '/usr/bin:/bin' };
  const r = linkCli({ root, env });
  const link = path.join(home, '.local', 'bin', 'devvm');
  assert.equal(r.link, link);
  assert.equal(r.status, 'created');
  assert.equal(r.onPath, false);
  assert.equal(r.command, link);
  assert.deepEqual(r.advice.slice(1), ['  export PATH="$HOME/.local/bin:$PATH"']);
  assert.equal(lstatSync(link).mode & 0o777, 0o755);
  const run = spawnSync(link, ['ssh', 'dev', '--', 'echo "$HOME"'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), ['ssh', 'dev', '--', 'echo "$HOME"'], 'arguments passed through untouched');

  // Idempotent; and once the dir is on PATH, plain `devvm` is the command.
  const again = linkCli({ root, env: { ...env, PATH: `${path.dirname(link)}:/usr/bin` } });
  assert.equal(again.status, 'unchanged');
  assert.equal(again.onPath, true);
  assert.equal(again.command, 'devvm');
  assert.deepEqual(again.advice, []);
  const typed = spawnSync('sh', ['-c', 'devvm --version'], { env: { ...process.env, PATH: `${path.dirname(link)}:/usr/bin:/bin` }, encoding: 'utf8' });
  assert.deepEqual(JSON.parse(typed.stdout), ['--version']);

  // Another checkout (or a moved one) takes over its own wrapper.
  const moved = path.join(path.dirname(root), 'moved');
  mkdirSync(path.join(moved, 'dist'), { recursive: true });
  assert.equal(linkCli({ root: moved, env }).status, 'updated');
  assert.ok(readFileSync(link, 'utf8').includes(`'${path.join(moved, 'dist', 'cli.js')}'`));
});

test('never replaces a devvm that devvm did not write', async (t) => {
  const { linkCli } = await load();
  const { dir, root, home } = fixture(t);
  const bin = path.join(home, '.local', 'bin');
  mkdirSync(bin, { recursive: true });
  const link = path.join(bin, 'devvm');
  writeFileSync(link, '#!/bin/sh\necho mine\n');
  chmodSync(link, 0o700);
  const r = linkCli({ root, env: { HOME: home, PATH: bin } });
  assert.equal(r.status, 'foreign');
  assert.equal(readFileSync(link, 'utf8'), '#!/bin/sh\necho mine\n');
  assert.match(r.advice[0]!, /was not written by devvm; left as it is/);
  // The command printed instead is this checkout's CLI, quoted so it can be pasted into a shell.
  assert.ok(r.command.startsWith(`${process.execPath} `));
  const pasted = spawnSync('sh', ['-c', `${r.command} list`], { encoding: 'utf8' });
  assert.deepEqual(JSON.parse(pasted.stdout), ['list']);

  // A symlink to something else is foreign too; one to our own cli.js is ours.
  rmSync(link);
  symlinkSync(path.join(dir, 'elsewhere'), link);
  assert.equal(linkCli({ root, env: { HOME: home, PATH: '' } }).status, 'foreign');
  rmSync(link);
  symlinkSync(path.join(root, 'dist', 'cli.js'), link);
  assert.equal(linkCli({ root, env: { HOME: home, PATH: '' } }).status, 'updated');
  assert.ok(lstatSync(link).isFile());
});

test('XDG_BIN_HOME is honoured, and another devvm earlier on PATH is pointed out', async (t) => {
  const { linkCli } = await load();
  const { dir, root, home } = fixture(t);
  const xdg = path.join(dir, 'xdg bin');
  const other = path.join(dir, 'other');
  mkdirSync(other);
  writeFileSync(path.join(other, 'devvm'), '#!/bin/sh\n', { mode: 0o755 });
  const r = linkCli({ root, env: { HOME: home, XDG_BIN_HOME: xdg, PATH: `${other}:${xdg}` } });
  assert.equal(r.link, path.join(xdg, 'devvm'));
  assert.equal(r.status, 'created');
  assert.equal(r.onPath, false);
  assert.equal(r.command, `'${path.join(xdg, 'devvm')}'`);
  assert.match(r.advice[0]!, /"devvm" on your PATH is .*other\/devvm, not this checkout's/);
});
