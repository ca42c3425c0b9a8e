/**
 * The devvm seed (devvmseed.ts) and the guest side that reads it (images/firstboot.ts):
 * every field rendered, hostile values refused, the guest's sh decoding hostile-looking
 * text as data, the path choice, and the QEMU arguments of both paths.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chooseProvisionPath, DEVVM_SEED_FWCFG, DEVVM_SEED_MAGIC, renderDevvmSeed, seedFile, writeDevvmSeed } from '../../src/helper/devvmseed';
import { VmFiles } from '../../src/helper/filenames';
import { FIRSTBOOT_HOOK } from '../../src/helper/images/firstboot';
import { DEBIAN_12_DESKTOP_RECIPE, DEBIAN_12_RECIPE } from '../../src/helper/images/recipes';
import { setLogFile } from '../../src/helper/log';
import { generateHostKey, READY_MARKER, type ProvisionSpec } from '../../src/helper/provision';
import { CLOUD_INIT_ON, KERNEL_CMDLINE, qemuArgs, type QemuSpec } from '../../src/helper/qemu/args';
import { DevvmError } from '../../src/shared/errors';
import { CLIENT_KEY, HASH, provisionSpec } from './provision-fixture';

const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-devvmseed-'));
let hostKey: { privateKey: string; publicKey: string };

before(async () => {
  setLogFile(path.join(dir, 'helper.log'));
  hostKey = await generateHostKey(path.join(dir, 'host_key'), 'devvm-dev');
});
after(() => {
  setLogFile(null);
  rmSync(dir, { recursive: true, force: true });
});

const OTHER_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOz0mFakeFakeFakeFakeFakeFakeFakeFakeFakeFake bob@desk';

const spec = (over: Partial<ProvisionSpec> = {}): ProvisionSpec => provisionSpec(hostKey, { authorizedKeys: [CLIENT_KEY, OTHER_KEY], ...over });

/** The seed as a map of decoded fields (checking the line format on the way). */
function fields(text: string): Map<string, string> {
  const lines = text.split('\n');
  assert.equal(lines[0], DEVVM_SEED_MAGIC);
  assert.equal(lines.at(-1), '', 'ends with a newline (sh read needs it)');
  const out = new Map<string, string>();
  for (const line of lines.slice(1, -1)) {
    // Only a fixed name and base64: nothing sh could read as anything but data.
    const m = /^([a-z-]+) ([A-Za-z0-9+/=]*)$/.exec(line);
    assert.ok(m, `line ${JSON.stringify(line.slice(0, 40))}`);
    out.set(m[1]!, Buffer.from(m[2]!, 'base64').toString('utf8'));
  }
  return out;
}

test('every field is in the seed, decoded to exactly the value given', () => {
  const f = fields(renderDevvmSeed(spec()));
  assert.deepEqual([...f.keys()], ['instance-id', 'hostname', 'user', 'full-name', 'password-hash', 'autologin', 'ssh', 'clone', 'authorized-keys', 'host-key', 'host-key-pub']);
  assert.equal(f.get('instance-id'), 'devvm-0b7f3c1e-5d7a-4a53-9a55-3f1f2b1c9e10');
  assert.equal(f.get('hostname'), 'dev');
  assert.equal(f.get('user'), 'alice');
  assert.equal(f.get('full-name'), 'Alice Example');
  assert.equal(f.get('password-hash'), HASH);
  assert.deepEqual([f.get('autologin'), f.get('ssh'), f.get('clone')], ['0', '1', '0']);
  assert.equal(f.get('authorized-keys'), `${CLIENT_KEY}\n${OTHER_KEY}\n`);
  assert.equal(f.get('host-key'), hostKey.privateKey);
  assert.match(f.get('host-key')!, /^-----BEGIN OPENSSH PRIVATE KEY-----\n[\s\S]+\n$/);
  assert.equal(f.get('host-key-pub'), `${hostKey.publicKey.trim()}\n`);
});

