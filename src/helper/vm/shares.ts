/**
 * Shared folders of a VM: kept in vm.json, turned into machine devices at each start,
 * mounted through the guest agent once it answers, added and removed live where the
 * transport allows (virtiofs), unmounted and unplugged around RAM saves (QEMU refuses to
 * migrate with a mounted 9p export or any vhost-user-fs device) and mounted again after.
 */
import { DevvmError } from '../../shared/errors';
import { checkNoOverlap, guestPath as checkGuestPath } from '../../shared/shares';
import type { ShareInfo, ShareSpec, ShareTransport } from '../../shared/types';
import type { Instance, ShareDevice } from '../driver/driver';
import { log } from '../log';
import { MAX_9P, SHARE_PORTS } from '../qemu/args';
import { checkHostFolder, shareTransport, type TransportChoice } from '../shares/host';
import type { MachineShares, RamState, ShareRecord, VmConfig } from '../vmconfig';
import { admit, type VmContext } from './context';
import { holdersInGuest, mountedInGuest, mountInGuest, unmountInGuest } from './shareguest';
import { launchRecord } from './sshready';

/** How long a booting guest's agent is waited for before the shares are marked not mounted. */
const AGENT_WAIT_MS = 15 * 60_000;
const INFO_TIMEOUT_MS = 3000;
/** How long a hot-plugged device may take to show up in the guest. */
const PLUG_SETTLE_MS = 30_000;
const MOUNT_ATTEMPTS = 3;

export const MAX_SHARES = 32;

/** What a launch gets: the machine's shares and, per tag, why one is left out. */
export interface BootPlan {
  shares: { sharedMemory: boolean; devices: ShareDevice[] };
  record: MachineShares;
  problems: Map<string, string>;
}

export class Shares {
  /** Per VM, per tag: why a configured share is not mounted (cleared when it is). */
  private readonly problems = new Map<string, Map<string, string>>();
  /** Per VM: share operations run one at a time (boot mounts, add, remove, saves). */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(
    private readonly ctx: VmContext,
    readonly choice: () => TransportChoice,
  ) {}

  transport(rec: Pick<ShareRecord, 'readOnly'>): ShareTransport {
    return shareTransport(this.choice(), rec.readOnly);
  }

  private serial<T>(name: string, f: () => Promise<T>): Promise<T> {
    const next = (this.queues.get(name) ?? Promise.resolve()).then(f, f);
    this.queues.set(name, next.catch(() => {}));
    return next;
  }

  private problemsOf(name: string): Map<string, string> {
    let m = this.problems.get(name);
    if (!m) this.problems.set(name, (m = new Map()));
    return m;
  }

  private setProblem(name: string, tag: string, why: string | null): void {
    if (why) {
      this.problemsOf(name).set(tag, why);
      log.warn(`${name}: share ${tag}: ${why}`);
    } else {
      this.problemsOf(name).delete(tag);
    }
  }

  /** Checks shares asked for at create (or one at a time by `add`) against each other; returns the records. */
  records(specs: ReadonlyArray<{ hostPath: string; guestPath?: string; readOnly?: boolean }>, user: string, existing: ShareRecord[] = []): ShareRecord[] {
    const out = [...existing];
    for (const s of specs) {
      if (out.length >= MAX_SHARES) throw new DevvmError('invalid-argument', `at most ${MAX_SHARES} shares per VM`);
      const hostPath = checkHostFolder(s.hostPath, this.ctx.home.root);
      // Default: the path as the user gave it (symlinks included), so paths in logs and tools match.
      const guestPath = checkGuestPath(s.guestPath ?? s.hostPath, user);
      checkNoOverlap({ hostPath, guestPath }, out);
      let n = 0;
      while (out.some((r) => r.tag === `devvm${n}`)) n++;
      out.push({ hostPath, guestPath, readOnly: s.readOnly ?? false, tag: `devvm${n}` });
    }
    const rw = (t: ShareTransport) => out.filter((r) => this.transport(r) === t).length;
    if (rw('9p') > MAX_9P) throw new DevvmError('invalid-argument', `at most ${MAX_9P} 9p shares per VM`);
    if (rw('virtiofs') > SHARE_PORTS.length) throw new DevvmError('invalid-argument', `at most ${SHARE_PORTS.length} virtiofs shares per VM`);
    return out.slice(existing.length);
  }

