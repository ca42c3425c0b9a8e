/**
 * What a devvm.json asks for, with every default applied and every file it names read:
 * the VM's settings, its shares and ports, and the provisioning steps with their scripts'
 * text. Errors point at the field in devvm.json ("devvm.json:L:C: ...").
 */
import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DevvmError } from '../errors';
import type { PortProtocol } from '../types';
import * as v from '../validate';
import type { Manifest, ManifestPort, Segment } from './manifest';

export const DEFAULT_IMAGE = 'debian-12';
export const FALLBACK_USER = 'dev';
const MAX_SCRIPT_BYTES = 1024 * 1024;

export interface PlanShare {
  hostPath: string;
  guestPath: string;
  readOnly: boolean;
}

export interface PlanPort {
  protocol: PortProtocol;
  hostPort: number;
  guestPort: number;
}

export interface PlanStep {
  when: 'create' | 'start';
  as: 'root' | 'user';
  /** "provision[2]", or the script's path: what errors and output name it by. */
  label: string;
  /** The bash text: inline `run`, or the script file's contents. */
  text: string;
}

export type Dotfiles = { kind: 'git'; url: string } | { kind: 'local'; path: string };

export interface Plan {
  dir: string;
  /** The file's own name, when it has one. */
  name?: string;
  image: string;
  cpus?: number;
  memoryMiB?: number;
  diskGiB?: number;
  user: string;
  shares: PlanShare[];
  /** Static forwards only (auto ones only carry labels). */
  ports: PlanPort[];
  /** guestPort -> label, for static and auto ports alike. */
  labels: Record<number, string>;
  env: Record<string, string>;
  steps: PlanStep[];
  dotfiles: Dotfiles | null;
  idleSuspend?: number | 'off';
  autostart?: boolean;
  /** The folder's path in the guest: through the share that holds it, else the same path. */
  guestPath: string;
}

/** The host's user name when the guest can have it, else "dev". */
export function defaultUser(hostUser: string = safeHostUser()): string {
  try {
    return v.userName(hostUser);
  } catch {
    return FALLBACK_USER;
  }
}

function safeHostUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return '';
  }
}

/** scp-like (git@host:repo) or a URL scheme git clones from. */
export function isGitUrl(s: string): boolean {
  return /^(https?|ssh|git|git\+ssh|file):\/\//i.test(s) || /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:/.test(s);
}

function invalidAt(m: Manifest, at: Segment[], message: string, hint?: string): never {
  throw new DevvmError('invalid-argument', `${m.where(at)}: ${message}`, hint);
}

function hostDir(m: Manifest, dir: string, p: string, at: Segment[], what: string): string {
  const abs = p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : path.resolve(dir, p);
  let st;
  try {
    st = statSync(abs);
  } catch {
    invalidAt(m, at, `${what} ${v.preview(p)} does not exist (${abs})`);
  }
  if (!st.isDirectory()) invalidAt(m, at, `${what} ${v.preview(p)} is not a folder`);
  return abs;
}

function portOf(p: ManifestPort): PlanPort {
  return { protocol: p.protocol ?? 'tcp', hostPort: p.hostPort ?? p.guestPort, guestPort: p.guestPort };
}

/** `dir` is the folder (absolute, symlinks resolved); `hostUser` is for tests. */
export function makePlan(m: Manifest, dir: string, hostUser?: string): Plan {
  const f = m.fields;
  const shares = (f.shares ?? [{ hostPath: '.' }]).map((s, i) => {
    const hostPath = hostDir(m, dir, s.hostPath, ['shares', i, 'hostPath'], 'shared folder');
    return { hostPath, guestPath: s.guestPath ?? hostPath, readOnly: s.readOnly ?? false };
  });
  const steps = (f.provision ?? []).map((s, i): PlanStep => {
    const at: Segment[] = ['provision', i, s.script !== undefined ? 'script' : 'run'];
    let text = s.run;
    if (s.script !== undefined) {
      const file = path.join(dir, s.script);
      try {
        const st = statSync(file);
        if (!st.isFile()) invalidAt(m, at, `script ${v.preview(s.script)} is not a file`);
        if (st.size > MAX_SCRIPT_BYTES) invalidAt(m, at, `script ${v.preview(s.script)} is larger than 1 MiB`);
        text = readFileSync(file, 'utf8');
      } catch (e) {
        if (e instanceof DevvmError) throw e;
        invalidAt(m, at, `script ${v.preview(s.script)} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
    return { when: s.when, as: s.as ?? 'user', label: s.script ?? `provision[${i}]`, text: text! };
  });
  let dotfiles: Dotfiles | null = null;
  if (f.dotfiles !== undefined) dotfiles = isGitUrl(f.dotfiles) ? { kind: 'git', url: f.dotfiles } : { kind: 'local', path: hostDir(m, dir, f.dotfiles, ['dotfiles'], 'dotfiles folder') };
  const holder = shares.find((s) => dir === s.hostPath || dir.startsWith(`${s.hostPath}/`));
  const labels: Record<number, string> = {};
  for (const p of f.ports ?? []) if (p.label) labels[p.guestPort] = p.label;
  return {
    dir,
    ...(f.name !== undefined ? { name: f.name } : {}),
    image: f.image ?? DEFAULT_IMAGE,
    ...(f.cpus !== undefined ? { cpus: f.cpus } : {}),
    ...(f.memory !== undefined ? { memoryMiB: f.memory } : {}),
    ...(f.disk !== undefined ? { diskGiB: f.disk } : {}),
    user: f.user ?? defaultUser(hostUser),
    shares,
    ports: (f.ports ?? []).filter((p) => (p.forward ?? 'static') === 'static').map(portOf),
    labels,
    env: f.env ?? {},
    steps,
    dotfiles,
    ...(f.idleSuspendMinutes !== undefined ? { idleSuspend: f.idleSuspendMinutes === 0 ? ('off' as const) : f.idleSuspendMinutes } : {}),
    ...(f.autostart !== undefined ? { autostart: f.autostart } : {}),
    guestPath: holder ? path.posix.join(holder.guestPath, path.relative(holder.hostPath, dir)) : dir,
  };
}
