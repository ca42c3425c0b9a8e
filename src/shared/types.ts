/** Data shapes exchanged over RPC and printed by `--json`. */
import type { DisplaySize, Size } from './display';

export const VM_STATES = ['creating', 'stopped', 'starting', 'running', 'suspending', 'suspended', 'stopping', 'deleting', 'error'] as const;
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
  /** The disk's size (absent while the VM is being built). */
  diskGiB?: number;
  /** Set when state is `error`, or when provisioning failed. */
  error?: string;
  /** Present when the VM has a display: it follows the Display tab ('auto') or keeps one size. */
  display?: DisplaySize;
  /** Minutes without an SSH session or console client after which it is suspended (its own setting or the default); absent: never. */
  idleSuspendMin?: number;
  /** Started or resumed when the helper starts. */
  autostart?: boolean;
  /** Made by `devvm up` from a folder's devvm.json. */
  origin?: VmOrigin;
}

/** Which folder and which devvm.json a VM was made from (`devvm up`), so the next `up` finds it and sees changes. */
export interface VmOrigin {
  /** The folder, absolute, symlinks resolved. */
  dir: string;
  /** Of the plan the VM was made from (devvm.json with defaults, scripts by content). */
  manifestHash: string;
  /** A hash per field of that plan, to name the fields that changed. */
  fields?: Record<string, string>;
  /** The `create` steps (and dotfiles) ran to the end once. */
  createDone?: boolean;
}

/** One step of vm/provision: a bash script run in the guest, its text sent on stdin. */
export interface ProvisionStep {
  /** How output and errors name it: a script path or "provision[2]". */
  label: string;
  as: 'root' | 'user';
  script: string;
  /** A host folder copied into the guest first (tar over ssh); the script finds it in $DEVVM_FILES. */
  files?: string;
}

/** vm/provision's answer: each step that ran, in order (a failing one ends the call with an error instead). */
export interface ProvisionResult {
  steps: Array<{ label: string; exitCode: number; ms: number }>;
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
  /** Frozen layers: their id in DEVVM_HOME/layers and the snapshots that name them. */
  id?: string;
  snapshots?: string[];
}

/** A named point in a VM's history: a frozen layer, and RAM too when taken with --ram. */
export interface SnapshotInfo {
  name: string;
  /** The frozen layer's id (DEVVM_HOME/layers/<id>.qcow2). */
  layer: string;
  ram: boolean;
  createdAt: string;
}

/** One node of the layer tree (`devvm layers --json`): every frozen layer of every VM. */
export interface LayerNode {
  id: string;
  /** null: directly on top of the base image. */
  parent: string | null;
  image: string;
  file: string;
  actualSize: number;
  createdAt: string;
  /** `vm/snapshot` names that point at this layer. */
  snapshots: string[];
  /** VMs whose active chain runs through this layer. */
  usedBy: string[];
}

/** A disk hot-plugged into a running VM (gone when QEMU ends). */
export interface AttachedDisk {
  id: string;
  /** nbd://HOST:PORT/EXPORT or an absolute file path. */
  source: string;
  bus: 'virtio' | 'usb';
  readOnly: boolean;
}

/** A host USB device, read from sysfs. */
export interface HostUsbDevice {
  /** Stable while plugged: the sysfs name, bus-port path such as "1-2.3". */
  id: string;
  busnum: number;
  devnum: number;
  vendorId: string;
  productId: string;
  manufacturer?: string;
  product?: string;
  serial?: string;
  /** /dev/bus/usb/BBB/DDD */
  devnode: string;
  /** VM it is attached to, if any. */
  attachedTo?: string;
}

export interface NbdExport {
  vm: string;
  /** The exported frozen layer (a snapshot's, or a fresh one frozen for the export). */
  layer: string;
  /** nbd+unix:///EXPORT?socket=PATH by default; nbd://127.0.0.1:PORT/EXPORT with `tls`. */
  uri: string;
  /** TCP exports only: the TLS-PSK key file (0600, qemu-nbd's psk-file format) and the identity to use. */
  tls?: { pskFile: string; identity: string };
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
  snapshots: SnapshotInfo[];
  /** Hot-plugged disks and USB devices of the running QEMU. */
  disks: AttachedDisk[];
  usb: HostUsbDevice[];
  /** The guest agent, while the VM runs. */
  agent?: GuestAgentInfo;
  /** Host folders shared into the guest (kept in the VM's configuration). */
  shares: ShareInfo[];
  /** Static forwards always; automatic ones while the guest listens. */
  ports: PortForward[];
  /** Whether guest listeners are forwarded automatically now. */
  autoPorts?: AutoForwarding;
}

