/**
 * The compiler holds the helper to the protocol: `npm test` typechecks this file, and each
 * `@ts-expect-error` below fails the typecheck if the mistake it marks ever compiles.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Handlers, ParamsOf, ResultOf } from '../../src/shared/rpc';

type H = Handlers<unknown>;

// A handler returning the wrong result type does not compile.
// @ts-expect-error vmSnapshot must return SnapshotInfo & { pauseMs }
export const wrongResult: H['vmSnapshot'] = () => ({ name: 's' });

// A handler reading a parameter the request does not declare does not compile.
// @ts-expect-error StopParams has no `snapshot`
export const wrongParam: H['vmStop'] = (p) => p.snapshot;

// A handler table with a handler missing does not compile.
// @ts-expect-error every request needs its handler
export const missing: Pick<H, 'ping' | 'doctor'> = { ping: () => ({ pid: 1, version: '', home: '', startedAt: '' }) };

test('request parameter and result types come from the declaration', () => {
  const p: ParamsOf<'vmStart'> = { name: 'web', waitSsh: true };
  const r: ResultOf<'vmDelete'> = undefined;
  assert.equal(p.name, 'web');
  assert.equal(r, undefined);
});
