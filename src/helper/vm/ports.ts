/**
 * Port forwards of running VMs. Static ones (vm.json) are applied whenever the VM's
 * process starts (a boot, a resume, a restore: run-time forwards are not part of a saved
 * state) and live on `port add`. Automatic ones follow the guest: its /proc/net/tcp{,6}
 * read through the agent about once a second, each new listener forwarded to the same
 * host port on 127.0.0.1 (or a free one, with a note), each one gone removed. A socket
 * only a guest-local address serves is relayed over SSH (portfwd/relay.ts). Everything a
 * VM has goes when its process ends.
 */
import { DevvmError } from '../../shared/errors';
import { LOOPBACK, sameHostPort, staticPort, type StaticPort } from '../../shared/portspec';
import type { CreateParams } from '../../shared/rpc';
import type { AutoForwarding, PortForward, PortProtocol, PortStatus } from '../../shared/types';
import type { HostForward, Instance } from '../driver/driver';
import { log } from '../log';
import { freePort } from '../ports';
import { bindHostPort } from '../portfwd/hostport';
import { diffPorts, guestPorts, parseProcNet, parseSsProcesses, type GuestPort } from '../portfwd/procnet';
import { SshRelay } from '../portfwd/relay';
import type { VmConfig } from '../vmconfig';
import type { VmContext } from './context';

const POLL_MS = 1000;
const FIRST_BOOT_POLL_MS = 5000;
/** While no agent has opened its channel: asked less often. */
const IDLE_POLL_MS = 2000;
const READ_TIMEOUT_MS = 5000;
const MAX_PROC_NET = 2 << 20;
const MAX_STATIC = 64;
const SSH_GUEST_PORT = 22;

export interface PortsDeps {
  /** Host ports that must not be handed out (every VM's SSH port). */
  reserved(): Set<number>;
  /** ssh's arguments to reach `target` (ADDR:PORT) in the VM; null when SSH is disabled. */
  sshArgv(name: string, target: string): string[] | null;
  /** The VM's forwards changed. */
  changed(name: string, ports: PortForward[]): void;
  pollMs?: number;
}

interface Forward {
  kind: 'static' | 'auto';
  protocol: PortProtocol;
  hostAddress: string;
  /** The port it has (or would have) on the host. */
  hostPort: number;
  guestPort: number;
  active: boolean;
  note?: string;
  process?: string;
  via: 'hostfwd' | 'ssh';
  guestAddress?: string;
  relay?: SshRelay;
  /** Static: the forward as configured. */
  spec?: StaticPort;
}

interface Running {
  name: string;
  inst: Instance;
  statics: Forward[];
  autos: Map<number, Forward>;
  /** The guest ports of the last poll. */
  seen: Map<number, GuestPort>;
  auto: AutoForwarding;
  timer?: NodeJS.Timeout;
  stopped: boolean;
  /** Ports appeared whose processes are not named yet (`ss` did not run, or the agent was wanted elsewhere). */
  unnamed: boolean;
  naming?: boolean;
  /** One change at a time per VM: polls, port add/remove, the start's setup. */
  queue: Promise<unknown>;
}

/** create --port: checked, defaults filled, no two on one host port. */
export function portsOf(p: Pick<CreateParams, 'ports'>): Pick<VmConfig, 'ports'> {
  if (!p.ports?.length) return {};
  const ports: StaticPort[] = [];
  for (const raw of p.ports) {
    const s = staticPort(raw);
    if (ports.some((x) => sameHostPort(x, s))) throw new DevvmError('invalid-argument', `host port ${s.hostPort}/${s.protocol} is forwarded twice`);
    ports.push(s);
  }
  return { ports };
}

const publicForward = (f: Forward): PortForward => ({
  protocol: f.protocol,
  hostAddress: f.hostAddress,
  hostPort: f.hostPort,
  guestPort: f.guestPort,
  kind: f.kind,
  active: f.active,
  ...(f.process ? { process: f.process } : {}),
  ...(f.note ? { note: f.note } : {}),
  via: f.via,
  ...(f.guestAddress ? { guestAddress: f.guestAddress } : {}),
});

const staticForward = (s: StaticPort): Forward => ({ kind: 'static', protocol: s.protocol, hostAddress: s.hostAddress, hostPort: s.hostPort, guestPort: s.guestPort, active: false, via: 'hostfwd', spec: s });

export class PortForwards {
  private readonly vms = new Map<string, Running>();

  constructor(
    private readonly ctx: VmContext,
    private readonly d: PortsDeps,
  ) {}

  private statics(name: string): StaticPort[] {
    return this.ctx.store.read(name).ports ?? [];
  }

  // ---- reading -------------------------------------------------------------

