/**
 * The engine interface the VM manager orchestrates through. Made of small parts, as
 * Lima's pkg/driver is: lifecycle, RAM state, layer switching, devices, plus declared
 * features. QEMU (driver/qemu.ts) is the first implementation; nothing outside it speaks
 * QMP or builds QEMU arguments. A part a driver lacks is null on the instance and its
 * feature flag is false; the manager refuses it with the one `not-supported` code
 * (`unsupported()`), so a second driver needs no change to the manager.
 */
import type { DisplaySize, Size } from '../../shared/display';
import { DevvmError } from '../../shared/errors';
import type { ShareTransport } from '../../shared/types';

export interface DriverFeatures {
  /** Save and restore RAM + device state to a file (suspend, RAM snapshots). */
  ramState: boolean;
  /** Switch the top disk layer while the guest runs (live snapshots and clones). */
  liveLayerSwitch: boolean;
  /** Hot-plug disks (virtio, USB storage). */
  hotplugDisks: boolean;
  /** Pass host USB devices through. */
  usbPassthrough: boolean;
  /** A screen the guest can resize, readable by a VNC client, with screenshots. */
  display: boolean;
  /** Host ports forwarded to guest ports, added and removed while the VM runs. */
  portForward: boolean;
}

/** The disk chain, bottom to top: base (read-only), per-VM cache, pool layers (last one writable). */
export interface DiskChain {
  base: { file: string; format: string };
  cache: string;
  layers: Array<{ id: string; file: string }>;
}

/** Files of one VM the driver may create and use (all inside the VM's 0700 directory). */
export interface InstanceFiles {
  /** The engine's control channel (QEMU: the QMP socket). */
  control: string;
  serialSocket: string;
  serialLog: string;
  pidFile: string;
  log: string;
  /** The display's VNC server (a unix socket), for VMs with a display. */
  displaySocket: string;
  /** Where the engine writes a screenshot for the helper to read. */
  screendump: string;
  /** The guest agent's channel (a unix socket the engine serves, 0600). */
  agentSocket: string;
  /** The VM's own 0700 directory: share daemons' sockets (0600) live there. */
  dir: string;
  /** The share daemons (virtiofsd) of the running VM, so a restarted helper finds or ends them. */
  shareRecord: string;
}

/** A share as a device of the machine: devvm's tag (never user text), the real host folder, its transport. */
export interface ShareDevice {
  tag: string;
  hostPath: string;
  readOnly: boolean;
  transport: ShareTransport;
}

/**
 * Shared folders of a running VM. virtiofs devices come and go live (a daemon, a socket,
 * a hot-plugged device); 9p ones exist only from boot (QEMU 7.2 has no fsdev_add).
 */
export interface ShareOps {
  /** Tags of the virtiofs devices the machine has now. */
  plugged(): string[];
  /** Hot-plugs a virtiofs share; refused (not-supported) for anything the machine cannot take live. */
  plug(d: ShareDevice): Promise<void>;
  /** Unplugs a virtiofs share and ends its daemon (the guest must have unmounted it). */
  unplug(tag: string): Promise<void>;
  /** Whether `d` can be hot-plugged into this machine now, and if not why. */
  canPlug(d: ShareDevice): string | null;
}

export interface LaunchSpec {
  name: string;
  cpus: number;
  memoryMiB: number;
  disks: DiskChain;
  kernel: string | null;
  initrd: string | null;
  seed: string | null;
  /**
   * Who reads the seed: "devvm" (the image's devvm-firstboot, from fw_cfg), or by default
   * cloud-init (a NoCloud disk; the kernel command line enables cloud-init).
   */
  provision?: 'devvm';
  /** null: SSH disabled, nothing forwarded. */
  sshPort: number | null;
  mac: string;
  /** A screen at this size (its VNC server on `files.displaySocket`), or none. */
  display: Size | null;
  files: InstanceFiles;
  /** Start paused, waiting for a RAM state (`RamStateOps.load`). */
  incoming: boolean;
  /**
   * Shares: `sharedMemory` gives guest RAM a daemon can map (virtiofs; it changes the
   * machine, so a restore uses what the state was saved with); `devices` are present at boot.
   */
  shares?: { sharedMemory: boolean; devices: ShareDevice[] };
  /** Aborted by `stop --force` while the VM comes up: the launch kills what it started and fails. */
  signal?: AbortSignal;
}

/** How a VM's process ended. `expected`: the helper asked (stop, suspend) or the guest shut down. */
export interface ExitInfo {
  expected: boolean;
  /** For an unexpected end: what happened, for `VmSummary.error`. */
  reason: string;
}

