/**
 * A VM's display: its setting (devvm set, create --display), where its VNC server is,
 * resizes and screenshots through the driver's DisplayOps. Resizes of one VM go out one
 * at a time, at most 4 a second, the newest winning: however many tabs and clients ask,
 * the guest never sees a storm of mode changes.
 */
import { DevvmError } from '../../shared/errors';
import { DISPLAY_MAX, DISPLAY_MIN, bootSize, guestSizeFor, sameSize, type DisplaySize, type Size } from '../../shared/display';
import { assertAllowed } from '../../shared/lifecycle';
import type { SetParams } from '../../shared/rpc';
import type { DisplayInfo, DisplayResizeResult, Screenshot } from '../../shared/types';
import { need, requireFeature, type DisplayOps, type Instance } from '../driver/driver';
import { log } from '../log';
import { admit, type VmContext } from './context';

/** Spacing between two resizes of one VM. */
const MIN_INTERVAL_MS = 250;
/** How long a resize waits for the guest to switch before it reports the size kept. */
const APPLY_TIMEOUT_MS = 2000;

/** The display setting that create parameters ask for (`displaySize` implies a display). */
export function displayOf(p: { display?: boolean; displaySize?: DisplaySize }): { display?: DisplaySize } {
  if (p.display === false && p.displaySize !== undefined) throw new DevvmError('invalid-argument', 'a display size was given for a VM without a display', 'drop --display-size, or turn the display on');
  return p.display || p.displaySize !== undefined ? { display: p.displaySize ?? 'auto' } : {};
}

