/** Which host port a forward gets when the one it wants is taken. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bindHostPort } from '../../src/helper/portfwd/hostport';

const binder = (taken: Set<number>) => {
  const tried: number[] = [];
  return { tried, tryBind: async (p: number) => (tried.push(p), !taken.has(p)) };
};

test('the port asked for, when free: no note', async () => {
  const b = binder(new Set());
  assert.deepEqual(await bindHostPort(8123, new Set(), b.tryBind, async () => 40000), { port: 8123 });
  assert.deepEqual(b.tried, [8123]);
});

test('taken: the next one above, with a note saying so', async () => {
  const b = binder(new Set([8123, 8124]));
  assert.deepEqual(await bindHostPort(8123, new Set(), b.tryBind, async () => 40000), { port: 8125, note: 'host port 8123 was taken; using 8125' });
});

test('ports to avoid (other VMs\' SSH ports) are never tried', async () => {
  const b = binder(new Set([8123]));
  const r = await bindHostPort(8123, new Set([8124, 8125]), b.tryBind, async () => 40000);
  assert.equal(r.port, 8126);
  assert.deepEqual(b.tried, [8123, 8126]);
});

test('all nearby taken: any free port; none at all: busy', async () => {
  const near = new Set(Array.from({ length: 11 }, (_, i) => 8123 + i));
  assert.deepEqual(await bindHostPort(8123, new Set(), binder(near).tryBind, async () => 40000), { port: 40000, note: 'host port 8123 was taken; using 40000' });
  await assert.rejects(bindHostPort(8123, new Set(), async () => false, async () => 40000), /no free host port for 8123/);
});

test('near the top of the range: never past 65535', async () => {
  const b = binder(new Set([65535]));
  const r = await bindHostPort(65535, new Set(), b.tryBind, async () => 40001);
  assert.equal(r.port, 40001);
  assert.ok(b.tried.every((p) => p <= 65535));
});
