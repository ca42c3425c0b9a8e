/**
 * Idle suspend settings, shared by CLI, helper and extension: a VM's own setting is a
 * number of minutes, "off", or absent (the helper's default, DEVVM_IDLE_SUSPEND).
 */
import { DevvmError } from './errors';

/** At most a week: anything longer is "off" in practice. */
export const IDLE_MAX_MIN = 7 * 24 * 60;

/** What `--idle-suspend` and vm/set take: minutes, "off", or "default" (follow the helper's default). */
export type IdleSetting = number | 'off' | 'default';

export function idleSetting(x: unknown): IdleSetting {
  if (x === 'off' || x === 'default') return x;
  const n = typeof x === 'string' && /^[0-9]+$/.test(x) ? Number(x) : x;
  if (typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= IDLE_MAX_MIN) return n;
  throw new DevvmError('invalid-argument', `idle suspend must be minutes (1-${IDLE_MAX_MIN}), "off" or "default", got ${JSON.stringify(x)}`);
}

/** The helper's default from its environment: minutes, or null (off) when unset, "off" or 0. */
export function idleDefault(env: string | undefined): number | null {
  if (env === undefined || env === '' || env === 'off' || env === '0') return null;
  const s = idleSetting(env);
  return typeof s === 'number' ? s : null;
}

/** "suspends after 30 min idle", for info and the tree's tooltip. */
export function idleText(min: number | null | undefined): string {
  return min ? `suspends after ${min} min idle` : 'never suspends when idle';
}
