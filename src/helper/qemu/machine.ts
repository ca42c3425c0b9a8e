/**
 * One QEMU process. Started detached (its own session, output to qemu.log) so it outlives
 * the helper; a restarted helper re-attaches through the pid file and the QMP socket.
 * Whether it runs is derived from the process and its socket, never remembered.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { DevvmError } from '../../shared/errors';
import { log } from '../log';
import { Qmp } from './qmp';

/** Alive and not a zombie (an orphaned QEMU may wait unreaped where pid 1 does not reap). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ..."; comm may contain spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc (macOS)
  }
}

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

export class Machine extends EventEmitter {
  private constructor(
    readonly pid: number,
    readonly qmp: Qmp,
  ) {
    super();
    qmp.once('closed', () => this.emit('exit'));
  }

  get alive(): boolean {
    return !this.qmp.closed;
  }

  static async launch(binary: string, args: string[], files: LaunchFiles): Promise<Machine> {
    rmSync(files.qmpSocket, { force: true });
    rmSync(files.pidFile, { force: true });
    const out = openSync(files.qemuLog, 'a', 0o600);
    const child = spawn(binary, args, { detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    let exited: string | null = null;
    child.once('exit', (code, sig) => (exited = `exit ${code ?? sig}`));
    child.once('error', (e) => (exited = e.message));
    child.unref();
    const deadline = Date.now() + 15000;
    for (;;) {
      if (exited) {
        const why = tail(files.qemuLog) || exited;
        if (/ENOENT/.test(exited)) throw new DevvmError('missing-dependency', `${binary} is not installed`, 'run "npm run up" or apt-get install qemu-system-x86');
        throw new DevvmError('process-failed', `QEMU failed to start: ${why}`, `see ${files.qemuLog}`);
      }
      try {
        const qmp = await Qmp.connect(files.qmpSocket, 3000);
        const m = new Machine(child.pid!, qmp);
        log.info(`qemu pid ${child.pid} started`);
        return m;
      } catch {
        if (Date.now() > deadline) {
          child.kill('SIGKILL');
          throw new DevvmError('timeout', 'QEMU did not open its QMP socket', `see ${files.qemuLog}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
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
        return new Machine(pid, await Qmp.connect(files.qmpSocket, 3000));
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

  /** ACPI power button, then quit, then SIGKILL: each step only if the previous one did not end QEMU. */
  async stop(force: boolean, gracefulMs: number): Promise<void> {
    if (!force) {
      await this.qmp.execute('system_powerdown').catch(() => {});
      if (await this.waitExit(gracefulMs)) return;
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
