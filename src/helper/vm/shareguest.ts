/**
 * The guest side of shares, through the guest agent's guest-exec (argument arrays; the
 * one shell script is constant text that gets the paths as its own arguments): mount,
 * sync and unmount, what is mounted, and which processes hold files in a share.
 */
import { DevvmError } from '../../shared/errors';
import type { ShareTransport } from '../../shared/types';
import type { AgentOps, GuestExecResult } from '../driver/driver';

/** A loaded TCG guest can take tens of seconds to load the 9p or virtiofs module and mount. */
const EXEC_TIMEOUT_MS = 120_000;

type Exec = Required<Pick<AgentOps, 'exec'>>['exec'];

function execOf(agent: AgentOps): Exec {
  if (!agent.exec) throw new DevvmError('not-supported', "the guest agent cannot run programs (guest-exec)");
  return agent.exec.bind(agent);
}

function failed(what: string, r: GuestExecResult): DevvmError {
  const why = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-1)[0] || `exit code ${r.exitCode}`;
  return new DevvmError('process-failed', `${what} in the guest failed: ${why}`);
}

/**
 * Mount options. virtiofs: the C virtiofsd acts as the calling guest user for each request,
 * so ownership and permissions are the host's own numeric ones. 9p: version 9p2000.L with
 * a large msize (fewer round trips per read), access by user (each guest uid attaches as
 * itself), cache=mmap so programs that mmap files work.
 */
export function mountArgs(transport: ShareTransport, tag: string, guestPath: string, readOnly: boolean): string[] {
  if (transport === 'virtiofs') return ['-t', 'virtiofs', ...(readOnly ? ['-o', 'ro'] : []), tag, guestPath];
  return ['-t', '9p', '-o', `trans=virtio,version=9p2000.L,msize=524288,access=user,cache=mmap${readOnly ? ',ro' : ''}`, tag, guestPath];
}

export async function mountInGuest(agent: AgentOps, transport: ShareTransport, tag: string, guestPath: string, readOnly: boolean): Promise<void> {
  const exec = execOf(agent);
  const mk = await exec('/bin/mkdir', ['-p', '--', guestPath], EXEC_TIMEOUT_MS);
  if (mk.exitCode !== 0) throw failed(`mkdir ${guestPath}`, mk);
  const r = await exec('/bin/mount', mountArgs(transport, tag, guestPath, readOnly), EXEC_TIMEOUT_MS);
  if (r.exitCode !== 0) throw failed(`mounting ${guestPath}`, r);
}

/** Flushes what the guest wrote (nothing written to a share is lost), then unmounts. */
export async function unmountInGuest(agent: AgentOps, guestPath: string): Promise<void> {
  const exec = execOf(agent);
  const s = await exec('/bin/sync', [], EXEC_TIMEOUT_MS);
  if (s.exitCode !== 0) throw failed('sync', s);
  const r = await exec('/bin/umount', ['--', guestPath], EXEC_TIMEOUT_MS);
  if (r.exitCode !== 0) throw failed(`unmounting ${guestPath}`, r);
}

/** /proc/mounts escapes space, tab, newline and backslash as octal. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Tag -> guest path of the shares mounted now (by source tag and filesystem type). */
export function parseMounts(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const [src, dir, type] = line.split(' ');
    if (src && dir && (type === 'virtiofs' || type === '9p') && /^devvm[0-9]{1,2}$/.test(src)) out.set(src, unescapeMount(dir));
  }
  return out;
}

export async function mountedInGuest(agent: AgentOps, timeoutMs = EXEC_TIMEOUT_MS): Promise<Map<string, string>> {
  const r = await execOf(agent)('/bin/cat', ['/proc/mounts'], timeoutMs);
  if (r.exitCode !== 0) throw failed('reading /proc/mounts', r);
  return parseMounts(r.stdout);
}

/**
 * Lists processes with an open file or their working directory in one of the folders
 * given as arguments: "pid<TAB>comm<TAB>path" lines. One find per folder (psmisc's fuser
 * is not in the image; a readlink per descriptor would fork thousands of times).
 */
export const HOLDERS_SCRIPT = [
  'for d in "$@"; do',
  '  find /proc/[0-9]*/fd /proc/[0-9]*/cwd -maxdepth 1 \\( -lname "$d" -o -lname "$d/*" \\) -printf \'%p\\t%l\\n\' 2>/dev/null',
  'done | while IFS="$(printf \'\\t\')" read -r p l; do',
  '  pid=${p#/proc/}; pid=${pid%%/*}',
  '  printf \'%s\\t%s\\t%s\\n\' "$pid" "$(cat /proc/$pid/comm 2>/dev/null)" "$l"',
  'done',
  'exit 0',
].join('\n');

export interface Holder {
  pid: number;
  comm: string;
  path: string;
}

export function parseHolders(text: string): Holder[] {
  const out: Holder[] = [];
  for (const line of text.split('\n')) {
    const [pid, comm, ...rest] = line.split('\t');
    if (!pid || !/^\d+$/.test(pid)) continue;
    if (!out.some((h) => h.pid === Number(pid))) out.push({ pid: Number(pid), comm: comm ?? '?', path: rest.join('\t') });
  }
  return out;
}

export async function holdersInGuest(agent: AgentOps, guestPaths: string[]): Promise<Holder[]> {
  if (!guestPaths.length) return [];
  const r = await execOf(agent)('/bin/sh', ['-c', HOLDERS_SCRIPT, 'devvm-holders', ...guestPaths], EXEC_TIMEOUT_MS);
  if (r.exitCode !== 0) throw failed('looking for open files', r);
  return parseHolders(r.stdout);
}