/** Width and height from a PNG's IHDR chunk. */
export function pngSize(png: Buffer): Size {
  if (png.length < 24 || png.readUInt32BE(0) !== 0x89504e47 || png.toString('latin1', 12, 16) !== 'IHDR') throw new DevvmError('process-failed', 'the screenshot is not a PNG');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

interface Waiter {
  requested: Size;
  at: number;
  superseded: boolean;
  resolve: (r: DisplayResizeResult) => void;
  reject: (e: unknown) => void;
}

interface Lane {
  running: boolean;
  next: { want: Size; waiters: Waiter[] } | null;
  lastAt: number;
}

export class Displays {
  private readonly lanes = new Map<string, Lane>();
  /** The size each VM was last asked for: a new QEMU (a start, a resume) boots at its boot size and is asked again. */
  private readonly wanted = new Map<string, Size>();
  /** VMs whose instance the driver has an RFB connection to (made by the first size, resize or reassert). */
  private readonly connected = new Set<string>();

  constructor(private readonly ctx: VmContext) {}

  /** The running VM's display, or the refusal that names the way to one. */
  private ops(name: string, op: 'display' | 'screenshot'): DisplayOps {
    const cfg = this.ctx.store.read(name);
    if (!cfg.display) throw new DevvmError('not-supported', `VM "${name}" has no display`, `stop it and turn one on: devvm set ${name} --display on`);
    assertAllowed(op, name, this.ctx.state(name));
    const inst = this.ctx.instance(name);
    if (!inst) throw new DevvmError('invalid-state', `VM "${name}" is not running`);
    return need(inst.display, this.ctx.driver.name, 'show a display');
  }

  async info(name: string): Promise<DisplayInfo> {
    const cfg = this.ctx.store.read(name);
    const state = this.ctx.state(name);
    const display = cfg.display ?? null;
    const inst = state === 'running' && display ? this.ctx.instance(name) : undefined;
    let size: Size | null = null;
    if (inst?.display) {
      this.connected.add(name);
      size = await inst.display.size().catch(() => null);
    }
    return {
      name,
      state,
      display,
      socket: inst?.display ? this.ctx.home.vm(name).vnc : null,
      size,
      bootSize: display ? bootSize(display) : null,
      limits: { min: DISPLAY_MIN, max: DISPLAY_MAX },
    };
  }

  /** Fits `view` (CSS pixels) to the limits and asks the guest for it; see the lane above. */
  async resize(name: string, view: Size): Promise<DisplayResizeResult> {
    const ops = this.ops(name, 'display');
    this.connected.add(name);
    const cfg = this.ctx.store.read(name);
    if (cfg.display !== 'auto') throw new DevvmError('invalid-state', `VM "${name}" keeps its display at ${cfg.display!.width}x${cfg.display!.height}`, `make it follow the view: devvm set ${name} --display-size auto (while stopped)`);
    const requested = guestSizeFor(view);
    this.wanted.set(name, requested);
    return new Promise((resolve, reject) => {
      let lane = this.lanes.get(name);
      if (!lane) this.lanes.set(name, (lane = { running: false, next: null, lastAt: 0 }));
      const w: Waiter = { requested, at: Date.now(), superseded: false, resolve, reject };
      if (lane.next) {
        for (const old of lane.next.waiters) old.superseded = true;
        lane.next.want = requested;
        lane.next.waiters.push(w);
      } else {
        lane.next = { want: requested, waiters: [w] };
      }
      if (!lane.running) void this.drain(name, lane, ops);
    });
  }

  private async drain(name: string, lane: Lane, ops: DisplayOps): Promise<void> {
    lane.running = true;
    try {
      while (lane.next) {
        const wait = lane.lastAt + MIN_INTERVAL_MS - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const job = lane.next;
        lane.next = null;
        lane.lastAt = Date.now();
        try {
          const r = await ops.resize(job.want, APPLY_TIMEOUT_MS);
          if (!r.applied) log.info(`${name}: the guest kept ${r.size.width}x${r.size.height} when asked for ${job.want.width}x${job.want.height}`);
          const done = Date.now();
          for (const w of job.waiters) {
            w.resolve({ requested: w.requested, size: r.size, applied: sameSize(r.size, w.requested), ...(w.superseded ? { superseded: true } : {}), ms: done - w.at });
          }
        } catch (e) {
          for (const w of job.waiters) w.reject(e);
        }
      }
    } finally {
      lane.running = false;
      if (!lane.next) this.lanes.delete(name);
    }
  }

  /**
   * A new instance of a VM: a resumed guest is switched back to the size it had (the new
   * QEMU starts at the boot size); a booting one gets it when its driver sets a mode.
   * Resolves once the switch is done (or failed): a resume waits for it.
   */
  adopted(name: string, inst: Instance): Promise<void> {
    this.connected.delete(name);
    const w = this.wanted.get(name);
    if (!w || !inst.display || this.ctx.store.read(name).display !== 'auto') return Promise.resolve();
    this.connected.add(name);
    return inst.display.reassert(w).catch(() => {});
  }

  /** The helper's own connections to the VM's VNC server (idle counting subtracts them). */
  ownClients(name: string): number {
    return this.connected.has(name) ? 1 : 0;
  }

  async screenshot(name: string): Promise<Screenshot> {
    const png = await this.ops(name, 'screenshot').screenshot();
    return { png: png.toString('base64'), ...pngSize(png) };
  }

  /** Changes the machine of a stopped VM. */
  async set(name: string, p: Pick<SetParams, 'display' | 'displaySize'>): Promise<void> {
    if (p.display === undefined && p.displaySize === undefined) throw new DevvmError('invalid-argument', 'nothing to change', 'give --display on|off or --display-size');
    admit(this.ctx, 'set', name);
    this.check(p);
    await this.ctx.locks.run(name, 'configuring', async () => {
      const display = this.planned(name, p);
      this.ctx.store.update(name, (c) => ({ ...c, display }));
      this.logged(name, display);
    });
  }

  /** The checks of a display change that need no lock (a size change makes them first too). */
  check(p: Pick<SetParams, 'display' | 'displaySize'>): void {
    if (p.display !== false) requireFeature(this.ctx.driver, 'display', 'show a display');
    if (p.display === false && p.displaySize !== undefined) displayOf(p); // refuses the contradiction
  }

  /** The display setting `p` makes of the VM's current one (lock held); throws when it cannot. */
  planned(name: string, p: Pick<SetParams, 'display' | 'displaySize'>): DisplaySize | undefined {
    const cfg = this.ctx.store.read(name);
    if (p.display === undefined && !cfg.display) throw new DevvmError('invalid-argument', `VM "${name}" has no display`, `turn it on with the size: devvm set ${name} --display on --display-size ${p.displaySize === 'auto' ? 'auto' : '...'}`);
    return p.display === false ? undefined : (p.displaySize ?? cfg.display ?? 'auto');
  }

  logged(name: string, display: DisplaySize | undefined): void {
    log.info(`${name}: display ${display ? (display === 'auto' ? 'on (follows the view)' : `on at ${display.width}x${display.height}`) : 'off'}`);
  }
}
