/** `devvm doctor`: what works on this host, what does not, and how to fix it. */
import { accessSync, constants, existsSync, readFileSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DoctorCheck, DoctorReport } from '../shared/types';
import type { AccelChoice } from './accel';
import type { Home } from './filenames';
import { loadNative } from './native';
import { run } from './proc';
import { includeLine } from './sshconfig';

async function version(cmd: string, args: string[], pkg: string, name = cmd): Promise<DoctorCheck> {
  try {
    const { stdout } = await run(cmd, args, { timeoutMs: 10000 });
    return { name, ok: true, detail: stdout.trim().split('\n')[0] ?? '' };
  } catch {
    return { name, ok: false, detail: `${cmd} not found`, fix: `apt-get install ${pkg}` };
  }
}

export async function doctor(home: Home, qemuBinary: string, accel: AccelChoice): Promise<DoctorReport> {
  const native = loadNative();
  const checks = await Promise.all([
    version(qemuBinary, ['--version'], 'qemu-system-x86', 'qemu-system'),
    version('qemu-img', ['--version'], 'qemu-utils'),
    version('genisoimage', ['--version'], 'genisoimage'),
    version('ssh', ['-V'], 'openssh-client'),
    version('ssh-keygen', ['-V'], 'openssh-client').then((c) => ({ ...c, ok: c.ok || c.detail !== 'ssh-keygen not found' })),
    version('openssl', ['version'], 'openssl'),
    version('mmdebstrap', ['--version'], 'mmdebstrap'),
  ]);
  let free = 0;
  try {
    const s = statfsSync(home.root);
    free = s.bavail * s.bsize;
  } catch {
    // home not created yet
  }
  checks.push({
    name: 'disk space',
    ok: free > 2 * 1024 ** 3,
    detail: `${(free / 1024 ** 3).toFixed(1)} GiB free in ${home.root}`,
    fix: 'a Debian image needs about 1 GiB, each VM grows with use',
  });
  const userSsh = path.join(os.homedir(), '.ssh', 'config');
  const included = existsSync(userSsh) && readFileSync(userSsh, 'utf8').includes(includeLine(home.sshConfig));
  checks.push({
    name: 'ssh include',
    ok: included,
    detail: included ? `${userSsh} includes ${home.sshConfig}` : `${userSsh} does not include devvm's hosts`,
    fix: 'run "devvm ssh-config --include" so "ssh devvm-NAME" and Remote-SSH work',
  });
  let kvm = 'absent';
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    kvm = 'present';
  } catch {
    if (existsSync('/dev/kvm')) kvm = 'present but not accessible';
  }
  checks.push({ name: '/dev/kvm', ok: accel.name !== 'tcg', detail: `${kvm}; ${accel.reason}`, fix: accel.name === 'tcg' ? 'VMs run under TCG emulation: about 10-50x slower than KVM' : undefined });
  return {
    accelerator: { name: accel.name, reason: accel.reason },
    nativeAddon: { loaded: native.addon !== null, detail: native.detail },
    checks,
  };
}
