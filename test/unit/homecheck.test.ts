/** A DEVVM_HOME that is not private, or not ours: made 0700, or refused with one line. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import { ensurePrivateHome } from '../../src/shared/homecheck';

const ROOT = path.join(__dirname, '..', '..');
const HELPER = path.join(ROOT, 'dist', 'helper.js');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const me = process.getuid!();
const isRoot = me === 0;
const OTHER = 54321;

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-homecheck-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
const mode = (p: string) => statSync(p).mode & 0o7777;

test('an existing 0777 or group-accessible home is made 0700; a new one is created 0700', (t) => {
  const dir = tmp(t);
  for (const m of [0o777, 0o770, 0o750, 0o701]) {
    const home = path.join(dir, `h${m.toString(8)}`);
    mkdirSync(home);
    chmodSync(home, m);
    assert.deepEqual(ensurePrivateHome(home, { fix: true }), { fixedMode: m });
    assert.equal(mode(home), 0o700);
  }
  const fresh = path.join(dir, 'new', 'home');
  assert.deepEqual(ensurePrivateHome(fresh, { fix: true }), { fixedMode: null });
  assert.equal(mode(fresh) & 0o077, 0);
  // Clients only check: the helper is the one that changes it.
  const open = path.join(dir, 'open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  ensurePrivateHome(open, { fix: false });
  assert.equal(mode(open), 0o777);
});

test('a home owned by someone else, or a symlink to one, is refused and left alone', (t) => {
  const dir = tmp(t);
  const theirs = path.join(dir, 'theirs');
  mkdirSync(theirs);
  chmodSync(theirs, 0o777);
  // Not root: the same check, with "someone else" being the uid we pretend to be.
  const uid = isRoot ? me : me + 1;
  if (isRoot) chownSync(theirs, OTHER, OTHER);
  const owner = isRoot ? OTHER : me;
  assert.throws(() => ensurePrivateHome(theirs, { fix: true, uid }), (e: unknown) => {
    assert.ok(e instanceof DevvmError);
    assert.equal(e.oneLine(), `DEVVM_HOME ${theirs} is owned by uid ${owner}, not by you (uid ${uid}) (point DEVVM_HOME at a directory of your own)`);
    return true;
  });
  assert.equal(mode(theirs), 0o777, 'unchanged');
  const link = path.join(dir, 'link');
  symlinkSync(theirs, link);
  assert.throws(() => ensurePrivateHome(link, { fix: true, uid }), /symlink to .*theirs\) is owned by uid/);
  assert.equal(mode(theirs), 0o777, 'unchanged');
  const file = path.join(dir, 'file');
  spawnSync('touch', [file]);
  assert.throws(() => ensurePrivateHome(file, { fix: true }), /is not a directory/);
});

test('a symlink to a directory of ours is fine, and its target is what gets made private', (t) => {
  const dir = tmp(t);
  const real = path.join(dir, 'real');
  mkdirSync(real);
  chmodSync(real, 0o755);
  const link = path.join(dir, 'link');
  symlinkSync(real, link);
  assert.deepEqual(ensurePrivateHome(link, { fix: true }), { fixedMode: 0o755 });
  assert.equal(mode(real), 0o700);
});

const built = existsSync(HELPER) && existsSync(CLI) ? false : 'dist not built (node scripts/build.mjs)';

test('the helper refuses a home owned by another user with one line and writes nothing there', { skip: built || (!isRoot && 'needs root to make a directory owned by someone else') }, (t) => {
  const dir = tmp(t);
  const home = path.join(dir, 'home');
  mkdirSync(home);
  chownSync(home, OTHER, OTHER);
  const r = spawnSync(process.execPath, [HELPER], { env: { ...process.env, DEVVM_HOME: home, DEVVM_QEMU: '/bin/false' }, encoding: 'utf8', timeout: 20000 });
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `devvm: DEVVM_HOME ${home} is owned by uid ${OTHER}, not by you (uid 0) (point DEVVM_HOME at a directory of your own)\n`);
  assert.equal(existsSync(path.join(home, 'helper.log')), false);
  assert.equal(existsSync(path.join(home, 'helper.sock')), false);
  // The CLI says the same itself, at once, instead of waiting for a helper that never comes.
  const c = spawnSync(process.execPath, [CLI, 'list'], { env: { ...process.env, DEVVM_HOME: home }, encoding: 'utf8', timeout: 20000 });
  assert.equal(c.status, 1);
  assert.equal(c.stderr, r.stderr);
  assert.equal(existsSync(path.join(home, 'helper.out')), false);
});

test('a helper started on a 0777 home makes it 0700 and says so in its log', { skip: built }, async (t) => {
  const dir = tmp(t);
  const home = path.join(dir, 'home');
  mkdirSync(home);
  chmodSync(home, 0o777);
  const child = spawn(process.execPath, [HELPER], { env: { ...process.env, DEVVM_HOME: home, DEVVM_QEMU: '/bin/false' }, stdio: 'ignore' });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  // Ended here, not in an after hook: tmp()'s removal runs first and, with the helper still writing, can fail and skip
  // the hooks after it, leaving a helper that keeps the test file (and CI) from ever finishing.
  try {
    const deadline = Date.now() + 15000;
    while (!existsSync(path.join(home, 'helper.sock'))) {
      assert.ok(Date.now() < deadline, 'helper did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(mode(home), 0o700);
    assert.match(readFileSync(path.join(home, 'helper.log'), 'utf8'), /was mode 0777; made it 0700/);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
});
