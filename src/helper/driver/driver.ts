/**
 * The engine interface the VM manager orchestrates through (DRAFT: the engine work may
 * refine it). Made of small parts, as Lima's pkg/driver is: lifecycle, RAM state, layer
 * switching, devices, plus declared features. QEMU (driver/qemu) is the first
 * implementation; nothing outside it speaks QMP or builds QEMU arguments. A part a
 * driver lacks is refused with the one `not-supported` code (see `unsupported()`).
 */
import { DevvmError } from '../../shared/errors';

export interface DriverFeatures {
  /** Save and restore RAM + device state to a file (suspend, RAM snapshots). */
  ramState: boolean;
  /** Switch the top disk layer while the guest runs (live snapshots and clones). */
  liveLayerSwitch: boolean;
  /** Hot-plug disks (virtio, USB storage). */
  hotplugDisks: boolean;
  /** Pass host USB devices through. */
  usbPassthrough: boolean;
}

/** The disk chain, bottom to top: base (read-only), per-VM cache, pool layers (last one writable). */
export interface DiskChain {
  base: { file: string; format: string };
  cache: string;
  layers: Array<{ id: string; file: string }>;
}

/** Files of one VM the driver may create and use (all inside the VM's 0700 directory). */
export interface InstanceFiles {
  control: string;
  serialSocket: string;
  serialLog: string;
  pidFile: string;
  log: string;
}

export interface LaunchSpec {
  name: string;
  cpus: number;
  memoryMiB: number;
  disks: DiskChain;
  kernel: string | null;
  initrd: string | null;
  seed: string | null;
  /** null: SSH disabled, nothing forwarded. */
  sshPort: number | null;
  mac: string;
  files: InstanceFiles;
  /** Start paused, waiting for a RAM state (`RamState.load`). */
  incoming: boolean;
}

export interface Lifecycle {
  readonly pid: number;
  readonly alive: boolean;
  /** Called once when the VM's process ends, whoever ended it. */
  onExit(listener: () => void): void;
  /** Graceful (ACPI), then hard; `force` skips the graceful step. */
  stop(force: boolean, gracefulMs: number): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** 'running' | 'paused' | whatever else the engine says. */
  runState(): Promise<string>;
  /** Let go of the VM without stopping it (helper shutdown). */
  detach(): void;
}

export interface RamStateOps {
  save(file: string): Promise<void>;
  load(file: string): Promise<void>;
}

export interface LayerOps {
  /** The layer id the root disk reads from now. */
  top(): Promise<string | undefined>;
  /** Put `next` (an empty layer file whose backing is `current`) on top, live. */
  switchTop(current: string, next: { id: string; file: string }): Promise<void>;
  /** Forget a layer added for a switch that did not happen. */
  drop(id: string): Promise<void>;
}

export interface DeviceOps {
  attachDisk(o: { id: string; source: string; format: 'raw' | 'qcow2'; usb: boolean; readOnly: boolean; port?: string }): Promise<void>;
  detachDisk(id: string): Promise<void>;
  attachUsb(o: { id: string; fd: number | null; busnum: number; devnum: number }): Promise<void>;
  detachUsb(id: string, gone: boolean): Promise<void>;
}

/** A running VM as the driver sees it. */
export interface Instance extends Lifecycle {
  readonly ram: RamStateOps | null;
  readonly layers: LayerOps | null;
  readonly devices: DeviceOps | null;
}

export interface Driver {
  readonly name: string;
  readonly features: DriverFeatures;
  launch(spec: LaunchSpec): Promise<Instance>;
  /** Re-attach to a VM an earlier helper launched; null when it no longer runs. */
  attach(files: InstanceFiles): Promise<Instance | null>;
  /** What a saved RAM state depends on from the engine's side (version, accelerator, device layout). */
  fingerprint(): Promise<Record<string, unknown>>;
}

export function unsupported(driver: string, what: string): DevvmError {
  return new DevvmError('not-supported', `the ${driver} driver cannot ${what}`);
}
