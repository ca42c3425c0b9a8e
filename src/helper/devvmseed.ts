/**
 * The devvm seed: first setup for images devvm builds, read by their devvm-firstboot unit
 * (images/firstboot.ts) from QEMU's fw_cfg instead of cloud-init reading a NoCloud ISO.
 * Images from elsewhere keep the cloud-init seed (provision.ts). docs/firstboot.md.
 *
 * Format: the line DEVVM_SEED_MAGIC, then one line per field, "<name> <base64>". The
 * guest's POSIX sh decodes each field into its own file and uses it as one quoted word:
 * no value is ever shell text, and base64 carries every byte of a value unchanged.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import * as v from '../shared/validate';
import type { VmFiles } from './filenames';
import { assertYamlReadable, checkedSpec, type ProvisionSpec } from './provision';
import { fsyncPath } from './store';

/** The fw_cfg file name the guest reads (/sys/firmware/qemu_fw_cfg/by_name/<it>/raw). */
export const DEVVM_SEED_FWCFG = 'opt/devvm/seed';
export const DEVVM_SEED_MAGIC = 'DEVVM-SEED 1';

/** How a VM gets its first setup: devvm's seed in fw_cfg, or cloud-init's NoCloud ISO. */
export type ProvisionPath = 'devvm' | 'cloud-init';

/**
 * Images built here from this version on carry devvm-firstboot (their metadata says
 * firstBoot "devvm"); any other image, and every image when DEVVM_PROVISION=cloud-init
 * (the bench and tests compare both paths on one image), gets the cloud-init seed.
 * devvm's seed needs direct kernel boot (the unit is in the image, the kernel beside it).
 */
export function chooseProvisionPath(img: { firstBoot?: string; kernel: string | null }, env: NodeJS.ProcessEnv = process.env): ProvisionPath {
  if (env.DEVVM_PROVISION === 'cloud-init') return 'cloud-init';
  return img.firstBoot === 'devvm' && img.kernel !== null ? 'devvm' : 'cloud-init';
}

/** Where a VM's seed lives: a different file per path, so neither is ever read as the other. */
export function seedFile(f: VmFiles, p: ProvisionPath | undefined): string {
  return p === 'devvm' ? f.devvmSeed : f.seed;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const flag = (b: boolean) => b64(b ? '1' : '0');

/** The seed's text; every value is checked as strictly as for the cloud-init seed. */
export function renderDevvmSeed(spec: ProvisionSpec): string {
  const s = checkedSpec(spec);
  // Same refusals as the cloud-init seed: a spec one path takes, the other takes too.
  assertYamlReadable(s, '');
  const fields: Array<[string, string]> = [
    ['instance-id', b64(s.instanceId)],
    ['hostname', b64(s.hostname)],
    ['user', b64(s.user)],
    ['full-name', b64(s.fullName)],
    ...(s.passwordHash === null ? [] : ([['password-hash', b64(s.passwordHash)]] as Array<[string, string]>)),
    ['autologin', flag(s.autologin)],
    ['ssh', flag(s.ssh)],
    ['clone', flag(s.clone === true)],
    ['authorized-keys', b64(s.authorizedKeys.map((k) => `${k}\n`).join(''))],
    ['host-key', b64(s.hostKey.privateKey)],
    ['host-key-pub', b64(`${s.hostKey.publicKey}\n`)],
  ];
  return `${DEVVM_SEED_MAGIC}\n${fields.map(([k, val]) => `${k} ${val}`).join('\n')}\n`;
}

/** Writes the seed at `file`, 0600 from its first byte, complete or not at all. */
export async function writeDevvmSeed(file: string, spec: ProvisionSpec, workDir: string): Promise<void> {
  v.nonEmptyPath('seed file', file);
  // Rendered first: an invalid spec fails before anything touches the disk.
  const text = renderDevvmSeed(spec);
  mkdirSync(v.nonEmptyPath('work directory', workDir), { recursive: true, mode: 0o700 });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(4).toString('hex')}`);
  try {
    // O_EXCL: never through a planted file or link; 0600: the hash and the host key stay private.
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    fsyncPath(path.dirname(file));
  } finally {
    rmSync(tmp, { force: true });
  }
}
