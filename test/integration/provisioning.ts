/**
 * The provisioning checks on a real Debian guest, for either first-boot path: devvm's own
 * (devvm-firstboot reading the seed from fw_cfg, the default for images built here) or
 * cloud-init's (DEVVM_PROVISION=cloud-init in the helper's environment). Two VMs, booted
 * together: alice (full name, metacharacter password, SSH) and quiet (no SSH, autologin).
 * Registers before() and the tests on the caller's file; rebootTests() adds the reboot.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { before, test } from 'node:test';
import { debianImage, type Sandbox, waitFor } from './harness';

// Shell and YAML metacharacters, quotes, a backslash, unicode, leading space.
export const PASSWORD = ` pa'ss"w$o\`rd!#&|;<>*?{}[]%@ -- : \\ ü~`;
const NEW_PASSWORD = `n3w:pa$$ 'w"rd`;
const DISK_GIB = 6;

/** Sends a line to the serial console and returns what came back until `marker`. */
export function serial(sb: Sandbox, vm: string, line: string, marker: string, timeoutMs = 60000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(path.join(sb.home, 'vms', vm, 'serial.sock'));
    let out = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no "${marker}" on ${vm}'s console; got: ${out.slice(-500)}`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => {
      out += c;
      if (out.includes(marker)) {
        clearTimeout(timer);
        sock.destroy();
        resolve(out);
      }
    });
    sock.on('connect', () => sock.write(`\n${line}\n`));
  });
}