  list(name: string): PortForward[] {
    const v = this.vms.get(name);
    if (!v) return this.statics(name).map((s) => publicForward(staticForward(s)));
    return [...v.statics, ...[...v.autos.values()].sort((a, b) => a.guestPort - b.guestPort)].map(publicForward);
  }

  autoState(name: string): AutoForwarding {
    return this.vms.get(name)?.auto ?? { on: false, reason: 'the VM is not running' };
  }

  status(name: string): PortStatus {
    this.ctx.store.read(name);
    return { name, auto: this.autoState(name), ports: this.list(name) };
  }

  // ---- the VM's process ----------------------------------------------------

  /** A VM's process runs (launched, resumed or found again by a restarted helper). */
  adopted(name: string, inst: Instance): void {
    this.ended(name, false);
    const v: Running = { name, inst, statics: [], autos: new Map(), seen: new Map(), auto: { on: false, reason: 'waiting for the guest agent' }, stopped: false, unnamed: false, queue: Promise.resolve() };
    this.vms.set(name, v);
    if (!inst.ports || !this.ctx.driver.features.portForward) {
      v.auto = { on: false, reason: `the ${this.ctx.driver.name} driver cannot forward ports` };
      return;
    }
    void this.serial(v, async () => {
      await this.takeOver(v);
      await this.syncStatics(v);
    }).then(() => this.poll(v));
  }

  /** The process ended (or is being replaced): relays close, nothing is active any more. */
  ended(name: string, notify = true): void {
    const v = this.vms.get(name);
    if (!v) return;
    v.stopped = true;
    clearTimeout(v.timer);
    for (const f of [...v.statics, ...v.autos.values()]) f.relay?.close();
    this.vms.delete(name);
    if (notify && this.ctx.store.exists(name)) this.d.changed(name, this.list(name));
  }

  private serial<T>(v: Running, fn: () => Promise<T>): Promise<T> {
    const next = v.queue.then(() => (v.stopped ? (undefined as T) : fn()));
    v.queue = next.catch((e: unknown) => log.warn(`${v.name}: port forwarding: ${(e as Error).message}`));
    return next;
  }

  private notify(v: Running): void {
    if (!v.stopped) this.d.changed(v.name, this.list(v.name));
  }

  /** Forwards the engine already has (a helper restarted while the VM ran): kept, not added twice. */
  private async takeOver(v: Running): Promise<void> {
    const have = await v.inst.ports!.list().catch(() => [] as HostForward[]);
    const cfg = this.ctx.store.read(v.name);
    for (const h of have) {
      if (h.guestPort === SSH_GUEST_PORT && h.protocol === 'tcp' && h.hostPort === cfg.sshPort) continue;
      const spec = (cfg.ports ?? []).find((s) => s.protocol === h.protocol && s.guestPort === h.guestPort && s.hostAddress === h.hostAddress && !v.statics.some((f) => f.spec === s));
      if (spec) {
        v.statics.push({ ...staticForward(spec), hostPort: h.hostPort, active: true, ...(h.hostPort !== spec.hostPort ? { note: `host port ${spec.hostPort} was taken; using ${h.hostPort}` } : {}) });
      } else if (h.protocol === 'tcp' && h.hostAddress === LOOPBACK && !v.autos.has(h.guestPort)) {
        v.autos.set(h.guestPort, { kind: 'auto', protocol: 'tcp', hostAddress: LOOPBACK, hostPort: h.hostPort, guestPort: h.guestPort, active: true, via: 'hostfwd' });
        v.seen.set(h.guestPort, { port: h.guestPort, route: 'hostfwd', address: '0.0.0.0' });
      } else {
        await v.inst.ports!.remove(h).catch(() => {});
      }
    }
  }

  /** Host ports in use by any VM's forwards, and every VM's SSH port. */
  private avoid(): Set<number> {
    const out = this.d.reserved();
    for (const v of this.vms.values()) for (const f of [...v.statics, ...v.autos.values()]) if (f.active) out.add(f.hostPort);
    return out;
  }

  private async bindHostfwd(v: Running, f: Forward, want: number): Promise<void> {
    const ports = v.inst.ports!;
    try {
      const b = await bindHostPort(want, this.avoid(), (hostPort) => ports.add({ protocol: f.protocol, hostAddress: f.hostAddress, hostPort, guestPort: f.guestPort }), () => freePort(this.avoid()));
      f.hostPort = b.port;
      f.active = true;
      f.note = b.note;
    } catch (e) {
      f.active = false;
      f.note = (e as Error).message;
    }
  }

