/**
 * The optional native addon (native/, built by `npm run native` at install). Loaded lazily
 * and at most once; when it is missing or broken every caller has a fallback, and
 * `detail` tells `devvm doctor` why.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

export interface KvmProbeResult {
  ok: boolean;
  /** Guest run time when ok, else time spent until giving up. */
  ms: number;
  /** A human sentence: "KVM ran 50M instructions in 12.3 ms", "/dev/kvm missing", ... */
  reason: string;
}

export interface NativeAddon {
  /** Runs a tiny KVM guest; blocks the calling thread for at most deadline + ~150 ms. */
  kvmProbe(deadlineMs: number): KvmProbeResult;
  /** Same probe on libuv's thread pool, so the event loop keeps running. */
  kvmProbeAsync(deadlineMs: number): Promise<KvmProbeResult>;
  /** flock(2). False only when nonblocking and someone else holds it; throws on other errors. */
  flock(fd: number, exclusive: boolean, nonblocking: boolean): boolean;
  funlock(fd: number): void;
  /**
   * Sends `data` (at least one byte; may be the QMP command itself) with `fdToSend`
   * attached (SCM_RIGHTS) over a connected unix socket.
   */
  sendFd(socketFd: number, fdToSend: number, data: string): void;
  /** Receives one message and its fd (-1 if none). Tests only: nothing else may read the socket. */
  recvFd(socketFd: number, timeoutMs?: number): { fd: number; data: string };
  /**
   * Linux: watches the kernel's hot-plug events (netlink kobject uevents) on a thread of
   * its own. `onMessage` gets each message sent by the kernel (other senders are
   * dropped), NUL separators as "\n", no trailing one. `onError` gets an Error with a
   * `code`: ENOBUFS when events were lost (monitoring goes on; rescan), anything else
   * once, as monitoring stops. Keeps the event loop alive until `stop()`, after which
   * nothing more is delivered. Throws (with `code`, e.g. EPERM) when it cannot start.
   */
  ueventMonitor(onMessage: (msg: string) => void, onError?: (err: NodeJS.ErrnoException) => void): { stop(): void };
}

export const ADDON_RELATIVE = path.join('native', 'build', 'Release', 'devvm_native.node');

let loaded: { addon: NativeAddon | null; detail: string } | null = null;

/**
 * Where the addon may be: from the bundle (dist/, __dirname = <root>/dist) and from
 * sources under tsx (__dirname = <root>/src/helper) the repo root is an ancestor, so
 * walk up from __dirname; also the current directory's repo, for odd layouts.
 */
export function addonCandidates(start: string = __dirname): string[] {
  const out: string[] = [];
  for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
    out.push(path.join(dir, ADDON_RELATIVE));
    if (path.dirname(dir) === dir) break;
  }
  const fromCwd = path.resolve(process.cwd(), ADDON_RELATIVE);
  if (!out.includes(fromCwd)) out.push(fromCwd);
  return out;
}

export function loadNative(): { addon: NativeAddon | null; detail: string } {
  if (loaded) return loaded;
  if (process.env.DEVVM_NO_NATIVE === '1') {
    return (loaded = { addon: null, detail: 'disabled by DEVVM_NO_NATIVE=1' });
  }
  const file = addonCandidates().find((f) => existsSync(f));
  if (!file) {
    return (loaded = {
      addon: null,
      detail: `${ADDON_RELATIVE} was not built (run "npm run native"; needs a C++ compiler and Node headers)`,
    });
  }
  try {
    // A plain runtime require: esbuild leaves a non-literal require alone, and the
    // .node file stays outside the bundle.
    const addon = require(file) as NativeAddon;
    const missing = (['kvmProbe', 'kvmProbeAsync', 'flock', 'funlock', 'sendFd', 'recvFd', 'ueventMonitor'] as const).filter(
      (k) => typeof addon[k] !== 'function',
    );
    if (missing.length) {
      return (loaded = { addon: null, detail: `${file} is outdated (missing ${missing.join(', ')}); run "npm run native"` });
    }
    return (loaded = { addon, detail: `loaded from ${file}` });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0] ?? String(e);
    return (loaded = { addon: null, detail: `${file} failed to load: ${msg} (run "npm run native" to rebuild)` });
  }
}
