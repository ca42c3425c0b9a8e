/**
 * `devvm up DIR` and the extension's "Open Folder in Dev VM": make or reuse the VM a
 * folder's devvm.json declares, share the folder, provision, and say where to connect.
 * One implementation for both clients (issue 14); the interface is fixed here first so the
 * CLI and the extension can be built against it at the same time. The parts: manifest.ts
 * (parse and check), plan.ts (defaults, scripts read), name.ts, changes.ts, steps.ts.
 */
import { randomUUID } from 'node:crypto';
import { realpathSync } from 'node:fs';
import path from 'node:path';
import type { MessageConnection, RequestType } from 'vscode-jsonrpc';
import { fromRpcError } from '../client';
import { DevvmError } from '../errors';
import { Notify, Rpc, type CreateParams, type OutputParams, type RpcErrorData } from '../rpc';
import type { VmOrigin, VmSummary } from '../types';
import { changes, fingerprint, type Changes } from './changes';
import { findManifest as find, loadManifest } from './manifest';
import { newVmName, rebuildName, vmsOf } from './name';
import { makePlan, type Plan } from './plan';
import { createSteps, startSteps } from './steps';

/** Where long work reports to: the CLI's progress line and stdout, the extension's notification and output channel. */
export interface UpReporter {
  /** A step, for a progress line ("creating VM web", "provisioning 2/4: setup.sh"). */
  step(message: string): void;
  /** Provisioning output as it comes, with each script's exit status. */
  output(chunk: string): void;
}

export interface UpOptions {
  /** The folder holding devvm.json (or .devvm/devvm.json). */
  dir: string;
  /** The folder is trusted (the extension: workspace trust; the CLI: the user ran it). Nothing from the repository runs otherwise. */
  trusted: boolean;
  /** devvm.json changed since the VM was made: make a new VM from the file (the old one is kept until the new one works). */
  rebuild?: boolean;
  /** devvm.json changed: apply what can change in place (ports, env, size with a restart). */
  apply?: boolean;
  /**
   * A progress token the caller already receives Notify.progress for: the helper's own
   * progress (booting, first setup) then reaches it too. Absent: only up's own steps.
   * Output (Notify.output) always goes to `report.output`.
   */
  progressToken?: string;
}

export interface UpResult {
  name: string;
  created: boolean;
  /** The folder's path in the guest (what Remote-SSH opens). */
  guestPath: string;
  /** The ssh_config host: devvm-<name>. */
  sshHost: string;
  /** devvm.json fields that differ from the VM (empty: up to date). Reported, not acted on, unless rebuild or apply. */
  changed: string[];
  /** The old VM a rebuild replaced (deleted once the new one was provisioned). */
  replaced?: string;
  /** Shares or ports the helper could not set up yet (it answered not-supported); the VM was made without them. */
  unsupported?: string[];
}

/** The devvm.json path for a folder, or null when it has none. */
export function findManifest(dir: string): string | null {
  return find(dir);
}

/** A first boot (cloud-init's first setup) under TCG on a loaded host: minutes, sometimes many. */
const FIRST_BOOT_TIMEOUT_SEC = 45 * 60;

type Call = <P, R>(type: RequestType<P, R, RpcErrorData>, params: P) => Promise<R>;

async function listVms(conn: MessageConnection): Promise<VmSummary[]> {
  try {
    return await conn.sendRequest(Rpc.vmList);
  } catch (e) {
    throw fromRpcError(e);
  }
}

function caller(conn: MessageConnection): Call {
  return async (type, params) => {
    try {
      return await conn.sendRequest(type, params);
    } catch (e) {
      throw fromRpcError(e);
    }
  };
}

// vscode-jsonrpc keeps one handler per notification method: one per connection, shared by every up() on it.
const outputRoutes = new WeakMap<MessageConnection, Map<string, (text: string) => void>>();

function routeOutput(conn: MessageConnection, token: string, to: (text: string) => void): () => void {
  let routes = outputRoutes.get(conn);
  if (!routes) {
    const created = new Map<string, (text: string) => void>();
    conn.onNotification(Notify.output, (p: OutputParams) => created.get(p.token)?.(p.text));
    outputRoutes.set(conn, created);
    routes = created;
  }
  routes.set(token, to);
  return () => routes.delete(token);
}

function folder(dir: string): string {
  try {
    return realpathSync(path.resolve(dir));
  } catch {
    throw new DevvmError('not-found', `no such folder: ${dir}`);
  }
}

function originOf(plan: Plan, createDone?: boolean): VmOrigin {
  return { dir: plan.dir, ...fingerprint(plan), ...(createDone ? { createDone } : {}) };
}

class Up {
  private readonly call: Call;
  private readonly unsupported: string[] = [];

  constructor(
    private readonly conn: MessageConnection,
    private readonly plan: Plan,
    private readonly report: UpReporter,
    private readonly token: string,
  ) {
    this.call = caller(conn);
  }