  private async unbind(v: Running, f: Forward): Promise<void> {
    if (f.relay) f.relay.close();
    else if (f.active) await v.inst.ports!.remove({ protocol: f.protocol, hostAddress: f.hostAddress, hostPort: f.hostPort }).catch((e: unknown) => log.warn(`${v.name}: ${(e as Error).message}`));
    f.active = false;
    f.relay = undefined;
  }

  /** Makes the running forwards match vm.json's static ones. */
  private async syncStatics(v: Running): Promise<void> {
    const want = this.statics(v.name);
    for (const f of [...v.statics]) {
      if (!want.some((s) => f.spec && sameHostPort(s, f.spec))) {
        await this.unbind(v, f);
        v.statics.splice(v.statics.indexOf(f), 1);
      }
    }
    for (const s of want) {
      if (v.statics.some((f) => f.spec && sameHostPort(s, f.spec))) continue;
      // A guest port forwarded automatically so far is the static one's now.
      const auto = s.protocol === 'tcp' ? v.autos.get(s.guestPort) : undefined;
      if (auto) {
        await this.unbind(v, auto);
        v.autos.delete(s.guestPort);
        v.seen.delete(s.guestPort);
      }
      const f = staticForward(s);
      await this.bindHostfwd(v, f, s.hostPort);
      if (f.note) log.info(`${v.name}: static forward ${s.hostPort}->${s.guestPort}: ${f.note}`);
      v.statics.push(f);
    }
    this.notify(v);
  }

  // ---- automatic forwards --------------------------------------------------

  private schedule(v: Running, ms: number): void {
    if (v.stopped) return;
    clearTimeout(v.timer);
    v.timer = setTimeout(() => void this.poll(v), ms);
    v.timer.unref?.();
  }

  private setAuto(v: Running, auto: AutoForwarding): void {
    if (v.auto.on === auto.on && v.auto.reason === auto.reason) return;
    v.auto = auto;
    log.info(`${v.name}: automatic port forwarding ${auto.on ? 'on' : `off (${auto.reason})`}`);
  }

  private async poll(v: Running): Promise<void> {
    if (v.stopped) return;
    const agent = v.inst.agent;
    if (!agent) {
      this.setAuto(v, { on: false, reason: 'the VM has no guest agent channel (started by an older devvm; stop and start it); static forwards only' });
      return;
    }
    let files: Array<Buffer | null>;
    try {
      if (!(await agent.connected())) {
        this.setAuto(v, { on: false, reason: 'no guest agent runs in the guest (the image has none, or it is not up yet); static forwards only' });
        return this.schedule(v, IDLE_POLL_MS);
      }
      files = await agent.readFiles(['/proc/net/tcp', '/proc/net/tcp6'], MAX_PROC_NET, READ_TIMEOUT_MS);
    } catch (e) {
      // Paused (suspend, snapshot), slow, or wanted by another call: the forwards stay as
      // they are, and so does the state once the agent has answered.
      const yielded = e instanceof DevvmError && e.code === 'busy';
      if (!v.auto.on && !yielded) this.setAuto(v, { on: false, reason: `the guest agent does not answer yet (${(e as Error).message})` });
      return this.schedule(v, yielded ? this.d.pollMs ?? POLL_MS : IDLE_POLL_MS);
    }
    if (files[0] === null) {
      this.setAuto(v, { on: false, reason: 'the guest agent cannot read /proc/net/tcp' });
      return this.schedule(v, IDLE_POLL_MS);
    }
    this.setAuto(v, { on: true });
    const listeners = [...parseProcNet(files[0].toString('latin1'), 4), ...(files[1] ? parseProcNet(files[1].toString('latin1'), 6) : [])];
    const skip = new Set([SSH_GUEST_PORT, ...this.statics(v.name).filter((s) => s.protocol === 'tcp').map((s) => s.guestPort)]);
    await this.serial(v, () => this.apply(v, guestPorts(listeners, skip))).catch(() => {});
    if (v.unnamed && !v.naming) void this.names(v);
    // During first setup (cloud-init) the guest has enough to do: asked less often.
    const provisioned = this.ctx.store.exists(v.name) && this.ctx.store.read(v.name).provisioned;
    this.schedule(v, this.d.pollMs ?? (provisioned ? POLL_MS : FIRST_BOOT_POLL_MS));
  }

