/**
 * QEMU command line for a VM, as a pure function of its configuration (unit-tested).
 * Every disk layer is an explicit -blockdev node so live snapshots never write
 * json:{...} backing names (MACHINE.md), and the cache layer sits behind a
 * copy-on-read filter so base reads land in the per-VM cache. PCI slots are fixed: the
 * guest's NIC is enp0s2 and the root disk is always /dev/vda (enumerated before the seed).
 */

export interface DiskChain {
  base: { file: string; format: string };
  cache: string;
  overlay: string;
}

export interface QemuSpec {
  name: string;
  accel: 'kvm' | 'tcg' | 'hvf';
  cpus: number;
  memoryMiB: number;
  disks: DiskChain;
  kernel: string | null;
  initrd: string | null;
  seed: string | null;
  /** null: SSH disabled for this VM, nothing is forwarded. */
  sshPort: number | null;
  mac: string;
  qmpSocket: string;
  serialSocket: string;
  serialLog: string;
  pidFile: string;
}

/** Root on /dev/vda with no partition table (see images/debian.ts). */
export const KERNEL_CMDLINE = 'root=/dev/vda rw console=ttyS0,115200n8 net.ifnames=1 quiet loglevel=4';

const blockdev = (o: Record<string, unknown>) => ['-blockdev', JSON.stringify(o)];

export function qemuArgs(s: QemuSpec): string[] {
  const args = [
    '-name', `guest=${s.name},debug-threads=on`,
    '-machine', 'q35',
    '-accel', s.accel === 'tcg' ? 'tcg,thread=multi' : s.accel,
    '-cpu', s.accel === 'tcg' ? 'max' : 'host',
    '-smp', String(s.cpus),
    '-m', `${s.memoryMiB}M`,
    '-nodefaults', '-no-user-config', '-display', 'none', '-vga', 'none',
    '-pidfile', s.pidFile,
    '-qmp', `unix:${s.qmpSocket},server=on,wait=off`,
    '-chardev', `socket,id=serial0,path=${s.serialSocket},server=on,wait=off,logfile=${s.serialLog},logappend=on`,
    '-serial', 'chardev:serial0',
  ];
  if (s.kernel) {
    args.push('-kernel', s.kernel, '-append', KERNEL_CMDLINE);
    if (s.initrd) args.push('-initrd', s.initrd);
  }
  const { base, cache, overlay } = s.disks;
  args.push(
    ...blockdev({ driver: 'file', filename: base.file, 'node-name': 'base-file', 'read-only': true }),
    ...blockdev({ driver: base.format, file: 'base-file', 'node-name': 'base', 'read-only': true }),
    ...blockdev({ driver: 'file', filename: cache, 'node-name': 'cache-file' }),
    ...blockdev({ driver: 'qcow2', file: 'cache-file', backing: 'base', 'node-name': 'cache' }),
    ...blockdev({ driver: 'copy-on-read', file: 'cache', 'node-name': 'cache-cor' }),
    ...blockdev({ driver: 'file', filename: overlay, 'node-name': 'overlay-file', discard: 'unmap' }),
    ...blockdev({ driver: 'qcow2', file: 'overlay-file', backing: 'cache-cor', 'node-name': 'overlay', discard: 'unmap' }),
    '-device', 'virtio-blk-pci,drive=overlay,id=disk0,addr=0x3',
  );
  if (s.seed) {
    args.push(
      ...blockdev({ driver: 'file', filename: s.seed, 'node-name': 'seed-file', 'read-only': true }),
      ...blockdev({ driver: 'raw', file: 'seed-file', 'node-name': 'seed', 'read-only': true }),
      '-device', 'virtio-blk-pci,drive=seed,id=seed0,addr=0x4',
    );
  }
  args.push(
    // Only loopback: the forwarded SSH port must not be reachable from other hosts.
    '-netdev', s.sshPort === null ? 'user,id=net0' : `user,id=net0,hostfwd=tcp:127.0.0.1:${s.sshPort}-:22`,
    '-device', `virtio-net-pci,netdev=net0,mac=${s.mac},addr=0x2`,
    '-device', 'virtio-rng-pci,addr=0x5',
    '-device', 'qemu-xhci,id=xhci,addr=0x6',
  );
  return args;
}

export function randomMac(bytes: Buffer): string {
  // 52:54:00 is QEMU's locally administered prefix.
  return ['52', '54', '00', ...[...bytes.subarray(0, 3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}
