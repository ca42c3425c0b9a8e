/**
 * What changed in devvm.json since the VM was made. The VM keeps a hash per field of the
 * plan it was made from (VmOrigin.fields; scripts by their contents), so a second `up`
 * can name the fields that differ, and say which of them `--apply` can change in place.
 */
import { createHash } from 'node:crypto';
import type { VmOrigin } from '../types';
import type { Plan } from './plan';

/** The fields of devvm.json, as `changed` names them. */
export const FIELDS = ['name', 'image', 'cpus', 'memory', 'disk', 'user', 'shares', 'ports', 'env', 'provision', 'dotfiles', 'idleSuspendMinutes', 'autostart'] as const;
export type Field = (typeof FIELDS)[number];

/** What `--apply` changes on the existing VM; the rest needs a new VM (`--rebuild`). */
export const APPLICABLE: ReadonlySet<string> = new Set(['cpus', 'memory', 'disk', 'shares', 'ports', 'env', 'idleSuspendMinutes', 'autostart', 'provision:start']);

/** JSON with sorted keys: the same value, the same text. */
export function canonical(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const o = value as Record<string, unknown>;
  return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
}

const hash = (s: string) => createHash('sha256').update(s).digest('hex');

/** The plan's parts that a field decides; provision is split into its create and start steps. */
function parts(p: Plan): Record<string, unknown> {
  return {
    name: p.name,
    image: p.image,
    cpus: p.cpus,
    memory: p.memoryMiB,
    disk: p.diskGiB,
    user: p.user,
    shares: p.shares,
    ports: [p.ports, p.labels],
    env: p.env,
    'provision:create': p.steps.filter((s) => s.when === 'create'),
    'provision:start': p.steps.filter((s) => s.when === 'start'),
    dotfiles: p.dotfiles,
    idleSuspendMinutes: p.idleSuspend,
    autostart: p.autostart,
  };
}

export function fingerprint(p: Plan): { manifestHash: string; fields: Record<string, string> } {
  const fields = Object.fromEntries(Object.entries(parts(p)).map(([k, x]) => [k, hash(canonical(x)).slice(0, 16)]));
  return { manifestHash: hash(canonical(fields)), fields };
}

export interface Changes {
  /** devvm.json's fields that differ, in FIELDS order. */
  changed: string[];
  /** The parts `--apply` cannot change (they need `--rebuild`). */
  needRebuild: string[];
  /** The parts that differ, with provision split ("provision:create", "provision:start"). */
  parts: string[];
}

/** `origin` as recorded by the VM; one without field hashes (made otherwise) counts every part as changed. */
export function changes(origin: VmOrigin | undefined, p: Plan): Changes {
  const now = fingerprint(p);
  if (origin?.manifestHash === now.manifestHash) return { changed: [], needRebuild: [], parts: [] };
  const before = origin?.fields ?? {};
  const differ = Object.keys(now.fields).filter((k) => before[k] !== now.fields[k]);
  const field = (k: string) => k.split(':')[0]!;
  return {
    changed: FIELDS.filter((f) => differ.some((k) => field(k) === f)),
    needRebuild: differ.filter((k) => !APPLICABLE.has(k)),
    parts: differ,
  };
}
