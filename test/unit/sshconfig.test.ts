import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ensureInclude, renderSshConfig } from '../../src/helper/sshconfig';

test('one pinned Host block per VM', () => {
  const text = renderSshConfig([
    { vm: 'web', port: 40100, user: 'bob', identityFile: '/h/keys/id_ed25519', knownHostsFile: '/h/keys/known_hosts.web' },
    { vm: 'dev', port: 40022, user: 'alice', identityFile: '/h with space/keys/id', knownHostsFile: '/h/keys/known_hosts.dev' },
  ]);
  const dev = text.slice(text.indexOf('Host devvm-dev'), text.indexOf('Host devvm-web'));
  assert.ok(text.indexOf('Host devvm-dev') < text.indexOf('Host devvm-web'), 'sorted');
  for (const line of ['HostName 127.0.0.1', 'Port 40022', 'User alice', 'IdentityFile "/h with space/keys/id"', 'HostKeyAlias devvm-dev', 'StrictHostKeyChecking yes', 'UserKnownHostsFile /h/keys/known_hosts.dev']) {
    assert.ok(dev.includes(`  ${line}\n`), line);
  }
  assert.throws(() => renderSshConfig([{ vm: 'x', port: 1, user: 'u', identityFile: '/a"b', knownHostsFile: '/k' }]));
});

test('Include is added once, at the top, with a backup', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-ssh-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const user = path.join(dir, '.ssh', 'config');
  const first = ensureInclude('/h/ssh_config', user);
  assert.equal(first.changed, true);
  assert.equal(first.backup, null);
  writeFileSync(user, `${readFileSync(user, 'utf8')}Host other\n  User x\n`);
  const again = ensureInclude('/h/ssh_config', user);
  assert.equal(again.changed, false);
  const text = readFileSync(user, 'utf8');
  assert.equal(text.split('Include /h/ssh_config').length, 2);
  assert.ok(text.indexOf('Include') < text.indexOf('Host other'));

  const existing = path.join(dir, 'existing');
  writeFileSync(existing, 'Host a\n  User b\n');
  const r = ensureInclude('/h/ssh_config', existing);
  assert.ok(r.backup && existsSync(r.backup));
  assert.equal(readFileSync(r.backup, 'utf8'), 'Host a\n  User b\n');
  assert.match(readFileSync(existing, 'utf8'), /^# Added by devvm.*\nInclude \/h\/ssh_config\n\nHost a\n/);
});
