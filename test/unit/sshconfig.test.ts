import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ensureInclude, proxyCommand, renderSshConfig, sshProxyArgv } from '../../src/helper/sshconfig';

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
  // ssh expands ${VAR} in these options with no escape, and a line break would end the value.
  assert.throws(() => renderSshConfig([{ vm: 'x', port: 1, user: 'u', identityFile: '/a${HOME}/b', knownHostsFile: '/k' }]), /ssh_config/);
  assert.throws(() => renderSshConfig([{ vm: 'x', port: 1, user: 'u', identityFile: '/a\nHost *', knownHostsFile: '/k' }]), /line break/);
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

test('a symlinked ~/.ssh/config stays a symlink: its target gets the Include, mode kept, backup made', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-ssh-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const dotfiles = path.join(dir, 'dotfiles');
  mkdirSync(dotfiles);
  const target = path.join(dotfiles, 'ssh_config');
  writeFileSync(target, 'Host a\n  User b\n');
  chmodSync(target, 0o640);
  mkdirSync(path.join(dir, '.ssh'));
  const link = path.join(dir, '.ssh', 'config');
  symlinkSync('../dotfiles/ssh_config', link); // relative, as dotfile managers make them
  const r = ensureInclude('/h/ssh_config', link);
  assert.equal(r.changed, true);
  assert.ok(lstatSync(link).isSymbolicLink(), 'still a symlink');
  assert.equal(readlinkSync(link), '../dotfiles/ssh_config');
  assert.match(readFileSync(target, 'utf8'), /^# Added by devvm.*\nInclude \/h\/ssh_config\n\nHost a\n/);
  assert.equal(statSync(target).mode & 0o777, 0o640);
  assert.equal(readFileSync(r.backup!, 'utf8'), 'Host a\n  User b\n');
  assert.deepEqual(readdirSync(dotfiles), ['ssh_config'], 'no temp file left beside the target');
  assert.equal(ensureInclude('/h/ssh_config', link).changed, false, 'seen through the link next time');

  // A dangling link: the file is created where it points.
  const dangling = path.join(dir, 'dangling');
  symlinkSync(path.join(dotfiles, 'new_config'), dangling);
  ensureInclude('/h/ssh_config', dangling);
  assert.ok(lstatSync(dangling).isSymbolicLink());
  assert.match(readFileSync(path.join(dotfiles, 'new_config'), 'utf8'), /Include \/h\/ssh_config/);
});

/** Runs ssh to a local port that accepts and says nothing: ssh loads its identities, then gives up. */
function sshVerbose(config: string, host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', ['-v', '-F', config, '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', '-o', `Port=${port}`, host, 'true'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('error', reject);
    child.on('exit', () => resolve(out));
  });
}

test('a DEVVM_HOME with % and spaces: ssh reads the right key, known_hosts and Include', { skip: spawnSync('ssh', ['-V']).error ? 'no ssh' : false }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-ssh-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const home = path.join(dir, 'my 100%h vms [x]');
  mkdirSync(path.join(home, 'keys'), { recursive: true });
  const identityFile = path.join(home, 'keys', 'id_ed25519');
  const knownHostsFile = path.join(home, 'keys', 'known_hosts.x');
  writeFileSync(identityFile, '');
  writeFileSync(knownHostsFile, '');
  const cfg = path.join(home, 'ssh_config');
  writeFileSync(cfg, renderSshConfig([{ vm: 'x', port: 40022, user: 'alice', identityFile, knownHostsFile }]));

  const g = spawnSync('ssh', ['-G', '-F', cfg, 'devvm-x'], { encoding: 'utf8' });
  assert.equal(g.status, 0, g.stderr);
  const opt = (k: string) => g.stdout.split('\n').find((l) => l.startsWith(`${k} `))?.slice(k.length + 1);
  assert.equal(opt('userknownhostsfile'), knownHostsFile);
  assert.equal(opt('port'), '40022');
  assert.equal(opt('user'), 'alice');

  // ssh -G prints IdentityFile before expanding it: see what ssh really loads.
  const srv = net.createServer((s) => setTimeout(() => s.destroy(), 500)).listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.after(() => srv.close());
  const port = (srv.address() as net.AddressInfo).port;
  const v = await sshVerbose(cfg, 'devvm-x', port);
  assert.ok(v.includes(`identity file ${identityFile} type`), v);

  // The user's config including devvm's: Include takes globs, not tokens.
  const user = path.join(dir, 'user_config');
  ensureInclude(cfg, user);
  // Quotes and backslashes are escaped, not refused.
  const odd = path.join(dir, 'a "q" b\\c', 'known_hosts');
  writeFileSync(cfg, renderSshConfig([{ vm: 'x', port: 40022, user: 'alice', identityFile, knownHostsFile: odd }]));
  const go = spawnSync('ssh', ['-G', '-F', cfg, 'devvm-x'], { encoding: 'utf8' });
  assert.ok(go.stdout.includes(`\nuserknownhostsfile ${odd}\n`), go.stdout);

  const gi = spawnSync('ssh', ['-G', '-F', user, 'devvm-x'], { encoding: 'utf8' });
  assert.equal(gi.status, 0, gi.stderr);
  assert.ok(gi.stdout.includes('\nport 40022\n'), gi.stdout);
});

