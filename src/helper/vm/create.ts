/**
 * Building a new VM (create and clone): its own cache over the image's base, an overlay
 * on a parent layer, a host key, the first-boot seed, vm.json. All of it is made in a
 * staging directory no VM name can reach and renamed into place last, so a helper killed
 * half-way leaves nothing under the VM's name (the leftover goes at next start).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import type { ImageMeta, Progress } from '../images';
import type { Reservation } from '../layerpool';
import { createLayer } from '../layers';
import { freePort } from '../ports';
import { seedFile, writeDevvmSeed } from '../devvmseed';
import * as provision from '../provision';
import { randomMac } from '../qemu/args';
import { sshHostAlias } from '../sshconfig';
import { writeJsonAtomic } from '../store';
import type { VmConfig } from '../vmconfig';
import { GiB, type VmContext } from './context';

/** The external tools a new VM needs (ssh-keygen, openssl, genisoimage): a seam for unit tests. */
export interface Provisioner {
  hashPassword(password: string): Promise<string>;
  generateHostKey(file: string, comment: string): Promise<{ privateKey: string; publicKey: string }>;
  ensureClientKey(privateKeyFile: string): Promise<string>;
  /** The cloud-init NoCloud ISO. */
  writeSeed(isoFile: string, spec: provision.ProvisionSpec, workDir: string): Promise<void>;
  /** The devvm seed (images with devvm-firstboot). */
  writeDevvmSeed(file: string, spec: provision.ProvisionSpec, workDir: string): Promise<void>;
}

export const realProvisioner: Provisioner = {
  hashPassword: provision.hashPassword,
  generateHostKey: provision.generateHostKey,
  ensureClientKey: provision.ensureClientKey,
  writeSeed: provision.writeSeed,
  writeDevvmSeed,
};

export type FreshFields = Pick<VmConfig, 'name' | 'sshPort' | 'mac' | 'instanceId' | 'createdAt' | 'provisioned' | 'overlay'>;

export class Builder {
  /** SSH ports handed to VMs still being built (not yet in any vm.json). */
  private readonly pendingPorts = new Set<number>();

  constructor(
    private readonly ctx: VmContext,
    readonly provisioner: Provisioner,
    private readonly usedPorts: () => Set<number>,
  ) {}

  /**
   * Builds VM `name`; the new overlay (and `disk.parent`) stay reserved in `hold` until
   * the caller releases it, after this returned (vm.json names them) or failed (undone).
   */
  async build(
    name: string,
    disk: { image: string; img: ImageMeta; parent: string | null; diskGiB: number },
    config: (fresh: FreshFields) => VmConfig,
    seed: (cfg: VmConfig, clientKey: string) => Promise<Omit<provision.ProvisionSpec, 'hostKey'>>,
    hold: Reservation,
    progress: Progress,
  ): Promise<void> {
    const { ctx, provisioner } = this;
    const f = ctx.store.stage(name);
    let port: number | null = null;
    try {
      progress('creating disk layers');
      const { img } = disk;
      const [overlay, hostKey, clientKey] = await Promise.all([
        createLayer(f.cache, img.file, img.format).then(() =>
          ctx.pool.create({ parent: disk.parent, baseFile: img.file, baseFormat: img.format, image: disk.image, vm: name, sizeBytes: disk.diskGiB * GiB }, hold),
        ),
        provisioner.generateHostKey(f.hostKey, `devvm-${name}`),
        provisioner.ensureClientKey(ctx.home.privateKey),
      ]);
      port = await freePort(new Set([...this.usedPorts(), ...this.pendingPorts]));
      this.pendingPorts.add(port);
      const cfg = config({
        name,
        sshPort: port,
        mac: randomMac(randomBytes(3)),
        instanceId: `devvm-${randomUUID()}`,
        createdAt: new Date().toISOString(),
        provisioned: false,
        overlay: overlay.id,
      });
      progress('writing first-boot seed');
      const spec = { ...(await seed(cfg, clientKey)), hostKey };
      if (cfg.provision === 'devvm') await provisioner.writeDevvmSeed(seedFile(f, cfg.provision), spec, f.dir);
      else await provisioner.writeSeed(f.seed, spec, f.dir);
      writeFileSync(ctx.home.knownHosts(name), `${provision.knownHostsLine(sshHostAlias(name), hostKey.publicKey)}\n`, { mode: 0o600 });
      // The private host key now lives only in the seed (deleted after first setup).
      rmSync(f.hostKey, { force: true });
      rmSync(`${f.hostKey}.pub`, { force: true });
      writeJsonAtomic(f.meta, cfg);
      ctx.store.commit(f, name);
    } catch (e) {
      ctx.store.discard(f);
      rmSync(ctx.home.knownHosts(name), { force: true });
      throw e;
    } finally {
      if (port !== null) this.pendingPorts.delete(port);
    }
  }
}
