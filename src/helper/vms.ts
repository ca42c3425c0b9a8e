/**
 * The VM manager: owns every state change of every VM. State is derived when read
 * (vm.json + whether our QEMU runs + an in-flight operation), never cached on disk.
 * Requests that do not fit a VM's current state are refused with 'invalid-state'.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { closeSync, existsSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { DevvmError } from '../shared/errors';
import type { CreateParams, SshTarget } from '../shared/rpc';
import { VM_STATES, type AttachedDisk, type HostUsbDevice, type LayerInfo, type LayerNode, type SnapshotInfo, type VmInfo, type VmState, type VmSummary } from '../shared/types';
import * as v from '../shared/validate';
import type { AccelChoice } from './accel';
import * as disks from './disks';
import { openUsbNode } from './usb/access';
import { loadNative } from './native';
import type { Home, VmFiles } from './filenames';
import type { ImageMeta, Images, Progress } from './images';
import { LayerPool } from './layerpool';
import { createLayer, layerInfo } from './layers';
import { log } from './log';
import { freePort, portIsFree } from './ports';
import { run } from './proc';
import * as provision from './provision';
import { MACHINE_LAYOUT, qemuArgs, randomMac } from './qemu/args';
import { Machine } from './qemu/machine';
import { loadRamState, saveRamState } from './qemu/ramstate';
import { sshHostAlias, writeSshConfig } from './sshconfig';
import { readJson, writeJsonAtomic } from './store';
import type { LaunchRecord, RamState, SnapshotRecord, VmConfig } from './vmconfig';

const GiB = 1024 ** 3;
const MIN_FREE_BYTES = 256 * 1024 * 1024;

export interface VmsOptions {
  qemuBinary: string;
  accelerator: () => Promise<AccelChoice>;
  /** Graceful shutdown budget before `quit`. */
  stopTimeoutMs: number;
}

/** Resolves true when something on the port speaks SSH (QEMU's forwarder accepts and drops before sshd is up). */
function sshBanner(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.createConnection(port, '127.0.0.1');
    let data = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => {
      data += c;
      if (data.startsWith('SSH-')) done(true);
    });
    sock.on('error', () => done(false));
    sock.on('close', () => done(false));
  });
}

function readFrom(file: string, offset: number): { text: string; size: number } {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return { text: '', size: offset };
  }
  if (size <= offset) return { text: '', size };
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(Math.min(size - offset, 4 << 20));
    const n = readSync(fd, buf, 0, buf.length, offset);
    return { text: buf.subarray(0, n).toString('utf8'), size: offset + n };
  } finally {
    closeSync(fd);
  }
}

function tailLines(file: string, n: number): string {
  try {
    return readFileSync(file, 'utf8').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').trim().split('\n').slice(-n).join(' | ');
  } catch {
    return '';
  }
}

type OpLabel = 'snapshotting' | 'restoring' | 'cloning' | 'attaching' | 'exporting';

function snapshotInfo(s: SnapshotRecord): SnapshotInfo {
  return { name: s.name, layer: s.layer, ram: !!s.ram, createdAt: s.createdAt };
}

export class Vms extends EventEmitter {
  private machines = new Map<string, Machine>();
  /**
   * In-flight operation per VM, also the per-VM lock: a transitional state, or a label
   * such as "snapshotting" for work that leaves the VM's state as it is.
   */
  private ops = new Map<string, VmState | OpLabel>();
  private watchers = new Map<string, NodeJS.Timeout>();
  private accel: AccelChoice | null = null;
  private qemuVersion: Promise<string> | null = null;
  readonly pool: LayerPool;

  constructor(
    private readonly home: Home,
    private readonly images: Images,
    private readonly opts: VmsOptions,
  ) {
    super();
    this.pool = new LayerPool(home.layersDir);
  }

  // ---- reading -------------------------------------------------------------

  names(): string[] {
    const onDisk = existsSync(this.home.vmsDir)
      ? readdirSync(this.home.vmsDir).filter((n) => existsSync(this.home.vm(n).meta))
      : [];
    return [...new Set([...onDisk, ...this.ops.keys()])].sort();
  }

  private exists(name: string): boolean {
    return existsSync(this.home.vm(name).meta);
  }

  config(name: string): VmConfig {
    v.vmName(name);
    if (!this.exists(name)) throw new DevvmError('not-found', `no VM named "${name}"`, 'see "devvm list"');
    return readJson<VmConfig>(this.home.vm(name).meta);
  }

  private save(cfg: VmConfig): void {
    writeJsonAtomic(this.home.vm(cfg.name).meta, cfg);
  }

  state(name: string): VmState {
    const op = this.ops.get(name);
    if (op && (VM_STATES as readonly string[]).includes(op)) return op as VmState;
    if (this.machines.get(name)?.alive) return 'running';
    return this.exists(name) && this.config(name).suspended && existsSync(this.home.vm(name).suspendState) ? 'suspended' : 'stopped';
  }

  summary(name: string): VmSummary {
    if (this.ops.get(name) === 'creating' && !this.exists(name)) {
      return { name, state: 'creating', image: '', user: '', sshHost: sshHostAlias(name), sshPort: null, cpus: 0, memoryMiB: 0 };
    }
    const c = this.config(name);
    const s: VmSummary = {
      name,
      state: this.state(name),
      image: c.image,
      user: c.user,
      sshHost: sshHostAlias(name),
      sshPort: c.ssh ? c.sshPort : null,
      cpus: c.cpus,
      memoryMiB: c.memoryMiB,
    };
    if (c.provisionError) s.error = c.provisionError;
    return s;
  }

  list(): VmSummary[] {
    return this.names().map((n) => this.summary(n));
  }

  /** Every VM that exists on disk (not one still being created). */
  private configs(): VmConfig[] {
    return this.names().filter((n) => this.exists(n)).map((n) => this.config(n));
  }

  /** Which VMs' chains use each base image. */
  imageUsers(image: string): string[] {
    return this.configs().filter((c) => c.image === image).map((c) => c.name);
  }

