/**
 * vm/provision: runs steps in a running guest over SSH, one ssh per step, as the VM's user
 * or as root through sudo (the user of a VM made without a password has passwordless
 * sudo). Output is passed on as it comes; a failing step ends the sequence with its label,
 * exit code and line, and the VM is left running.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DevvmError } from '../../shared/errors';
import type { ProvisionParams } from '../../shared/rpc';
import type { ProvisionResult } from '../../shared/types';
import type { Progress } from '../images';
import { log } from '../log';
import { ProcessError, run } from '../proc';
import { sshHostAlias } from '../sshconfig';
import type { VmContext } from './context';
import { failedLine, renderStep } from './stepscript';

/** Files copied in with a step (dotfiles): more is a repository, not dotfiles. */
const MAX_FILES_BYTES = 64 * 1024 * 1024;

/** A host folder as a tar archive (in memory: it travels on ssh's stdin as base64). */
async function tarFolder(dir: string): Promise<Buffer> {
  if (!statSync(dir).isDirectory()) throw new DevvmError('invalid-argument', `${dir} is not a folder`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-files-'));
  try {
    const file = path.join(tmp, 'files.tar');
    await run('tar', ['-C', dir, '-c', '-f', file, '--', '.'], { timeoutMs: 120_000 });
    if (statSync(file).size > MAX_FILES_BYTES) throw new DevvmError('invalid-argument', `${dir} holds more than 64 MiB`, 'dotfiles are copied whole; use a git URL for a large repository');
    return readFileSync(file);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

export async function provision(ctx: VmContext, p: Omit<ProvisionParams, 'progressToken'>, progress: Progress, output: (text: string) => void): Promise<ProvisionResult> {
  const cfg = ctx.store.read(p.name);
  if (!cfg.ssh) throw new DevvmError('invalid-state', `SSH is disabled for VM "${p.name}"`, 'provisioning runs over SSH');
  if (ctx.state(p.name) !== 'running') throw new DevvmError('invalid-state', `VM "${p.name}" is ${ctx.state(p.name)}`, `start it first: devvm start ${p.name} --wait-ssh`);
  const done: ProvisionResult['steps'] = [];
  for (const [i, step] of p.steps.entries()) {
    progress(`provisioning ${i + 1}/${p.steps.length}: ${step.label}`, i / p.steps.length);
    output(`==> ${step.label} (as ${step.as === 'root' ? 'root' : cfg.user})\n`);
    const files = step.files ? await tarFolder(step.files) : undefined;
    const program = renderStep({ script: step.script, env: p.env, cwd: p.cwd, files });
    // Constant words only: ssh joins them into the remote command line.
    const remote = step.as === 'root' ? ['sudo', '-n', '-H', 'bash', '-s'] : ['bash', '-s'];
    const started = Date.now();
    try {
      await run('ssh', ['-F', ctx.home.sshConfig, '-o', 'ProxyCommand=none', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=30', '-o', 'ServerAliveInterval=15', sshHostAlias(p.name), '--', ...remote], {
        input: program,
        onOutput: (chunk) => output(chunk),
      });
    } catch (e) {
      if (!(e instanceof ProcessError)) throw e;
      const code = e.exitCode;
      if (code === 255 || code === null) {
        throw new DevvmError('process-failed', `${step.label}: cannot reach VM "${p.name}" over SSH: ${e.stderr.trim().split('\n').pop() ?? ''}`, `try: devvm ssh ${p.name}`);
      }
      const where = failedLine(e.stderr);
      output(`<== ${step.label}: exit code ${code}\n`);
      log.info(`${p.name}: provisioning step ${step.label} failed with exit code ${code}`);
      throw new DevvmError('provisioning-failed', `${step.label} failed with exit code ${code}${where ? ` ${where}` : ''}`, `the VM is left running; look with: devvm ssh ${p.name}`);
    }
    const ms = Date.now() - started;
    output(`<== ${step.label}: exit code 0 (${(ms / 1000).toFixed(1)} s)\n`);
    done.push({ label: step.label, exitCode: 0, ms });
  }
  if (p.markCreateDone) {
    ctx.store.update(p.name, (c) => (c.origin ? { ...c, origin: { ...c.origin, createDone: true } } : c));
    ctx.changed(p.name);
  }
  progress('provisioned', 1);
  return { steps: done };
}