  /** A new VM from the plan, booted until SSH answers (first setup done). */
  async create(name: string): Promise<void> {
    const p = this.plan;
    this.report.step(`creating VM ${name} (${p.image})`);
    const params: CreateParams = {
      progressToken: this.token,
      name,
      image: p.image,
      user: p.user,
      ...(p.cpus !== undefined ? { cpus: p.cpus } : {}),
      ...(p.memoryMiB !== undefined ? { memoryMiB: p.memoryMiB } : {}),
      ...(p.diskGiB !== undefined ? { diskGiB: p.diskGiB } : {}),
      ...(p.idleSuspend !== undefined ? { idleSuspend: p.idleSuspend } : {}),
      ...(p.autostart ? { autostart: true } : {}),
      shares: p.shares,
      // Declared ports never bind beyond 127.0.0.1.
      ports: p.ports.map((x) => ({ ...x, hostAddress: '127.0.0.1' })),
      origin: originOf(p),
      start: true,
    };
    try {
      await this.call(Rpc.vmCreate, params);
    } catch (e) {
      // A helper without shares or ports yet refuses them before it builds anything.
      if (!(e instanceof DevvmError) || e.code !== 'not-supported' || (!p.shares.length && !p.ports.length)) throw e;
      this.unsupported.push(...(p.shares.length ? ['shares'] : []), ...(p.ports.length ? ['ports'] : []));
      this.report.step(`the helper cannot set up ${this.unsupported.join(' and ')} yet (${e.message}); creating VM ${name} without them`);
      await this.call(Rpc.vmCreate, { ...params, shares: [], ports: [] });
    }
    // Waited for here, not by create: a first boot under TCG on a busy host can take longer than create's 15 minutes.
    await this.call(Rpc.vmStart, { progressToken: this.token, name, waitSsh: true, timeoutSec: FIRST_BOOT_TIMEOUT_SEC });
  }

  async start(vm: VmSummary): Promise<void> {
    if (vm.state !== 'running') this.report.step(`${vm.state === 'suspended' ? 'resuming' : 'starting'} VM ${vm.name}`);
    await this.call(Rpc.vmStart, { progressToken: this.token, name: vm.name, waitSsh: true, timeoutSec: FIRST_BOOT_TIMEOUT_SEC });
  }

  /** `create` steps and dotfiles when they have not run to the end yet, then the `start` steps. */
  async provision(name: string, createDone: boolean): Promise<void> {
    const base = { progressToken: this.token, name, env: this.plan.env, cwd: this.plan.guestPath };
    if (!createDone) {
      const steps = createSteps(this.plan);
      if (steps.length) this.report.step(`provisioning VM ${name}: ${steps.length} create step${steps.length > 1 ? 's' : ''}`);
      await this.call(Rpc.vmProvision, { ...base, steps, markCreateDone: true });
    }
    const steps = startSteps(this.plan);
    if (steps.length) {
      this.report.step(`provisioning VM ${name}: ${steps.length} start step${steps.length > 1 ? 's' : ''}`);
      await this.call(Rpc.vmProvision, { ...base, steps });
    }
  }

  /** What can change in place: size (stopped first), settings, ports, shares; then the VM follows the new file. */
  async apply(vm: VmSummary, ch: Changes): Promise<void> {
    const p = this.plan;
    const has = (k: string) => ch.parts.includes(k);
    const name = vm.name;
    if (has('cpus') || has('memory') || has('disk')) {
      if (vm.state !== 'stopped') {
        this.report.step(`stopping VM ${name} to change its size`);
        await this.call(Rpc.vmStop, { progressToken: this.token, name });
      }
      this.report.step(`changing the size of VM ${name}`);
      await this.call(Rpc.vmSet, {
        name,
        ...(has('cpus') && p.cpus !== undefined ? { cpus: p.cpus } : {}),
        ...(has('memory') && p.memoryMiB !== undefined ? { memoryMiB: p.memoryMiB } : {}),
        ...(has('disk') && p.diskGiB !== undefined ? { diskGiB: p.diskGiB } : {}),
      });
    }
    if (has('idleSuspendMinutes') || has('autostart')) {
      await this.call(Rpc.vmSet, { name, idleSuspend: p.idleSuspend ?? 'default', autostart: p.autostart ?? false });
    }
    if (has('ports') || has('shares')) {
      const info = await this.call(Rpc.vmInfo, { name });
      if (has('ports')) {
        const key = (x: { protocol: string; hostPort: number; guestPort: number }) => `${x.protocol}/${x.hostPort}/${x.guestPort}`;
        const want = new Set(p.ports.map(key));
        const now = info.ports.filter((x) => x.kind === 'static');
        for (const x of now.filter((x) => !want.has(key(x)))) await this.call(Rpc.vmPortRemove, { name, protocol: x.protocol, hostPort: x.hostPort });
        const have = new Set(now.map(key));
        for (const x of p.ports.filter((x) => !have.has(key(x)))) await this.call(Rpc.vmPortAdd, { name, ...x, hostAddress: '127.0.0.1' });
      }
      if (has('shares')) {
        const key = (x: { hostPath: string; guestPath: string; readOnly: boolean }) => `${x.hostPath}\0${x.guestPath}\0${x.readOnly}`;
        const want = new Set(p.shares.map(key));
        for (const x of info.shares.filter((x) => !want.has(key(x)))) await this.call(Rpc.vmUnshare, { name, guestPath: x.guestPath });
        const have = new Set(info.shares.map(key));
        for (const x of p.shares.filter((x) => !have.has(key(x)))) await this.call(Rpc.vmShare, { name, ...x });
      }
    }
    await this.call(Rpc.vmSet, { name, origin: originOf(p, vm.origin?.createDone) });
  }

