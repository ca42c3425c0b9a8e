/**
 * The host side of a share: which folder (checked hard, by its real path) and which
 * transport this host can give it. Pure where it can be: the host probe is a parameter,
 * so the choice is unit-tested with fakes.
 */
import { accessSync, constants, lstatSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { DevvmError } from '../../shared/errors';
import { normalPath, within } from '../../shared/shares';
import type { ShareTransport } from '../../shared/types';
import { preview } from '../../shared/validate';

/** Host folders never shared: the host's own system, which a guest root could then write through a root virtiofsd or QEMU. */
const HOST_SYSTEM = ['/', '/proc', '/sys', '/dev', '/etc', '/usr', '/boot', '/run', '/var', '/bin', '/sbin', '/lib', '/lib64', '/root'];

/**
 * Resolves and checks a host folder: it must exist and be a directory once every symlink
 * is followed (the real path is what gets recorded and shared, so a link swapped later
 * changes nothing), never a file, FIFO or device, never a host system folder, never
 * devvm's own home (seeds, keys and RAM states live there) nor a folder holding it.
 */
export function checkHostFolder(value: string, devvmHome: string): string {
  const asked = normalPath('host folder', value);
  if (asked.includes(',')) throw new DevvmError('invalid-argument', `host folder ${preview(asked)} contains ","`, 'QEMU and virtiofsd options split on commas; rename it or share a parent');
  let real: string;
  try {
    lstatSync(asked);
    real = realpathSync(asked);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DevvmError('not-found', `host folder ${asked} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`, 'create it first');
  }
  const st = statSync(real);
  if (!st.isDirectory()) {
    const kind = st.isFIFO() ? 'a FIFO' : st.isFile() ? 'a file' : st.isSocket() ? 'a socket' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'not a directory';
    throw new DevvmError('invalid-argument', `host folder ${asked}${real !== asked ? ` (${real})` : ''} is ${kind}`, 'share a directory');
  }
  if (real.includes(',')) throw new DevvmError('invalid-argument', `host folder ${asked} resolves to ${preview(real)}, which contains ","`, 'QEMU and virtiofsd options split on commas');
  if (HOST_SYSTEM.includes(real)) throw new DevvmError('invalid-argument', `host folder ${real} is a system folder of the host`, 'share a project folder instead');
  const home = path.resolve(devvmHome);
  let homeReal = home;
  try {
    homeReal = realpathSync(home);
  } catch {
    // not made yet: the path as given
  }
  if (within(real, homeReal) || within(homeReal, real) || within(real, home) || within(home, real)) {
    throw new DevvmError('invalid-argument', `host folder ${real} ${within(real, homeReal) || within(real, home) ? 'is inside' : 'contains'} devvm's home (${home})`, "the VMs' keys, seeds and RAM states must stay out of guests");
  }
  return real;
}

/** What the transport choice looks at (the real probe is `probeHost`). */
export interface HostProbe {
  /** The helper's effective uid. */
  uid: number;
  /** QEMU 7.2's C virtiofsd, if installed (it needs root). */
  cVirtiofsd: string | null;
  /** A Rust virtiofsd on PATH (runs unprivileged in a user namespace). */
  rustVirtiofsd: string | null;
  /** DEVVM_SHARE_TRANSPORT: force one (tests and benchmarks compare both). */
  forced?: string;
}

export interface TransportChoice {
  transport: ShareTransport;
  /** The virtiofsd to run (virtiofs only). */
  virtiofsd: string | null;
  /** Whether that virtiofsd has a read-only mode of its own (QEMU 7.2's C one has none). */
  daemonReadOnly: boolean;
  reason: string;
}

export function chooseTransport(h: HostProbe): TransportChoice {
  const daemon = h.rustVirtiofsd ?? (h.uid === 0 ? h.cVirtiofsd : null);
  const nineP = (reason: string): TransportChoice => ({ transport: '9p', virtiofsd: null, daemonReadOnly: false, reason });
  if (h.forced === '9p') return nineP('9p (virtio-9p-pci): forced by DEVVM_SHARE_TRANSPORT=9p');
  if (daemon) {
    const which = daemon === h.rustVirtiofsd ? `the Rust virtiofsd at ${daemon}` : `QEMU's virtiofsd at ${daemon} (the helper runs as root)`;
    return { transport: 'virtiofs', virtiofsd: daemon, daemonReadOnly: daemon === h.rustVirtiofsd, reason: `virtiofs through ${which}${daemon === h.rustVirtiofsd ? '' : '; read-only shares use 9p, which QEMU itself keeps read-only (this virtiofsd has no read-only mode)'}` };
  }
  if (h.forced === 'virtiofs') return nineP('9p: DEVVM_SHARE_TRANSPORT=virtiofs asked, but no virtiofsd can run here');
  if (h.cVirtiofsd) return nineP(`9p (virtio-9p-pci, no daemon): QEMU's virtiofsd at ${h.cVirtiofsd} needs root and no Rust virtiofsd is on PATH`);
  return nineP('9p (virtio-9p-pci, no daemon): no virtiofsd installed (apt-get install virtiofsd for the faster virtiofs)');
}

/** The transport one share gets on a host that chose `c`. */
export function shareTransport(c: TransportChoice, readOnly: boolean): ShareTransport {
  return c.transport === 'virtiofs' && readOnly && !c.daemonReadOnly ? '9p' : c.transport;
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

export function probeHost(env: NodeJS.ProcessEnv = process.env): HostProbe {
  const onPath = (env.PATH ?? '').split(path.delimiter).filter(Boolean).map((d) => path.join(d, 'virtiofsd')).find(executable) ?? null;
  const c = '/usr/lib/qemu/virtiofsd';
  return {
    uid: process.getuid?.() ?? -1,
    cVirtiofsd: executable(c) ? c : null,
    // The C one is never on PATH in Debian; a virtiofsd on PATH is the Rust one (package virtiofsd).
    rustVirtiofsd: onPath && onPath !== c ? onPath : null,
    ...(env.DEVVM_SHARE_TRANSPORT ? { forced: env.DEVVM_SHARE_TRANSPORT } : {}),
  };
}
