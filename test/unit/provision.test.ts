import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parse } from 'yaml';
import {
  ensureClientKey,
  generateHostKey,
  hashPassword,
  knownHostsLine,
  READY_MARKER,
  renderMetaData,
  renderUserData,
  writeSeed,
  type ProvisionSpec,
} from '../../src/helper/provision';
import { setLogFile } from '../../src/helper/log';
import { DevvmError } from '../../src/shared/errors';
import { CLIENT_KEY, HASH, provisionSpec } from './provision-fixture';

const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-provision-'));
const helperLog = path.join(dir, 'helper.log');
let hostKey: { privateKey: string; publicKey: string };

before(async () => {
  setLogFile(helperLog); // keeps command lines out of the test output, and lets us read them
  hostKey = await generateHostKey(path.join(dir, 'host_key'), 'devvm-dev');
});
after(() => {
  setLogFile(null);
  rmSync(dir, { recursive: true, force: true });
});

const spec = (over: Partial<ProvisionSpec> = {}): ProvisionSpec => provisionSpec(hostKey, over);

type Cfg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** user-data as cloud-init would see it: the header line, then YAML 1.1. */
function load(text: string): Cfg {
  assert.ok(text.startsWith('#cloud-config\n'), 'starts with #cloud-config');
  return parse(text, { version: '1.1' }) as Cfg;
}

