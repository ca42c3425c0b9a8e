/**
 * A fake driver (no VM) and a VM manager wired to it in a temp DEVVM_HOME, for unit tests
 * of the manager's logic. Steps can be held on a gate the test opens, which makes races
 * deterministic. Layers are real qcow2 files (qemu-img); keys are real (ssh-keygen).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AgentOps, DeviceOps, Driver, ExitInfo, HostForward, Instance, InstanceFiles, LaunchSpec, LayerOps, PortOps, RamStateOps, DisplayOps, FingerprintParts } from '../../src/helper/driver/driver';
import type { Size } from '../../src/shared/display';
import { Home } from '../../src/helper/filenames';
import { Images } from '../../src/helper/images';
import { run } from '../../src/helper/proc';
import { realProvisioner, type Provisioner } from '../../src/helper/vm/create';
import { Vms } from '../../src/helper/vms';

/** A promise the test opens; `reached` resolves once something waits on it. */
export class Gate {
  private open!: () => void;
  private arrived!: () => void;
  readonly opened = new Promise<void>((r) => (this.open = r));
  readonly reached = new Promise<void>((r) => (this.arrived = r));
  wait(): Promise<void> {
    this.arrived();
    return this.opened;
  }
  release(): void {
    this.open();
  }
}

let pids = 1000;

export class FakeInstance implements Instance {
  alive = true;
  readonly pid = pids++;
  readonly accelerator = 'fake';
  private listeners: Array<(i: ExitInfo) => void> = [];
  private died!: () => void;
  /** Resolves when the process ends (pending engine calls fail then, as QMP's do). */
  readonly dead = new Promise<void>((r) => (this.died = r));
  paused = false;
  top: string;
  readonly ram: RamStateOps;
  readonly layers: LayerOps;
  readonly devices: DeviceOps | null = null;
  readonly display: DisplayOps | null;
  readonly agent: AgentOps | null;
  readonly ports: FakePorts;

  constructor(readonly spec: LaunchSpec, private readonly driver: FakeDriver) {
    this.ports = new FakePorts(driver);
    this.top = spec.disks.layers.at(-1)!.id;
    this.display = spec.display ? fakeDisplay(spec.display, driver) : null;
    this.agent = driver.agent === null ? null : fakeAgent(driver);
    this.paused = spec.incoming;
    this.ram = {
      save: async (file) => writeFileSync(file, driver.ramContent()),
      load: async () => {},
    };
    this.layers = {
      top: async () => this.top,
      prepare: async () => {
        driver.events.push('prepare');
      },
      switchTop: async (_current, next) => {
        driver.events.push('switch');
        if (driver.switchFails) throw new Error('switch failed');
        this.top = next.id;
      },
      drop: async () => {},
    };
  }

  onExit(l: (i: ExitInfo) => void): void {
    this.listeners.push(l);
  }

  private end(info: ExitInfo): void {
    if (!this.alive) return;
    this.alive = false;
    this.died();
    for (const l of this.listeners.splice(0)) l(info);
  }

  async stop(): Promise<void> {
    await this.driver.stopGate?.wait();
    this.end({ expected: true, reason: 'stopped' });
  }

  /** QEMU dying on its own (a crash, a kill -9). */
  crash(reason: string): void {
    this.end({ expected: false, reason });
  }

  async pause(): Promise<void> {
    this.paused = true;
  }
  async resume(): Promise<void> {
    this.paused = false;
  }
  async runState(): Promise<string> {
    return this.paused ? 'paused' : 'running';
  }
  detach(): void {}
}

