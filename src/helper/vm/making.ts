/**
 * create and clone: admission, image holds for the whole operation, the new VM's lock
 * held from the build through an optional start, and layer reservations until vm.json
 * names the new layers (see Builder in create.ts for the staged build itself).
 */
import { mkdirSync, existsSync, statfsSync } from 'node:fs';
import os from 'node:os';
import { DevvmError } from '../../shared/errors';
import type { CreateParams } from '../../shared/rpc';
import { settingsOf } from './settings';
import { portsOf } from './ports';
import * as v from '../../shared/validate';
import type { Progress } from '../images';
import { chooseProvisionPath } from '../devvmseed';
import { log } from '../log';
import { requireFeature } from '../driver/driver';
import { admit, GiB, poolOverlay, type VmContext } from './context';
import { displayOf } from './display';
import type { Builder } from './create';
import type { Power } from './power';
import { findSnapshot, type Snapshots } from './snapshots';
import type { Shares } from './shares';

const MIN_FREE_BYTES = 256 * 1024 * 1024;

export interface MakingDeps {
  builder: Builder;
  power: Power;
  snaps: Snapshots;
  writeSshConfig(): void;
  shares: Shares;
}

export class Making {
  constructor(
    private readonly ctx: VmContext,
    private readonly d: MakingDeps,
  ) {}

  private assertNameFree(name: string): void {
    if (this.ctx.store.exists(name) || this.ctx.locks.get(name) || existsSync(this.ctx.home.vm(name).dir)) {
      throw new DevvmError('already-exists', `a VM named "${name}" already exists`, 'pick another name or delete it first');
    }
  }

  async create(p: CreateParams, progress: Progress): Promise<void> {
    const name = v.vmName(p.name);
    const imageName = v.imageName(p.image);
    const user = v.userName(p.user);
    const fullName = p.fullName === undefined ? user : v.fullName(p.fullName);
    const password = p.password === undefined ? null : v.password(p.password);
    const sshKeys = (p.sshKeys ?? []).map(v.sshPublicKey);
    const cpus = v.cpus(p.cpus ?? 2);
    const memoryMiB = v.memoryMiB(p.memoryMiB ?? 2048, Math.floor(os.totalmem() / 1024 / 1024));
    const diskGiB = v.diskGiB(p.diskGiB ?? 20);
    const ports = portsOf(p);
    if (displayOf(p).display) requireFeature(this.ctx.driver, 'display', 'show a display');
    // Checked before anything is made: a bad share refuses the create and leaves nothing.
    const shares = this.d.shares.records(p.shares ?? [], user);
    this.assertNameFree(name);
    // Held from before the base is checked until the VM exists: `image delete` is refused meanwhile.
    const release = this.ctx.images.hold(imageName);
    try {
      const img = await this.ctx.images.requireBase(imageName);
      if (diskGiB * GiB < img.virtualSize) {
        throw new DevvmError('invalid-argument', `disk size ${diskGiB} GiB is smaller than the image (${Math.ceil(img.virtualSize / GiB)} GiB)`);
      }
      // The helper's environment is read here, once per create (DEVVM_PROVISION, docs/firstboot.md).
      const provisionPath = chooseProvisionPath(img);
      mkdirSync(this.ctx.home.vmsDir, { recursive: true, mode: 0o700 });
      const free = statfsSync(this.ctx.home.vmsDir);
      if (free.bavail * free.bsize < MIN_FREE_BYTES) {
        throw new DevvmError('io', `not enough free disk space in ${this.ctx.home.vmsDir} (${Math.round((free.bavail * free.bsize) / 2 ** 20)} MiB left)`, 'free at least 256 MiB');
      }
      await this.ctx.locks.run(name, 'creating', async (op) => {
        // Hashed while the disk layers and keys are made; awaited by the seed (a failure
        // before then must not surface as an unhandled rejection).
        const hashing = password === null ? Promise.resolve(null) : this.d.builder.provisioner.hashPassword(password);
        hashing.catch(() => {});
        await this.buildVm(
          name,
          { image: imageName, img, parent: null, diskGiB },
          (fresh) => ({ version: 1, ...fresh, image: imageName, user, fullName, autologin: p.autologin ?? false, ssh: p.ssh ?? true, cpus, memoryMiB, diskGiB, ...displayOf(p), ...settingsOf(p), ...(p.origin ? { origin: p.origin } : {}), ...(provisionPath === 'devvm' ? { provision: 'devvm' as const } : {}), ...(shares.length ? { shares } : {}), ...ports }),
          async (cfg, clientKey) => ({ hostname: name, instanceId: cfg.instanceId, user, fullName, passwordHash: await hashing, autologin: cfg.autologin, ssh: cfg.ssh, authorizedKeys: [clientKey, ...sshKeys] }),
          progress,
        );
        log.info(`created ${name}`);
        release();
        if (p.start) await this.d.power.startUnderLock(name, op, {}, progress);
      });
    } finally {
      release();
    }
  }

