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
import type { UsbMonitor } from './usb/monitor';
import type { TransportChoice } from './shares/host';

/** Shared folders: which transport and why (9p always works; virtiofs is faster). */
export function shareCheck(c: TransportChoice): DoctorCheck {
  return {
    name: 'shared folders',
    ok: c.transport === 'virtiofs',
    detail: c.reason,
    ...(c.transport === 'virtiofs' ? {} : { fix: 'shares work over 9p (slower); for virtiofs run the helper as root with qemu-system-common, or install the Rust virtiofsd (apt-get install virtiofsd)' }),
  };
}

function onPath(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** Whether `cmd` is installed, with its version line when `args` print one (on stdout or stderr). */
async function tool(cmd: string, pkg: string, args?: string[], name = cmd): Promise<DoctorCheck> {
  const where = onPath(cmd);
  if (!where) return { name, ok: false, detail: `${cmd} not found`, fix: `apt-get install ${pkg}` };
  if (!args) return { name, ok: true, detail: where };
  try {
    const { stdout, stderr } = await run(where, args, { timeoutMs: 10000 });
    return { name, ok: true, detail: (stdout.trim() || stderr.trim()).split('\n')[0] ?? where };
  } catch (e) {
    return { name, ok: false, detail: `${where} does not run: ${(e as Error).message}`, fix: `reinstall ${pkg}` };
  }
}

/**
 * The USB hot-plug monitor: running (and on what: netlink through the addon, or a test
 * socket), never started (why), or started and since stopped (why).
 */
export function usbMonitorCheck(usb: Pick<UsbMonitor, 'running' | 'sourceName' | 'stoppedBy'> | null, unavailable?: string): DoctorCheck {
  const name = 'usb monitor';
  const fix = 'devices plugged in are not offered to running VMs ("devvm usb list" and "usb attach" still work)';
  if (usb?.running) return { name, ok: true, detail: `running: ${usb.sourceName}` };
  if (usb) return { name, ok: false, detail: `stopped: ${usb.stoppedBy ?? 'not started'} (was ${usb.sourceName})`, fix: `${fix}; "devvm helper stop" and the next command restarts it` };
  const why = (unavailable ?? 'not started').replace(/^USB hot-plug monitor unavailable: /, '');
  return { name, ok: false, detail: `not available: ${why}`, fix };
}

export async function doctor(home: Home, qemuBinary: string, accel: AccelChoice, usb: DoctorCheck): Promise<DoctorReport> {
  const native = loadNative();
  const checks = await Promise.all([
    tool(qemuBinary, 'qemu-system-x86', ['--version'], 'qemu-system'),
    tool('qemu-img', 'qemu-utils', ['--version']),
    tool('genisoimage', 'genisoimage', ['--version']),
    tool('ssh', 'openssh-client', ['-V']),
    tool('ssh-keygen', 'openssh-client'),
    tool('openssl', 'openssl', ['version']),
    tool('mmdebstrap', 'mmdebstrap', ['--version']),
    tool('xz', 'xz-utils', ['--version']),
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
  checks.push(usb);
  checks.push({ name: '/dev/kvm', ok: accel.name !== 'tcg', detail: `${kvm}; ${accel.reason}`, fix: accel.name === 'tcg' ? 'VMs run under TCG emulation: about 10-50x slower than KVM' : undefined });
  return {
    accelerator: { name: accel.name, reason: accel.reason },
    nativeAddon: { loaded: native.addon !== null, detail: native.detail },
    checks,
  };
}
