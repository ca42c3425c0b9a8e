/**
 * The one place the helper runs short-lived programs (qemu-img, ssh-keygen, genisoimage,
 * mmdebstrap...). Always argument arrays, never a shell. Logs `> cmd args [ms]`, kills the
 * child when the caller's signal aborts, and throws a ProcessError carrying exit code and
 * stderr tail.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { DevvmError } from '../shared/errors';
import { log } from './log';

export class ProcessError extends DevvmError {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
    message: string,
  ) {
    super('process-failed', message);
  }
}

export interface RunOptions {
  input?: string | Buffer;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Called with each chunk of stdout/stderr as it arrives (progress parsing). */
  onOutput?: (chunk: string, stream: 'stdout' | 'stderr') => void;
  /** Milliseconds before the child is killed and the call fails with 'timeout'. */
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  ms: number;
}

const MAX_CAPTURE = 4 * 1024 * 1024;

export function run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const started = performance.now();
  const shown = `${command} ${args.join(' ')}`;
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(new DevvmError('invalid-state', `cancelled before running ${command}`));
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let cancelled = false;
    const onAbort = () => {
      cancelled = true;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, opts.timeoutMs)
      : undefined;
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      if (stdout.length < MAX_CAPTURE) stdout += c;
      opts.onOutput?.(c, 'stdout');
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr = (stderr + c).slice(-MAX_CAPTURE);
      opts.onOutput?.(c, 'stderr');
    });
    child.stdin.on('error', () => {}); // a child that exits without reading stdin
    child.stdin.end(opts.input ?? '');
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      log.info(`> ${shown} [failed to start: ${e.code}]`);
      reject(
        e.code === 'ENOENT'
          ? new DevvmError('missing-dependency', `${command} is not installed`, `run "npm run up" or install it with apt-get`)
          : new ProcessError(command, null, '', `${command}: ${e.message}`),
      );
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      const ms = Math.round(performance.now() - started);
      log.info(`> ${shown} [${ms}ms${code ? `, exit ${code}` : ''}${sig ? `, ${sig}` : ''}]`);
      if (cancelled) return reject(new DevvmError('invalid-state', `${command} was cancelled`));
      if (timedOut) return reject(new DevvmError('timeout', `${command} took longer than ${opts.timeoutMs} ms`));
      if (code !== 0) {
        const tail = stderr.trim().split('\n').filter(Boolean).slice(-2).join(' | ') || `exit code ${code ?? sig}`;
        return reject(new ProcessError(command, code, stderr, `${command} failed: ${tail}`));
      }
      resolve({ stdout, stderr, ms });
    });
  });
}

export interface DetachedChild {
  pid: number;
  /** Set once the child has exited or failed to start ("exit 1", "ENOENT ..."). */
  exited(): string | null;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts a long-lived program (QEMU, qemu-nbd) in its own session, output appended to
 * `logFile` (0600), so it outlives the helper; a restarted helper finds it again by pid
 * file. Argument arrays only.
 */
export function spawnDetached(command: string, args: readonly string[], logFile: string): DetachedChild {
  const out = openSync(logFile, 'a', 0o600);
  let child;
  try {
    child = spawn(command, args, { detached: true, stdio: ['ignore', out, out] });
  } finally {
    closeSync(out);
  }
  let exited: string | null = null;
  child.once('exit', (code, sig) => (exited = `exit ${code ?? sig}`));
  child.once('error', (e) => (exited = e.message));
  child.unref();
  log.info(`> ${command} ${args.join(' ')} (detached, pid ${child.pid ?? '?'})`);
  return {
    pid: child.pid ?? -1,
    exited: () => exited,
    kill: (signal = 'SIGKILL') => {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    },
  };
}

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

export interface PipedChild {
  stdin: NodeJS.WritableStream;
  stdout: NodeJS.ReadableStream;
  /** Called once when the child ends or fails to start. */
  onExit(listener: () => void): void;
  kill(): void;
}

/**
 * A program whose stdin and stdout the caller streams (a relayed connection: ssh -W);
 * stderr is dropped. Argument arrays only; ended with the helper's own process group.
 */
export function spawnPiped(command: string, args: readonly string[]): PipedChild {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'ignore'] });
  log.info(`> ${command} ${args.join(' ')} (piped, pid ${child.pid ?? '?'})`);
  let ended = false;
  const listeners: Array<() => void> = [];
  const end = () => {
    if (ended) return;
    ended = true;
    for (const l of listeners.splice(0)) l();
  };
  child.once('exit', end);
  child.once('error', end);
  child.stdin.on('error', () => {});
  child.stdout.on('error', () => {});
  return {
    stdin: child.stdin,
    stdout: child.stdout,
    onExit: (l) => (ended ? l() : listeners.push(l)),
    kill: () => {
      try {
        child.kill('SIGTERM');
      } catch {
        // already gone
      }
    },
  };
}