/** A guest agent that answers (or not: `driver.agent`) and records what it was asked in `driver.events`. */
function fakeAgent(driver: FakeDriver): AgentOps {
  const answer = async (what: string) => {
    driver.events.push(what);
    if (driver.agent === 'silent') throw new Error('the guest agent did not answer');
  };
  return {
    connected: async () => driver.agent !== 'closed',
    ping: () => answer('ping'),
    setClock: async (nowNs) => {
      await answer('setTime');
      driver.guestTimes.push(nowNs());
      return { applied: Promise.resolve() };
    },
    freeze: async () => {
      await answer('freeze');
      return 1;
    },
    thaw: async () => {
      await answer('thaw');
      return 1;
    },
    whileFrozen: async (fn) => {
      try {
        await answer('freeze');
      } catch (e) {
        return { value: await fn(), frozen: false, thawed: true, frozenMs: 0, problem: `session: ${(e as Error).message}` };
      }
      try {
        return { value: await fn(), frozen: true, thawed: true, frozenMs: 1 };
      } finally {
        driver.events.push('thaw');
      }
    },
    shutdown: () => answer('shutdown'),
    facts: async () => {
      await answer('facts');
      return { ip: '10.0.2.15', os: 'Debian GNU/Linux 12 (bookworm)', hostname: 'guest', uptimeSec: 42 };
    },
    address: async () => {
      await answer('address');
      return driver.guestAddress;
    },
    // Polled by the port forwarder: counted apart, so `events` stays what the tests ask.
    readFiles: async (paths) => {
      driver.portPolls++;
      if (driver.agent === 'silent') throw new Error('the guest agent did not answer');
      return paths.map((p) => (driver.guestFiles[p] === undefined ? null : Buffer.from(driver.guestFiles[p]!)));
    },
    pollExec: async (argv) => {
      driver.execs.push(argv.join(' '));
      if (driver.agent === 'silent') throw new Error('the guest agent did not answer');
      return { exitCode: 0, stdout: driver.guestSs };
    },
  };
}

/** hostfwd as the fake engine keeps it: host ports in `driver.takenHostPorts` cannot be bound. */
export class FakePorts implements PortOps {
  readonly forwards: HostForward[] = [];
  constructor(private readonly driver: FakeDriver) {}
  async add(f: HostForward): Promise<boolean> {
    if (this.driver.takenHostPorts.has(f.hostPort) || this.forwards.some((x) => x.protocol === f.protocol && x.hostPort === f.hostPort)) return false;
    this.forwards.push({ ...f });
    return true;
  }
  async remove(f: Omit<HostForward, 'guestPort'>): Promise<void> {
    const i = this.forwards.findIndex((x) => x.protocol === f.protocol && x.hostPort === f.hostPort);
    if (i >= 0) this.forwards.splice(i, 1);
  }
  async list(): Promise<HostForward[]> {
    return this.forwards.map((f) => ({ ...f }));
  }
}

/** A screen that takes every size up to `driver.displayLimit` after `driver.resizeMs`, and records what it was asked. */
function fakeDisplay(boot: Size, driver: FakeDriver): DisplayOps {
  let now = { ...boot };
  return {
    size: async () => now,
    resize: async (want) => {
      driver.resizes.push(want);
      await new Promise((r) => setTimeout(r, driver.resizeMs));
      const fits = want.width <= driver.displayLimit.width && want.height <= driver.displayLimit.height;
      if (fits) now = { ...want };
      return { size: now, applied: fits };
    },
    reassert: async (want) => {
      driver.resizes.push(want);
      await new Promise((r) => setTimeout(r, driver.resizeMs));
      now = { ...want };
    },
    // The 24 bytes of a PNG that pngSize() reads.
    screenshot: async () => {
      const b = Buffer.alloc(24);
      b.writeUInt32BE(0x89504e47, 0);
      b.write('IHDR', 12, 'latin1');
      b.writeUInt32BE(now.width, 16);
      b.writeUInt32BE(now.height, 20);
      return b;
    },
  };
}

export class FakeDriver implements Driver {
  readonly name = 'fake';
  readonly features = { ramState: true, liveLayerSwitch: true, hotplugDisks: false, usbPassthrough: false, display: true, portForward: true };
  /** The guest's files as the agent reads them (/proc/net/tcp...). */
  guestFiles: Record<string, string> = {};
  /** What `ss -Hltnp` prints in the guest. */
  guestSs = '';
  /** Host ports the fake engine cannot bind. */
  readonly takenHostPorts = new Set<number>();
  /** Reads of the guest's /proc/net/tcp*, and programs run in the guest. */
  portPolls = 0;
  readonly execs: string[] = [];
  /** Sizes the fake screens were asked for, in order. */
  readonly resizes: Size[] = [];
  resizeMs = 5;
  displayLimit: Size = { width: 1920, height: 1200 };
  /** Set to hold launches (they still end when the start is aborted). */
  launchGate: Gate | null = null;
  stopGate: Gate | null = null;
  /** What the next RAM save writes. */
  ramText = 'ram';
  readonly launched: FakeInstance[] = [];
  /** What reap() reports for the next VM (a process that died while no helper ran). */
  reapReason: string | null = null;
  /** The instances' guest agent: none (null), one that answers, one whose port is open and that never answers, or a port no agent opened. */
  agent: 'answering' | 'silent' | 'closed' | null = null;
  /** The NIC's address as the agent reports it (null: not configured yet). */
  guestAddress: string | null = '10.0.2.15';
  /** Agent calls and layer switches, in order. */
  readonly events: string[] = [];
  /** Times the agent was asked to set (ns). */
  readonly guestTimes: number[] = [];
  switchFails = false;

