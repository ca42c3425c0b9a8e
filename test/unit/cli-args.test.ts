/**
 * Every verb's argument parsing without a helper: argv -> the RPC calls it makes (method
 * and params, exactly), or a usage error with exit 2 and no RPC call at all.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { COMMANDS } from '../../src/cli/commands';
import { fingerprint } from '../../src/shared/devvmjson/changes';
import { loadManifest } from '../../src/shared/devvmjson/manifest';
import { makePlan } from '../../src/shared/devvmjson/plan';
import { cli, FakeSession } from './cli-fake';
import { run } from '../../src/cli/run';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-cli-args-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const pw = path.join(tmp, 'pw');
writeFileSync(pw, 'secret\n');
const pub = path.join(tmp, 'id.pub');
writeFileSync(pub, 'ssh-ed25519 AAAAC3Nza alice@host\n');
const abs = (p: string) => path.resolve(p);
// helper install writes the unit under XDG_CONFIG_HOME: here, not the user's.
process.env.XDG_CONFIG_HOME = path.join(tmp, 'config');
const T = '<token>';

// A folder with a devvm.json whose VM exists, set up and up to date.
const proj = path.join(realpathSync(tmp), 'proj');
mkdirSync(proj);
writeFileSync(path.join(proj, 'devvm.json'), '{ "user": "dev" }');
const projOrigin = { dir: proj, ...fingerprint(makePlan(loadManifest(proj), proj)), createDone: true };

const vm = { name: 'web', state: 'running', image: 'debian-12', user: 'alice', sshHost: 'devvm-web', sshPort: 2222, cpus: 2, memoryMiB: 2048 };
const info = { ...vm, diskGiB: 20, fullName: 'Alice', autologin: false, ssh: true, provisioned: true, accelerator: 'tcg', pid: 1, dir: '/h/vms/web', serialLog: '/h/vms/web/serial.log', createdAt: '', layers: [], snapshots: [], disks: [], usb: [] };
const answers: Record<string, unknown> = {
  'vm/list': [{ ...vm, state: 'suspended' }, { ...vm, name: 'proj', origin: projOrigin }],
  'vm/info': info,
  'vm/create': { ...vm, state: 'stopped' },
  'vm/start': vm, 'vm/stop': { ...vm, state: 'stopped' }, 'vm/suspend': { ...vm, state: 'suspended' },
  'vm/restore': vm, 'vm/clone': { ...vm, name: 'copy' },
  'vm/snapshot': { name: 's1', layer: 'l1', ram: false, createdAt: '' },
  'vm/wake': { configFile: '/h/ssh_config', host: 'devvm-web', user: 'alice', port: 2222 },
  'vm/wakePlan': { ready: true, ident: null },
  'vm/sshTarget': { configFile: '/h/ssh_config', host: 'devvm-web', user: 'alice', port: 2222 },
  'layer/tree': [],
  'disk/attach': { id: 'xd1', source: '/f', bus: 'virtio', readOnly: false },
  'disk/export': { vm: 'web', layer: 'l1', uri: 'nbd+unix:///web?socket=/h/vms/web/nbd.sock' },
  'usb/list': [], 'usb/attach': { id: '1-2', busnum: 1, devnum: 2, vendorId: '046d', productId: 'c52b', devnode: '/dev/bus/usb/001/002' },
  'image/list': [],
  'image/build': { name: 'debian-12', file: '/h/images/debian-12/disk.qcow2', actualSize: 1, sha256: 'ab' },
  'image/pull': { name: 'debian-12', file: '/h/images/debian-12/disk.qcow2', actualSize: 1, sha256: 'ab' },
  'image/import': { name: 'x', file: '/h/images/x/disk.qcow2', sha256: 'ab' },
  'helper/ping': { pid: 1, version: '0', home: '/h', startedAt: '', sshConfig: '/h/ssh_config' },
  'helper/doctor': { accelerator: { name: 'tcg', reason: 'r' }, nativeAddon: { loaded: true, detail: 'd' }, checks: [] },
  'ssh/include': { changed: true, file: '/home/u/.ssh/config', backup: null },
  'vm/set': { ...vm, state: 'stopped', display: 'auto' },
  'vm/display': { name: 'web', state: 'running', display: 'auto', socket: '/h/vms/web/vnc.sock', size: { width: 1024, height: 640 }, bootSize: { width: 1920, height: 1200 }, limits: {} },
  'vm/displayResize': { requested: { width: 1024, height: 640 }, size: { width: 1024, height: 640 }, applied: true, ms: 20 },
  'vm/screenshot': { png: '', width: 1024, height: 640 },
  'vm/share': { hostPath: '/src', guestPath: '/src', readOnly: false, transport: '9p', mounted: false, problem: 'mounted at the next boot' },
  'vm/portStatus': { name: 'web', auto: { on: true }, ports: [] },
  'vm/portAdd': { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80, kind: 'static', active: true },
};

type Expect = Array<[string, unknown?]>;
const ok: Array<[string[], Expect]> = [
  [['image', 'build', 'debian-12'], [['image/build', { recipe: 'debian-12', progressToken: T }]]],
  [['image', 'build', 'debian-12', '--name', 'deb'], [['image/build', { recipe: 'debian-12', name: 'deb', progressToken: T }]]],
  [['image', 'pull', 'debian-12'], [['image/pull', { recipe: 'debian-12', progressToken: T }]]],
  [['image', 'import', 'disk.qcow2', '--name', 'x'], [['image/import', { file: abs('disk.qcow2'), name: 'x', progressToken: T }]]],
  [['image', 'import', 'd.raw', '--name', 'x', '--format', 'raw', '--flatten', '--kernel', 'vmlinuz', '--initrd', 'initrd', '--copy'],
    [['image/import', { file: abs('d.raw'), name: 'x', format: 'raw', flatten: true, kernel: abs('vmlinuz'), initrd: abs('initrd'), copy: true, progressToken: T }]]],
  [['image', 'import', 'nbd://h:10809/e', '--name', 'x', '--format', 'qcow2'], [['image/import', { file: 'nbd://h:10809/e', name: 'x', format: 'qcow2', progressToken: T }]]],
  [['image', 'list'], [['image/list']]],
  [['image', '--json', 'list'], [['image/list']]],
  [['image', 'delete', 'x'], [['image/delete', { name: 'x' }]]],
  [['create', 'web', '--image', 'debian-12', '--user', 'alice'],
    [['vm/create', { name: 'web', image: 'debian-12', user: 'alice', sshKeys: [], autologin: false, ssh: true, start: false, waitSsh: false, progressToken: T }]]],
  [['create', 'web', '--image', 'd', '--user', 'alice', '--full-name', 'Alice E', '--password-file', pw, '--ssh-key', pub, '--ssh-key', 'ssh-rsa AAAA k',
    '--autologin', '--no-ssh', '--cpus', '4', '--memory', '4096', '--disk', '30', '--wait-ssh'],
    [['vm/create', { name: 'web', image: 'd', user: 'alice', fullName: 'Alice E', password: 'secret', sshKeys: ['ssh-ed25519 AAAAC3Nza alice@host', 'ssh-rsa AAAA k'], autologin: true, ssh: false, cpus: 4, memoryMiB: 4096, diskGiB: 30, start: true, waitSsh: true, progressToken: T }]]],
  // A negative number reaches the helper's range check (exit 1 there), not parseArgs.
  [['create', 'web', '--image', 'd', '--user', 'a', '--share', 'proj', '--share', '/data:/mnt/data:ro', '--share', '/x:rw'],
    [['vm/create', { name: 'web', image: 'd', user: 'a', sshKeys: [], autologin: false, ssh: true, shares: [{ hostPath: abs('proj'), readOnly: false }, { hostPath: '/data', guestPath: '/mnt/data', readOnly: true }, { hostPath: '/x', readOnly: false }], start: false, waitSsh: false, progressToken: T }]]],
  [['create', 'web', '--image', 'd', '--user', 'a', '--cpus', '-1'], [['vm/create', { name: 'web', image: 'd', user: 'a', sshKeys: [], autologin: false, ssh: true, cpus: -1, start: false, waitSsh: false, progressToken: T }]]],
  [['create', 'web', '--image', 'd', '--user', 'a', '--display'], [['vm/create', { name: 'web', image: 'd', user: 'a', sshKeys: [], autologin: false, ssh: true, display: true, start: false, waitSsh: false, progressToken: T }]]],
  [['create', 'web', '--image', 'd', '--user', 'a', '--display-size', '1280x800'],
    [['vm/create', { name: 'web', image: 'd', user: 'a', sshKeys: [], autologin: false, ssh: true, displaySize: { width: 1280, height: 800 }, start: false, waitSsh: false, progressToken: T }]]],
  [['set', 'web', '--display', 'on'], [['vm/set', { name: 'web', display: true }]]],
  [['set', 'web', '--display', 'off'], [['vm/set', { name: 'web', display: false }]]],
  [['set', 'web', '--display-size', 'auto'], [['vm/set', { name: 'web', displaySize: 'auto' }]]],
  [['set', 'web', '--idle-suspend', '30'], [['vm/set', { name: 'web', idleSuspend: 30 }]]],
  [['set', 'web', '--idle-suspend', 'off', '--autostart', 'on'], [['vm/set', { name: 'web', idleSuspend: 'off', autostart: true }]]],
  [['set', 'web', '--idle-suspend', 'default', '--autostart', 'off'], [['vm/set', { name: 'web', idleSuspend: 'default', autostart: false }]]],
  [['create', 'web', '--image', 'd', '--user', 'a', '--idle-suspend', '15', '--autostart'],
    [['vm/create', { name: 'web', image: 'd', user: 'a', sshKeys: [], autologin: false, ssh: true, idleSuspend: 15, autostart: true, start: false, waitSsh: false, progressToken: T }]]],
  [['ssh-proxy', 'web'], [['vm/wakePlan', { name: 'web' }], ['vm/wake', { name: 'web', progressToken: T }]]],
  [['display', 'web'], [['vm/display', { name: 'web' }]]],
  [['display', 'web', '--size', '1024x640'], [['vm/displayResize', { name: 'web', width: 1024, height: 640 }], ['vm/display', { name: 'web' }]]],
  [['screenshot', 'web', path.join(tmp, 'shot.png')], [['vm/screenshot', { name: 'web' }]]],
  [['start', 'web'], [['vm/start', { name: 'web', waitSsh: false, discardState: false, progressToken: T }]]],
  [['start', 'web', '--wait-ssh', '--timeout', '60', '--discard-state'], [['vm/start', { name: 'web', waitSsh: true, timeoutSec: 60, discardState: true, progressToken: T }]]],
  [['resume', 'web'], [['vm/list'], ['vm/start', { name: 'web', waitSsh: false, discardState: false, progressToken: T }]]],
  [['resume', 'ghost'], [['vm/list'], ['vm/start', { name: 'ghost', waitSsh: false, discardState: false, progressToken: T }]]],
  [['stop', 'web'], [['vm/stop', { name: 'web', force: false, progressToken: T }]]],
  [['stop', 'web', '--force'], [['vm/stop', { name: 'web', force: true, progressToken: T }]]],
  [['suspend', 'web'], [['vm/suspend', { name: 'web', progressToken: T }]]],
  [['delete', 'web', '--force'], [['vm/delete', { name: 'web', force: true }]]],
  [['up', proj], [['vm/list'], ['vm/start', { progressToken: T, name: 'proj', waitSsh: true, timeoutSec: 2700 }]]],
  [['down', proj], [['vm/list'], ['vm/stop', { name: 'proj' }]]],
  [['list'], [['vm/list']]],
  [['list', '--json'], [['vm/list']]],
  [['info', 'web'], [['vm/info', { name: 'web' }]]],
  // `--` on a verb that is not ssh: what follows is positional, as parseArgs always read it.
  [['info', '--', 'web'], [['vm/info', { name: 'web' }]]],
  [['snapshot', 'web', 's1'], [['vm/snapshot', { name: 'web', snapshot: 's1', ram: false, progressToken: T }]]],
  [['snapshot', 'web', 's1', '--ram'], [['vm/snapshot', { name: 'web', snapshot: 's1', ram: true, progressToken: T }]]],
  [['snapshot', 'web', 's1', '--delete'], [['vm/snapshotDelete', { name: 'web', snapshot: 's1' }]]],
  [['snapshots', 'web'], [['vm/info', { name: 'web' }]]],
  [['restore', 'web', 's1'], [['vm/restore', { name: 'web', snapshot: 's1', progressToken: T }]]],
  [['clone', 'web', 'copy', '--snapshot', 's1', '--start'], [['vm/clone', { source: 'web', name: 'copy', snapshot: 's1', start: true, progressToken: T }]]],
  [['layers'], [['layer/tree']]],
  [['disk', 'attach', 'web', 'extra.img'], [['disk/attach', { name: 'web', source: abs('extra.img'), usb: false, readOnly: false }]]],
  [['disk', 'attach', 'web', 'extra.img', '--format', 'raw', '--usb', '--read-only'], [['disk/attach', { name: 'web', source: abs('extra.img'), usb: true, readOnly: true, format: 'raw' }]]],
  [['disk', 'attach', 'web', 'nbd://h:1/e'], [['disk/attach', { name: 'web', source: 'nbd://h:1/e', usb: false, readOnly: false }]]],
  [['disk', 'attach', 'web', 'nbd://127.0.0.1:10809/l1', '--tls-psk', 'keys.psk'], [['disk/attach', { name: 'web', source: 'nbd://127.0.0.1:10809/l1', usb: false, readOnly: false, tlsPskFile: abs('keys.psk') }]]],
  [['disk', 'detach', 'web', 'xd1'], [['disk/detach', { name: 'web', id: 'xd1' }]]],
  [['disk', 'export', 'web'], [['disk/export', { name: 'web', progressToken: T }]]],
  [['disk', 'export', 'web', 's1', '--tcp'], [['disk/export', { name: 'web', snapshot: 's1', tcp: true, progressToken: T }]]],
  [['disk', 'unexport', 'web'], [['disk/unexport', { name: 'web' }]]],
  [['ports', 'web'], [['vm/portStatus', { name: 'web' }]]],
  [['port', 'add', 'web', '8080:80'], [['vm/portAdd', { name: 'web', protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80 }]]],
  [['port', 'add', 'web', '0.0.0.0:5353:53', '--udp'], [['vm/portAdd', { name: 'web', protocol: 'udp', hostAddress: '0.0.0.0', hostPort: 5353, guestPort: 53 }]]],
  [['port', 'add', 'web', '6000:60/udp'], [['vm/portAdd', { name: 'web', protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 6000, guestPort: 60 }]]],
  [['port', 'remove', 'web', '8080'], [['vm/portRemove', { name: 'web', protocol: 'tcp', hostPort: 8080 }]]],
  [['port', 'remove', 'web', '5353', '--udp'], [['vm/portRemove', { name: 'web', protocol: 'udp', hostPort: 5353 }]]],
  [['create', 'web', '--image', 'd', '--user', 'a', '--port', '8080:80', '--port', '10.1.2.3:53:53/udp'],
    [['vm/create', { name: 'web', image: 'd', user: 'a', sshKeys: [], autologin: false, ssh: true, ports: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80 }, { protocol: 'udp', hostAddress: '10.1.2.3', hostPort: 53, guestPort: 53 }], start: false, waitSsh: false, progressToken: T }]]],
  [['usb', 'list'], [['usb/list']]],
  [['usb', 'attach', 'web', '046d:c52b'], [['usb/attach', { name: 'web', device: '046d:c52b' }]]],
  [['usb', 'detach', 'web', '1-2'], [['usb/detach', { name: 'web', device: '1-2' }]]],
  [['ssh', 'web'], [['vm/wake', { name: 'web', progressToken: T }]]],
  [['ssh', 'web', '--', 'uname', '-a', '--json'], [['vm/wake', { name: 'web', progressToken: T }]]],
  [['ssh-config'], [['helper/ping']]],
  [['ssh-config', '--include', '--user-config', '/tmp/cfg'], [['helper/ping'], ['ssh/include', { userConfig: '/tmp/cfg' }]]],
  [['doctor'], [['helper/doctor']]],
  [['share', 'web', 'proj'], [['vm/share', { name: 'web', hostPath: abs('proj'), readOnly: false }]]],
  [['share', 'web', '/src', '/mnt/src', '--read-only'], [['vm/share', { name: 'web', hostPath: '/src', guestPath: '/mnt/src', readOnly: true }]]],
  [['unshare', 'web', '/mnt/src'], [['vm/unshare', { name: 'web', guestPath: '/mnt/src' }]]],
  [['helper', 'status'], [['helper/ping']]],
  [['helper', 'stop', '--stop-vms'], [['helper/shutdown', { stopVms: true }]]],
  [['helper', 'install'], []],
  [['helper', 'uninstall'], []],
];

for (const [argv, expected] of ok) {
  test(`devvm ${argv.join(' ')}`, async () => {
    const r = await cli(argv, answers);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.deepEqual(r.session.calls, expected.map(([method, params]) => ({ method, params })));
  });
}

test('every verb in the table has a case above', () => {
  const covered = new Set(ok.map(([argv]) => COMMANDS.find((c) => c.name === argv.slice(0, c.name.split(' ').length).join(' '))?.name));
  assert.deepEqual(COMMANDS.map((c) => c.name).filter((n) => !covered.has(n)), []);
});

test('ssh runs ssh -F <the helper\'s config file> <host>, and -- CMD... untouched', async () => {
  assert.deepEqual((await cli(['ssh', 'web'], answers)).session.execs, [['ssh', ['-F', '/h/ssh_config', '-o', 'ProxyCommand=none', 'devvm-web']]]);
  assert.deepEqual((await cli(['ssh', 'web', '--', 'uname', '-a', '--json'], answers)).session.execs, [['ssh', ['-F', '/h/ssh_config', '-o', 'ProxyCommand=none', 'devvm-web', '--', 'uname', '-a', '--json']]]);
});

test('ssh-proxy relays to the port the helper names, after it woke the VM', async () => {
  const r = await cli(['ssh-proxy', 'web'], { ...answers, 'vm/wakePlan': { ready: true, ident: 'SSH-2.0-X' } });
  assert.deepEqual(r.session.relays, [['127.0.0.1', 2222, undefined]]);
  assert.deepEqual(r.session.outputs, [], 'nothing of its own on stdout: that is the SSH stream');
  assert.deepEqual(r.session.calls.map((c) => c.method), ['vm/wakePlan', 'vm/wake']);
});

test('ssh-proxy to a VM that must boot sends the known identification line before it asks for the wake', async () => {
  const booting = { ...answers, 'vm/wakePlan': { ready: false, ident: 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3' } };
  const r = await cli(['ssh-proxy', 'web'], booting);
  assert.deepEqual(r.session.outputs, ['SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n']);
  assert.deepEqual(r.session.relays, [['127.0.0.1', 2222, 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3']]);
  // Not known yet (never reached): no early line, the relay passes sshd's own.
  const unknown = await cli(['ssh-proxy', 'web'], { ...answers, 'vm/wakePlan': { ready: false, ident: null } });
  assert.deepEqual(unknown.session.outputs, []);
  assert.deepEqual(unknown.session.relays, [['127.0.0.1', 2222, undefined]]);
});

test('helper install writes the user unit and enables it through systemctl --user; uninstall disables and removes it', async () => {
  const unit = path.join(tmp, 'config', 'systemd', 'user', 'devvm-helper.service');
  const i = await cli(['helper', 'install'], answers);
  assert.equal(i.code, 0, i.stderr);
  assert.deepEqual(i.session.execs, [['systemctl', ['--user', 'daemon-reload']], ['systemctl', ['--user', 'enable', 'devvm-helper.service']]]);
  assert.match(readFileSync(unit, 'utf8'), /^ExecStart=".*" ".*helper\.js"$/m);
  assert.match(i.session.texts[0]!, /enabled it/);
  const u = await cli(['helper', 'uninstall'], answers);
  assert.deepEqual(u.session.execs, [['systemctl', ['--user', 'disable', 'devvm-helper.service']], ['systemctl', ['--user', 'daemon-reload']]]);
  assert.ok(!existsSync(unit));
  assert.match((await cli(['helper', 'uninstall'], answers)).session.texts[0]!, /nothing to remove/);
});

test('helper install without a user bus: the unit is written and the output says it is not enabled', async () => {
  const s = new FakeSession(answers);
  s.exec = async (file, args) => (s.execs.push([file, args]), 1);
  let out = '';
  assert.equal(await run(['helper', 'install', '--json'], s, { stdout: (t) => (out += t), stderr: () => {} }), 0);
  assert.equal(s.execs.length, 1, 'no enable after daemon-reload failed');
  assert.equal((s.printed[0] as { enabled: boolean }).enabled, false);
  const t = new FakeSession(answers);
  t.exec = async () => 1;
  await run(['helper', 'install'], t, { stdout: () => {}, stderr: () => {} });
  assert.match(t.texts[0]!, /did not enable it: systemctl --user does not work here/);
});

const usage: Array<[string[], RegExp]> = [
  [[], /^$/],
  [['frobnicate'], /unknown command "frobnicate"/],
  [['list', '--colour'], /Unknown option '--colour'/],
  [['list', 'extra'], /unexpected argument "extra"/],
  [['create'], /missing argument/],
  [['create', 'web'], /--image is required/],
  [['create', 'web', '--image', 'd', '--user', 'a', '--password-stdin', '--password-file', pw], /either --password-stdin or --password-file/],
  [['create', 'web', '--image', 'd', '--user', 'a', '--cpus', 'two'], /--cpus must be a whole number, got "two"/],
  [['set', 'web', '--display', 'yes'], /--display must be on or off, got "yes"/],
  [['display', 'web', '--size', 'auto'], /--size takes WIDTHxHEIGHT/],
  [['set', 'web', '--idle-suspend', '0'], /--idle-suspend must be minutes/],
  [['set', 'web', '--idle-suspend', 'soon'], /--idle-suspend must be minutes/],
  [['set', 'web', '--autostart', 'yes'], /--autostart must be on or off/],
  [['create', 'web', '--image', 'd', '--user', 'a', '--idle-suspend', 'default'], /--idle-suspend must be minutes \(1-10080\) or off/],
  [['ssh-proxy'], /missing argument/],
  [['screenshot', 'web', 'shot.jpg'], /give a FILE.png/],
  [['create', 'web', '--image', 'd', '--user', 'a', '--memory', '1.5'], /--memory must be a whole number/],
  [['start', 'web', '--timeout', 'soon'], /--timeout must be a whole number/],
  [['image'], /missing image command/],
  [['image', 'frob'], /unknown image command "frob"/],
  [['image', 'import', 'f'], /--name is required/],
  [['image', 'import', 'f', '--name', 'x', '--format', 'vmdk'], /--format must be qcow2 or raw, got "vmdk"/],
  [['image', 'import', 'f', '--name', 'x', '--flatten=yes'], /--flatten/],
  [['disk'], /missing disk command/],
  [['disk', 'frob'], /unknown disk command "frob"/],
  [['disk', 'attach', 'web'], /missing argument/],
  [['disk', 'attach', 'web', 'f', '--format', 'vdi'], /--format must be qcow2 or raw/],
  [['disk', 'export', 'web', 's1', 'extra'], /unexpected argument "extra"/],
  [['port'], /missing port command/],
  [['port', 'add', 'web'], /missing argument/],
  [['port', 'add', 'web', '80'], /invalid port forward "80"/],
  [['port', 'add', 'web', '70000:80'], /the host port must be a port number 1-65535, got "70000"/],
  [['port', 'add', 'web', '8080:0'], /the guest port must be a port number/],
  [['port', 'add', 'web', 'localhost:8080:80'], /invalid host address "localhost"/],
  [['port', 'add', 'web', '127.0.0.1 -:22:8080:80'], /invalid port forward/],
  [['port', 'add', 'web', '1.2.3.4,hostfwd=tcp::1-:22:8080:80'], /invalid port forward/],
  [['port', 'add', 'web', '1.2.3.4;quit:8080:80'], /invalid host address/],
  [['port', 'add', 'web', '010.0.0.1:8080:80'], /invalid host address "010.0.0.1"/],
  [['port', 'add', 'web', '8080:80/sctp'], /invalid protocol "sctp"/],
  [['port', 'add', 'web', '8080:80/tcp', '--udp'], /says \/tcp but --udp/],
  [['port', 'remove', 'web', 'http'], /the host port must be a port number/],
  [['create', 'web', '--image', 'd', '--user', 'a', '--port', '8080'], /invalid port forward/],
  [['usb'], /missing usb command/],
  [['usb', 'eject', 'web'], /unknown usb command "eject"/],
  [['usb', 'attach', 'web'], /missing argument/],
  [['snapshot', 'web', 's1', '--ram', '--delete'], /--ram and --delete do not go together/],
  [['helper'], /missing helper command/],
  [['helper', 'restart'], /unknown helper command "restart"/],
  [['ssh'], /missing argument/],
];

for (const [argv, message] of usage) {
  test(`usage error: devvm ${argv.join(' ') || '(nothing)'}`, async () => {
    const r = await cli(argv, answers);
    if (argv.length === 0) {
      // No arguments at all is a request for the usage, exit 0.
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^usage: devvm/);
      return;
    }
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.split('\n').length, 2, 'one line');
    assert.match(r.stderr, /^devvm: .* \(see "devvm --help"\)\n$/);
    assert.match(r.stderr, message);
    assert.deepEqual(r.session.calls, [], 'no RPC call');
  });
}
