/** The --tls-psk key file: what is accepted, what is refused with one line, and the copy QEMU reads. */
import assert from 'node:assert/strict';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { VmFiles } from '../../src/helper/filenames';
import { run } from '../../src/helper/proc';
import { installPsk, readPskFile, removeAttachKeys, tlsSourceOnly } from '../../src/helper/tlspsk';

const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-psk-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const KEY = 'a1'.repeat(32);
const file = (name: string, content: string) => {
  const p = path.join(dir, name);
  writeFileSync(p, content, { mode: 0o600 });
  return p;
};

test('a key file "identity:hexkey" (one line, newline optional) is read', async () => {
  assert.deepEqual(await readPskFile(file('ok', `devvm:${KEY}\n`)), { identity: 'devvm', key: KEY });
  assert.deepEqual(await readPskFile(file('ok2', `a.b_c-9:${KEY.toUpperCase()}`)), { identity: 'a.b_c-9', key: KEY });
});

test('anything but one line "identity:hexkey" is refused with one line', async () => {
  for (const [name, content] of [
    ['two-lines', `devvm:${KEY}\nother:${KEY}\n`],
    ['no-colon', KEY],
    ['bad-ident', `dev vm:${KEY}`],
    ['ident-colon', `a:b:${KEY}`],
    ['not-hex', 'devvm:zz'],
    ['odd-hex', 'devvm:abc'],
    ['empty', ''],
    ['crlf', `devvm:${KEY}\r\n`],
    ['big', `devvm:${'ab'.repeat(3000)}`],
  ]) {
    await assert.rejects(readPskFile(file(name!, content!)), (e: Error) => /TLS-PSK key file/.test(e.message) && !e.message.includes('\n'), name);
  }
});

test('a FIFO, a directory, a missing file and a file of another user are refused (a FIFO without hanging)', async () => {
  const fifo = path.join(dir, 'fifo');
  await run('mkfifo', [fifo]);
  await assert.rejects(readPskFile(fifo), /is not a regular file/);
  await assert.rejects(readPskFile(dir), /is not a regular file/);
  await assert.rejects(readPskFile(path.join(dir, 'nope')), /does not exist/);
  if (process.getuid?.() === 0) {
    const other = file('other', `devvm:${KEY}\n`);
    chownSync(other, 65534, 65534);
    await assert.rejects(readPskFile(other), /is not owned by you/);
  }
});

test('only nbd:// (TCP) sources take a key', () => {
  tlsSourceOnly('nbd://127.0.0.1:10809/l1');
  assert.throws(() => tlsSourceOnly('/srv/disk.img'), /only for nbd:\/\//);
  assert.throws(() => tlsSourceOnly('nbd+unix:///l1?socket=/tmp/s'), /only for nbd:\/\//);
});

test('the copy QEMU reads: a fresh 0700 directory with keys.psk 0600; removed with the VM\'s other attach keys', async () => {
  const vm = new VmFiles(path.join(dir, 'vm'));
  mkdirSync(vm.dir);
  const d = vm.attachTls('xd1');
  mkdirSync(d);
  writeFileSync(path.join(d, 'stale'), 'x');
  await installPsk(d, { identity: 'devvm', key: KEY });
  assert.equal(statSync(d).mode & 0o777, 0o700);
  assert.equal(statSync(path.join(d, 'keys.psk')).mode & 0o777, 0o600);
  assert.equal(readFileSync(path.join(d, 'keys.psk'), 'utf8'), `devvm:${KEY}\n`);
  assert.throws(() => statSync(path.join(d, 'stale')), /ENOENT/);
  mkdirSync(path.join(vm.dir, 'nbd-tls'));
  removeAttachKeys(vm);
  assert.throws(() => statSync(d), /ENOENT/);
  assert.ok(statSync(path.join(vm.dir, 'nbd-tls')).isDirectory(), "the export's own key stays");
});
