/**
 * Shared folders on a real Debian guest (one VM, made with a read-write share of a tmp
 * dir at its own path and a read-only one at /mnt/ro): a host file is read (and written)
 * in the guest and a guest file is on the host, owned by the guest user; the read-only
 * share refuses writes; a share is added and removed live (virtiofs) or kept for the next
 * boot (9p); suspend keeps what was written and the share works after resume; a process
 * holding a file open makes suspend refuse with its name; the shares are back after a
 * reboot (last).
 */
import assert from 'node:assert/strict';
import { chownSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { ShareInfo } from '../../src/shared/types';
import { bootDebian, Sandbox, waitFor } from './harness';

const sb = new Sandbox('shares');
const VM = 'sh';
const rw = mkdtempSync(path.join(os.tmpdir(), 'devvm-share-rw-'));
const ro = mkdtempSync(path.join(os.tmpdir(), 'devvm-share-ro-'));
const live = mkdtempSync(path.join(os.tmpdir(), 'devvm-share-live-'));
/** The guest's first user is uid 1000: a host user with that uid (a usual desktop) owns these, as a non-root host would. */
const HOST_UID = 1000;

const shares = () => sb.json<{ shares: ShareInfo[]; state: string }>(['info', VM]).shares;
// One string: ssh joins its arguments for the remote shell, so ['sh', '-c', cmd] would run `sh -c <first word>`.
const guest = (cmd: string) => sb.ssh(VM, [cmd]);
const guestOk = (cmd: string) => {
  const r = guest(cmd);
  assert.equal(r.code, 0, `${cmd}: ${r.stderr}${r.stdout}`);
  return r.stdout;
};
const allMounted = (n: number) => waitFor(`${n} shares mounted`, 240_000, () => {
  const s = shares();
  return s.length === n && s.every((x) => x.mounted) ? s : undefined;
});

before(async () => {
  writeFileSync(path.join(rw, 'from-host.txt'), 'hello from the host\n');
  chownSync(rw, HOST_UID, HOST_UID);
  chownSync(path.join(rw, 'from-host.txt'), HOST_UID, HOST_UID);
  writeFileSync(path.join(ro, 'readme.txt'), 'read only\n');
  chownSync(ro, HOST_UID, HOST_UID);
  writeFileSync(path.join(live, 'live.txt'), 'added live\n');
  chownSync(live, HOST_UID, HOST_UID);
  await bootDebian(sb, VM, ['--share', rw, '--share', `${ro}:/mnt/ro:ro`]);
});

after(() => {
  sb.cleanup();
  for (const d of [rw, ro, live]) rmSync(d, { recursive: true, force: true });
});

test('a host file is read and written in the guest, a guest file is on the host owned by the guest user', async () => {
  const s = await allMounted(2);
  const doctor = sb.ok(['doctor']);
  console.log(`transports: ${s.map((x) => `${x.guestPath}=${x.transport}`).join(', ')}; doctor: ${/shared folders.*$/m.exec(doctor)?.[0]}`);
  assert.equal(s.find((x) => x.guestPath === rw)?.readOnly, false);
  assert.match(sb.ok(['info', VM]), /shared folders:\n {4}.* -> .* \((virtiofs|9p)(, read-only)?; mounted\)/);
  assert.equal(guestOk(`cat ${rw}/from-host.txt`), 'hello from the host\n');
  const uid = guestOk('id -u').trim();
  guestOk(`echo from the guest > ${rw}/from-guest.txt && echo appended >> ${rw}/from-host.txt && mkdir ${rw}/gdir`);
  assert.equal(readFileSync(path.join(rw, 'from-guest.txt'), 'utf8'), 'from the guest\n');
  assert.equal(readFileSync(path.join(rw, 'from-host.txt'), 'utf8'), 'hello from the host\nappended\n');
  assert.equal(String(statSync(path.join(rw, 'from-guest.txt')).uid), uid, 'the host file is owned by the guest user\'s uid');
  assert.equal(String(statSync(path.join(rw, 'gdir')).uid), uid);
  assert.equal(guestOk(`stat -c %U ${rw}/from-host.txt ${rw}/from-guest.txt`), 'dev\ndev\n', 'in the guest both belong to the guest user');
});

test('the read-only share refuses writes in the guest (as the user and as root)', () => {
  assert.equal(guestOk('cat /mnt/ro/readme.txt'), 'read only\n');
  for (const cmd of ['touch /mnt/ro/x', 'sudo -n touch /mnt/ro/x', 'echo y >> /mnt/ro/readme.txt']) {
    const r = guest(cmd);
    assert.notEqual(r.code, 0, cmd);
    assert.match(r.stderr, /Read-only file system/, cmd);
  }
  assert.ok(!existsSync(path.join(ro, 'x')));
  assert.equal(readFileSync(path.join(ro, 'readme.txt'), 'utf8'), 'read only\n');
});

test('a share is added and removed on the running VM (virtiofs), or kept for the next boot (9p)', async () => {
  const out = sb.ok(['share', VM, live, '/mnt/live']);
  const info = shares().find((x) => x.guestPath === '/mnt/live')!;
  if (info.transport === 'virtiofs') {
    assert.ok(info.mounted, out);
    assert.equal(guestOk('cat /mnt/live/live.txt'), 'added live\n');
    sb.ok(['unshare', VM, '/mnt/live']);
    assert.doesNotMatch(guestOk('cat /proc/mounts'), /\/mnt\/live/);
    assert.equal(shares().some((x) => x.guestPath === '/mnt/live'), false);
  } else {
    assert.match(out, /next boot/);
    assert.equal(info.mounted, false);
    sb.ok(['unshare', VM, '/mnt/live']);
  }
});

test('a process holding a file open in a share makes suspend refuse with its name, changing nothing', async () => {
  guestOk(`nohup tail -f ${rw}/from-host.txt < /dev/null > /dev/null 2>&1 &`);
  await waitFor('tail to run', 30_000, () => guest('pgrep -x tail').code === 0);
  const r = sb.cli(['suspend', VM]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^devvm: cannot suspend VM "sh": process "tail" \(pid \d+\) in the guest holds .*from-host\.txt open in a shared folder/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.equal(sb.json<{ state: string }>(['info', VM]).state, 'running');
  assert.ok(shares().every((x) => x.mounted), 'still mounted');
  guestOk('pkill -x tail; true');
});

test('suspend: what the guest wrote is on the host; after resume the share works', async () => {
  guestOk(`echo before suspend > ${rw}/before.txt`);
  const t0 = Date.now();
  sb.ok(['suspend', VM]);
  console.log(`suspend with shares took ${Date.now() - t0} ms`);
  assert.equal(readFileSync(path.join(rw, 'before.txt'), 'utf8'), 'before suspend\n');
  const t1 = Date.now();
  sb.ok(['resume', VM, '--wait-ssh']);
  console.log(`resume with shares took ${Date.now() - t1} ms`);
  await allMounted(2);
  assert.equal(guestOk(`cat ${rw}/before.txt`), 'before suspend\n');
  guestOk(`echo after resume > ${rw}/after.txt`);
  assert.equal(readFileSync(path.join(rw, 'after.txt'), 'utf8'), 'after resume\n');
});

test('the shares are back after a reboot', async () => {
  sb.ok(['stop', VM]);
  const r = await sb.cliAsync(['start', VM, '--wait-ssh']);
  assert.equal(r.code, 0, r.stderr);
  await allMounted(2);
  assert.equal(guestOk(`cat ${rw}/after.txt /mnt/ro/readme.txt`), 'after resume\nread only\n');
});
