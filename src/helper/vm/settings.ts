/**
 * `devvm set`: the machine (size, vm/size.ts, and display, vm/display.ts: a stopped VM only) and the settings
 * that change no machine, so any VM takes them in any state: idle suspend and autostart.
 */
import { DevvmError } from '../../shared/errors';
import type { SetParams } from '../../shared/rpc';
import { log } from '../log';
import type { VmConfig } from '../vmconfig';
import type { VmContext } from './context';
import type { Displays } from './display';
import { hasSize, resize, type HostLimits } from './size';

/** The minutes a VM suspends after (its own setting, else the helper's default); null: never. */
export function idleLimit(cfg: Pick<VmConfig, 'idleSuspend'>, defaultMin: number | null): number | null {
  if (cfg.idleSuspend === 'off') return null;
  return cfg.idleSuspend ?? defaultMin;
}

/** The vm.json fields of create/set parameters (`default` drops the VM's own setting). */
export function settingsOf(p: Pick<SetParams, 'idleSuspend' | 'autostart'>): Partial<Pick<VmConfig, 'idleSuspend' | 'autostart'>> {
  const out: Partial<Pick<VmConfig, 'idleSuspend' | 'autostart'>> = {};
  if (p.idleSuspend !== undefined) out.idleSuspend = p.idleSuspend === 'default' ? undefined : p.idleSuspend;
  if (p.autostart !== undefined) out.autostart = p.autostart || undefined;
  return out;
}

export async function applySettings(ctx: VmContext, displays: Displays, name: string, p: Omit<SetParams, 'name'>, host?: HostLimits): Promise<void> {
  const { idleSuspend, autostart, origin, cpus, memoryMiB, diskGiB, ...screen } = p;
  const size = { cpus, memoryMiB, diskGiB };
  const other = idleSuspend !== undefined || autostart !== undefined || origin !== undefined;
  const withDisplay = screen.display !== undefined || screen.displaySize !== undefined;
  if (!other && !withDisplay && !hasSize(size)) {
    throw new DevvmError('invalid-argument', 'nothing to change', 'give --cpus, --memory, --disk, --display on|off, --display-size, --idle-suspend MIN|off|default or --autostart on|off');
  }
  ctx.store.read(name);
  // The machine first: its refusals (state, busy, limits) leave the other settings unchanged too.
  if (hasSize(size)) await resize(ctx, displays, name, size, screen, host);
  else if (withDisplay) await displays.set(name, screen);
  if (!other) return;
  const fields = settingsOf({ idleSuspend, autostart });
  ctx.store.update(name, (c) => ({ ...c, ...fields, ...(origin ? { origin } : {}) }));
  log.info(`${name}: ${Object.entries({ ...fields, ...(origin ? { origin: origin.manifestHash.slice(0, 12) } : {}) }).map(([k, v]) => `${k} ${v ?? 'default'}`).join(', ')}`);
  ctx.changed(name);
}

/** VMs marked autostart that are stopped, suspended or crashed are started (resumed), one at a time. */
export async function autostart(ctx: VmContext, configs: VmConfig[], start: (name: string) => Promise<unknown>): Promise<void> {
  for (const c of configs.filter((x) => x.autostart)) {
    const state = ctx.state(c.name);
    if (state !== 'stopped' && state !== 'suspended' && state !== 'error') continue;
    log.info(`${c.name}: autostart (${state})`);
    await start(c.name).catch((e: Error) => log.warn(`${c.name}: autostart failed: ${e.message}`));
  }
}