// The guest reads user-data with PyYAML; check with the real thing when it is installed.
const hasPyYaml = spawnSync('python3', ['-c', 'import yaml'], { encoding: 'utf8' }).status === 0;
function loadWithPyYaml(texts: string[]): Cfg[] {
  const script = 'import json, sys, yaml; print(json.dumps([yaml.safe_load(t) for t in json.load(sys.stdin)]))';
  const r = spawnSync('python3', ['-c', script], { input: JSON.stringify(texts), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Cfg[];
}

const rejects = async (f: () => unknown, re?: RegExp) =>
  assert.rejects(
    async () => f(),
    (e: unknown) => e instanceof DevvmError && e.code === 'invalid-argument' && (!re || re.test(e.oneLine())),
  );

test('user-data: the first user, host key, hostname, no default user, ready marker', () => {
  const text = renderUserData(spec());
  for (const cfg of [load(text), ...(hasPyYaml ? loadWithPyYaml([text]) : [])]) {
    assert.deepEqual(cfg.users, [
      {
        name: 'alice',
        gecos: 'Alice Example',
        groups: ['sudo'],
        shell: '/bin/bash',
        lock_passwd: false,
        hashed_passwd: HASH,
        ssh_authorized_keys: [CLIENT_KEY],
      },
    ]);
    assert.equal(cfg.hostname, 'dev');
    assert.equal(cfg.fqdn, 'dev');
    assert.equal(cfg.manage_etc_hosts, true);
    assert.equal(cfg.locale, 'C.UTF-8');
    assert.equal(cfg.resize_rootfs, true);
    assert.deepEqual(cfg.growpart, { mode: 'off' });
    assert.equal(cfg.disable_root, true);
    assert.equal(cfg.ssh_pwauth, false);
    assert.equal(cfg.ssh_deletekeys, true);
    assert.deepEqual(cfg.ssh_genkeytypes, ['ed25519']);
    assert.deepEqual(cfg.ssh_keys, { ed25519_private: hostKey.privateKey, ed25519_public: hostKey.publicKey });
    assert.ok(cfg.final_message.includes(`${READY_MARKER} devvm-0b7f3c1e-5d7a-4a53-9a55-3f1f2b1c9e10 `), cfg.final_message);
    // ssh on, autologin off: nothing to mask, no drop-in; only lingering, as the devvm seed does.
    assert.equal(cfg.bootcmd, undefined);
    assert.equal(cfg.write_files, undefined);
    assert.deepEqual(cfg.runcmd, [['loginctl', 'enable-linger', 'alice']]);
    assert.ok(!('chpasswd' in cfg) && !('password' in cfg), 'no plain password anywhere');
  }
  assert.doesNotMatch(text, /^\s*-\s*default\s*$/m, 'no default user');
});

// Runs where cloud-init is installed (a guest, or a host with the package): its own schema check.
const hasCloudInit = spawnSync('cloud-init', ['--version'], { encoding: 'utf8' }).status === 0;
test('cloud-init schema accepts every variant', { skip: !hasCloudInit && 'cloud-init is not installed' }, () => {
  for (const over of [{}, { passwordHash: null }, { autologin: true }, { ssh: false }, { ssh: false, autologin: true, passwordHash: null, authorizedKeys: [] }]) {
    const file = path.join(dir, 'user-data');
    writeFileSync(file, renderUserData(spec({ fullName: ` Zoë '"$\`!#&|;<>*?{}[]%@ -- yes `, ...over })));
    const r = spawnSync('cloud-init', ['schema', '--config-file', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${JSON.stringify(over)}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /Valid cloud-config/);
  }
});

test('meta-data: instance id and hostname', () => {
  assert.deepEqual(parse(renderMetaData(spec()), { version: '1.1' }), {
    'instance-id': 'devvm-0b7f3c1e-5d7a-4a53-9a55-3f1f2b1c9e10',
    'local-hostname': 'dev',
  });
});

test('no password: locked, passwordless sudo', () => {
  const u = load(renderUserData(spec({ passwordHash: null }))).users[0];
  assert.equal(u.lock_passwd, true);
  assert.equal(u.sudo, 'ALL=(ALL) NOPASSWD:ALL');
  assert.equal('hashed_passwd' in u, false);
  assert.deepEqual(u.groups, ['sudo']);
  // No keys: the key is left out, since cloud-init's schema refuses an empty list.
  assert.equal('ssh_authorized_keys' in load(renderUserData(spec({ authorizedKeys: [] }))).users[0], false);
});

test('full names and keys full of YAML and shell metacharacters round-trip exactly', () => {
  const names = [
    `'"$\`!#&|;<>*?{}[]%@ -- x`,
    `O'Brien "Bob" $HOME & <x> | {y} #1`,
    'Zoë Ångström 李',
    '  leading and trailing  ',
    ' x',
    'x ',
    'yes', 'no', 'on', 'off', 'y', 'n', 'True', '1e3', '0777', '0x1f', '1_000', '.5', '1.', '.inf', '2001-12-14',
    'null', 'Null', '~', '',
    '- dash', '? q', '#hash', '@at', '`tick', '%pct', '!bang', '&amp', '*star', '|pipe', '>gt', "'", '"', '---', '...',
    '$(id) `id` ${HOME}', 'emoji 😀 \u00a0nbsp', 'x #y', 'a  b',
  ];
  const keys = [CLIENT_KEY, `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq0kdUxVqrV2C9ONKmuyfwf8fSBK1Fi5NiXhz8QjX6l yes: "#x" 'y' \t{a}`];
  const texts = names.map((fullName) => renderUserData(spec({ fullName, authorizedKeys: keys })));
  const parsed = [texts.map(load), ...(hasPyYaml ? [loadWithPyYaml(texts)] : [])];
  for (const cfgs of parsed) {
    cfgs.forEach((cfg, i) => {
      assert.equal(cfg.users[0].gecos, names[i], JSON.stringify(names[i]));
      assert.deepEqual(cfg.users[0].ssh_authorized_keys, keys);
    });
  }
});

test('characters cloud-init cannot read are refused, not mangled', async () => {
  // C1 controls and U+FFFE are not printable for PyYAML; U+0085/U+2028/U+2029 are YAML 1.1 line breaks.
  for (const bad of ['a\u0080b', 'a\u0085b', 'a\u009fb', 'a\u2028b', 'a\u2029b', 'a\ufffeb', 'a\ud800b']) {
    await rejects(() => renderUserData(spec({ fullName: bad })), /cloud-init cannot read|control character/);
  }
  await rejects(() => renderUserData(spec({ authorizedKeys: [`${CLIENT_KEY} \u0085`] })), /cloud-init cannot read/);
});

test('the spec is validated again (defence in depth)', async () => {
  await rejects(() => renderUserData(spec({ hostname: 'Bad_Name' })), /VM name/);
  await rejects(() => renderUserData(spec({ user: 'root' })), /reserved/);
  await rejects(() => renderUserData(spec({ user: 'a b' })), /user name/);
  for (const fullName of ['a:b', 'a,b', 'a=b', 'a\\b', 'a\nb']) await rejects(() => renderUserData(spec({ fullName })), /full name/);
  await rejects(() => renderUserData(spec({ passwordHash: 'plain' })), /hash/);
  await rejects(() => renderUserData(spec({ passwordHash: '$1$abc$def' })), /hash/);
  await rejects(() => renderUserData(spec({ instanceId: 'x$UPTIME' })), /instance id/);
  await rejects(() => renderUserData(spec({ instanceId: '../x' })), /instance id/);
  await rejects(() => renderUserData(spec({ authorizedKeys: ['not a key'] })), /public key/);
  await rejects(() => renderUserData(spec({ hostKey: { ...hostKey, publicKey: CLIENT_KEY.replace('ssh-ed25519', 'ssh-rsa') } })), /ed25519/);
  await rejects(() => renderUserData(spec({ hostKey: { ...hostKey, privateKey: 'x' } })), /private key/);
  await rejects(() => renderMetaData(spec({ instanceId: 'a b' })), /instance id/);
});

test('autologin on: a serial-getty drop-in and a getty restart; off: neither', () => {
  const on = load(renderUserData(spec({ autologin: true })));
  assert.deepEqual(on.write_files, [
    {
      path: '/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf',
      owner: 'root:root',
      permissions: '0644',
      content: '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin alice --keep-baud 115200,57600,38400,9600 - $TERM\n',
    },
  ]);
  assert.deepEqual(on.runcmd, [
    ['loginctl', 'enable-linger', 'alice'],
    ['systemctl', 'daemon-reload'],
    ['systemctl', 'restart', 'serial-getty@ttyS0.service'],
  ]);
  const off = renderUserData(spec({ autologin: false }));
  assert.doesNotMatch(off, /autologin|serial-getty/);
});

test('ssh off: ssh.service and ssh.socket masked early (bootcmd) and again in runcmd', () => {
  const cfg = load(renderUserData(spec({ ssh: false, autologin: true })));
  assert.deepEqual(cfg.bootcmd, [['cloud-init-per', 'instance', 'devvm-ssh-off', 'systemctl', 'mask', '--now', 'ssh.service', 'ssh.socket']]);
  assert.deepEqual(cfg.runcmd[0], ['systemctl', 'mask', '--now', 'ssh.service', 'ssh.socket']);
  for (const entry of [...cfg.bootcmd, ...cfg.runcmd]) assert.ok(Array.isArray(entry), 'argv lists, not shell strings');
  // Keys still go in: the pinned host key stays valid if SSH is turned on later.
  assert.ok(cfg.ssh_keys.ed25519_private);
  const on = load(renderUserData(spec({ ssh: true })));
  assert.equal(on.bootcmd, undefined);
  assert.doesNotMatch(JSON.stringify(on), /mask/);
});

test('hashPassword: SHA-512 crypt that openssl reproduces; the password only on stdin', async () => {
  // A fake openssl first on PATH records its argv, then runs the real one.
  const real = spawnSync('sh', ['-c', 'command -v openssl'], { encoding: 'utf8' }).stdout.trim();
  assert.ok(real, 'openssl is installed');
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  const argvLog = path.join(dir, 'openssl-argv.log');
  writeFileSync(path.join(bin, 'openssl'), `#!/bin/sh\nprintf '%s\\n' "$@" >> '${argvLog}'\nexec '${real}' "$@"\n`);
  chmodSync(path.join(bin, 'openssl'), 0o755);
  const oldPath = process.env.PATH;
  process.env.PATH = `${bin}:${oldPath}`;
  const passwords = [
    ` pa'ss"w$o\`rd!#&|;<>*?{}[]%@ -- : \\ ü~`,
    `'"$\`!#&|;<>*?{}[]%@ -- : , = \\\\ "quoted" 'single'`,
    'Zoë Ångström 李',
    '  spaces around  ',
    'tab\there',
    'yes', 'no', '1e3', 'null', '~', '-n', '--help', '-salt',
    'x'.repeat(256),
  ];
  try {
    for (const pw of passwords) {
      const hash = await hashPassword(pw);
      const m = /^\$6\$([./A-Za-z0-9]{1,16})\$[./A-Za-z0-9]{86}$/.exec(hash);
      assert.ok(m, hash);
      const again = spawnSync(real, ['passwd', '-6', '-salt', m[1]!, '-stdin'], { input: `${pw}\n`, encoding: 'utf8' });
      assert.equal(again.status, 0, again.stderr);
      assert.equal(again.stdout.trim(), hash, `verifies for ${JSON.stringify(pw)}`);
      assert.notEqual(await hashPassword(pw), hash, 'a fresh salt each time');
    }
  } finally {
    process.env.PATH = oldPath;
  }
  const argv = readFileSync(argvLog, 'utf8');
  assert.match(argv, /^passwd\n-6\n-stdin\n/);
  assert.deepEqual([...new Set(argv.trim().split('\n'))].sort(), ['-6', '-stdin', 'passwd']);
  const logged = readFileSync(helperLog, 'utf8');
  for (const pw of passwords) {
    assert.ok(!argv.includes(pw), 'not in argv');
    if (pw.length > 3) assert.ok(!logged.includes(pw), 'not in the helper log');
  }
});

test('hashPassword refuses what it cannot hash faithfully', async () => {
  // openssl passwd -stdin cuts lines at 256 bytes; the guest's crypt() would not.
  await rejects(() => hashPassword('x'.repeat(257)), /256 bytes/);
  await rejects(() => hashPassword('ü'.repeat(129)), /256 bytes/);
  await rejects(() => hashPassword(''), /empty/);
  await rejects(() => hashPassword('a\nb'), /line break/);
  await rejects(() => hashPassword('a\0b'), /NUL/);
  await rejects(() => hashPassword('a\ud800b'), /Unicode/);
});

test('generateHostKey: 0600 ed25519 private key and its matching public key; overwrites safely', async () => {
  const file = path.join(dir, 'gen', 'ssh_host_ed25519_key');
  mkdirSync(path.dirname(file));
  writeFileSync(file, 'stale'); // ssh-keygen would ask "Overwrite (y/n)?"
  writeFileSync(`${file}.pub`, 'stale');
  const k = await generateHostKey(file, 'devvm-web');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.match(k.privateKey, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
  assert.match(k.publicKey, /^ssh-ed25519 AAAA[A-Za-z0-9+/=]+ devvm-web$/);
  const derived = spawnSync('ssh-keygen', ['-y', '-P', '', '-f', file], { encoding: 'utf8' });
  assert.equal(derived.status, 0, derived.stderr);
  assert.equal(derived.stdout.split(' ').slice(0, 2).join(' '), k.publicKey.split(' ').slice(0, 2).join(' '));
  const k2 = await generateHostKey(file, 'devvm-web');
  assert.notEqual(k2.publicKey, k.publicKey, 'a new key, no prompt');
});

test('ensureClientKey: created once (0600 in a 0700 dir), concurrent callers get the same key', async () => {
  const file = path.join(dir, 'home', 'keys', 'id_ed25519');
  const [a, b, c] = await Promise.all([ensureClientKey(file), ensureClientKey(file), ensureClientKey(file)]);
  assert.match(a, /^ssh-ed25519 AAAA/);
  assert.equal(b, a);
  assert.equal(c, a);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700);
  assert.equal(readFileSync(`${file}.pub`, 'utf8').trim(), a);
  assert.deepEqual(readdirSync(path.dirname(file)).sort(), ['id_ed25519', 'id_ed25519.pub'], 'no temporary files left');
  // Kept across calls; a lost .pub and loose modes are repaired.
  rmSync(`${file}.pub`);
  chmodSync(file, 0o644);
  chmodSync(path.dirname(file), 0o755);
  assert.equal(await ensureClientKey(file), a);
  assert.equal(readFileSync(`${file}.pub`, 'utf8').trim(), a);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700);
});

test('writeSeed: an ISO labelled cidata with user-data and meta-data, 0600, no temp dir left', async () => {
  const work = path.join(dir, 'vm=with=equals');
  mkdirSync(work);
  const iso = path.join(work, 'seed.iso');
  const s = spec({ fullName: `Zoë '"$\`!#&|;<>*?{}[]%@ -- x`, autologin: true, ssh: false });
  await writeSeed(iso, s, work);
  assert.equal(statSync(iso).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(work), ['seed.iso'], 'temporary directory removed');
  // Primary volume descriptor at sector 16; the volume identifier is bytes 40-71.
  const bytes = readFileSync(iso);
  assert.equal(bytes.subarray(32768 + 1, 32768 + 6).toString('latin1'), 'CD001');
  assert.equal(bytes.subarray(32768 + 40, 32768 + 72).toString('latin1').trimEnd(), 'cidata');
  const isoinfo = spawnSync('isoinfo', ['-d', '-i', iso], { encoding: 'utf8' });
  if (isoinfo.status === 0) {
    assert.match(isoinfo.stdout, /^Volume id: cidata$/m);
    assert.match(isoinfo.stdout, /Rock Ridge/);
    assert.match(isoinfo.stdout, /Joliet/);
    const files = spawnSync('isoinfo', ['-R', '-f', '-i', iso], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).sort();
    assert.deepEqual(files, ['/meta-data', '/user-data']);
    const read = (f: string) => spawnSync('isoinfo', ['-R', '-x', f, '-i', iso], { encoding: 'utf8' }).stdout;
    assert.equal(read('/user-data'), renderUserData(s));
    assert.equal(read('/meta-data'), renderMetaData(s));
  } else {
    const text = bytes.toString('utf8');
    assert.ok(text.includes(renderUserData(s)) && text.includes(renderMetaData(s)), 'both files in the image');
  }
});

test('writeSeed: an invalid spec writes nothing', async () => {
  const work = path.join(dir, 'bad');
  await rejects(() => writeSeed(path.join(work, 'seed.iso'), spec({ user: 'root' }), work));
  assert.equal(existsSync(path.join(work, 'seed.iso')), false);
});

test('knownHostsLine: alias, key type and body, no comment', async () => {
  const body = hostKey.publicKey.split(' ')[1];
  assert.equal(knownHostsLine('devvm-dev', hostKey.publicKey), `devvm-dev ssh-ed25519 ${body}`);
  assert.equal(knownHostsLine('devvm-dev', `ssh-ed25519 ${body}`), `devvm-dev ssh-ed25519 ${body}`);
  for (const alias of ['', 'a,b', 'a b', '*', '!x', '[x]:22', 'a\nb']) await rejects(() => knownHostsLine(alias, hostKey.publicKey), /alias/);
  await rejects(() => knownHostsLine('devvm-dev', 'garbage'), /public key/);
});
