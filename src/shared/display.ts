/**
 * A VM's display: its size rules and the resize debounce, shared by the helper (which
 * enforces them), the CLI and the extension's Display tab. See docs/display.md for why
 * these limits and why sizes are CSS pixels.
 */
import { DevvmError } from './errors';
import { preview } from './validate';

export interface Size {
  width: number;
  height: number;
}

/** Smaller than this, a console or a desktop is of no use; the tab scales instead. */
export const DISPLAY_MIN: Size = { width: 640, height: 480 };
/** Larger than this, the guest's framebuffer costs more to encode under TCG than it is worth; the tab scales. */
export const DISPLAY_MAX: Size = { width: 2560, height: 1600 };
/**
 * The size an auto-resizing VM boots at. Linux allocates its text console's framebuffer at
 * the first mode, and the console then takes only modes that fit in it: booting at this
 * size lets the console follow the tab up to it (a desktop session is not limited so).
 */
export const CONSOLE_BOOT_SIZE: Size = { width: 1920, height: 1200 };

/** A VM's display setting: it follows the tab ('auto') or stays at one size. */
export type DisplaySize = 'auto' | Size;

export const sizeText = (s: Size) => `${s.width}x${s.height}`;
export const sameSize = (a: Size | null | undefined, b: Size | null | undefined) => !!a && !!b && a.width === b.width && a.height === b.height;

function within(s: Size): boolean {
  return s.width >= DISPLAY_MIN.width && s.height >= DISPLAY_MIN.height && s.width <= DISPLAY_MAX.width && s.height <= DISPLAY_MAX.height;
}

/** "auto", or a size within the limits as "WxH" (the CLI) or {width, height} (RPC `displaySize`). */
export function displaySize(value: unknown): DisplaySize {
  if (value === 'auto') return 'auto';
  let s: Size | null = null;
  const m = typeof value === 'string' ? /^([1-9][0-9]{2,4})x([1-9][0-9]{2,4})$/.exec(value) : null;
  if (m) s = { width: Number(m[1]), height: Number(m[2]) };
  else if (typeof value === 'object' && value !== null && Object.keys(value).sort().join() === 'height,width') {
    const { width, height } = value as Record<string, unknown>;
    if (Number.isInteger(width) && Number.isInteger(height)) s = { width: width as number, height: height as number };
  }
  if (!s || !within(s)) {
    throw new DevvmError('invalid-argument', `invalid display size ${preview(value)}`, `use "auto" or WIDTHxHEIGHT from ${sizeText(DISPLAY_MIN)} to ${sizeText(DISPLAY_MAX)}, like 1280x800`);
  }
  return s;
}

/** The size the guest boots with. */
export function bootSize(d: DisplaySize): Size {
  return d === 'auto' ? { ...CONSOLE_BOOT_SIZE } : { ...d };
}

/**
 * What to ask the guest for when the view is `view` (CSS pixels, fractions allowed):
 * within the limits, and the width a multiple of 8 (the console's glyph width; some
 * guests' drivers refuse other widths). A view outside the limits is scaled by the tab.
 */
export function guestSizeFor(view: Size): Size {
  const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.floor(v)));
  return {
    width: clamp(view.width, DISPLAY_MIN.width, DISPLAY_MAX.width) & ~7,
    height: clamp(view.height, DISPLAY_MIN.height, DISPLAY_MAX.height),
  };
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface DebounceOptions {
  /** Quiet time after the last change before a request goes out (a drag settles). */
  quietMs: number;
  /** A change never waits longer than this, even while the size keeps changing. */
  maxWaitMs: number;
  /** At least this long between two requests: the guest sees at most 1000/minIntervalMs per second. */
  minIntervalMs: number;
}

/** The Display tab's choice: follows within well under a second, at most 4 requests a second. */
export const TAB_DEBOUNCE: DebounceOptions = { quietMs: 150, maxWaitMs: 600, minIntervalMs: 250 };

/**
 * Turns a stream of sizes into few requests: the latest size wins, one request at a time,
 * spaced by `minIntervalMs`; a size equal to the last one sent is not sent again.
 */
export class ResizeDebouncer {
  private latest: Size | null = null;
  private lastSent: Size | null = null;
  private lastSentAt = -Infinity;
  private firstAt = 0;
  private timer: unknown = null;
  private inFlight = false;
  private disposed = false;

  constructor(
    private readonly send: (s: Size) => Promise<unknown>,
    private readonly opts: DebounceOptions = TAB_DEBOUNCE,
    private readonly clock: Clock = realClock,
  ) {}

  request(s: Size): void {
    if (this.disposed) return;
    const now = this.clock.now();
    if (this.timer === null) this.firstAt = now;
    else this.clock.clearTimeout(this.timer);
    this.latest = s;
    this.schedule(Math.min(now + this.opts.quietMs, this.firstAt + this.opts.maxWaitMs));
  }

  /** Forget what was sent, so the next size goes out even if it equals it (the guest restarted). */
  reset(): void {
    this.lastSent = null;
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(at: number): void {
    const due = Math.max(at, this.lastSentAt + this.opts.minIntervalMs);
    this.timer = this.clock.setTimeout(() => this.flush(), Math.max(0, due - this.clock.now()));
  }

  private flush(): void {
    this.timer = null;
    if (this.disposed || this.inFlight || !this.latest) return;
    const s = this.latest;
    this.latest = null;
    if (sameSize(s, this.lastSent)) return;
    this.inFlight = true;
    this.lastSent = s;
    this.lastSentAt = this.clock.now();
    void this.send(s)
      .catch(() => {
        // The sender reports its own failures; a failed size may be asked for again.
        this.lastSent = null;
      })
      .finally(() => {
        this.inFlight = false;
        if (this.latest && this.timer === null && !this.disposed) {
          this.firstAt = this.clock.now();
          this.schedule(this.clock.now());
        }
      });
  }
}
