import type { DisplaySize } from '../shared/display';
import type { VmOrigin } from '../shared/types';
import type { StaticPort } from '../shared/portspec';

/** vm.json: what a VM is. Runtime state is never stored here; it is derived (see vms.ts). */
export interface VmConfig {
  version: 1;
  name: string;
  image: string;
  user: string;
  fullName: string;
  autologin: boolean;
  ssh: boolean;
  cpus: number;
  memoryMiB: number;
  diskGiB: number;
  /** A screen (virtio-vga + VNC on vnc.sock) that follows the Display tab ('auto') or keeps a size; absent: none. */
  display?: DisplaySize;
  sshPort: number;
  /** Minutes without an SSH session or console before an idle suspend, or "off"; absent: the helper's default. */
  idleSuspend?: number | 'off';
  /** Started (or resumed) when the helper starts. */
  autostart?: boolean;
  mac: string;
  instanceId: string;
  createdAt: string;
  /** Set once the guest reported first setup done; the seed is then deleted and never attached again. */
  provisioned: boolean;
  /** "devvm": first setup by the image's devvm-firstboot from seed.devvm in fw_cfg; absent: cloud-init's seed.iso. */
  provision?: 'devvm';
  /** Why first setup failed, when it did (read from the serial log). */
  provisionError?: string;
  /**
   * The VM's QEMU ended without being asked (a crash, a kill): state `error` with this
   * reason until the next start, stop or delete. Kept here so a helper restart keeps it.
   */
  crashed?: { reason: string; at: string };
  /** Set while a RAM state file (vms/<name>/ram/suspend.ram) waits to be resumed. */
  suspended?: RamState;
  /**
   * The writable top layer's id in the layer pool; the chain below it follows the pool's
   * parent links. Absent on VMs made before the pool (overlay.qcow2 in the VM directory):
   * their next start moves it into the pool.
   */
  overlay?: string;
  snapshots?: SnapshotRecord[];
  /**
   * A live freeze under way (written before QEMU switches layers): if the helper dies
   * mid-way, its next start finishes or undoes it by asking QEMU which layer is on top.
   */
  pending?: { newOverlay: string; snapshot?: SnapshotRecord };
  /**
   * When the guest's filesystems were frozen through its agent for a live freeze (written
   * before the freeze, removed after the thaw): a helper killed in between thaws them on restart.
   */
  fsFrozen?: string;
  clonedFrom?: { vm: string; layer: string };
  /** Made by `devvm up` from a folder's devvm.json. */
  origin?: VmOrigin;
  /** Host folders shared into the guest, mounted at every boot (vm/shares.ts). */
  shares?: ShareRecord[];
  /** Static port forwards (`port add`, create --port), applied whenever the VM runs. */
  ports?: StaticPort[];
}

/** A share as configured: the host folder's real path (symlinks resolved when added), devvm's tag for it. */
export interface ShareRecord {
  hostPath: string;
  guestPath: string;
  readOnly: boolean;
  /** "devvm0".."devvm31": the mount tag, never user text. */
  tag: string;
}

/** The share devices a machine was started with (9p ones are fixed for its life) and whether its RAM is shared memory. */
export interface MachineShares {
  sharedMemory?: boolean;
  ninep?: Array<{ tag: string; hostPath: string; readOnly: boolean }>;
}

export interface RamState {
  savedAt: string;
  /** Whether the first-boot seed was attached: the restore needs the same devices. */
  seed: boolean;
  /** Whether the machine had a display, for the refusal's message (the fingerprint covers it). */
  display?: boolean;
  /** The machine's size when saved (absent in older records): restoring a RAM snapshot brings it back. */
  cpus?: number;
  memoryMiB?: number;
  /** Hash of what the state depends on (QEMU version, accelerator, CPUs, memory, image, device layout). */
  fingerprint: string;
  /** A login over SSH had worked in the saved run: after a restore, sshd answering is enough. */
  sshReady?: boolean;
  /** The machine's share devices: a restore starts the same ones (virtiofs ones were unplugged before the save). */
  shares?: MachineShares;
}

/** vms/<name>/launch.json: what the running QEMU was started with, and what it has shown. */
export interface LaunchRecord {
  seed: boolean;
  sshReady?: boolean;
  shares?: MachineShares;
}

export interface SnapshotRecord {
  name: string;
  /** The frozen layer: the disk as it was. */
  layer: string;
  createdAt: string;
  /** Set when RAM was saved too (vms/<name>/ram/snapshot.<name>.ram; older: ram/<name>.ram). */
  ram?: RamState;
}