test('no password: no hash field (the guest locks the password, sudo without one); flags follow the spec', () => {
  const f = fields(renderDevvmSeed(spec({ passwordHash: null, autologin: true, ssh: false, clone: true, authorizedKeys: [] })));
  assert.ok(!f.has('password-hash'));
  assert.deepEqual([f.get('autologin'), f.get('ssh'), f.get('clone')], ['1', '0', '1']);
  assert.equal(f.get('authorized-keys'), '');
});

test('unicode and punctuation in the full name travel unchanged', () => {
  const name = `Zoë O'Brien-Łukasz "the $(boss)" \`x\` ; & | 日本`;
  assert.equal(fields(renderDevvmSeed(spec({ fullName: name }))).get('full-name'), name);
});

test('hostile values are refused with one line, as for the cloud-init seed', () => {
  const bad: Array<[string, Partial<ProvisionSpec>]> = [
    ['newline in full name', { fullName: 'Alice\nroot::0:0::/:/bin/sh' }],
    ['colon in full name', { fullName: 'Alice:Example' }],
    ['line separator in full name', { fullName: 'Alice\u2028Example' }],
    ['bad hash', { passwordHash: '$1$md5$notsha512' }],
    ['hash with a newline', { passwordHash: `${HASH}\nroot` }],
    ['plain password as hash', { passwordHash: 'hunter2' }],
    ['reserved user', { user: 'root' }],
    ['user with a space', { user: 'al ice' }],
    ['user with a dollar', { user: 'a$(id)' }],
    ['hostname with a dot', { hostname: 'dev.example' }],
    ['hostname with a newline', { hostname: 'dev\nx' }],
    ['instance id with a slash', { instanceId: 'devvm-../../etc' }],
    ['instance id with a dollar', { instanceId: 'devvm-$x' }],
    ['authorized key with a newline', { authorizedKeys: [`${CLIENT_KEY}\nssh-ed25519 AAAA evil`] }],
    ['authorized key that is not one', { authorizedKeys: ['rm -rf /'] }],
    ['host key not ed25519', { hostKey: { privateKey: 'x', publicKey: 'ssh-rsa AAAAB3NzaC1yc2E x' } }],
    ['host private key not OpenSSH', { hostKey: { privateKey: '-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n', publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq0kdUxVqrV2C9ONKmuyfwf8fSBK1Fi5NiXhz8QjX6l' } }],
    ['autologin not a boolean', { autologin: 'yes' as unknown as boolean }],
  ];
  for (const [what, over] of bad) {
    assert.throws(() => renderDevvmSeed(spec(over)), (e: unknown) => e instanceof DevvmError && e.code === 'invalid-argument' && !e.message.includes('\n'), what);
  }
});

test('writeDevvmSeed: 0600, the rendered text, no temp file left; an invalid spec writes nothing', async () => {
  const vmDir = mkdtempSync(path.join(dir, 'vm-'));
  const file = path.join(vmDir, 'seed.devvm');
  await writeDevvmSeed(file, spec(), vmDir);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(readFileSync(file, 'utf8'), renderDevvmSeed(spec()));
  assert.deepEqual(readdirSync(vmDir), ['seed.devvm']);
  const other = path.join(vmDir, 'other.devvm');
  await assert.rejects(() => writeDevvmSeed(other, spec({ fullName: 'a\nb' }), vmDir), DevvmError);
  assert.ok(!existsSync(other));
  assert.deepEqual(readdirSync(vmDir), ['seed.devvm']);
});

/** The guest script's parsing part, run by the host's sh against a seed file, printing what it decoded. */
function guestParse(seedText: string): { code: number; out: string; files: Record<string, string> } {
  const script = /<<'DEVVM_SCRIPT_END'\n([\s\S]*?)DEVVM_SCRIPT_END/.exec(FIRSTBOOT_HOOK)![1]!;
  const start = script.indexOf('say() {');
  const end = script.indexOf('word instance-id');
  assert.ok(start > 0 && end > start);
  const work = mkdtempSync(path.join(dir, 'guest-'));
  const seed = path.join(work, 'seed');
  writeFileSync(seed, seedText);
  const part = script
    .slice(start, end)
    .replace('> /dev/ttyS0', '> /dev/null')
    .replace('mktemp -d /run/devvm-seed.XXXXXX', `mktemp -d ${work}/d.XXXXXX`);
  const r = spawnSync('sh', ['-c', `set -eu\nSEED="$1"\n${part}\ncp "$D"/* "$2"/ 2>/dev/null || :\n`, 'sh', seed, work], { encoding: 'utf8', cwd: work });
  const files: Record<string, string> = {};
  for (const n of readdirSync(work)) if (n !== 'seed' && !n.startsWith('d.')) files[n] = readFileSync(path.join(work, n), 'utf8');
  return { code: r.status ?? -1, out: r.stdout + r.stderr, files };
}

test('the guest decodes every field into its own file, shell text in values stays text', () => {
  const name = `Mallory Zoë 日本 $(touch pwned) \`touch pwned2\` ; touch pwned3 'x' "y"`;
  const r = guestParse(renderDevvmSeed(spec({ fullName: name, passwordHash: null })));
  assert.equal(r.code, 0, r.out);
  assert.equal(r.files['full-name'], name);
  assert.equal(r.files['host-key'], hostKey.privateKey);
  assert.equal(r.files['authorized-keys'], `${CLIENT_KEY}\n${OTHER_KEY}\n`);
  assert.equal(r.files.user, 'alice');
  assert.ok(!('password-hash' in r.files));
  assert.ok(!Object.keys(r.files).some((n) => n.startsWith('pwned')), 'nothing in a value ran');
});

test('the guest refuses a seed it does not know: wrong magic, an unknown field, a name that is a path, bad base64', () => {
  const good = renderDevvmSeed(spec());
  for (const [what, text, why] of [
    ['wrong magic', good.replace(DEVVM_SEED_MAGIC, 'DEVVM-SEED 2'), /unknown seed format/],
    ['unknown field', `${good}extra ${Buffer.from('x').toString('base64')}\n`, /unknown seed field/],
    ['field named like a path', `${good}../../etc/passwd ${Buffer.from('x').toString('base64')}\n`, /unknown seed field/],
    ['bad base64', good.replace(/^user .*$/m, 'user !!notbase64!!'), /not base64/],
  ] as const) {
    const r = guestParse(text);
    assert.notEqual(r.code, 0, what);
    assert.match(r.out, new RegExp(`devvm-firstboot failed: .*${why.source}`), what);
  }
});

test('the first-boot script parses as POSIX sh, reports with the READY_MARKER line, and runs before ssh and the gettys', () => {
  const script = /<<'DEVVM_SCRIPT_END'\n([\s\S]*?)DEVVM_SCRIPT_END/.exec(FIRSTBOOT_HOOK)![1]!;
  for (const shell of ['sh', 'bash']) {
    const r = spawnSync(shell, ['-n'], { input: script, encoding: 'utf8' });
    assert.equal(r.status, 0, `${shell}: ${r.stderr}`);
  }
  const hook = spawnSync('sh', ['-n'], { input: FIRSTBOOT_HOOK, encoding: 'utf8' });
  assert.equal(hook.status, 0, hook.stderr);
  assert.ok(script.includes(`say "${READY_MARKER} $id after `), 'the marker ProvisionWatch waits for, with the instance id and a space');
  assert.ok(script.includes(`/sys/firmware/qemu_fw_cfg/by_name/${DEVVM_SEED_FWCFG}/raw`));
  assert.ok(!/\beval\b/.test(script), 'no eval of host data');
  const unit = /devvm-firstboot\.service" <<'EOF'\n([\s\S]*?)\nEOF/.exec(FIRSTBOOT_HOOK)![1]!;
  assert.match(unit, /^DefaultDependencies=no$/m);
  assert.match(unit, /^Before=sysinit\.target ssh\.service ssh\.socket systemd-user-sessions\.service getty\.target /m);
  assert.match(unit, /^WantedBy=sysinit\.target$/m);
  assert.match(FIRSTBOOT_HOOK, /touch "\$R\/etc\/cloud\/cloud-init\.disabled"/);
  const growfs = /devvm-growfs\.service" <<'EOF'\n([\s\S]*?)\nEOF/.exec(FIRSTBOOT_HOOK)![1]!;
  assert.match(growfs, /^WantedBy=sysinit\.target$/m);
  for (const r of [DEBIAN_12_RECIPE, DEBIAN_12_DESKTOP_RECIPE]) assert.ok(r.customizeHook.includes(FIRSTBOOT_HOOK), r.name);
});

test('path choice: images marked by a build from here get the devvm seed; others, and DEVVM_PROVISION=cloud-init, get cloud-init', () => {
  const built = { firstBoot: 'devvm', kernel: '/img/vmlinuz' };
  assert.equal(chooseProvisionPath(built, {}), 'devvm');
  assert.equal(chooseProvisionPath(built, { DEVVM_PROVISION: 'cloud-init' }), 'cloud-init');
  assert.equal(chooseProvisionPath(built, { DEVVM_PROVISION: 'whatever' }), 'devvm', 'only the one override is known');
  assert.equal(chooseProvisionPath({ kernel: '/img/vmlinuz' }, {}), 'cloud-init', 'a build from before the mark');
  assert.equal(chooseProvisionPath({ firstBoot: 'devvm', kernel: null }, {}), 'cloud-init', 'firmware boot');
  const f = new VmFiles('/vm');
  assert.equal(seedFile(f, 'devvm'), '/vm/seed.devvm');
  assert.equal(seedFile(f, undefined), '/vm/seed.iso');
});

const qspec: QemuSpec = {
  name: 'dev', accel: 'tcg', cpus: 2, memoryMiB: 1024,
  disks: { base: { file: '/img/disk.qcow2', format: 'qcow2' }, cache: '/vm/cache.qcow2', layers: [{ id: 'l000000000001', file: '/pool/l000000000001.qcow2' }] },
  kernel: '/img/vmlinuz', initrd: '/img/initrd.img', seed: '/vm,x/seed.devvm', provision: 'devvm', sshPort: 40022, mac: '52:54:00:12:34:56', display: null,
  qmpSocket: '/vm/qmp.sock', serialSocket: '/vm/serial.sock', serialLog: '/vm/serial.log', pidFile: '/vm/pid', agentSocket: '/vm/qga.sock',
};
const argAfter = (args: string[], flag: string) => args.filter((_, i) => args[i - 1] === flag);

test('QEMU: the devvm seed is a fw_cfg file given by path (comma escaped), no seed disk, cloud-init left off', () => {
  const a = qemuArgs(qspec);
  assert.deepEqual(argAfter(a, '-fw_cfg'), [`name=${DEVVM_SEED_FWCFG},file=/vm,,x/seed.devvm`]);
  assert.ok(!a.join(' ').includes('seed-file') && !a.join(' ').includes('seed0'));
  assert.deepEqual(argAfter(a, '-append'), [KERNEL_CMDLINE]);
  const later = qemuArgs({ ...qspec, seed: null });
  assert.ok(!later.includes('-fw_cfg'), 'no seed once first setup is done');
  assert.deepEqual(argAfter(later, '-append'), [KERNEL_CMDLINE], 'the same command line on every boot');
});

test('QEMU: the cloud-init path keeps the seed disk and enables cloud-init on the command line', () => {
  const a = qemuArgs({ ...qspec, seed: '/vm/seed.iso', provision: undefined });
  assert.ok(!a.includes('-fw_cfg'));
  assert.ok(argAfter(a, '-device').includes('virtio-blk-pci,drive=seed,id=seed0,addr=0x4'));
  assert.deepEqual(argAfter(a, '-append'), [`${KERNEL_CMDLINE} ${CLOUD_INIT_ON}`]);
  assert.equal(CLOUD_INIT_ON, 'cloud-init=enabled');
});
