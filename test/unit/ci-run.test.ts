/**
 * .ci/run with apt-get, sudo and npm replaced by recorders: it must run the README's test
 * command (`npm test`) on a fresh, empty cache each time (XDG_CACHE_HOME, no DEVVM_CACHE)
 * and remove that cache afterwards, even when what was built there is read-only.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

const RUN = path.join(__dirname, '..', '..', '.ci', 'run');

test('.ci/run runs npm test on a fresh cache every time and removes it', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-ci-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  const record = path.join(dir, 'record');
  const fake = (name: string, body: string) => writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  fake('apt-get', 'exit 0');
  fake('sudo', 'exec "$@"');
  // `npm test` leaves a read-only build behind in the cache, as an image build does.
  fake('npm', [
    `echo "npm $* cache=$XDG_CACHE_HOME devvm_cache=\${DEVVM_CACHE-unset} entries=$(ls -A "$XDG_CACHE_HOME" | wc -l)" >> '${record}'`,
    'if [ "$1" = test ]; then mkdir -p "$XDG_CACHE_HOME/devvm/images/x" && touch "$XDG_CACHE_HOME/devvm/images/x/disk" && chmod -R a-w "$XDG_CACHE_HOME/devvm"; fi',
  ].join('\n'));
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, TMPDIR: dir, DEVVM_CACHE: path.join(dir, 'warm'), XDG_CACHE_HOME: path.join(dir, 'warm') };
  const caches: string[] = [];
  for (let i = 0; i < 2; i++) {
    rmSync(record, { force: true });
    const r = spawnSync('bash', [RUN], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const lines = readFileSync(record, 'utf8').trim().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /^npm ci /);
    const m = /^npm test cache=(\S+) devvm_cache=unset entries=0$/.exec(lines[1]!);
    assert.ok(m, lines[1]);
    assert.notEqual(m[1], path.join(dir, 'warm'));
    assert.equal(existsSync(m[1]!), false, 'removed on exit');
    caches.push(m[1]!);
  }
  assert.notEqual(caches[0], caches[1], 'a new cache each run');
});