  async info(name: string): Promise<VmInfo> {
    const c = this.config(name);
    const f = this.home.vm(name);
    const img = this.images.get(c.image);
    const snaps = c.snapshots ?? [];
    const frozen = this.chain(c).slice(0, -1).reverse();
    const users = this.layerUsers();
    const layers: LayerInfo[] = await Promise.all([
      layerInfo('overlay', this.overlayFile(c), false, [name]),
      ...frozen.map((id) =>
        layerInfo('snapshot', this.pool.file(id), true, users.get(id) ?? []).then((l) => ({ ...l, id, snapshots: snaps.filter((s) => s.layer === id).map((s) => s.name) })),
      ),
      layerInfo('cache', f.cache, false, [name]),
      // A base that cannot be read now (NBD server down, file gone) still lists from its record.
      layerInfo('base', img.file, true, this.imageUsers(c.image)).catch(() => ({
        role: 'base' as const, file: img.file, format: img.format, virtualSize: img.virtualSize, actualSize: 0, readOnly: true, sharedBy: this.imageUsers(c.image),
      })),
    ]);
    const m = this.machines.get(name);
    return {
      ...this.summary(name),
      diskGiB: c.diskGiB,
      fullName: c.fullName,
      autologin: c.autologin,
      ssh: c.ssh,
      provisioned: c.provisioned,
      accelerator: m?.alive ? (this.accel?.name ?? null) : null,
      pid: m?.alive ? m.pid : null,
      dir: f.dir,
      serialLog: f.serialLog,
      createdAt: c.createdAt,
      layers,
      snapshots: snaps.map(snapshotInfo),
      disks: this.attachedDisks(name).map(disks.publicDisk),
      usb: this.usbAttached(name).map(({ qemuId: _q, ...d }) => ({ ...d, attachedTo: name })),
    };
  }

  sshTarget(name: string): SshTarget {
    const c = this.config(name);
    if (!c.ssh) throw new DevvmError('invalid-state', `SSH is disabled for VM "${name}"`, 'it was created with --no-ssh; use the serial console');
    return { configFile: this.home.sshConfig, host: sshHostAlias(name), user: c.user, port: c.sshPort };
  }

  // ---- layers --------------------------------------------------------------

  /** Pool layer ids of the VM's disk, bottom to top (the last is the writable overlay). */
  private chain(c: VmConfig): string[] {
    return c.overlay ? this.pool.path(c.overlay) : [];
  }

  private overlayFile(c: VmConfig): string {
    return c.overlay ? this.pool.file(c.overlay) : this.home.vm(c.name).legacyOverlay;
  }

  /** For every pool layer, the VMs whose active chain runs through it. */
  private layerUsers(): Map<string, string[]> {
    const users = new Map<string, string[]>();
    for (const c of this.configs()) {
      for (const id of this.chain(c)) users.set(id, [...(users.get(id) ?? []), c.name]);
    }
    return users;
  }

  /** Every layer in the pool with who uses it: the tree's edges are the parent links. */
  async layerTree(): Promise<LayerNode[]> {
    const users = this.layerUsers();
    const snaps = new Map<string, string[]>();
    for (const c of this.configs()) {
      for (const s of c.snapshots ?? []) snaps.set(s.layer, [...(snaps.get(s.layer) ?? []), `${c.name}/${s.name}`]);
    }
    return Promise.all(
      this.pool.all().map(async (l) => ({
        id: l.id,
        parent: l.parent,
        image: l.image,
        file: this.pool.file(l.id),
        actualSize: (await layerInfo('snapshot', this.pool.file(l.id), true, [])).actualSize,
        createdAt: l.createdAt,
        snapshots: snaps.get(l.id) ?? [],
        usedBy: users.get(l.id) ?? [],
      })),
    );
  }

  /** Drops pool layers no VM chain, snapshot or unfinished freeze refers to. */
  private collectLayers(): void {
    const roots: string[] = [];
    for (const c of this.configs()) {
      if (c.overlay) roots.push(c.overlay);
      if (c.pending) roots.push(c.pending.newOverlay);
      for (const s of c.snapshots ?? []) roots.push(s.layer);
      const ex = this.nbdExport(c.name);
      if (ex) roots.push(ex.layer);
    }
    const removed = this.pool.gc(roots);
    if (removed.length) log.info(`removed unused layers ${removed.join(', ')}`);
  }

  // ---- helper start-up -----------------------------------------------------

  /** Re-attach to QEMUs still running from an earlier helper; clean up after dead ones. */
  async reattach(): Promise<void> {
    for (const name of this.names()) {
      const f = this.home.vm(name);
      const m = await Machine.attach({ qmpSocket: f.qmp, pidFile: f.pid, qemuLog: f.qemuLog });
      if (m) {
        log.info(`reattached to ${name} (qemu pid ${m.pid})`);
        this.adopt(name, m);
        if (!this.config(name).provisioned) this.watchProvisioning(name, 0);
      } else {
        rmSync(f.pid, { force: true });
      }
      await this.settlePending(name);
    }
    this.collectLayers();
    this.writeSshConfig();
  }

  private adopt(name: string, m: Machine): void {
    this.machines.set(name, m);
    m.once('exit', () => {
      if (this.machines.get(name) !== m) return;
      this.machines.delete(name);
      this.stopWatching(name);
      rmSync(this.home.vm(name).pid, { force: true });
      rmSync(this.home.vm(name).attached, { force: true });
      rmSync(this.home.vm(name).usb, { force: true });
      this.dropUsedSeed(name);
      log.info(`${name}: qemu exited`);
      this.changed(name);
    });
  }

  /**
   * The seed holds the password hash and the host key's private half: deleted once first
   * setup is done and no QEMU (running, or saved in a RAM state) still has it attached.
   */
  private dropUsedSeed(name: string): void {
    try {
      const cfg = this.config(name);
      const needed = cfg.suspended?.seed || (cfg.snapshots ?? []).some((s) => s.ram?.seed);
      if (cfg.provisioned && !needed) rmSync(this.home.vm(name).seed, { force: true });
    } catch {
      // VM deleted meanwhile
    }
  }

  private changed(name: string): void {
    try {
      if (this.exists(name) || this.ops.has(name)) this.emit('changed', this.summary(name));
    } catch (e) {
      log.warn(`cannot summarize ${name}: ${(e as Error).message}`);
    }
  }

