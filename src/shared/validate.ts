/**
 * Input rules shared by the helper (which enforces them), the CLI and the extension's
 * form (which check them early for a better message). Each returns the value or throws
 * a DevvmError('invalid-argument') with a one-line reason.
 */
import { DevvmError } from './errors';

const VM_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const IMAGE_NAME = /^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$/;
const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

/** Accounts that exist in a Debian guest (or are meaningful to sudo/ssh) and must not be reused. */
const RESERVED_USERS = new Set([
  'root', 'daemon', 'bin', 'sys', 'sync', 'games', 'man', 'lp', 'mail', 'news', 'uucp', 'proxy',
  'www-data', 'backup', 'list', 'irc', 'gnats', 'nobody', 'nogroup', 'systemd-network',
  'systemd-resolve', 'systemd-timesync', 'messagebus', 'sshd', '_apt', 'sudo', 'admin', 'users',
  'staff', 'adm', 'disk', 'tty', 'kmem', 'dialout', 'cdrom', 'video', 'audio', 'plugdev', 'netdev',
]);

function invalid(message: string, hint?: string): never {
  throw new DevvmError('invalid-argument', message, hint);
}

/** Printable preview of untrusted input for error messages (no control chars, bounded). */
export function preview(value: unknown): string {
  const s = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  const clean = s.replace(/[\x00-\x1f\x7f]/g, '?');
  return JSON.stringify(clean.length > 40 ? `${clean.slice(0, 40)}…` : clean);
}

export function vmName(value: unknown): string {
  if (typeof value !== 'string' || !VM_NAME.test(value)) {
    invalid(`invalid VM name ${preview(value)}`, 'use 1-63 lowercase letters, digits and inner dashes, like "dev" or "web-1"');
  }
  return value;
}

export function imageName(value: unknown): string {
  if (typeof value !== 'string' || !IMAGE_NAME.test(value) || value.includes('..')) {
    invalid(`invalid image name ${preview(value)}`, 'use 1-63 lowercase letters, digits, dots, dashes and underscores, like "debian-12"');
  }
  return value;
}

export function snapshotName(value: unknown): string {
  if (typeof value !== 'string' || !VM_NAME.test(value)) {
    invalid(`invalid snapshot name ${preview(value)}`, 'use 1-63 lowercase letters, digits and inner dashes');
  }
  return value;
}

/** A disk to attach: an nbd:// URI or an absolute file path (checked further by the helper). */
export function diskSource(value: unknown): string {
  if (typeof value !== 'string' || !value || value.length > 4096 || /[\x00-\x1f\x7f]/.test(value)) {
    invalid(`invalid disk source ${preview(value)}`, 'give an absolute path to a qcow2/raw file or nbd://HOST:PORT/EXPORT');
  }
  if (!value.startsWith('/') && !value.startsWith('nbd://') && !value.startsWith('nbd+unix://')) invalid(`disk source ${preview(value)} is neither an absolute path nor an nbd:// URI`);
  return value;
}

/** An attached disk's id as devvm names them ("xd1"). */
export function diskId(value: unknown): string {
  if (typeof value !== 'string' || !/^xd[0-9]{1,3}$/.test(value)) invalid(`invalid disk id ${preview(value)}`, 'see the disks in "devvm info NAME"');
  return value;
}

export function userName(value: unknown): string {
  if (typeof value !== 'string' || !USER_NAME.test(value)) {
    invalid(`invalid user name ${preview(value)}`, 'use up to 32 lowercase letters, digits, "_" and "-", starting with a letter or "_"');
  }
  if (RESERVED_USERS.has(value)) invalid(`user name "${value}" is reserved in the guest`, 'pick another short name');
  return value;
}

/** Full name (GECOS): any Unicode text except the characters passwd(5) and useradd reject. */
export function fullName(value: unknown): string {
  if (typeof value !== 'string') invalid('full name must be text');
  if (value.length > 200) invalid('full name is longer than 200 characters');
  if (/[:,=\\\x00-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff]/.test(value)) invalid(`full name ${preview(value)} contains ":", ",", "=", "\\" or a control character`, 'these break /etc/passwd');
  return value.trim();
}

/**
 * Any text without NUL or line breaks (stdin and files are read one line), at most 256
 * UTF-8 bytes: `openssl passwd -stdin` silently cuts longer lines, which would hash a
 * password the user never typed.
 */
export function password(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) invalid('password is empty');
  if (Buffer.byteLength(value, 'utf8') > 256) invalid('password is longer than 256 bytes');
  if (/[\x00\r\n]/.test(value)) invalid('password contains a NUL or a line break');
  return value;
}

function integer(what: string, value: unknown, min: number, max: number, unit: string): number {
  const n = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) invalid(`${what} must be a whole number, got ${preview(value)}`);
  if (n < min || n > max) invalid(`${what} ${n}${unit} is out of range`, `use ${min}-${max}${unit}`);
  return n;
}

export const LIMITS = {
  cpus: { min: 1, max: 64 },
  memoryMiB: { min: 256, max: 262144 },
  diskGiB: { min: 1, max: 16384 },
} as const;

export function cpus(value: unknown, hostCpus: number = LIMITS.cpus.max): number {
  return integer('CPU count', value, LIMITS.cpus.min, Math.min(LIMITS.cpus.max, hostCpus), '');
}

export function memoryMiB(value: unknown, hostMiB: number = LIMITS.memoryMiB.max): number {
  return integer('memory', value, LIMITS.memoryMiB.min, Math.min(LIMITS.memoryMiB.max, hostMiB), ' MiB');
}

export function diskGiB(value: unknown): number {
  return integer('disk size', value, LIMITS.diskGiB.min, LIMITS.diskGiB.max, ' GiB');
}

/** An OpenSSH public key line: type, base64 body, optional comment, one line. */
export function sshPublicKey(value: unknown): string {
  if (typeof value !== 'string') invalid('SSH public key must be text');
  const line = value.trim();
  if (!/^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( [^\r\n]*)?$/.test(line)) {
    invalid('not an OpenSSH public key', 'pass the contents of a .pub file');
  }
  return line;
}

export function nonEmptyPath(what: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 4096 || value.includes('\0')) {
    invalid(`invalid ${what} ${preview(value)}`);
  }
  return value;
}

/** A host USB device as the user names it: its sysfs id (1-2.3), VENDOR:PRODUCT or BUS/DEV. */
export function usbDeviceSpec(value: unknown): string {
  if (typeof value !== 'string' || !value || value.length > 64 || /[\x00-\x20\x7f]/.test(value)) {
    invalid(`invalid USB device ${preview(value)}`, 'name it by its id (1-2.3), VENDOR:PRODUCT or BUS/DEV; see "devvm usb list"');
  }
  return value;
}

/**
 * A path sent to the helper: absolute, since the helper's working directory is not the
 * client's (the clients resolve what the user typed before sending it).
 */
export function absolutePath(what: string, value: unknown): string {
  const p = nonEmptyPath(what, value);
  if (!p.startsWith('/')) invalid(`${what} ${preview(p)} is not an absolute path`, 'give the full path');
  return p;
}

/** An image import source: an absolute file path or an NBD URI. */
export function importSource(value: unknown): string {
  const p = nonEmptyPath('image file', value);
  return /^nbd(\+unix)?:\/\//.test(p) ? p : absolutePath('image file', p);
}
