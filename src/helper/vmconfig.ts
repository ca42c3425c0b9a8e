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
  sshPort: number;
  mac: string;
  instanceId: string;
  createdAt: string;
  /** Set once cloud-init reported first setup done; the seed is then deleted and never attached again. */
  provisioned: boolean;
  /** Why first setup failed, when it did (read from the serial log). */
  provisionError?: string;
  /** Set while a RAM state file (vms/<name>/ram/suspend.ram) waits to be resumed. */
  suspended?: {
    savedAt: string;
    /** Whether the first-boot seed was attached: the restore needs the same devices. */
    seed: boolean;
    /** Hash of what the state depends on (QEMU version, accelerator, CPUs, memory, image). */
    fingerprint: string;
  };
}