export interface Lifecycle {
  readonly pid: number;
  readonly alive: boolean;
  /** The accelerator the VM runs on (kvm, tcg, hvf...). */
  readonly accelerator: string | null;
  /** Called once when the VM's process ends, whoever ended it. */
  onExit(listener: (info: ExitInfo) => void): void;
  /** Graceful (ACPI), then hard; `force` skips the graceful step. Resolves once it ended. */
  stop(force: boolean, gracefulMs: number): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** 'running' | 'paused' | whatever else the engine says. */
  runState(): Promise<string>;
  /** Let go of the VM without stopping it (helper shutdown). */
  detach(): void;
}

export interface RamStateOps {
  /** Writes the paused guest's RAM and device state to `file` (0600, flushed). */
  save(file: string): Promise<void>;
  /** Feeds `file` to an instance launched with `incoming`; resolves once it is paused and ready. */
  load(file: string): Promise<void>;
}

export interface LayerOps {
  /** The layer id the root disk reads from now. */
  top(): Promise<string | undefined>;
  /** Opens `next` ahead of a switch, so the switch itself (inside a pause or freeze) is one step. Optional. */
  prepare?(next: { id: string; file: string }): Promise<void>;
  /** Put `next` (an empty layer file whose backing is `current`) on top, live. */
  switchTop(current: string, next: { id: string; file: string }): Promise<void>;
  /** Forget a layer added for a switch that did not happen. */
  drop(id: string): Promise<void>;
}

export interface DiskAttachSpec {
  id: string;
  /** An absolute file path or an NBD URI. */
  source: string;
  /** Files: our open descriptor on the checked file, which the engine uses instead of opening the path. */
  fd: number | null;
  /** Declared, never probed: the node is opened with exactly this driver and no backing file. */
  format: 'raw' | 'qcow2';
  usb: boolean;
  readOnly: boolean;
  /** NBD over TCP with TLS-PSK: a 0700 directory holding keys.psk, and the identity in it. */
  tls?: { dir: string; identity: string };
}

export interface DeviceOps {
  /** Hot-plugs a disk; `usedSlots` are the slots other attached disks sit on. Returns its slot (virtio). */
  attachDisk(d: DiskAttachSpec, usedSlots: string[]): Promise<{ slot?: string }>;
  /** Unplugs and closes a disk, flushing it (and drops its TLS credentials, if any). */
  detachDisk(id: string): Promise<void>;
  /** Passes a host USB device; `fd` is its opened device node (the caller closes it after). */
  attachUsb(o: { id: string; fd: number; busnum: number; devnum: number; label: string }): Promise<void>;
  /** `gone`: the device was unplugged already; only the engine's record goes. */
  detachUsb(id: string, gone: boolean): Promise<void>;
}

export interface DisplayOps {
  /** The guest's framebuffer size now. */
  size(): Promise<Size>;
  /** Asks the guest for `want`; resolves with what it shows once it switched, or after `timeoutMs` with what it kept. */
  resize(want: Size, timeoutMs: number): Promise<{ size: Size; applied: boolean }>;
  /**
   * Makes the guest show `want` again, even where it believes it does: after a RAM state
   * restore the engine's screen can differ from the guest's mode (QEMU 7.2 shows the whole
   * framebuffer the guest draws into a corner of).
   */
  reassert(want: Size): Promise<void>;
  /** The screen as PNG bytes. */
  screenshot(): Promise<Buffer>;
}

/** What the guest agent tells about the guest (each null when it does not say). */
export interface GuestFacts {
  /** The IPv4 address of the VM's NIC (the one with the VM's MAC). */
  ip: string | null;
  /** The OS release's pretty name, e.g. "Debian GNU/Linux 12 (bookworm)". */
  os: string | null;
  hostname: string | null;
  uptimeSec: number | null;
}

/**
 * The guest agent (qemu-guest-agent in the guest, over a virtio-serial channel). The guest
 * may run none, or not yet: every call has a timeout and fails with `timeout` rather
 * than hang an operation.
 */
