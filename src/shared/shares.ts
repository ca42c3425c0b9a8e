/**
 * Shared folders as the user writes them (`--share HOSTDIR[:GUESTDIR][:ro]`) and the rules
 * for guest paths, shared by the CLI (early, friendly errors) and the helper (which
 * enforces them). Host folders are checked further on the host (src/helper/shares/host.ts).
 */
import { DevvmError } from './errors';
import { preview } from './validate';

function invalid(message: string, hint?: string): never {
  throw new DevvmError('invalid-argument', message, hint);
}

/**
 * Guest paths a share may not be mounted on: hiding any of them breaks the guest (or, for
 * the user's home, hides their dotfiles and SSH keys). Exactly these paths...
 */
const SYSTEM_EXACT = new Set(['/', '/proc', '/sys', '/dev', '/etc', '/usr', '/boot', '/run', '/var', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/tmp', '/home', '/root', '/srv', '/opt', '/mnt', '/media', '/lost+found', '/var/tmp', '/var/lib', '/var/log', '/var/cache']);
/** ...and anything under these (pseudo filesystems and the OS itself). */
const SYSTEM_TREES = ['/proc', '/sys', '/dev', '/etc', '/usr', '/boot', '/run', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/root', '/var/lib'];

/** An absolute, normalized path: no empty, "." or ".." parts, no trailing slash, no control characters. */
export function normalPath(what: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 1024 || /[\x00-\x1f\x7f]/.test(value)) invalid(`invalid ${what} ${preview(value)}`);
  if (!value.startsWith('/')) invalid(`${what} ${preview(value)} is not an absolute path`, 'give the full path');
  const parts = value.split('/').slice(1);
  if (value !== '/' && parts.some((p) => p === '' || p === '.' || p === '..')) invalid(`${what} ${preview(value)} is not a plain path`, 'no "//", ".", ".." or trailing "/"');
  return value;
}

/** A guest mount point: absolute, plain, and none of the guest's system paths nor the user's home itself. */
export function guestPath(value: unknown, user?: string): string {
  const p = normalPath('guest folder', value);
  // The open-file check matches guest paths as find(1) patterns.
  if (/[*?[\]\\]/.test(p)) invalid(`guest folder ${preview(p)} contains "*", "?", "[", "]" or "\\"`, 'pick a plain path');
  const inTree = SYSTEM_TREES.some((t) => p === t || p.startsWith(`${t}/`));
  if (SYSTEM_EXACT.has(p) || inTree || (user !== undefined && p === `/home/${user}`)) {
    invalid(`guest folder ${preview(p)} is a system path in the guest`, `mount it somewhere else, for instance /mnt/NAME${user ? ` or /home/${user}/NAME` : ''}`);
  }
  return p;
}

/** `a` is `b` or inside it. */
export function within(a: string, b: string): boolean {
  return a === b || b === '/' || a.startsWith(`${b}/`);
}

export interface ShareArg {
  hostPath: string;
  guestPath?: string;
  readOnly: boolean;
}

/**
 * `HOSTDIR[:GUESTDIR][:ro]`, where HOSTDIR may be relative (resolved by `resolve`, the
 * client's working directory). A path holding ":" cannot be written this way: use
 * `devvm share`, which takes the paths as separate arguments.
 */
export function parseShareArg(s: string, resolve: (p: string) => string): ShareArg {
  if (typeof s !== 'string' || !s) invalid('--share needs HOSTDIR[:GUESTDIR][:ro]');
  const parts = s.split(':');
  let readOnly = false;
  if (parts.length > 1 && (parts[parts.length - 1] === 'ro' || parts[parts.length - 1] === 'rw')) readOnly = parts.pop() === 'ro';
  if (parts.length > 2 || parts.some((p) => p === '')) invalid(`--share ${preview(s)} is not HOSTDIR[:GUESTDIR][:ro]`, 'a path with ":" in it: add the share with "devvm share NAME HOSTDIR GUESTDIR" instead');
  const hostPath = resolve(parts[0]!);
  const guest = parts[1];
  return { hostPath, ...(guest !== undefined ? { guestPath: guestPath(guest) } : {}), readOnly };
}

/**
 * A new share against those a VM has: no guest path twice or one inside another (mounts
 * would hide each other), no host folder twice.
 */
export function checkNoOverlap(next: { hostPath: string; guestPath: string }, existing: ReadonlyArray<{ hostPath: string; guestPath: string }>): void {
  for (const e of existing) {
    if (within(next.guestPath, e.guestPath) || within(e.guestPath, next.guestPath)) {
      throw new DevvmError('already-exists', `guest folder ${next.guestPath} ${next.guestPath === e.guestPath ? 'is shared already' : `overlaps the share at ${e.guestPath}`}`, 'pick another guest folder, or unshare the other first');
    }
    if (next.hostPath === e.hostPath) throw new DevvmError('already-exists', `host folder ${next.hostPath} is shared already (at ${e.guestPath})`, 'one guest folder per host folder');
  }
}