test('ProxyCommand: an argument array that ssh and the shell hand over intact, spaces, quotes, % and backslashes included', { skip: spawnSync('ssh', ['-V']).error ? 'no ssh' : false }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-ssh-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const odd = path.join(dir, `inst all "q" it's 100%h \\x \${HOME} $(id) #c`);
  mkdirSync(odd);
  const script = path.join(odd, 'proxy.js');
  const out = path.join(dir, 'argv.json');
  // Records its arguments, then closes: ssh gives up, having run us.
  writeFileSync(script, `require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify(process.argv.slice(2)));\n`);
  const args = ['ssh-proxy', 'x', '', 'a b', "it's", 'back\\slash', '100%', '%h', '${HOME}', '$HOME', '"dq"', '`id`', '; exit 1', 'tab\there', '*'];
  const proxy = [process.execPath, script, ...args];
  const cfg = path.join(dir, 'ssh_config');
  writeFileSync(cfg, renderSshConfig([{ vm: 'x', port: 40022, user: 'alice', identityFile: '/dev/null', knownHostsFile: '/dev/null', proxy }]));
  assert.match(readFileSync(cfg, 'utf8'), /\n  ProxyCommand .*proxy\.js/);
  for (const shell of ['/bin/sh', '/bin/bash', '/usr/bin/zsh', '/usr/bin/fish'].filter((s) => existsSync(s))) {
    rmSync(out, { force: true });
    spawnSync('ssh', ['-F', cfg, '-o', 'BatchMode=yes', 'devvm-x', 'true'], { env: { ...process.env, SHELL: shell }, encoding: 'utf8', timeout: 30_000 });
    assert.ok(existsSync(out), `${shell}: the proxy ran`);
    assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), args, shell);
  }
  assert.throws(() => proxyCommand(['/a\nb']), /line break/);
});

test('the proxy argv names this helper\'s home, Electron runs as node, and a path env(1) would misread is refused', () => {
  const r = { node: '/usr/bin/node', cli: '/opt/devvm/dist/cli.js', home: '/h', electron: false };
  assert.deepEqual(sshProxyArgv(r, 'web'), ['/usr/bin/env', 'DEVVM_HOME=/h', '/usr/bin/node', '/opt/devvm/dist/cli.js', 'ssh-proxy', 'web']);
  assert.deepEqual(sshProxyArgv({ ...r, electron: true }, 'web')?.slice(0, 3), ['/usr/bin/env', 'DEVVM_HOME=/h', 'ELECTRON_RUN_AS_NODE=1']);
  assert.equal(sshProxyArgv({ ...r, cli: '/opt/a=b/cli.js' }, 'web'), null);
  assert.equal(proxyCommand(['/usr/bin/env', 'DEVVM_HOME=/my home', 'x']), "/usr/bin/env 'DEVVM_HOME=/my home' x");
  // Without a proxy the block is as before: ssh connects to the port itself.
  assert.ok(!renderSshConfig([{ vm: 'x', port: 1, user: 'u', identityFile: '/i', knownHostsFile: '/k' }]).includes('ProxyCommand'));
});
