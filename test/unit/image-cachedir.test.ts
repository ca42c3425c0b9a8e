/** The image cache's directories: leftovers of interrupted builds of any recipe are swept. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { removeStaleBuilds } from '../../src/helper/images/cachedir';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-cachedir-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

// Above any pid_max Linux allows (2^22): never a live process.
const DEAD = 4194303;

test('stale temp dirs of every recipe are removed; live, recent and finished ones stay', async () => {
  const hash = '0123456789abcdef';
  const old = (Date.now() - 2 * 3600_000) / 1000;
  const dirs: Record<string, number> = {
    [`.debian-12-${hash}.tmp-${DEAD}-0a0b0c0d`]: old,
    [`.debian-12-desktop-${hash}.tmp-${DEAD}-0a0b0c0d`]: old,
    [`.debian-12-desktop-${hash}.tmp-${DEAD}-0a0b0c0d.old`]: old,
    [`.debian-12-desktop-${hash}.tmp-${DEAD}-11111111`]: Date.now() / 1000, // recent: maybe another PID namespace's
    [`.debian-12-desktop-${hash}.tmp-${process.pid}-22222222`]: old, // ours, running
    [`debian-12-desktop-${hash}`]: old, // a finished build
    ['.unrelated']: old,
  };
  for (const [d, t] of Object.entries(dirs)) {
    mkdirSync(path.join(tmp, d, 'root', 'etc'), { recursive: true });
    utimesSync(path.join(tmp, d), t, t);
  }
  await removeStaleBuilds(tmp);
  assert.deepEqual(readdirSync(tmp).sort(), [
    `.debian-12-desktop-${hash}.tmp-${DEAD}-11111111`,
    `.debian-12-desktop-${hash}.tmp-${process.pid}-22222222`,
    '.unrelated',
    `debian-12-desktop-${hash}`,
  ].sort());
});