export function provisioningTests(sb: Sandbox, via: 'devvm' | 'cloud-init'): void {
  before(async () => {
    if (via === 'cloud-init') sb.env.DEVVM_PROVISION = 'cloud-init';
    debianImage(sb);
    sb.ok(['create', 'alice', '--image', 'debian-12', '--user', 'alice', '--full-name', 'Alice Example', '--password-stdin', '--memory', '1024', '--disk', String(DISK_GIB)], `${PASSWORD}\n`);
    sb.ok(['create', 'quiet', '--image', 'debian-12', '--user', 'carol', '--no-ssh', '--autologin', '--memory', '768', '--cpus', '1']);
    // Generous (under the runner's 20 min per test): with other agents' guests on the same 2 cores a first boot took over 15 min.
    const [a, q] = await Promise.all([sb.cliAsync(['start', 'alice', '--wait-ssh', '--timeout', '1140']), sb.cliAsync(['start', 'quiet'])]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(q.code, 0, q.stderr);
  });

  test(`first setup went through ${via}, and only it`, () => {
    const cfg = JSON.parse(readFileSync(path.join(sb.home, 'vms', 'alice', 'vm.json'), 'utf8')) as { instanceId: string; provision?: string };
    assert.equal(cfg.provision, via === 'devvm' ? 'devvm' : undefined);
    // One string: ssh joins its arguments into the remote shell's command line.
    const r = sb.ssh('alice', ['echo "devvm:$(cat /var/lib/devvm/instance-id 2>/dev/null)"; echo "cloud:$(ls /var/lib/cloud/instances 2>/dev/null)"; echo "local:$(systemctl is-active cloud-init-local.service)"']);
    if (via === 'devvm') {
      assert.match(r.stdout, new RegExp(`^devvm:${cfg.instanceId}$`, 'm'), `devvm-firstboot recorded the instance: ${r.stdout}`);
      assert.match(r.stdout, /^cloud:$/m, 'cloud-init never made an instance');
      assert.match(r.stdout, /^local:inactive$/m, 'cloud-init did not run');
    } else {
      assert.match(r.stdout, new RegExp(`^cloud:${cfg.instanceId}$`, 'm'), `cloud-init made the instance: ${r.stdout}`);
      assert.match(r.stdout, /^devvm:$/m, 'devvm-firstboot did nothing');
      assert.match(r.stdout, /^local:active$/m);
    }
  });

  test('the first user exists with the full name, in sudo, keyed for SSH', () => {
    const r = sb.ssh('alice', ['getent', 'passwd', 'alice']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^alice:x:\d+:\d+:Alice Example:\/home\/alice:\/bin\/bash$/m);
    assert.match(sb.ssh('alice', ['id', '-nG']).stdout, /\bsudo\b/);
    assert.equal(sb.ssh('alice', ['hostname']).stdout.trim(), 'alice');
    assert.match(sb.ssh('alice', ['getent', 'hosts', 'alice']).stdout, /^127\.0\.1\.1\s+alice\b/m, '/etc/hosts names the host (sudo resolves it)');
    // Lingering: the user's manager runs without a session (and did not wait for the first login).
    assert.match(sb.ssh('alice', ['loginctl', 'show-user', 'alice', '-p', 'Linger']).stdout, /^Linger=yes$/m);
  });

  test('sudo -S works with the metacharacter password and not with a wrong one; root locked; keys only', () => {
    const ok = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'id', '-u'], `${PASSWORD}\n`);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), '0');
    assert.doesNotMatch(ok.stderr, /unable to resolve host/);
    const bad = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'id', '-u'], 'wrong\n');
    assert.notEqual(bad.code, 0);
    const root = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'passwd', '-S', 'root'], `${PASSWORD}\n`);
    assert.equal(root.code, 0, root.stderr);
    assert.match(root.stdout, /^root L /m, 'root locked');
    const sshd = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'sshd', '-T'], `${PASSWORD}\n`);
    assert.equal(sshd.code, 0, sshd.stderr);
    assert.match(sshd.stdout, /^passwordauthentication no$/m);
    // devvm-firstboot says "no"; cloud-init keeps Debian's default (keys only) and relies on
    // disable_root (root locked, no key that works): root cannot log in either way.
    assert.match(sshd.stdout, via === 'devvm' ? /^permitrootlogin no$/m : /^permitrootlogin (no|without-password|prohibit-password)$/m);
    const keys = sb.ssh('alice', ['ls', '/etc/ssh/']);
    assert.deepEqual(keys.stdout.split('\n').filter((l) => l.startsWith('ssh_host_')), ['ssh_host_ed25519_key', 'ssh_host_ed25519_key.pub'], 'only the host key made on the host');
  });

  test('the host key is pinned: StrictHostKeyChecking=yes connects, a wrong known_hosts is refused', () => {
    const config = readFileSync(path.join(sb.home, 'ssh_config'), 'utf8');
    assert.match(config, /StrictHostKeyChecking yes/);
    const known = readFileSync(path.join(sb.home, 'keys', 'known_hosts.alice'), 'utf8');
    assert.match(known, /^devvm-alice ssh-ed25519 /);
    const fake = path.join(sb.home, 'fake_known_hosts');
    writeFileSync(fake, 'devvm-alice ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOz0mFakeFakeFakeFakeFakeFakeFakeFakeFakeFake\n');
    const r = sb.ssh('alice', ['true'], '', ['-o', `UserKnownHostsFile=${fake}`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /host key|HOST IDENTIFICATION/i);
  });

  test('the root filesystem has the size of the disk (--disk)', () => {
    const sectors = Number(sb.ssh('alice', ['cat', '/sys/class/block/vda/size']).stdout.trim());
    const r = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'dumpe2fs', '-h', '/dev/vda'], `${PASSWORD}\n`);
    assert.equal(r.code, 0, r.stderr);
    const count = Number(/^Block count:\s+(\d+)/m.exec(r.stdout)?.[1]);
    const size = Number(/^Block size:\s+(\d+)/m.exec(r.stdout)?.[1]);
    assert.equal(sectors * 512, DISK_GIB * 2 ** 30, 'the disk');
    assert.equal(count * size, DISK_GIB * 2 ** 30, `the filesystem: ${r.stdout}`);
  });

  test('devvm ssh passes the remote exit code through', () => {
    const r = sb.cli(['ssh', 'alice', '--', 'exit', '7']);
    assert.equal(r.code, 7, r.stderr);
    assert.equal(sb.cli(['ssh', 'alice', '--', 'hostname']).stdout.trim(), 'alice');
  });

  test('autologin only when asked; SSH disabled means no sshd at all', async () => {
    await waitFor('quiet to finish first setup', 600_000, () => sb.json<{ provisioned: boolean }>(['info', 'quiet']).provisioned);
    const quiet = sb.json<{ sshPort: number | null; ssh: boolean }>(['info', 'quiet']);
    assert.equal(quiet.ssh, false);
    assert.equal(quiet.sshPort, null);
    // cloud-init restarts the console getty in runcmd, just before its final message;
    // devvm-firstboot writes the drop-in before the getty starts.
    await waitFor('the console to log carol in', 120_000, () => /carol.*\(automatic login\)|Automatic login/i.test(readFileSync(path.join(sb.home, 'vms', 'quiet', 'serial.log'), 'utf8')));
    // The console echoes the command (sometimes mangled), so the answer is built by the
    // guest shell in a form the echo cannot contain.
    const out = await serial(sb, 'quiet', 'echo "SSH-$(systemctl is-active ssh.service)-$(systemctl is-active ssh.socket)-LISTEN-$(ss -tln | grep -c \':22 \')-$((40+2))"', '-42');
    assert.match(out, /SSH-inactive-inactive-LISTEN-0-42/, 'sshd is not running and nothing listens on port 22');
    // Masked before it could ever start: sshd never said it listened in this boot.
    const journal = await serial(sb, 'quiet', 'echo "UNIT-$(systemctl is-enabled ssh.service)-STARTS-$(sudo -n journalctl -b -q -o cat -u ssh.service | grep -c "Server listening")-$((40+3))"', '-43');
    assert.match(journal, /UNIT-masked-STARTS-0-43/, 'ssh.service masked, sshd never listened');
    assert.equal(sb.cli(['ssh', 'quiet', '--', 'true']).code, 1);
    // alice did not ask for autologin: her console shows a login prompt.
    assert.doesNotMatch(readFileSync(path.join(sb.home, 'vms', 'alice', 'serial.log'), 'utf8'), /automatic login/i);
  });
}