export interface AgentOps {
  /** Whether the guest has opened the agent's channel: false while no agent runs there (none, or not started yet). */
  connected(): Promise<boolean>;
  /** Resolves once the agent answers (a resync, then guest-ping). */
  ping(timeoutMs: number): Promise<void>;
  /**
   * Sets the guest's clock to the host's. `nowNs()` (ns since the epoch) is read after the
   * agent has answered a resync, just before the command goes, so a slow agent never gets a
   * stale time. Resolves once the command has gone; `applied` settles with the agent's reply,
   * which qemu-guest-agent sends only after it has also written the guest's RTC
   * (`hwclock -w`: 0.4-1 s under TCG, time a resume should not wait for).
   */
  setClock(nowNs: () => number, timeoutMs: number): Promise<{ applied: Promise<void> }>;
  /** Freezes the guest's filesystems (writes block until thaw); resolves with how many. */
  freeze(timeoutMs: number): Promise<number>;
  thaw(timeoutMs: number): Promise<number>;
  /**
   * Runs `fn` with the guest's filesystems frozen, on one agent connection (one resync:
   * the guest stalls for as few round trips as can be): freeze, `fn`, thaw, the thaw
   * always. A freeze that fails does not stop `fn` (`frozen: false`, with why); a thaw
   * that fails is reported in `thawed: false`. Rejects only with `fn`'s error. An agent
   * that does not answer within `answerMs` (default `timeoutMs`) is not waited for longer:
   * `fn` runs unfrozen.
   */
  whileFrozen<T>(fn: () => Promise<T>, timeoutMs: number, answerMs?: number): Promise<FrozenRun<T>>;
  /** Asks the guest to power off (it answers nothing when it obeys). */
  shutdown(timeoutMs: number): Promise<void>;
  /** `mac`: the NIC whose IPv4 address is wanted. */
  facts(mac: string, timeoutMs: number): Promise<GuestFacts>;
  /** The IPv4 address of the NIC with this MAC, or null while it has none (one call: readiness polls it). */
  address(mac: string, timeoutMs: number): Promise<string | null>;
  /** Runs a program in the guest as root (argument array, no shell unless `path` is one) and waits for it. Optional. */
  exec?(path: string, args: string[], timeoutMs: number): Promise<GuestExecResult>;
  /** Reads whole files in the guest (each at most `maxBytes`; null where one cannot be read), in one session. */
  readFiles(paths: readonly string[], maxBytes: number, timeoutMs: number): Promise<Array<Buffer | null>>;
  /** Like exec, for background polls: refused at once ('busy') while another call waits for the agent. */
  pollExec(argv: readonly string[], timeoutMs: number): Promise<{ exitCode: number; stdout: string }>;
}

export interface GuestExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A host port the engine's user-mode network forwards to a guest port. */
export interface HostForward {
  protocol: 'tcp' | 'udp';
  /** An IPv4 literal (validated before it gets here). */
  hostAddress: string;
  hostPort: number;
  guestPort: number;
}

export interface PortOps {
  /** Adds a forward; false when the host port cannot be bound (taken), nothing added then. */
  add(f: HostForward): Promise<boolean>;
  remove(f: Omit<HostForward, 'guestPort'>): Promise<void>;
  /** The forwards the engine has now (a restarted helper learns them here). */
  list(): Promise<HostForward[]>;
}

export interface FrozenRun<T> {
  value: T;
  frozen: boolean;
  thawed: boolean;
  /** Why the freeze or the thaw failed. */
  problem?: string;
  /** From the freeze's request to the thaw's answer: how long the guest's writers stalled. */
  frozenMs: number;
}

/** A running VM as the driver sees it; a part the driver lacks (or this VM lacks: a display) is null. */
export interface Instance extends Lifecycle {
  readonly ram: RamStateOps | null;
  readonly layers: LayerOps | null;
  readonly devices: DeviceOps | null;
  readonly display: DisplayOps | null;
  /** null: no agent channel (a driver without one, or a VM started before devvm had it). */
  readonly agent: AgentOps | null;
  /** Shared folders; absent or null: this driver shares none. */
  readonly shares?: ShareOps | null;
  /** Run-time host port forwards; null when the driver has none. */
  readonly ports: PortOps | null;
}

/** What a saved RAM state depends on from the VM's side; the driver adds its own (version, accelerator, device layout). */
export interface FingerprintParts {
  cpus: number;
  memoryMiB: number;
  image: string | null;
  kernel: string | null;
  seed: boolean;
  /** A devvm seed is a fw_cfg file, not a disk: another machine. */
  provision?: 'devvm';
  ssh: boolean;
  /** The screen is a device: a state saved with one only restores with the same one. */
  display: DisplaySize | null;
  /** Guest RAM from shared memory (virtiofs hosts), and the 9p devices present at boot (tag, read-only). */
  sharedMemory?: boolean;
  ninep?: Array<{ tag: string; readOnly: boolean }>;
}

export interface Driver {
  readonly name: string;
  readonly features: DriverFeatures;
  launch(spec: LaunchSpec): Promise<Instance>;
  /** Re-attach to a VM an earlier helper launched; null when it no longer runs. */
  attach(files: InstanceFiles): Promise<Instance | null>;
  /**
   * Clears what a VM that ended while no helper watched left behind. Returns why it ended
   * when that was not asked for (a crash, a kill), else null.
   */
  reap(files: InstanceFiles): string | null;
  /** A hash of everything a saved RAM state depends on: restoring into anything else would crash the guest. */
  fingerprint(parts: FingerprintParts): Promise<string>;
}

export function unsupported(driver: string, what: string): DevvmError {
  return new DevvmError('not-supported', `the ${driver} driver cannot ${what}`);
}

/** The part, or the `not-supported` refusal. */
export function need<T>(part: T | null, driver: string, what: string): T {
  if (part === null) throw unsupported(driver, what);
  return part;
}

/** Refuses with `not-supported` when the driver does not declare `feature`. */
export function requireFeature(d: Driver, feature: keyof DriverFeatures, what: string): void {
  if (!d.features[feature]) throw unsupported(d.name, what);
}