  /** Builds under the new VM's lock; its layers stay reserved until vm.json names them, or are collected when it fails. */
  private async buildVm(name: string, disk: Parameters<Builder['build']>[1], config: Parameters<Builder['build']>[2], seed: Parameters<Builder['build']>[3], progress: Progress): Promise<void> {
    const hold = this.ctx.pool.reserve();
    try {
      await this.d.builder.build(name, disk, config, seed, hold, progress);
    } catch (e) {
      hold.release();
      this.ctx.collectLayers();
      throw e;
    }
    hold.release();
    this.d.writeSshConfig();
  }

  /**
   * A new VM on a frozen layer of `source` (its current disk, frozen live, or a snapshot):
   * O(1) in disk size. The clone keeps the user and their files and gets its own identity:
   * instance id (cloud-init's per-instance setup runs again), host key, machine-id, MAC,
   * SSH port.
   */
  async clone(p: { source: string; name: string; snapshot?: string; start?: boolean }, progress: Progress): Promise<void> {
    const source = v.vmName(p.source);
    const name = v.vmName(p.name);
    const src = this.ctx.store.read(source);
    poolOverlay(src);
    this.assertNameFree(name);
    if (p.snapshot === undefined) admit(this.ctx, 'clone', source);
    const release = this.ctx.images.hold(src.image);
    const parent = this.ctx.pool.reserve();
    try {
      await this.ctx.locks.run(name, 'creating', async (op) => {
        let layer: string;
        if (p.snapshot !== undefined) {
          layer = findSnapshot(this.ctx.store.read(source), p.snapshot).layer;
          parent.add(layer);
        } else {
          layer = await this.ctx.locks.run(source, 'cloning', async () => {
            const { layer: frozen, pauseMs } = await this.d.snaps.freeze(source, undefined, null, progress);
            if (this.ctx.instance(source)) log.info(`${source}: frozen live for clone ${name}, guest stalled ${pauseMs.toFixed(1)} ms`);
            parent.add(frozen);
            return frozen;
          });
        }
        const s = this.ctx.store.read(source);
        await this.buildVm(
          name,
          { image: s.image, img: this.ctx.images.get(s.image), parent: layer, diskGiB: s.diskGiB },
          (fresh) => ({ ...s, ...fresh, provisionError: undefined, crashed: undefined, suspended: undefined, pending: undefined, snapshots: undefined, origin: undefined, clonedFrom: { vm: source, layer } }),
          async (cfg, clientKey) => ({ hostname: name, instanceId: cfg.instanceId, user: cfg.user, fullName: cfg.fullName, passwordHash: null, autologin: cfg.autologin, ssh: cfg.ssh, authorizedKeys: [clientKey], clone: true }),
          progress,
        );
        parent.release();
        release();
        log.info(`cloned ${source} to ${name} on layer ${layer}`);
        if (p.start) await this.d.power.startUnderLock(name, op, {}, progress);
      });
    } finally {
      parent.release();
      release();
    }
  }

}