  ramContent(): string {
    return this.ramText;
  }

  async launch(spec: LaunchSpec): Promise<Instance> {
    if (this.launchGate) {
      const aborted = new Promise<void>((r) => spec.signal?.addEventListener('abort', () => r(), { once: true }));
      await Promise.race([this.launchGate.wait(), aborted]);
      if (spec.signal?.aborted) throw new Error('launch aborted');
    }
    const i = new FakeInstance(spec, this);
    this.launched.push(i);
    return i;
  }

  async attach(files: InstanceFiles): Promise<Instance | null> {
    return this.launched.find((i) => i.alive && i.spec.files.control === files.control) ?? null;
  }

  reap(): string | null {
    return this.reapReason;
  }

  async fingerprint(p: FingerprintParts): Promise<string> {
    // What the real one covers that tests change: the machine's size and its display.
    return `fp ${p.cpus}x${p.memoryMiB}${p.display ? ` ${JSON.stringify(p.display)}` : ''}`;
  }
}

export interface Rig {
  root: string;
  home: Home;
  images: Images;
  driver: FakeDriver;
  vms: Vms;
  /** Held before the seed is written, i.e. after the new VM's layers exist and before its vm.json. */
  seedGate: { gate: Gate | null };
  /** A manager on the same home, as after a helper restart. */
  restart(driver?: FakeDriver): Promise<Vms>;
  cleanup(): Promise<void>;
}

const noProgress = () => {};
export { noProgress };

export async function rig(): Promise<Rig> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'devvm-vms-'));
  const home = new Home(root);
  // A blank base image, registered as image "base" (its record written as the images helper does).
  const dir = home.image('base').dir;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const disk = home.image('base').disk;
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '64M']);
  writeFileSync(
    home.image('base').meta,
    JSON.stringify({ name: 'base', file: disk, format: 'qcow2', virtualSize: 64 << 20, sha256: null, kernel: null, initrd: null, source: 'test', createdAt: new Date().toISOString() }),
  );
  const images = new Images(home, path.join(root, 'cache'));
  const seedGate: { gate: Gate | null } = { gate: null };
  const provisioner: Provisioner = {
    ...realProvisioner,
    hashPassword: async () => '$6$salt$' + 'a'.repeat(86),
    writeSeed: async (file, spec, work) => {
      await seedGate.gate?.wait();
      writeFileSync(file, `seed ${spec.instanceId}`, { mode: 0o600 });
      void work;
    },
  };
  const make = (driver: FakeDriver) => new Vms(home, images, { qemuBinary: 'unused', accelerator: async () => ({ name: 'tcg', reason: 'test' }), stopTimeoutMs: 1000, driver, provisioner, portPollMs: 10 });
  const managers: Vms[] = [];
  const tracked = (d: FakeDriver) => {
    const m = make(d);
    managers.push(m);
    return m;
  };
  const driver = new FakeDriver();
  const vms = tracked(driver);
  await vms.reattach();
  return {
    root,
    home,
    images,
    driver,
    vms,
    seedGate,
    restart: async (d = driver) => {
      const again = tracked(d);
      await again.reattach();
      return again;
    },
    cleanup: async () => {
      // Provisioning watchers are timers: stop them so the test process can end.
      for (const m of managers) await m.shutdown(false);
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export function createParams(name: string, extra: Record<string, unknown> = {}) {
  return { name, image: 'base', user: 'dev', diskGiB: 1, ...extra };
}
