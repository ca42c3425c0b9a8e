/**
 * One QEMU process. Started detached (its own session, output to qemu.log) so it outlives
 * the helper; a restarted helper re-attaches through the pid file and the QMP socket.
 * Whether it runs is derived from the process and its socket, never remembered.
 */
import { readFileSync, rmSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { DevvmError } from '../../shared/errors';
import { log } from '../log';
import { pidAlive, spawnDetached } from '../proc';
import { Qmp, type QmpEvent } from './qmp';

/** The pid in `pidFile` if that process is alive and is the QEMU using `qmpSocket` (guards against pid reuse). */
export function livePid(pidFile: string, qmpSocket: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) return null;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmdline.includes(qmpSocket)) return null;
  } catch {
    // no /proc (macOS): trust the pid file
  }
  return pid;
}

function tail(file: string, lines = 3): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' | ');
  } catch {
    return '';
  }
}

export interface LaunchFiles {
  qmpSocket: string;
  pidFile: string;
  qemuLog: string;
}

/** How a QEMU ended: `expected` when the helper asked for it or the guest shut down. */
export interface ExitInfo {
  expected: boolean;
  reason: string;
}

export class Machine extends EventEmitter {
  /** Set by stop(): the helper asked for the end. */
  private stopping = false;
  /** The reason of QEMU's SHUTDOWN event, when it sent one (a kill -9 sends none). */
  private shutdownReason: string | null = null;

  private constructor(
    readonly pid: number,
    readonly qmp: Qmp,
    private readonly qemuLog: string,
  ) {
    super();
    qmp.on('event', (e: QmpEvent) => {
      if (e.event === 'SHUTDOWN') this.shutdownReason = String(e.data?.reason ?? 'shutdown');
    });
    qmp.once('closed', () => this.emit('exit', this.exitInfo()));
  }

  private exitInfo(): ExitInfo {
    if (this.stopping) return { expected: true, reason: 'stopped' };
    const r = this.shutdownReason;
    // guest-shutdown: poweroff inside the guest; host-qmp-quit: a quit over QMP.
    if (r === 'guest-shutdown' || r === 'host-qmp-quit' || r === 'host-qmp-system-reset') return { expected: true, reason: r };
    const why = r === null ? `QEMU (pid ${this.pid}) ended without shutting down (killed or crashed)` : `QEMU (pid ${this.pid}) shut down unasked (${r})`;
    const log = tail(this.qemuLog, 2);
    return { expected: false, reason: log ? `${why}: ${log}` : why };
  }

  get alive(): boolean {
    return !this.qmp.closed;
  }

  /** Starts QEMU detached (src/helper/proc.ts) and connects to its QMP socket; `signal` kills it while it comes up. */
  static async launch(binary: string, args: string[], files: LaunchFiles, signal?: AbortSignal): Promise<Machine> {
    rmSync(files.qmpSocket, { force: true });
    rmSync(files.pidFile, { force: true });
    const child = spawnDetached(binary, args, files.qemuLog);
    const deadline = Date.now() + 15000;
    for (;;) {
      if (signal?.aborted) {
        child.kill('SIGKILL');
        throw new DevvmError('invalid-state', 'the start was cancelled (stop --force)');
      }
      const exited = child.exited();
      if (exited) {
        const why = tail(files.qemuLog) || exited;
        if (/ENOENT/.test(exited)) throw new DevvmError('missing-dependency', `${binary} is not installed`, 'run "npm run up" or apt-get install qemu-system-x86');
        throw new DevvmError('process-failed', `QEMU failed to start: ${why}`, `see ${files.qemuLog}`);
      }
      let qmp: Qmp | null = null;
      try {
        qmp = await Qmp.connect(files.qmpSocket, 3000);
      } catch {
        if (Date.now() > deadline) {
          child.kill('SIGKILL');
          throw new DevvmError('timeout', 'QEMU did not open its QMP socket', `see ${files.qemuLog}`);
        }
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const m = new Machine(child.pid, qmp, files.qemuLog);
      log.info(`qemu pid ${child.pid} started`);
      if (signal?.aborted) {
        await m.stop(true, 0);
        throw new DevvmError('invalid-state', 'the start was cancelled (stop --force)');
      }
      return m;
    }
  }

  /** Reattach to a QEMU left running by an earlier helper; null if it is not running. */
  static async attach(files: LaunchFiles): Promise<Machine | null> {
    const pid = livePid(files.pidFile, files.qmpSocket);
    if (pid === null) return null;
    // A loaded host (or a QEMU busy finishing a migration) can be slow to greet: keep
    // trying while the process lives, since giving up would orphan a running VM.
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        return new Machine(pid, await Qmp.connect(files.qmpSocket, 3000), files.qemuLog);
      } catch (e) {
        if (livePid(files.pidFile, files.qmpSocket) === null) return null;
        if (Date.now() > deadline) {
          log.warn(`qemu pid ${pid} is alive but its QMP socket does not answer: ${(e as Error).message}`);
          return null;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  waitExit(timeoutMs: number): Promise<boolean> {
    if (!this.alive) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /**
   * ACPI power button, then quit, then SIGKILL: each step only if the previous one did not
   * end QEMU. With `fallback` (the guest agent's shutdown; false: it cannot be asked) the
   * button gets half the graceful budget and the fallback the other half.
   */
  async stop(force: boolean, gracefulMs: number, fallback?: () => Promise<boolean>): Promise<void> {
    this.stopping = true;
    if (!force) {
      await this.qmp.execute('system_powerdown').catch(() => {});
      const acpiMs = fallback ? Math.floor(gracefulMs / 2) : gracefulMs;
      if (await this.waitExit(acpiMs)) return;
      if (fallback) {
        const asked = await fallback().catch((e: unknown) => {
          log.warn(`pid ${this.pid}: the guest agent's shutdown failed: ${(e as Error).message}`);
          return false;
        });
        if (asked) {
          log.info(`pid ${this.pid}: no shutdown ${acpiMs} ms after the ACPI button; asked the guest agent`);
          if (await this.waitExit(gracefulMs - acpiMs)) {
            log.info(`pid ${this.pid}: the guest shut down through its agent`);
            return;
          }
        }
      }
      log.warn(`pid ${this.pid}: no shutdown after ${gracefulMs} ms, quitting`);
    }
    await this.qmp.execute('quit').catch(() => {});
    if (await this.waitExit(5000)) return;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await this.waitExit(5000);
  }
}