  /** Runs `fn` with the VM marked `state`; a second operation on the same VM is refused. */
  private async withOp<T>(name: string, state: VmState | OpLabel, fn: () => Promise<T>): Promise<T> {
    const current = this.ops.get(name);
    if (current) throw new DevvmError('busy', `VM "${name}" is busy (${current})`, 'wait for it to finish');
    this.ops.set(name, state);
    this.changed(name);
    try {
      return await fn();
    } finally {
      this.ops.delete(name);
      this.changed(name);
    }
  }

  // ---- create --------------------------------------------------------------

  async create(p: CreateParams, progress: Progress): Promise<VmSummary> {
    const name = v.vmName(p.name);
    const imageName = v.imageName(p.image);
    const user = v.userName(p.user);
    const fullName = p.fullName === undefined ? user : v.fullName(p.fullName);
    const password = p.password === undefined ? null : v.password(p.password);
    const sshKeys = (p.sshKeys ?? []).map(v.sshPublicKey);
    const cpus = v.cpus(p.cpus ?? 2);
    const memoryMiB = v.memoryMiB(p.memoryMiB ?? 2048, Math.floor(os.totalmem() / 1024 / 1024));
    const diskGiB = v.diskGiB(p.diskGiB ?? 20);
    this.assertNameFree(name);
    const img = await this.images.requireBase(imageName);
    if (diskGiB * GiB < img.virtualSize) {
      throw new DevvmError('invalid-argument', `disk size ${diskGiB} GiB is smaller than the image (${Math.ceil(img.virtualSize / GiB)} GiB)`);
    }
    mkdirSync(this.home.vmsDir, { recursive: true, mode: 0o700 });
    const free = statfsSync(this.home.vmsDir);
    if (free.bavail * free.bsize < MIN_FREE_BYTES) {
      throw new DevvmError('io', `not enough free disk space in ${this.home.vmsDir} (${Math.round((free.bavail * free.bsize) / 2 ** 20)} MiB left)`, 'free at least 256 MiB');
    }

    return this.withOp(name, 'creating', async () => {
      // Hashed while the disk layers and keys are made; awaited by the seed (a failure
      // before then must not surface as an unhandled rejection).
      const hashing = password === null ? Promise.resolve(null) : provision.hashPassword(password);
      hashing.catch(() => {});
      await this.newVm(
        name,
        { image: imageName, img, parent: null, diskGiB },
        (fresh) => ({ version: 1, ...fresh, image: imageName, user, fullName, autologin: p.autologin ?? false, ssh: p.ssh ?? true, cpus, memoryMiB, diskGiB }),
        async (cfg, clientKey) => ({
          hostname: name,
          instanceId: cfg.instanceId,
          user,
          fullName,
          passwordHash: await hashing,
          autologin: cfg.autologin,
          ssh: cfg.ssh,
          authorizedKeys: [clientKey, ...sshKeys],
        }),
        progress,
      );
      log.info(`created ${name}`);
    }).then(async () => {
      if (p.start) return this.start(name, { waitSsh: p.waitSsh }, progress);
      return this.summary(name);
    });
  }

  private assertNameFree(name: string): void {
    if (this.exists(name) || this.ops.has(name) || existsSync(this.home.vm(name).dir)) {
      throw new DevvmError('already-exists', `a VM named "${name}" already exists`, 'pick another name or delete it first');
    }
  }

