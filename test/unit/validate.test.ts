import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import * as v from '../../src/shared/validate';

const rejects = (f: () => unknown, re?: RegExp) =>
  assert.throws(f, (e: unknown) => e instanceof DevvmError && e.code === 'invalid-argument' && !e.message.includes('\n') && (!re || re.test(e.oneLine())));

test('VM names: hostname-like only', () => {
  for (const ok of ['dev', 'web-1', 'a', '0', 'x'.repeat(63)]) assert.equal(v.vmName(ok), ok);
  for (const bad of ['', 'a/b', '..', '../x', 'a..b', 'has space', 'UPPER', '-lead', 'trail-', 'x'.repeat(64), 'x'.repeat(200), 'a_b', 'a.b', 'é', 'a\nb', 'a;rm', '$(id)', 42, null, undefined, {}]) {
    rejects(() => v.vmName(bad), /invalid VM name/);
  }
});

test('image names allow dots but not traversal', () => {
  assert.equal(v.imageName('debian-12'), 'debian-12');
  assert.equal(v.imageName('ubuntu-24.04'), 'ubuntu-24.04');
  for (const bad of ['..', 'a/../b', 'a..b', '.hidden', 'a/b', '']) rejects(() => v.imageName(bad));
});

test('user names: POSIX-ish, not reserved', () => {
  for (const ok of ['alice', '_svc', 'bob-2', 'a'.repeat(32)]) assert.equal(v.userName(ok), ok);
  for (const bad of ['root', 'daemon', 'sshd', 'sudo', 'Alice', '1abc', 'a b', 'a:b', "a'b", 'a$(x)', 'a'.repeat(33), '', 'ali\nce']) rejects(() => v.userName(bad));
});

test('full names: unicode yes, passwd separators and control chars no', () => {
  assert.equal(v.fullName('Zoë Ångström 李'), 'Zoë Ångström 李');
  assert.equal(v.fullName(`O'Brien "Bob" $HOME & <x> | {y} #1`), `O'Brien "Bob" $HOME & <x> | {y} #1`);
  for (const bad of ['a:b', 'a,b', 'a=b', 'a\\b', 'line\nbreak', 'tab\there', 'c1\u0085x', 'ls\u2028x', 'x'.repeat(201)]) rejects(() => v.fullName(bad));
});

test('passwords: anything printable, no NUL or line breaks', () => {
  const p = `p'a"s$s\`w!o#r&d|;<>*?{}[]%@ -- : \\ ü`;
  assert.equal(v.password(p), p);
  for (const bad of ['', 'a\nb', 'a\rb', 'a\0b', 'x'.repeat(257), 'ü'.repeat(129)]) rejects(() => v.password(bad));
  assert.equal(v.password('x'.repeat(256)), 'x'.repeat(256));
});

test('sizes: integers in range, numeric strings accepted', () => {
  assert.equal(v.cpus(2), 2);
  assert.equal(v.memoryMiB('1024'), 1024);
  assert.equal(v.diskGiB(20), 20);
  for (const bad of [0, -1, 1.5, 65, 'two', '1e3', Infinity, NaN]) rejects(() => v.cpus(bad));
  for (const bad of [0, 255, 262145, -1024, 2 ** 60]) rejects(() => v.memoryMiB(bad));
  rejects(() => v.memoryMiB(4096, 2048), /out of range/);
  for (const bad of [0, -5, 16385, 1e12]) rejects(() => v.diskGiB(bad));
});

test('ssh public keys: one OpenSSH line', () => {
  const k = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEx7 user@host';
  assert.equal(v.sshPublicKey(`${k}\n`), k);
  for (const bad of ['', 'not a key', `${k}\nssh-rsa AAAA`, '-----BEGIN OPENSSH PRIVATE KEY-----']) rejects(() => v.sshPublicKey(bad));
});

test('preview never echoes control characters and stays short', () => {
  assert.equal(v.preview('a\x1b[31mb'), '"a?[31mb"');
  assert.ok(v.preview('x'.repeat(500)).length < 50);
});