  private async apply(v: Running, next: Map<number, GuestPort>): Promise<void> {
    const { added, removed } = diffPorts(v.seen, next);
    if (!added.length && !removed.length) return;
    for (const p of removed) {
      const f = v.autos.get(p.port);
      if (f) await this.unbind(v, f);
      v.autos.delete(p.port);
    }
    for (const p of added) {
      const f: Forward = { kind: 'auto', protocol: 'tcp', hostAddress: LOOPBACK, hostPort: p.port, guestPort: p.port, active: false, via: p.route === 'relay' ? 'ssh' : 'hostfwd', guestAddress: p.address };
      if (p.route === 'hostfwd') await this.bindHostfwd(v, f, p.port);
      else await this.bindRelay(v, f, p);
      v.autos.set(p.port, f);
      log.info(`${v.name}: guest port ${p.port} (${p.address}) ${f.active ? `forwarded to 127.0.0.1:${f.hostPort}${f.via === 'ssh' ? ' over SSH' : ''}` : 'not forwarded'}${f.note ? `: ${f.note}` : ''}`);
    }
    v.seen = next;
    this.notify(v);
    if (added.length) v.unnamed = true;
  }

  private async bindRelay(v: Running, f: Forward, p: GuestPort): Promise<void> {
    const target = p.address.includes(':') ? `[${p.address}]:${p.port}` : `${p.address}:${p.port}`;
    const argv = this.d.sshArgv(v.name, target);
    if (!argv) {
      f.note = `the guest listens on ${p.address} only; not forwarded (devvm relays such ports over SSH, which is disabled for this VM)`;
      return;
    }
    try {
      const b = await bindHostPort(p.port, this.avoid(), async (hostPort) => {
        f.relay = (await SshRelay.listen(LOOPBACK, hostPort, argv)) ?? undefined;
        return f.relay !== undefined;
      }, () => freePort(this.avoid()));
      f.hostPort = b.port;
      f.active = true;
      f.note = b.note;
    } catch (e) {
      f.note = (e as Error).message;
    }
  }

  /** The listening processes' names (one `ss` in the guest, only when ports appeared). */
  private async names(v: Running): Promise<void> {
    const agent = v.inst.agent;
    if (!agent || v.stopped) return;
    let byPort: Map<number, string>;
    v.naming = true;
    try {
      const r = await agent.pollExec(['ss', '-Hltnp'], 10_000);
      byPort = parseSsProcesses(r.stdout);
      v.unnamed = false;
    } catch (e) {
      // Tried again after the next poll (a yield to another agent call is no failure).
      if (!(e instanceof DevvmError && e.code === 'busy')) log.info(`${v.name}: cannot name the guest's listening processes: ${(e as Error).message}`);
      return;
    } finally {
      v.naming = false;
    }
    let changed = false;
    for (const f of [...v.statics, ...v.autos.values()]) {
      const name = f.protocol === 'tcp' ? byPort.get(f.guestPort) : undefined;
      if (name && f.process !== name) {
        f.process = name;
        changed = true;
      }
    }
    if (changed) this.notify(v);
  }

  // ---- static forwards (port add / remove) ---------------------------------

  async add(name: string, spec: StaticPort): Promise<PortForward> {
    const cfg = this.ctx.store.read(name);
    const have = cfg.ports ?? [];
    if (have.some((s) => sameHostPort(s, spec))) throw new DevvmError('already-exists', `VM "${name}" already forwards host port ${spec.hostPort}/${spec.protocol}`, `remove it first: devvm port remove ${name} ${spec.hostPort}${spec.protocol === 'udp' ? ' --udp' : ''}`);
    if (have.length >= MAX_STATIC) throw new DevvmError('invalid-argument', `VM "${name}" has ${MAX_STATIC} static forwards already`);
    this.ctx.store.update(name, (c) => ({ ...c, ports: [...(c.ports ?? []), spec] }));
    const v = this.vms.get(name);
    if (v && !v.stopped && v.inst.ports) await this.serial(v, () => this.syncStatics(v));
    else this.d.changed(name, this.list(name));
    const live = this.vms.get(name)?.statics.find((f) => f.spec && sameHostPort(f.spec, spec));
    return publicForward(live ?? staticForward(spec));
  }

  async remove(name: string, protocol: PortProtocol, hostPort: number): Promise<void> {
    const cfg = this.ctx.store.read(name);
    // The configured host port, or the one it got instead when that was taken.
    const running = this.vms.get(name)?.statics.find((f) => f.protocol === protocol && f.hostPort === hostPort)?.spec;
    const spec = (cfg.ports ?? []).find((s) => sameHostPort(s, { protocol, hostPort })) ?? running;
    if (!spec) throw new DevvmError('not-found', `VM "${name}" has no static forward of host port ${hostPort}/${protocol}`, `see: devvm ports ${name}`);
    this.ctx.store.update(name, (c) => ({ ...c, ports: (c.ports ?? []).filter((s) => !sameHostPort(s, spec)) }));
    const v = this.vms.get(name);
    if (v && !v.stopped && v.inst.ports) await this.serial(v, () => this.syncStatics(v));
    else this.d.changed(name, this.list(name));
  }
}