  /**
   * What create and clone share: the VM's directory, its own cache over the image's base,
   * an overlay on `parent` (a frozen layer; null: the base), a host key, the first-boot
   * seed. vm.json is written last (a VM exists once it does); a failure undoes it all.
   */
  private async newVm(
    name: string,
    disk: { image: string; img: ImageMeta; parent: string | null; diskGiB: number },
    config: (fresh: Pick<VmConfig, 'name' | 'sshPort' | 'mac' | 'instanceId' | 'createdAt' | 'provisioned' | 'overlay'>) => VmConfig,
    seed: (cfg: VmConfig, clientKey: string) => Promise<Omit<provision.ProvisionSpec, 'hostKey'>>,
    progress: Progress,
  ): Promise<void> {
    const f = this.home.vm(name);
    mkdirSync(this.home.vmsDir, { recursive: true, mode: 0o700 });
    try {
      mkdirSync(f.dir, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new DevvmError('already-exists', `a VM named "${name}" already exists`);
      throw e;
    }
    try {
      progress('creating disk layers');
      const { img } = disk;
      const [overlay, hostKey, clientKey] = await Promise.all([
        createLayer(f.cache, img.file, img.format).then(() =>
          this.pool.create({ parent: disk.parent, baseFile: img.file, baseFormat: img.format, image: disk.image, vm: name, sizeBytes: disk.diskGiB * GiB }),
        ),
        provision.generateHostKey(f.hostKey, `devvm-${name}`),
        provision.ensureClientKey(this.home.privateKey),
      ]);
      const cfg = config({
        name,
        sshPort: await freePort(this.usedPorts()),
        mac: randomMac(randomBytes(3)),
        instanceId: `devvm-${randomUUID()}`,
        createdAt: new Date().toISOString(),
        provisioned: false,
        overlay: overlay.id,
      });
      progress('writing first-boot seed');
      await provision.writeSeed(f.seed, { ...(await seed(cfg, clientKey)), hostKey }, f.dir);
      writeFileSync(this.home.knownHosts(name), `${provision.knownHostsLine(sshHostAlias(name), hostKey.publicKey)}\n`, { mode: 0o600 });
      // The private host key now lives only in the seed (deleted after first setup).
      rmSync(f.hostKey, { force: true });
      rmSync(`${f.hostKey}.pub`, { force: true });
      this.save(cfg);
    } catch (e) {
      rmSync(f.dir, { recursive: true, force: true });
      rmSync(this.home.knownHosts(name), { force: true });
      this.collectLayers();
      throw e;
    }
    this.writeSshConfig();
  }

  private usedPorts(): Set<number> {
    return new Set(this.configs().map((c) => c.sshPort));
  }

  writeSshConfig(): void {
    const entries = this.configs()
      .filter((c) => c.ssh)
      .map((c) => ({ vm: c.name, port: c.sshPort, user: c.user, identityFile: this.home.privateKey, knownHostsFile: this.home.knownHosts(c.name) }));
    writeSshConfig(this.home.sshConfig, entries);
  }

  // ---- start / stop --------------------------------------------------------

  async start(name: string, o: { waitSsh?: boolean; timeoutSec?: number; discardState?: boolean }, progress: Progress): Promise<VmSummary> {
    let cfg = this.config(name);
    if (o.waitSsh && !cfg.ssh) throw new DevvmError('invalid-state', `SSH is disabled for VM "${name}"`, 'start it without --wait-ssh');
    if (this.state(name) === 'running') {
      if (o.waitSsh) await this.waitSsh(name, o.timeoutSec ?? 900, progress);
      return this.summary(name);
    }
    await this.withOp(name, 'starting', async () => {
      cfg = this.config(name);
      const f = this.home.vm(name);
      const img = await this.images.requireBase(cfg.image);
      // VMs made before the layer pool keep their one overlay (no snapshots for them).
      const layers = cfg.overlay ? this.chain(cfg).map((id) => ({ id, file: this.pool.file(id) })) : [{ id: 'overlay', file: f.legacyOverlay }];
      for (const file of [f.cache, ...layers.map((l) => l.file)]) {
        if (!existsSync(file)) throw new DevvmError('not-found', `disk layer missing: ${file}`, `the VM cannot start; see "devvm info ${name}"`);
      }
      if (cfg.ssh && !(await portIsFree(cfg.sshPort))) {
        const old = cfg.sshPort;
        cfg = { ...cfg, sshPort: await freePort(this.usedPorts()) };
        this.save(cfg);
        this.writeSshConfig();
        log.info(`${name}: port ${old} is taken, using ${cfg.sshPort}`);
      }
      this.accel ??= await this.opts.accelerator();
      let saved = cfg.suspended && existsSync(f.suspendState) ? cfg.suspended : null;
      if (saved && o.discardState) {
        rmSync(f.suspendState, { force: true });
        cfg = { ...cfg, suspended: undefined };
        this.save(cfg);
        saved = null;
        log.info(`${name}: saved RAM state discarded on request`);
      } else if (saved) {
        const now = await this.fingerprint(cfg, saved.seed);
        if (now !== saved.fingerprint) {
          throw new DevvmError('invalid-state', `the saved state of VM "${name}" does not fit its current configuration (QEMU, image, CPUs, memory or accelerator changed)`, 'start it with --discard-state to cold boot; the saved state is kept until then');
        }
      }
      if (!saved) this.dropUsedSeed(name);
      // A restore needs exactly the devices the state was saved with.
      const seed = saved ? (saved.seed ? f.seed : null) : !cfg.provisioned && existsSync(f.seed) ? f.seed : null;
      if (saved?.seed && !existsSync(f.seed)) throw new DevvmError('not-found', `the first-boot seed the saved state needs is missing: ${f.seed}`, 'start with --discard-state to cold boot');
      const args = qemuArgs({
        name,
        accel: this.accel.name,
        cpus: cfg.cpus,
        memoryMiB: cfg.memoryMiB,
        disks: { base: { file: img.file, format: img.format }, cache: f.cache, layers },
        kernel: img.kernel,
        initrd: img.initrd,
        seed,
        sshPort: cfg.ssh ? cfg.sshPort : null,
        mac: cfg.mac,
        qmpSocket: f.qmp,
        serialSocket: f.serial,
        serialLog: f.serialLog,
        pidFile: f.pid,
      });
      if (saved) args.push('-incoming', 'defer');
      progress(saved ? 'restoring saved RAM state' : `booting (${this.accel.name})`);
      const serialStart = existsSync(f.serialLog) ? statSync(f.serialLog).size : 0;
      const m = await Machine.launch(this.opts.qemuBinary, args, { qmpSocket: f.qmp, pidFile: f.pid, qemuLog: f.qemuLog });
      // What this QEMU was started with, for a later suspend (a restore needs the same devices).
      writeJsonAtomic(f.launch, { seed: seed !== null, sshReady: saved?.sshReady } satisfies LaunchRecord);
      if (saved) {
        try {
          await loadRamState(m.qmp, f.suspendState);
          await m.qmp.execute('cont');
        } catch (e) {
          await m.stop(true, 0);
          throw new DevvmError('invalid-state', `the saved state of VM "${name}" cannot be restored: ${(e as Error).message}`, `start it with --discard-state to cold boot; the saved state is kept until then; see ${f.qemuLog}`);
        }
        // The guest has moved on: the state file no longer matches the disk.
        rmSync(f.suspendState, { force: true });
        this.save({ ...this.config(name), suspended: undefined });
      }
      this.adopt(name, m);
      if (seed && !this.config(name).provisioned) this.watchProvisioning(name, serialStart);
    });
    if (o.waitSsh) await this.waitSsh(name, o.timeoutSec ?? 900, progress);
    return this.summary(name);
  }

  private launchRecord(name: string): LaunchRecord {
    const f = this.home.vm(name);
    return existsSync(f.launch) ? readJson<LaunchRecord>(f.launch) : { seed: false };
  }

  /** The record of a RAM state saved now from the running QEMU. */
  private async ramStateNow(name: string, savedAt: string): Promise<RamState> {
    const { seed, sshReady } = this.launchRecord(name);
    return { savedAt, seed, fingerprint: await this.fingerprint(this.config(name), seed), sshReady };
  }

  /** What a saved RAM state depends on: restoring into anything else would crash the guest. */
  private async fingerprint(cfg: VmConfig, seed: boolean): Promise<string> {
    this.qemuVersion ??= run(this.opts.qemuBinary, ['--version']).then((r) => r.stdout.trim().split('\n')[0] ?? '');
    this.accel ??= await this.opts.accelerator();
    const img = this.images.get(cfg.image);
    const parts = { qemu: await this.qemuVersion, accel: this.accel.name, cpus: cfg.cpus, memoryMiB: cfg.memoryMiB, image: img.sha256, kernel: img.kernel, seed, ssh: cfg.ssh, layout: MACHINE_LAYOUT };
    return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
  }

  /** Pause, write RAM and device state beside the layers, end QEMU: `start` resumes from it. */
  async suspend(name: string, progress: Progress): Promise<VmSummary> {
    this.config(name);
    const m = this.machines.get(name);
    if (!m?.alive) throw new DevvmError('invalid-state', `VM "${name}" is ${this.state(name)}`, 'only a running VM can be suspended');
    if (this.attachedDisks(name).length) throw new DevvmError('invalid-state', `VM "${name}" has hot-plugged disks; a saved state cannot restore them`, 'detach them first');
    const f = this.home.vm(name);
    await this.withOp(name, 'suspending', async () => {
      mkdirSync(f.ramDir, { recursive: true, mode: 0o700 });
      const tmp = `${f.suspendState}.partial`;
      progress('pausing and saving RAM state');
      await m.qmp.execute('stop');
      try {
        await saveRamState(m.qmp, tmp);
      } catch (e) {
        rmSync(tmp, { force: true });
        await m.qmp.execute('cont').catch(() => {});
        throw e;
      }
      renameSync(tmp, f.suspendState);
      this.save({ ...this.config(name), suspended: await this.ramStateNow(name, new Date().toISOString()) });
      await m.stop(true, 0);
    });
    return this.summary(name);
  }

  // ---- snapshots and clones ------------------------------------------------

  private poolOverlay(c: VmConfig): string {
    if (!c.overlay) throw new DevvmError('invalid-state', `VM "${c.name}" was made by an older devvm and has no layer pool`, 'recreate it to use snapshots and clones');
    return c.overlay;
  }

  private findSnapshot(c: VmConfig, snapshot: string): SnapshotRecord {
    const s = (c.snapshots ?? []).find((x) => x.name === v.snapshotName(snapshot));
    if (!s) throw new DevvmError('not-found', `VM "${c.name}" has no snapshot "${snapshot}"`, `see "devvm snapshots ${c.name}"`);
    return s;
  }

  /** The node QEMU's root disk reads from now (changes with every live freeze). */
  private async topNode(m: Machine): Promise<string | undefined> {
    const blocks = await m.qmp.execute<Array<{ qdev?: string; inserted?: { 'node-name'?: string } }>>('query-block');
    return blocks.find((b) => b.qdev === 'disk0' || b.qdev?.startsWith('/machine/peripheral/disk0/'))?.inserted?.['node-name'];
  }

  /**
   * Freezes the VM's overlay as a read-only layer under a fresh overlay; live (QMP
   * blockdev-snapshot onto a pre-made file) when QEMU runs. With `ramFile` the guest is
   * paused around the switch and the RAM save, so state file and frozen disk match.
   * Caller holds the VM's op. Returns the frozen layer and how long the guest stalled.
   */
  private async freeze(name: string, snapshot: SnapshotRecord | undefined, ramFile: string | null, progress: Progress): Promise<{ layer: string; pauseMs: number }> {
    const cfg = this.config(name);
    const old = this.poolOverlay(cfg);
    const img = this.images.get(cfg.image);
    const next = await this.pool.create({ parent: old, baseFile: img.file, baseFormat: img.format, image: cfg.image, vm: name, sizeBytes: cfg.diskGiB * GiB });
    const m = this.machines.get(name);
    if (!m?.alive && ramFile) {
      // QEMU ended between the request and now: there is no RAM left to save.
      this.pool.remove(next.id);
      throw new DevvmError('invalid-state', `VM "${name}" stopped before its RAM could be saved`, 'start it and take the snapshot again');
    }
    if (!m?.alive) {
      this.save({ ...cfg, overlay: next.id, snapshots: snapshot ? [...(cfg.snapshots ?? []), snapshot] : cfg.snapshots });
      return { layer: old, pauseMs: 0 };
    }
    // Journal first: a helper killed past this point is settled by settlePending on restart.
    this.save({ ...cfg, pending: { newOverlay: next.id, snapshot } });
    let pauseMs = 0;
    const t0 = performance.now();
    try {
      if (ramFile) {
        progress('pausing the guest');
        await m.qmp.execute('stop');
      }
      progress('freezing the disk layer');
      const file = this.pool.file(next.id);
      await m.qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': next.id, file: { driver: 'file', filename: file, discard: 'unmap' }, discard: 'unmap', backing: null });
      const t1 = performance.now();
      await m.qmp.execute('blockdev-snapshot', { node: old, overlay: next.id });
      pauseMs = performance.now() - t1;
      if (ramFile) {
        progress('saving RAM');
        await saveRamState(m.qmp, `${ramFile}.partial`);
        renameSync(`${ramFile}.partial`, ramFile);
        pauseMs = performance.now() - t0;
      }
    } finally {
      await this.settlePending(name);
    }
    return { layer: old, pauseMs };
  }

  /**
   * Finishes or undoes a live freeze: QEMU says which layer is on top. With QEMU gone the
   * switch is kept, which is right either way (an empty layer on top changes nothing). A
   * guest paused for a RAM save is resumed; a snapshot whose RAM file never completed is
   * dropped (its disk layer stays in the chain).
   */
  private async settlePending(name: string): Promise<void> {
    const cfg = this.config(name);
    if (!cfg.pending) return;
    const { newOverlay, snapshot } = cfg.pending;
    const m = this.machines.get(name);
    let switched = true;
    if (m?.alive) {
      try {
        switched = (await this.topNode(m)) === newOverlay;
        if (!switched) await m.qmp.execute('blockdev-del', { 'node-name': newOverlay }).catch(() => {});
        const { status } = await m.qmp.execute<{ status: string }>('query-status');
        if (status === 'paused' || status === 'postmigrate') await m.qmp.execute('cont');
      } catch (e) {
        log.warn(`${name}: QEMU went away while settling a freeze: ${(e as Error).message}`);
        switched = true;
      }
    }
    const ram = snapshot?.ram ? this.home.vm(name).snapshotRam(snapshot.name) : null;
    if (ram) rmSync(`${ram}.partial`, { force: true });
    const keep = snapshot && switched && (!ram || existsSync(ram));
    if (switched) {
      this.save({ ...cfg, overlay: newOverlay, pending: undefined, snapshots: keep ? [...(cfg.snapshots ?? []), snapshot] : cfg.snapshots });
    } else {
      this.save({ ...cfg, pending: undefined });
      this.pool.remove(newOverlay);
    }
    log.info(`${name}: freeze ${switched ? 'kept' : 'undone'}${snapshot && !keep ? ` (snapshot "${snapshot.name}" dropped)` : ''}`);
  }

  async snapshot(name: string, snapshot: string, ram: boolean, progress: Progress): Promise<SnapshotInfo & { pauseMs: number }> {
    const cfg = this.config(name);
    const snap = v.snapshotName(snapshot);
    const layer = this.poolOverlay(cfg);
    if ((cfg.snapshots ?? []).some((s) => s.name === snap)) throw new DevvmError('already-exists', `VM "${name}" already has a snapshot "${snap}"`, 'pick another name or delete it first');
    const state = this.state(name);
    if (ram && state !== 'running' && state !== 'suspended') throw new DevvmError('invalid-state', `VM "${name}" is ${state}: there is no RAM to save`, 'start it, or take a disk-only snapshot without --ram');
    if (ram && state === 'running' && this.attachedDisks(name).length) {
      throw new DevvmError('invalid-state', `VM "${name}" has hot-plugged disks; a RAM state cannot restore them`, 'detach them first, or take a disk-only snapshot');
    }
    const f = this.home.vm(name);
    const rec: SnapshotRecord = { name: snap, layer, createdAt: new Date().toISOString() };
    const { pauseMs } = await this.withOp(name, 'snapshotting', async () => {
      if (!ram) return this.freeze(name, rec, null, progress);
      mkdirSync(f.ramDir, { recursive: true, mode: 0o700 });
      if (this.state(name) === 'suspended') {
        // The suspend file already is this disk's RAM: link it, no copy.
        linkSync(f.suspendState, f.snapshotRam(snap));
        try {
          return await this.freeze(name, { ...rec, ram: this.config(name).suspended }, null, progress);
        } catch (e) {
          rmSync(f.snapshotRam(snap), { force: true });
          throw e;
        }
      }
      return this.freeze(name, { ...rec, ram: await this.ramStateNow(name, rec.createdAt) }, f.snapshotRam(snap), progress);
    });
    const saved = this.findSnapshot(this.config(name), snap);
    log.info(`${name}: snapshot ${snap} (layer ${saved.layer}${saved.ram ? ', with RAM' : ''}), guest stalled ${pauseMs.toFixed(1)} ms`);
    return { ...snapshotInfo(saved), pauseMs };
  }

  /**
   * Back to a snapshot: a fresh overlay on its layer (what was written since is dropped).
   * With RAM the VM becomes suspended at that moment, and a VM that was running resumes.
   */
  async restore(name: string, snapshot: string, progress: Progress): Promise<VmSummary> {
    const snap = this.findSnapshot(this.config(name), snapshot);
    const f = this.home.vm(name);
    if (snap.ram && !existsSync(f.snapshotRam(snap.name))) throw new DevvmError('not-found', `the RAM file of snapshot "${snap.name}" is missing: ${f.snapshotRam(snap.name)}`);
    if (this.ops.has(name)) throw new DevvmError('busy', `VM "${name}" is busy (${this.ops.get(name)})`, 'wait for it to finish');
    const wasRunning = this.state(name) === 'running';
    if (wasRunning) await this.stop(name, true);
    await this.withOp(name, 'restoring', async () => {
      const cfg = this.config(name);
      const img = this.images.get(cfg.image);
      progress(`restoring snapshot ${snap.name}`);
      const next = await this.pool.create({ parent: snap.layer, baseFile: img.file, baseFormat: img.format, image: cfg.image, vm: name, sizeBytes: cfg.diskGiB * GiB });
      rmSync(f.suspendState, { force: true });
      if (snap.ram) {
        mkdirSync(f.ramDir, { recursive: true, mode: 0o700 });
        linkSync(f.snapshotRam(snap.name), f.suspendState);
      }
      this.save({ ...cfg, overlay: next.id, suspended: snap.ram });
      this.collectLayers();
    });
    return wasRunning ? this.start(name, {}, progress) : this.summary(name);
  }

  /** Forgets a snapshot; its layer goes once no chain, snapshot or clone still needs it. */
  async deleteSnapshot(name: string, snapshot: string): Promise<void> {
    const snap = this.findSnapshot(this.config(name), snapshot);
    await this.withOp(name, 'snapshotting', async () => {
      const cfg = this.config(name);
      this.save({ ...cfg, snapshots: (cfg.snapshots ?? []).filter((s) => s.name !== snap.name) });
      rmSync(this.home.vm(name).snapshotRam(snap.name), { force: true });
      this.collectLayers();
    });
    this.changed(name);
  }

  /**
   * A new VM on a frozen layer of `source` (its current disk, frozen live, or a snapshot):
   * O(1) in disk size. The clone keeps the user and their files and gets its own identity:
   * instance id (cloud-init's per-instance setup runs again), host key, machine-id, MAC,
   * SSH port.
   */
  async clone(p: { source: string; name: string; snapshot?: string; start?: boolean }, progress: Progress): Promise<VmSummary> {
    const source = v.vmName(p.source);
    const name = v.vmName(p.name);
    const src = this.config(source);
    this.poolOverlay(src);
    this.assertNameFree(name);
    const layer = p.snapshot !== undefined
      ? this.findSnapshot(src, p.snapshot).layer
      : (await this.withOp(source, 'cloning', () => this.freeze(source, undefined, null, progress))).layer;
    await this.withOp(name, 'creating', async () => {
      await this.newVm(
        name,
        { image: src.image, img: this.images.get(src.image), parent: layer, diskGiB: src.diskGiB },
        (fresh) => ({ ...src, ...fresh, provisionError: undefined, suspended: undefined, pending: undefined, snapshots: undefined, clonedFrom: { vm: source, layer } }),
        async (cfg, clientKey) => ({ hostname: name, instanceId: cfg.instanceId, user: cfg.user, fullName: cfg.fullName, passwordHash: null, autologin: cfg.autologin, ssh: cfg.ssh, authorizedKeys: [clientKey], clone: true }),
        progress,
      );
      log.info(`cloned ${source} to ${name} on layer ${layer}`);
    });
    return p.start ? this.start(name, {}, progress) : this.summary(name);
  }

  // ---- host USB devices -----------------------------------------------------

  usbAttached(name: string): Array<HostUsbDevice & { qemuId: string }> {
    const f = this.home.vm(name);
    if (!this.machines.get(name)?.alive || !existsSync(f.usb)) return [];
    return readJson<Array<HostUsbDevice & { qemuId: string }>>(f.usb);
  }

  /** Which running VM has this host device. */
  usbOwner(id: string): string | undefined {
    return this.runningNames().find((n) => this.usbAttached(n).some((d) => d.id === id));
  }

  /** Passes a host USB device to the VM (QEMU usb-host on the xHCI controller). */
  async usbAttach(name: string, dev: HostUsbDevice): Promise<HostUsbDevice> {
    const m = this.runningMachine(name, 'attach a USB device');
    const owner = this.usbOwner(dev.id);
    if (owner) throw new DevvmError('busy', `USB device ${dev.id} is attached to VM "${owner}"`, `detach it first: devvm usb detach ${owner} ${dev.id}`);
    return this.withOp(name, 'attaching', async () => {
      const fd = openUsbNode(dev);
      const list = this.usbAttached(name);
      let n = 1;
      while (list.some((d) => d.qemuId === `usb${n}`)) n++;
      const qemuId = `usb${n}`;
      // The node goes to QEMU as an fd set (QMP add-fd over SCM_RIGHTS) that usb-host opens
      // as /dev/fdset/N; without the addon QEMU opens the node by bus and address itself.
      const addon = loadNative().addon;
      let fdset: number | null = null;
      try {
        let where: Record<string, unknown> = { hostbus: dev.busnum, hostaddr: dev.devnum };
        if (addon) {
          fdset = (await m.qmp.executeWithFd<{ 'fdset-id': number }>('add-fd', { opaque: `usb ${dev.id}` }, fd, addon.sendFd))['fdset-id'];
          where = { hostdevice: `/dev/fdset/${fdset}` };
        }
        await m.qmp.execute('device_add', { driver: 'usb-host', bus: 'xhci.0', id: qemuId, ...where }).catch((e: Error) => {
          throw new DevvmError('process-failed', `cannot attach USB device ${dev.id} (${dev.vendorId}:${dev.productId}): ${e.message}`);
        });
      } finally {
        closeSync(fd);
        // QEMU keeps its own duplicate while the device exists and closes the set after.
        if (fdset !== null) await m.qmp.execute('remove-fd', { 'fdset-id': fdset }).catch(() => {});
      }
      writeJsonAtomic(this.home.vm(name).usb, [...list, { ...dev, qemuId }]);
      log.info(`${name}: attached USB ${dev.id} (${dev.vendorId}:${dev.productId}) as ${qemuId}`);
      return { ...dev, attachedTo: name };
    });
  }

  async usbDetach(name: string, id: string, gone = false): Promise<void> {
    const m = this.runningMachine(name, 'detach a USB device');
    const d = this.usbAttached(name).find((x) => x.id === id);
    if (!d) throw new DevvmError('not-found', `USB device ${id} is not attached to VM "${name}"`, `see "devvm usb list"`);
    await this.withOp(name, 'attaching', async () => {
      // Unplugged already: QEMU has dropped the device, only the record goes.
      if (!gone) {
        const deleted = m.qmp.waitEvent('DEVICE_DELETED', 10_000, (e) => e.data?.device === d.qemuId);
        await m.qmp.execute('device_del', { id: d.qemuId });
        await deleted;
      } else {
        await m.qmp.execute('device_del', { id: d.qemuId }).catch(() => {});
      }
      writeJsonAtomic(this.home.vm(name).usb, this.usbAttached(name).filter((x) => x.id !== id));
    });
    log.info(`${name}: detached USB ${id}`);
  }

  runningNames(): string[] {
    return this.names().filter((n) => this.machines.get(n)?.alive);
  }

  // ---- extra disks and NBD export ------------------------------------------

  /** Disks hot-plugged into the running QEMU (none when it does not run). */
  attachedDisks(name: string): disks.AttachedRecord[] {
    const f = this.home.vm(name);
    if (!this.machines.get(name)?.alive || !existsSync(f.attached)) return [];
    return readJson<disks.AttachedRecord[]>(f.attached);
  }

  private runningMachine(name: string, what: string): Machine {
    this.config(name);
    const m = this.machines.get(name);
    if (!m?.alive) throw new DevvmError('invalid-state', `VM "${name}" is ${this.state(name)}`, `start it to ${what}`);
    return m;
  }

  async attachDisk(name: string, o: { source: string; usb: boolean; readOnly: boolean }): Promise<AttachedDisk> {
    const m = this.runningMachine(name, 'attach a disk');
    const format = await disks.checkSource(o.source, this.home.root, o.readOnly);
    return this.withOp(name, 'attaching', async () => {
      const list = this.attachedDisks(name);
      const d = await disks.attach(m.qmp, list, { ...o, format });
      writeJsonAtomic(this.home.vm(name).attached, [...list, d]);
      log.info(`${name}: attached ${d.source} as ${d.id} (${d.bus}${d.readOnly ? ', read-only' : ''})`);
      return disks.publicDisk(d);
    });
  }

  async detachDisk(name: string, id: string): Promise<void> {
    const m = this.runningMachine(name, 'detach a disk');
    const d = this.attachedDisks(name).find((x) => x.id === id);
    if (!d) throw new DevvmError('not-found', `VM "${name}" has no attached disk "${id}"`, `see "devvm info ${name}"`);
    await this.withOp(name, 'attaching', async () => {
      await disks.detach(m.qmp, d);
      writeJsonAtomic(this.home.vm(name).attached, this.attachedDisks(name).filter((x) => x.id !== id));
    });
    log.info(`${name}: detached ${id}`);
  }

  /** The VM's running NBD export, if any (derived from the qemu-nbd process). */
  nbdExport(name: string): disks.ExportRecord | null {
    const f = this.home.vm(name);
    if (!existsSync(f.nbdExport)) return null;
    const rec = readJson<disks.ExportRecord>(f.nbdExport);
    return disks.exportAlive(rec, f.nbdPid, this.pool.file(rec.layer)) ? rec : null;
  }

  private stopExport(name: string): void {
    const rec = this.nbdExport(name);
    if (rec) process.kill(rec.pid, 'SIGTERM');
    rmSync(this.home.vm(name).nbdExport, { force: true });
  }

  /** Serves a snapshot's layer (or the current disk, frozen now) read-only over NBD on 127.0.0.1. */
  async exportDisk(name: string, snapshot: string | undefined, progress: Progress): Promise<{ vm: string; layer: string; uri: string }> {
    const cfg = this.config(name);
    this.poolOverlay(cfg);
    const snap = snapshot === undefined ? null : this.findSnapshot(cfg, snapshot);
    return this.withOp(name, 'exporting', async () => {
      const layer = snap ? snap.layer : (await this.freeze(name, undefined, null, progress)).layer;
      this.stopExport(name);
      const f = this.home.vm(name);
      const rec = await disks.serveNbd({ file: this.pool.file(layer), exportName: snap ? `${name}-${snap.name}` : `${name}-${layer}`, pidFile: f.nbdPid, logFile: f.nbdLog, layer });
      writeJsonAtomic(f.nbdExport, rec);
      log.info(`${name}: exporting layer ${layer} at ${rec.uri}`);
      return { vm: name, layer, uri: rec.uri };
    });
  }

  unexportDisk(name: string): void {
    this.config(name);
    this.stopExport(name);
  }

  /** Reads new serial output until cloud-init's final message (success) or a known failure. */
  private watchProvisioning(name: string, offset: number): void {
    this.stopWatching(name);
    const f: VmFiles = this.home.vm(name);
    let pos = offset;
    let carry = '';
    const tick = () => {
      const { text, size } = readFrom(f.serialLog, pos);
      pos = size;
      const window = carry + text;
      carry = window.slice(-512);
      if (!text) return;
      let cfg: VmConfig;
      try {
        cfg = this.config(name);
      } catch {
        return this.stopWatching(name);
      }
      const failed = /Failed to create user[^\r\n]*|cc_users_groups[^\r\n]*(?:Error|Traceback)[^\r\n]*/.exec(window);
      if (failed && !cfg.provisionError) {
        this.save({ ...cfg, provisionError: `first-user setup failed in the guest: ${failed[0].slice(0, 160)}` });
        this.changed(name);
      }
      // Trailing space: an id must not match as the prefix of a longer one.
      if (window.includes(`${provision.READY_MARKER} ${cfg.instanceId} `)) {
        this.save({ ...this.config(name), provisioned: true });
        log.info(`${name}: first setup finished; the seed goes when this QEMU ends`);
        this.stopWatching(name);
        this.changed(name);
      }
    };
    this.watchers.set(name, setInterval(tick, 250));
  }

  private stopWatching(name: string): void {
    const t = this.watchers.get(name);
    if (t) clearInterval(t);
    this.watchers.delete(name);
  }

  async waitSsh(name: string, timeoutSec: number, progress: Progress): Promise<void> {
    const deadline = Date.now() + timeoutSec * 1000;
    const f = this.home.vm(name);
    progress('waiting for SSH');
    for (;;) {
      const cfg = this.config(name);
      if (!this.machines.get(name)?.alive) {
        throw new DevvmError('invalid-state', `VM "${name}" stopped before SSH answered`, `serial log: ${tailLines(f.serialLog, 2) || 'empty'}; see ${f.qemuLog}`);
      }
      if (cfg.provisionError) throw new DevvmError('provisioning-failed', cfg.provisionError, `see ${f.serialLog}`);
      // On first boot sshd answers while cloud-init still works (and restarts sshd when it
      // applies its SSH settings): ready means first setup finished and SSH works.
      const settling = this.watchers.has(name);
      if (settling) progress('first boot: waiting for first setup (cloud-init) to finish');
      if (!settling && (await sshBanner(cfg.sshPort, 1500))) {
        // A guest restored from a run where a login worked is past boot: sshd answering
        // suffices (a full login costs ~2 s under TCG). Cold boots log in once, since
        // sshd answers before logins are allowed (systemd-user-sessions).
        if (this.launchRecord(name).sshReady) return;
        try {
          await run('ssh', ['-F', this.home.sshConfig, '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', sshHostAlias(name), 'true'], { timeoutMs: 30000 });
          if (this.machines.get(name)?.alive) writeJsonAtomic(f.launch, { ...this.launchRecord(name), sshReady: true } satisfies LaunchRecord);
          return;
        } catch (e) {
          // sshd answers before cloud-init has installed the user's key: retry until the deadline
          log.info(`${name}: ssh not ready yet: ${(e as Error).message}`);
        }
      }
      if (Date.now() > deadline) {
        throw new DevvmError('timeout', `SSH to VM "${name}" did not answer within ${timeoutSec} s`, `serial log: ${tailLines(f.serialLog, 2)}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async stop(name: string, force: boolean): Promise<VmSummary> {
    this.config(name);
    const m = this.machines.get(name);
    if (!m?.alive) {
      if (this.ops.has(name) && force) {
        throw new DevvmError('busy', `VM "${name}" is ${this.ops.get(name)}`, 'wait for it to finish');
      }
      return this.summary(name);
    }
    await this.withOp(name, 'stopping', () => m.stop(force, this.opts.stopTimeoutMs));
    return this.summary(name);
  }

  async delete(name: string, force: boolean): Promise<void> {
    this.config(name);
    if (!['stopped', 'suspended'].includes(this.state(name))) {
      if (!force) throw new DevvmError('invalid-state', `VM "${name}" is ${this.state(name)}`, 'stop it first, or use delete --force');
      await this.stop(name, true);
    }
    await this.withOp(name, 'stopping', async () => {
      this.stopExport(name);
      rmSync(this.home.vm(name).dir, { recursive: true, force: true });
      rmSync(this.home.knownHosts(name), { force: true });
    });
    this.collectLayers();
    this.writeSshConfig();
    this.emit('removed', name);
  }

  /** For helper shutdown in tests: leave VMs running unless asked. */
  async shutdown(stopVms: boolean): Promise<void> {
    for (const name of [...this.watchers.keys()]) this.stopWatching(name);
    for (const [name, m] of this.machines) {
      if (stopVms) await m.stop(true, 0);
      else m.qmp.close();
      this.machines.delete(name);
    }
  }
}