/** virtiofs (virtiofsd, shared memory) where the host can run it, 9p (virtio-9p-pci) otherwise. */
export type ShareTransport = 'virtiofs' | '9p';

/** A host folder shared into the guest, as configured. */
export interface ShareSpec {
  /** Absolute, on the host. */
  hostPath: string;
  /** Absolute, in the guest; default: the same as hostPath. */
  guestPath: string;
  readOnly: boolean;
}

export interface ShareInfo extends ShareSpec {
  /** What the share uses (or will use at the next start); null while it cannot be decided. */
  transport: ShareTransport | null;
  /** Mounted in the running guest now. */
  mounted: boolean;
  /** Why it is not mounted, when it should be. */
  problem?: string;
}

export type PortProtocol = 'tcp' | 'udp';

/** One host port forwarded to the guest. */
export interface PortForward {
  protocol: PortProtocol;
  /** 127.0.0.1 unless the user gave another address for a static forward. */
  hostAddress: string;
  hostPort: number;
  guestPort: number;
  /** static: `port add` / create --port, kept in the configuration; auto: a guest process listens. */
  kind: 'static' | 'auto';
  /** The guest process that listens, when known. */
  process?: string;
  /** Forwarded now (the VM runs and the host port was free). */
  active: boolean;
  /** For instance: "host port 8123 was taken; using 8124". */
  note?: string;
  /** How it is carried: QEMU's user network (hostfwd), or SSH for a socket only a guest-local address serves. */
  via?: 'hostfwd' | 'ssh';
  /** The address the guest process listens on (auto forwards). */
  guestAddress?: string;
}

/** Whether guest listeners are forwarded without asking, and why not. */
export interface AutoForwarding {
  on: boolean;
  /** Why it is off (no guest agent, the VM is not running...). */
  reason?: string;
}

/** `vm/portStatus`: a VM's forwards and whether automatic forwarding works. */
export interface PortStatus {
  name: string;
  auto: AutoForwarding;
  ports: PortForward[];
}

/**
 * What the guest agent says. `absent`: no agent has opened its channel (an image without
 * one, or not started yet); `not-answering`: one has, but did not answer in time.
 */
export interface GuestAgentInfo {
  state: 'answering' | 'not-answering' | 'absent';
  /** The IPv4 address of the VM's NIC, the OS release's pretty name, the guest's host name, seconds since boot. */
  ip?: string;
  os?: string;
  hostname?: string;
  uptimeSec?: number;
}

export interface ImageInfo {
  name: string;
  /** Where the read-only base lives: a file, or an nbd:// URI for a remote base. */
  file: string;
  format: string;
  virtualSize: number;
  actualSize: number;
  /** Of the local base file; null for a remote base, which is never read whole. */
  sha256: string | null;
  kernel: string | null;
  initrd: string | null;
  source: string;
  createdAt: string;
  /** "devvm": built here with the devvm-firstboot unit, provisioned without cloud-init (docs/firstboot.md). */
  firstBoot?: 'devvm';
  /** Built from an older version of its recipe (devvm was updated since): `image build` makes the current one. */
  outdated?: true;
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
  /** DEVVM_HOME/ssh_config as this helper writes it (clients ask instead of rebuilding the path). */
  sshConfig?: string;
}

/** `vm/display`: where a VM's screen is and what size it has. */
export interface DisplayInfo {
  name: string;
  state: VmState;
  /** null: the VM has no display (create --display, or devvm set NAME --display on). */
  display: DisplaySize | null;
  /** QEMU's VNC server (a 0600 unix socket in the VM's directory) while the VM runs. */
  socket: string | null;
  /** The guest's framebuffer now, while the VM runs. */
  size: Size | null;
  /** The size it boots at: for 'auto', the text console's limit. */
  bootSize: Size | null;
  limits: { min: Size; max: Size };
}

/** `vm/displayResize`: what was asked (after the limits) and what the guest shows now. */
export interface DisplayResizeResult {
  requested: Size;
  size: Size;
  /** false: the guest kept its size (a text console at its framebuffer's limit): the view scales. */
  applied: boolean;
  /** A newer request for this VM came in before this one went out; it was dropped. */
  superseded?: boolean;
  /** From the request's arrival to the guest's new size announced. */
  ms: number;
}

export interface Screenshot {
  /** PNG, base64. */
  png: string;
  width: number;
  height: number;
}