  /** A cold boot: every configured share whose host folder is still the one recorded. */
  bootPlan(cfg: VmConfig): BootPlan {
    const problems = new Map<string, string>();
    const devices: ShareDevice[] = [];
    for (const r of cfg.shares ?? []) {
      try {
        const now = checkHostFolder(r.hostPath, this.ctx.home.root);
        if (now !== r.hostPath) throw new Error(`now resolves to ${now}`);
        devices.push({ tag: r.tag, hostPath: r.hostPath, readOnly: r.readOnly, transport: this.transport(r) });
      } catch (e) {
        problems.set(r.tag, `host folder ${r.hostPath} cannot be shared: ${(e as Error).message}`);
      }
    }
    // Shared (memfd) RAM only when a virtiofs share needs it: a restore faults in every
    // page of a memfd, zero ones too (1-2 s for 2 GiB against 56 ms for anonymous RAM).
    const sharedMemory = this.choice().transport === 'virtiofs' && (cfg.shares ?? []).some((r) => this.transport(r) === 'virtiofs');
    const ninep = devices.filter((d) => d.transport === '9p').map(({ tag, hostPath, readOnly }) => ({ tag, hostPath, readOnly }));
    return { shares: { sharedMemory, devices }, record: { ...(sharedMemory ? { sharedMemory } : {}), ...(ninep.length ? { ninep } : {}) }, problems };
  }

  /** A restore: exactly the machine the state was saved from (its virtiofs devices were unplugged before the save). */
  restorePlan(saved: RamState): BootPlan {
    const m = saved.shares ?? {};
    const devices = (m.ninep ?? []).map((d) => ({ ...d, transport: '9p' as const }));
    return { shares: { sharedMemory: m.sharedMemory ?? false, devices }, record: m, problems: new Map() };
  }

  /** After a start: mounts every share (a cold boot waits for the agent in the background; a restore is awaited). */
  started(name: string, plan: BootPlan, restored: boolean): Promise<void> {
    this.problems.set(name, new Map(plan.problems));
    for (const [tag, why] of plan.problems) log.warn(`${name}: share ${tag}: ${why}`);
    const run = this.serial(name, () => this.mountAll(name, restored));
    if (restored) return run;
    run.catch(() => {});
    return Promise.resolve();
  }

  /** A VM a restarted helper found running: whatever is not mounted yet is mounted (in the background). */
  reattached(name: string): void {
    if (!(this.ctx.store.read(name).shares ?? []).length) return;
    this.serial(name, () => this.mountAll(name, false)).catch(() => {});
  }

