/**
 * The full path on a real Debian guest built from Debian packages, provisioned through
 * devvm's own first boot (devvm-firstboot, the default for images built here): the
 * provisioning checks of provisioning.ts (first user, sudo, pinned host key, autologin only
 * when asked, SSH disabled when asked, root fs grown to --disk, the seed gone after first
 * setup, state kept across a reboot), then a helper kill -9 while the VM runs, suspend and
 * resume, and the layer chain. debian-guest-cloudinit.test.ts runs the same provisioning
 * checks through cloud-init.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { processGone, Sandbox } from './harness';
import { PASSWORD, provisioningTests, rebootTests } from './provisioning';

const sb = new Sandbox('debian');
after(() => sb.cleanup());

provisioningTests(sb, 'devvm');

test("the tuned boot: devvm's initramfs checked the root, systemd started every unit, the NIC has its address", () => {
  const serial = readFileSync(path.join(sb.home, 'vms', 'alice', 'serial.log'), 'utf8');
  assert.match(serial, /\/dev\/vda: clean, /, "e2fsck -p ran in the initramfs");
  assert.doesNotMatch(serial, /devvm initramfs:/, 'no initramfs failure');
  const r = sb.ssh('alice', ['systemctl is-system-running --wait; systemctl --failed --no-legend --plain; findmnt -no FSTYPE,OPTIONS /; ip -4 -o addr show scope global; kmod static-nodes -f tmpfiles | cmp - /etc/tmpfiles.d/devvm-static-nodes.conf && test -c /dev/fuse && echo static-nodes-ok']);
  const [state, ...rest] = r.stdout.trim().split('\n');
  assert.equal(state, 'running', r.stdout);
  assert.match(rest[0]!, /^ext4\s+rw,/, 'root remounted read-write');
  assert.match(r.stdout, /inet 10\.0\.2\.15\//);
  assert.match(r.stdout, /static-nodes-ok/, "the image's static device nodes are kmod's own list");
});

test('an SSH login runs no update-motd.d scripts and no mail check; the static motd stays', () => {
  // pam_motd writes /run/motd.dynamic whenever it runs the scripts: after these logins it must not exist.
  const r = sb.ssh('alice', ['test -e /run/motd.dynamic && echo dynamic-motd; grep -c "^session.*pam_mail" /etc/pam.d/sshd; grep -c "^session.*pam_motd.so noupdate" /etc/pam.d/sshd']);
  assert.equal(r.stdout, '0\n1\n', r.stdout + r.stderr);
});

test("the port poll's agent commands stay out of the guest's journal (qemu-ga logs each at info level)", () => {
  // By now the helper has read /proc/net/tcp through the agent every second for minutes.
  assert.deepEqual(sb.json<{ autoPorts: { on: boolean } }>(['info', 'alice']).autoPorts, { on: true }, 'the port poll runs');
  const r = sb.ssh('alice', ['sudo', '-S', '-p', "''", 'sh', '-c', "'journalctl -b -u qemu-guest-agent -o cat | grep -c guest-file-open; journalctl -b -u qemu-guest-agent -o cat | grep -c .'"], `${PASSWORD}\n`);
  const [fileOps, lines] = r.stdout.trim().split('\n').map(Number);
  assert.equal(fileOps, 0, r.stdout + r.stderr);
  assert.ok(lines! < 20, `qemu-ga wrote ${lines} journal lines this boot`);
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

// After the suspend above: that RAM state was saved with the seed attached (fw_cfg), and restored.
rebootTests(sb);

test('info shows the layer chain, and the cache layer filled from the base', () => {
  const info = sb.json<{ layers: Array<{ role: string; actualSize: number; readOnly: boolean; sharedBy: string[] }> }>(['info', 'alice']);
  assert.deepEqual(info.layers.map((l) => l.role), ['overlay', 'cache', 'base']);
  assert.deepEqual(info.layers[2]!.sharedBy.sort(), ['alice', 'quiet']);
  assert.equal(info.layers[2]!.readOnly, true);
  assert.ok(info.layers[1]!.actualSize > 8 * 2 ** 20, `cache holds base data: ${info.layers[1]!.actualSize}`);
});
