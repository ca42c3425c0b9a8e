/**
 * The one harness for tests that run the real CLI, helper and QEMU: a private DEVVM_HOME,
 * the shared image cache (~/.cache/devvm, so the Debian image is built once per recipe),
 * and cleanup that stops every VM and the helper.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export class Sandbox {
  readonly home: string;
  readonly env: NodeJS.ProcessEnv;

  constructor(label: string) {
    this.home = mkdtempSync(path.join(os.tmpdir(), `devvm-${label}-`));
    this.env = { ...process.env, DEVVM_HOME: this.home };
  }

  /** Runs the CLI synchronously (short commands). */
  cli(args: string[], input?: string): Result {
    const r = spawnSync(process.execPath, [CLI, ...args], { env: this.env, input: input ?? '', encoding: 'utf8', timeout: 20 * 60_000 });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  /** Runs the CLI without blocking the event loop (long commands, parallel boots). */
  cliAsync(args: string[], input?: string): Promise<Result> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, ...args], { env: this.env });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      child.stdin.end(input ?? '');
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  }

  /** CLI call that must succeed; returns parsed --json output when asked. */
  ok(args: string[], input?: string): string {
    const r = this.cli(args, input);
    if (r.code !== 0) throw new Error(`devvm ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  json<T>(args: string[]): T {
    return JSON.parse(this.ok([...args, '--json'])) as T;
  }

  /** ssh through the VM's generated config, as a user would. */
  ssh(vm: string, command: string[], input?: string, extra: string[] = []): Result {
    const r = spawnSync('ssh', ['-F', path.join(this.home, 'ssh_config'), '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', ...extra, `devvm-${vm}`, '--', ...command], {
      input: input ?? '',
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  /**
   * Every file under DEVVM_HOME with size and mtime, to prove a failed command changed
   * nothing. Logs are skipped, and a running VM's disks (its firmware may read, and
   * copy-on-read may fill the cache) are listed by name only.
   */
  files(running: string[] = []): string[] {
    const out: string[] = [];
    // A running VM writes to its top layer in the pool.
    const live = running.map((vm) => {
      try {
        return `layers/${(JSON.parse(readFileSync(path.join(this.home, 'vms', vm, 'vm.json'), 'utf8')) as { overlay?: string }).overlay}.qcow2`;
      } catch {
        return '';
      }
    });
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (['helper.log', 'helper.out', 'helper.pid', 'helper.sock', 'helper.lock'].includes(e.name) && dir === this.home) continue;
        if (e.isDirectory()) walk(p);
        else if (!e.name.endsWith('.log')) {
          const rel = path.relative(this.home, p);
          const s = statSync(p);
          out.push(running.some((vm) => rel.startsWith(`vms/${vm}/`)) || live.includes(rel) ? rel : `${rel} ${s.size} ${s.mtimeMs}`);
        }
      }
    };
    walk(this.home);
    return out.sort();
  }

  cleanup(): void {
    let helperPid = 0;
    try {
      helperPid = Number(readFileSync(path.join(this.home, 'helper.pid'), 'utf8'));
    } catch {
      // no helper running
    }
    // A helper that does not answer in two minutes is hung: it is killed, not waited for
    // (20 minutes of a cli() call would eat the file's whole budget).
    const stop = spawnSync(process.execPath, [CLI, 'helper', 'stop', '--stop-vms'], { env: this.env, stdio: 'ignore', timeout: 120_000 });
    if (stop.error && helperPid && !processGone(helperPid)) {
      process.stderr.write(`# ${this.home}: the helper did not stop; killed\n`);
      try {
        process.kill(helperPid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    // A helper killed by a test leaves QEMUs behind: end those too, then wait for all to exit.
    spawnSync('pkill', ['-9', '-f', path.join(this.home, 'vms')]);
    const deadline = Date.now() + 15000;
    while (helperPid && Date.now() < deadline && !processGone(helperPid)) {
      spawnSync('sleep', ['0.1']);
    }
    rmSync(this.home, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  }
}

/** Builds (or finds in the cache) the Debian image and registers it in the sandbox. */
export function debianImage(sb: Sandbox): void {
  sb.ok(['image', 'build', 'debian-12']);
}

/** One debian-12 VM (user dev, 1 GiB, plus `extra` create options), booted until SSH answers. */
export async function bootDebian(sb: Sandbox, vm: string, extra: string[] = []): Promise<void> {
  debianImage(sb);
  sb.ok(['create', vm, '--image', 'debian-12', '--user', 'dev', '--memory', '1024', ...extra]);
  const r = await sb.cliAsync(['start', vm, '--wait-ssh']);
  if (r.code !== 0) throw new Error(`devvm start ${vm} --wait-ssh exited ${r.code}: ${r.stderr}`);
}

/** True when the process is gone or a zombie. */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

export async function waitFor<T>(what: string, timeoutMs: number, f: () => T | undefined | false | Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