  get notSupported(): string[] {
    return this.unsupported;
  }

  list(): Promise<VmSummary[]> {
    return listVms(this.conn);
  }

  stop(name: string): Promise<VmSummary> {
    return this.call(Rpc.vmStop, { progressToken: this.token, name });
  }

  delete(name: string): Promise<void> {
    return this.call(Rpc.vmDelete, { name, force: true });
  }
}

export async function up(conn: MessageConnection, opts: UpOptions, report: UpReporter): Promise<UpResult> {
  const dir = folder(opts.dir);
  // Before anything from the folder is read: an untrusted folder's file may not even choose a VM.
  if (!opts.trusted) {
    throw new DevvmError('invalid-state', `${dir} is not trusted: its devvm.json runs scripts in a VM`, 'trust the folder first (VS Code: Manage Workspace Trust); nothing from it has run');
  }
  if (opts.rebuild && opts.apply) throw new DevvmError('invalid-argument', 'use either rebuild or apply, not both');
  const plan = makePlan(loadManifest(dir), dir);
  const token = opts.progressToken ?? randomUUID();
  const stopRouting = routeOutput(conn, token, (t) => report.output(t));
  const u = new Up(conn, plan, report, token);
  try {
    const vms = await u.list();
    const existing = vmsOf(dir, vms, fingerprint(plan).manifestHash)[0];
    const ch = existing ? changes(existing.origin, plan) : { changed: [], needRebuild: [], parts: [] };
    let name: string;
    let created = false;
    let replaced: string | undefined;
    if (!existing) {
      name = newVmName(dir, plan.name, vms);
      await u.create(name);
      created = true;
      await u.provision(name, false);
    } else if (ch.changed.length && opts.rebuild) {
      name = plan.name !== undefined && plan.name !== existing.name ? newVmName(dir, plan.name, vms) : rebuildName(existing.name, vms);
      report.step(`rebuilding: ${ch.changed.join(', ')} changed; VM ${existing.name} is kept (stopped) until ${name} works`);
      if (existing.state !== 'stopped') await u.stop(existing.name);
      await u.create(name);
      created = true;
      await u.provision(name, false);
      report.step(`deleting the old VM ${existing.name}`);
      await u.delete(existing.name);
      replaced = existing.name;
    } else {
      name = existing.name;
      if (ch.changed.length && opts.apply) {
        if (ch.needRebuild.length) {
          const fields = [...new Set(ch.needRebuild.map((k) => (k === 'provision:create' ? 'provision (create steps)' : k)))];
          throw new DevvmError('invalid-state', `devvm.json changed in ways that need a new VM: ${fields.join(', ')}`, 'run "devvm up --rebuild"; nothing was changed');
        }
        report.step(`applying to VM ${name}: ${ch.changed.join(', ')}`);
        await u.apply(existing, ch);
      } else if (ch.changed.length) {
        report.step(`devvm.json changed since VM ${name} was made: ${ch.changed.join(', ')} (devvm up --apply changes what it can in place, --rebuild makes a new VM)`);
      }
      await u.start(existing);
      await u.provision(name, existing.origin?.createDone === true);
    }
    return {
      name,
      created,
      guestPath: plan.guestPath,
      sshHost: `devvm-${name}`,
      changed: ch.changed,
      ...(replaced ? { replaced } : {}),
      ...(u.notSupported.length ? { unsupported: u.notSupported } : {}),
    };
  } finally {
    stopRouting();
  }
}

/** Stops the folder's VM; returns its name. */
export async function down(conn: MessageConnection, dir: string): Promise<string> {
  const abs = folder(dir);
  const vm = vmsOf(abs, await listVms(conn))[0];
  if (!vm) throw new DevvmError('not-found', `no VM was made for ${abs}`, 'make one with: devvm up');
  if (vm.state !== 'stopped') await caller(conn)(Rpc.vmStop, { name: vm.name });
  return vm.name;
}
