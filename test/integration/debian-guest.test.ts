/**
 * The full path on a real Debian guest built from Debian packages: create with a
 * provisioned first user, first boot with cloud-init, SSH with a pinned host key, sudo,
 * autologin only when asked, SSH disabled when asked, the seed gone after first setup,
 * state kept across a reboot, and a helper kill -9 while the VM runs.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { debianImage, processGone, Sandbox, waitFor } from './harness';

const sb = new Sandbox('debian');
// Shell and YAML metacharacters, quotes, a backslash, unicode, leading space.
const PASSWORD = ` pa'ss"w$o\`rd!#&|;<>*?{}[]%@ -- : \\ ü~`;
const NEW_PASSWORD = `n3w:pa$$ 'w"rd`;

/** Sends a line to the serial console and returns what came back until `marker`. */
function serial(vm: string, line: string, marker: string, timeoutMs = 60000): Promise<string> {
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

before(async () => {
  debianImage(sb);
  sb.ok(['create', 'alice', '--image', 'debian-12', '--user', 'alice', '--full-name', 'Alice Example', '--password-stdin', '--memory', '1024'], `${PASSWORD}\n`);
  sb.ok(['create', 'quiet', '--image', 'debian-12', '--user', 'carol', '--no-ssh', '--autologin', '--memory', '768', '--cpus', '1']);
  const [a, q] = await Promise.all([sb.cliAsync(['start', 'alice', '--wait-ssh']), sb.cliAsync(['start', 'quiet'])]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(q.code, 0, q.stderr);
});

after(() => sb.cleanup());

test('the first user exists with the full name, in sudo, keyed for SSH', () => {
  const r = sb.ssh('alice', ['getent', 'passwd', 'alice']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^alice:x:\d+:\d+:Alice Example:\/home\/alice:\/bin\/bash$/m);
  assert.match(sb.ssh('alice', ['id', '-nG']).stdout, /\bsudo\b/);
});

test('sudo -S works with the metacharacter password and not with a wrong one', () => {
  const ok = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'id', '-u'], `${PASSWORD}\n`);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout.trim(), '0');
  const bad = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'id', '-u'], 'wrong\n');
  assert.notEqual(bad.code, 0);
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
  // cloud-init restarts the console getty in runcmd, just before its final message.
  await waitFor('the console to log carol in', 120_000, () => /carol.*\(automatic login\)|Automatic login/i.test(readFileSync(path.join(sb.home, 'vms', 'quiet', 'serial.log'), 'utf8')));
  // The console echoes the command (sometimes mangled), so the answer is built by the
  // guest shell in a form the echo cannot contain.
  const out = await serial('quiet', 'echo "SSH-$(systemctl is-active ssh.service)-$(systemctl is-active ssh.socket)-LISTEN-$(ss -tln | grep -c \':22 \')-$((40+2))"', '-42');
  assert.match(out, /SSH-inactive-inactive-LISTEN-0-42/, 'sshd is not running and nothing listens on port 22');
  assert.equal(sb.cli(['ssh', 'quiet', '--', 'true']).code, 1);
  // alice did not ask for autologin: her console shows a login prompt.
  assert.doesNotMatch(readFileSync(path.join(sb.home, 'vms', 'alice', 'serial.log'), 'utf8'), /automatic login/i);
});

test('kill -9 of the helper while a guest runs: SSH still works and the VM is reattached', async () => {
  const pid = sb.json<{ pid: number }>(['info', 'alice']).pid;
  process.kill(Number(readFileSync(path.join(sb.home, 'helper.pid'), 'utf8')), 'SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  const list = sb.json<Array<{ name: string; state: string }>>(['list']);
  assert.deepEqual(list.map((v) => [v.name, v.state]), [['alice', 'running'], ['quiet', 'running']]);
  assert.equal(sb.json<{ pid: number }>(['info', 'alice']).pid, pid);
  assert.equal(sb.cli(['ssh', 'alice', '--', 'true']).code, 0);
});

test('suspend to a file and resume: same boot, a process started before still runs', () => {
  const bg = sb.ssh('alice', ['nohup sleep 100000 >/dev/null 2>&1 & echo $!']);
  assert.equal(bg.code, 0, bg.stderr);
  const pid = bg.stdout.trim();
  const before = sb.ssh('alice', ['cat /proc/sys/kernel/random/boot_id /proc/uptime']).stdout.split('\n');
  const qemuPid = sb.json<{ pid: number }>(['info', 'alice']).pid;
  sb.ok(['suspend', 'alice']);
  assert.equal(sb.json<{ state: string }>(['info', 'alice']).state, 'suspended');
  assert.ok(processGone(qemuPid), 'QEMU ended');
  assert.ok(statSync(path.join(sb.home, 'vms', 'alice', 'ram', 'suspend.ram')).size > 32 * 2 ** 20);
  sb.ok(['resume', 'alice', '--wait-ssh']);
  const after = sb.ssh('alice', ['cat /proc/sys/kernel/random/boot_id /proc/uptime']).stdout.split('\n');
  assert.equal(after[0], before[0], 'same boot');
  assert.ok(parseFloat(after[1]!) >= parseFloat(before[1]!), 'uptime continues');
  assert.equal(sb.ssh('alice', ['kill', '-0', pid]).code, 0, `pid ${pid} survived`);
});

test('after a reboot the seed is gone and a password changed in the guest stays changed', async () => {
  await waitFor('alice to finish first setup', 300_000, () => sb.json<{ provisioned: boolean }>(['info', 'alice']).provisioned);
  const ch = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'chpasswd'], `${PASSWORD}\nalice:${NEW_PASSWORD}\n`);
  assert.equal(ch.code, 0, ch.stderr);
  sb.ok(['stop', 'alice']);
  assert.equal(sb.json<{ state: string }>(['info', 'alice']).state, 'stopped');
  assert.ok(!existsSync(path.join(sb.home, 'vms', 'alice', 'seed.iso')), 'seed deleted on the host once used and detached');
  sb.ok(['start', 'alice', '--wait-ssh']);
  assert.notEqual(sb.ssh('alice', ['blkid', '-L', 'cidata']).code, 0, 'no cidata disk attached');
  assert.doesNotMatch(sb.ssh('alice', ['lsblk', '-rno', 'NAME']).stdout, /vdb/);
  const ok = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'true'], `${NEW_PASSWORD}\n`);
  assert.equal(ok.code, 0, ok.stderr);
  assert.notEqual(sb.ssh('alice', ['sudo', '-S', '-p', "''", 'true'], `${PASSWORD}\n`).code, 0);
});

test('info shows the layer chain, and the cache layer filled from the base', () => {
  const info = sb.json<{ layers: Array<{ role: string; actualSize: number; readOnly: boolean; sharedBy: string[] }> }>(['info', 'alice']);
  assert.deepEqual(info.layers.map((l) => l.role), ['overlay', 'cache', 'base']);
  assert.deepEqual(info.layers[2]!.sharedBy.sort(), ['alice', 'quiet']);
  assert.equal(info.layers[2]!.readOnly, true);
  assert.ok(info.layers[1]!.actualSize > 8 * 2 ** 20, `cache holds base data: ${info.layers[1]!.actualSize}`);
});