  private async waitAgent(name: string, timeoutMs: number): Promise<Instance> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const inst = this.ctx.instance(name);
      if (!inst) throw new DevvmError('invalid-state', `VM "${name}" stopped`);
      const agent = inst.agent;
      if (!agent?.exec) throw new DevvmError('not-supported', 'the VM has no guest agent to mount shares through');
      try {
        if (await agent.connected()) {
          await agent.ping(5000);
          return inst;
        }
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new DevvmError('timeout', `the guest agent did not answer within ${Math.round(timeoutMs / 1000)} s`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  /** Tags the running machine can mount: its 9p devices from boot, its virtiofs devices now. */
  private available(name: string, inst: Instance): Set<string> {
    const boot = launchRecord(this.ctx, name).shares?.ninep ?? [];
    return new Set([...boot.map((d) => d.tag), ...(inst.shares?.plugged() ?? [])]);
  }

  private async mountAll(name: string, restored: boolean): Promise<void> {
    const cfg = this.ctx.store.read(name);
    const wanted = (cfg.shares ?? []).filter((r) => !this.problemsOf(name).has(r.tag));
    if (!wanted.length) return;
    let inst: Instance;
    try {
      inst = await this.waitAgent(name, restored ? 60_000 : AGENT_WAIT_MS);
    } catch (e) {
      for (const r of wanted) this.setProblem(name, r.tag, `not mounted: ${(e as Error).message}`);
      return;
    }
    const agent = inst.agent!;
    const mounted = await mountedInGuest(agent).catch(() => new Map<string, string>());
    for (const r of wanted) {
      if (mounted.get(r.tag) === r.guestPath) continue;
      // A guest busy booting may time out a first try: a few more before giving up (not for what cannot be plugged).
      for (let attempt = 1; ; attempt++) {
        try {
          const plugged = await this.ensureDevice(name, inst, r);
          await this.mountRetrying(agent, r, plugged ? PLUG_SETTLE_MS : 0);
          this.setProblem(name, r.tag, null);
          log.info(`${name}: mounted ${r.hostPath} at ${r.guestPath} (${this.transport(r)}${r.readOnly ? ', read-only' : ''})`);
          break;
        } catch (e) {
          const final = attempt >= MOUNT_ATTEMPTS || (e as DevvmError).code === 'not-supported' || !this.ctx.instance(name);
          if (final) {
            this.setProblem(name, r.tag, `not mounted: ${(e as Error).message}`);
            break;
          }
          log.info(`${name}: mounting ${r.guestPath} failed (${(e as Error).message}); trying again`);
          // Already mounted by the try that timed out?
          if ((await mountedInGuest(agent).catch(() => new Map<string, string>())).get(r.tag) === r.guestPath) {
            this.setProblem(name, r.tag, null);
            break;
          }
          await new Promise((res) => setTimeout(res, 5000));
        }
      }
    }
  }

  /** A device plugged just now appears in the guest once its PCIe slot powered on and the driver probed it: the mount is retried meanwhile. */
  private async mountRetrying(agent: NonNullable<Instance['agent']>, r: ShareRecord, forMs: number): Promise<void> {
    const deadline = Date.now() + forMs;
    for (;;) {
      try {
        await mountInGuest(agent, this.transport(r), r.tag, r.guestPath, r.readOnly);
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
  }

  /** The device for `r` exists in the machine, hot-plugged now if it can be (true: plugged just now). */
  private async ensureDevice(name: string, inst: Instance, r: ShareRecord): Promise<boolean> {
    if (this.available(name, inst).has(r.tag)) return false;
    const ops = inst.shares;
    const d: ShareDevice = { tag: r.tag, hostPath: r.hostPath, readOnly: r.readOnly, transport: this.transport(r) };
    const why = ops ? ops.canPlug(d) : `the ${this.ctx.driver.name} driver shares no folders`;
    if (why) throw new DevvmError('not-supported', `${why}; it is mounted at the next boot`);
    await ops!.plug(d);
    return true;
  }

  // ---- requests --------------------------------------------------------------

  async add(name: string, spec: { hostPath: string; guestPath?: string; readOnly?: boolean }): Promise<ShareInfo> {
    const cfg = this.ctx.store.read(name);
    const running = this.ctx.state(name) === 'running';
    if (running) admit(this.ctx, 'attachDisk', name);
    else if (this.ctx.locks.get(name)) admit(this.ctx, 'set', name);
    const [rec] = this.records([spec], cfg.user, cfg.shares ?? []);
    return this.serial(name, async () => {
      this.ctx.store.update(name, (c) => ({ ...c, shares: [...(c.shares ?? []), rec!] }));
      log.info(`${name}: shares ${rec!.hostPath} at ${rec!.guestPath}${rec!.readOnly ? ' read-only' : ''} (${rec!.tag})`);
      if (running && this.ctx.instance(name)) {
        this.problems.set(name, this.problemsOf(name));
        this.problemsOf(name).delete(rec!.tag);
        await this.mountAll(name, true);
      }
      this.ctx.changed(name);
      return (await this.info(name)).find((s) => s.guestPath === rec!.guestPath)!;
    });
  }

  async remove(name: string, guestPath: string): Promise<void> {
    const cfg = this.ctx.store.read(name);
    const rec = (cfg.shares ?? []).find((r) => r.guestPath === guestPath);
    if (!rec) throw new DevvmError('not-found', `VM "${name}" has no share at ${guestPath}`, `see "devvm info ${name}"`);
    const inst = this.ctx.instance(name);
    if (inst) admit(this.ctx, 'detachDisk', name);
    await this.serial(name, async () => {
      if (inst?.agent?.exec && (await inst.agent.connected().catch(() => false))) {
        const mounted = await mountedInGuest(inst.agent);
        if (mounted.has(rec.tag)) {
          await this.refuseHolders(name, inst, [rec.guestPath], 'unshare');
          await unmountInGuest(inst.agent, rec.guestPath);
        }
      }
      if (inst?.shares?.plugged().includes(rec.tag)) await inst.shares.unplug(rec.tag);
      this.ctx.store.update(name, (c) => ({ ...c, shares: (c.shares ?? []).filter((r) => r.tag !== rec.tag) }));
      this.problemsOf(name).delete(rec.tag);
      log.info(`${name}: unshared ${rec.guestPath}`);
      this.ctx.changed(name);
    });
  }

  async info(name: string): Promise<ShareInfo[]> {
    const cfg = this.ctx.store.read(name);
    const list = cfg.shares ?? [];
    if (!list.length) return [];
    const inst = this.ctx.instance(name);
    let mounted = new Map<string, string>();
    let unknown: string | undefined;
    if (inst?.agent?.exec) {
      try {
        if (await inst.agent.connected()) mounted = await mountedInGuest(inst.agent, INFO_TIMEOUT_MS);
        else unknown = 'the guest agent is not up yet';
      } catch (e) {
        unknown = `the guest agent does not answer: ${(e as Error).message}`;
      }
    }
    const machine = inst ? this.available(name, inst) : null;
    return list.map((r): ShareInfo => {
      const isMounted = mounted.get(r.tag) === r.guestPath;
      const spec: ShareSpec = { hostPath: r.hostPath, guestPath: r.guestPath, readOnly: r.readOnly };
      const problem = isMounted ? undefined : this.problemsOf(name).get(r.tag) ?? (inst ? (machine && !machine.has(r.tag) ? 'added after boot: mounted at the next boot' : unknown) : undefined);
      return { ...spec, transport: this.transport(r), mounted: isMounted, ...(problem ? { problem } : {}) };
    });
  }

  // ---- around RAM saves ------------------------------------------------------

  private async refuseHolders(name: string, inst: Instance, paths: string[], verb: string): Promise<void> {
    const holders = await holdersInGuest(inst.agent!, paths);
    const h = holders[0];
    if (h) {
      const more = holders.length > 1 ? ` and ${holders.length - 1} more` : '';
      throw new DevvmError('busy', `cannot ${verb} VM "${name}": process "${h.comm}" (pid ${h.pid}) in the guest holds ${h.path} open in a shared folder${more}`, 'close it (or stop the VM) and try again');
    }
  }

  /**
   * Before a RAM save of the running VM: refuses (changing nothing) while a guest process
   * holds a file in a mounted share, else syncs and unmounts every share and unplugs the
   * virtiofs devices. Returns the tags to mount again; `undo` puts everything back.
   */
  async beforeSave(name: string, verb: string): Promise<string[]> {
    const inst = this.ctx.instance(name);
    if (!inst || !(this.ctx.store.read(name).shares ?? []).length && !(inst.shares?.plugged().length)) return [];
    return this.serial(name, async () => {
      const agent = inst.agent;
      const plugged = inst.shares?.plugged() ?? [];
      let mounted = new Map<string, string>();
      if (agent?.exec && (await agent.connected().catch(() => false))) {
        mounted = await mountedInGuest(agent);
        await this.refuseHolders(name, inst, [...mounted.values()], verb);
      } else if (plugged.length) {
        throw new DevvmError('invalid-state', `cannot ${verb} VM "${name}": its virtiofs shares cannot be unmounted without the guest agent`, 'wait until the guest has booted, or stop the VM');
      }
      const done: string[] = [];
      try {
        for (const [tag, dir] of mounted) {
          await unmountInGuest(agent!, dir);
          done.push(tag);
        }
        for (const tag of plugged) await inst.shares!.unplug(tag);
      } catch (e) {
        // Inside this VM's queue already: mount directly.
        await this.mountAll(name, true).catch(() => {});
        throw new DevvmError('process-failed', `cannot ${verb} VM "${name}": ${(e as Error).message}`, 'the shares were mounted again');
      }
      log.info(`${name}: ${done.length} share(s) unmounted${plugged.length ? `, ${plugged.length} virtiofs device(s) unplugged` : ''} for the save`);
      return [...mounted.keys()];
    });
  }

  /** After a save the VM survived (a RAM snapshot, a failed save), or after a restore: plug and mount again. */
  remount(name: string, _tags: string[]): Promise<void> {
    return this.serial(name, () => this.mountAll(name, true));
  }

  forget(name: string): void {
    this.problems.delete(name);
  }
}