/** The reboot check (registered separately, so a file can suspend alice with the seed attached first). */
export function rebootTests(sb: Sandbox): void {
  test('after a reboot the seed is gone and a password changed in the guest stays changed', async () => {
    await waitFor('alice to finish first setup', 300_000, () => sb.json<{ provisioned: boolean }>(['info', 'alice']).provisioned);
    const ch = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'chpasswd'], `${PASSWORD}\nalice:${NEW_PASSWORD}\n`);
    assert.equal(ch.code, 0, ch.stderr);
    sb.ok(['stop', 'alice']);
    assert.equal(sb.json<{ state: string }>(['info', 'alice']).state, 'stopped');
    for (const seed of ['seed.iso', 'seed.devvm']) assert.ok(!existsSync(path.join(sb.home, 'vms', 'alice', seed)), `${seed} deleted on the host once used and detached`);
    sb.ok(['start', 'alice', '--wait-ssh', '--timeout', '1140']);
    assert.notEqual(sb.ssh('alice', ['blkid', '-L', 'cidata']).code, 0, 'no cidata disk attached');
    assert.doesNotMatch(sb.ssh('alice', ['lsblk', '-rno', 'NAME']).stdout, /vdb/);
    assert.notEqual(sb.ssh('alice', ['test', '-e', '/sys/firmware/qemu_fw_cfg/by_name/opt/devvm/seed']).code, 0, 'no devvm seed in fw_cfg');
    const ok = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'true'], `${NEW_PASSWORD}\n`);
    assert.equal(ok.code, 0, ok.stderr);
    assert.notEqual(sb.ssh('alice', ['sudo', '-S', '-p', "''", 'true'], `${PASSWORD}\n`).code, 0);
    assert.match(sb.ssh('alice', ['getent', 'passwd', 'alice']).stdout, /:Alice Example:/, 'first setup did not run again');
  });
}
