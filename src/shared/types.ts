/** Data shapes exchanged over RPC and printed by `--json`. */

export const VM_STATES = ['creating', 'stopped', 'starting', 'running', 'suspending', 'suspended', 'stopping', 'error'] as const;
export type VmState = (typeof VM_STATES)[number];

/** One entry of `devvm list --json`. */
export interface VmSummary {
  name: string;
  state: VmState;
  image: string;
  user: string;
  sshHost: string;
  sshPort: number | null;
  cpus: number;
  memoryMiB: number;
  /** Set when state is `error`, or when provisioning failed. */
  error?: string;
}

export type LayerRole = 'overlay' | 'snapshot' | 'cache' | 'base';

export interface LayerInfo {
  role: LayerRole;
  file: string;
  format: string;
  virtualSize: number;
  actualSize: number;
  readOnly: boolean;
  /** VMs whose active chain contains this layer. */
  sharedBy: string[];
}

/** `devvm info --json`. */
export interface VmInfo extends VmSummary {
  diskGiB: number;
  fullName: string;
  autologin: boolean;
  ssh: boolean;
  provisioned: boolean;
  accelerator: string | null;
  pid: number | null;
  dir: string;
  serialLog: string;
  createdAt: string;
  layers: LayerInfo[];
}

export interface ImageInfo {
  name: string;
  /** Where the read-only base lives. */
  file: string;
  format: string;
  virtualSize: number;
  actualSize: number;
  sha256: string;
  kernel: string | null;
  initrd: string | null;
  source: string;
  createdAt: string;
  usedBy: string[];
}

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** How to fix it, when not ok. */
  fix?: string;
}

export interface DoctorReport {
  accelerator: { name: string; reason: string };
  nativeAddon: { loaded: boolean; detail: string };
  checks: DoctorCheck[];
}

export interface HelperInfo {
  pid: number;
  version: string;
  home: string;
  startedAt: string;
}
