/**
 * QEMU command line for a VM, as a pure function of its configuration (unit-tested).
 * Every disk layer is an explicit -blockdev node so live snapshots never write
 * json:{...} backing names (MACHINE.md), and the cache layer sits behind a
 * copy-on-read filter so base reads land in the per-VM cache. PCI slots are fixed: the
 * guest's NIC is enp0s2 and the root disk is always /dev/vda (enumerated before the seed).
 */

import type { LaunchSpec } from '../driver/driver';
import { DEVVM_SEED_FWCFG } from '../devvmseed';
import { protocolNode } from '../nbd';

/** Empty PCIe root ports for hot-plugged disks (q35's root bus takes no hot-plug). */
export const HOTPLUG_PORTS = ['hp0', 'hp1', 'hp2', 'hp3'];

/**
 * Root ports of their own for virtiofs devices (boot-time and hot-plugged), so shares never
 * take a disk's slot. Only on machines with shared memory, whose fingerprint differs anyway.
 */
export const SHARE_PORTS = ['fs0', 'fs1', 'fs2', 'fs3'];

/** 9p devices sit on the root bus at fixed slots (restores need the same device set): at most this many. */
export const MAX_9P = 8;

/**
 * Bumped whenever the device set changes: a saved RAM state only restores into the
 * machine it was saved from. 3: the guest agent's virtio-serial channel (0x7).
 */
export const MACHINE_LAYOUT = 3;

/** What the QEMU command line is made from: the driver's launch spec, with the accelerator and QEMU's own files. */
export type QemuSpec = Omit<LaunchSpec, 'files' | 'incoming' | 'signal'> & {
  accel: 'kvm' | 'tcg' | 'hvf';
  qmpSocket: string;
  serialSocket: string;
  serialLog: string;
  pidFile: string;
  /** The guest agent's channel: a unix socket QEMU serves (virtio-serial port org.qemu.guest_agent.0). */
  agentSocket: string;
  /** With `display`: where QEMU's VNC server listens. */
  vncSocket?: string;
  /** Start paused, waiting for a RAM state over QMP (`migrate-incoming`). */
  incoming?: boolean;
  /** Guest RAM from a shared memfd (virtiofs needs it) and the virtiofs root ports. */
  sharedMemory?: boolean;
  /** 9p exports (`-fsdev local`), in slot order. */
  ninep?: Array<{ tag: string; hostPath: string; readOnly: boolean }>;
  /** QEMU runs as root: 9p then sets the guest's owners on host files (passthrough); else it cannot (none). */
  root?: boolean;
  /** virtiofs devices present at boot, their daemon listening on `socket`. */
  virtiofs?: Array<{ tag: string; socket: string; port: string }>;
};

/**
 * A value inside a QEMU option string ("key=value,key=value"): a comma is doubled,
 * QEMU's escape, so a path holding "," cannot end the value and add options.
 */
export function optValue(s: string): string {
  return s.replace(/,/g, ',,');
}

/**
 * Root on /dev/vda with no partition table (see images/debian.ts). The last three shorten
 * the kernel's own start under emulation (0.4-0.7 s to /init, docs/boot.md): one legacy
 * UART registered instead of four (the console is ttyS0), no timer check (the clock is
 * QEMU's), no crypto self-tests.
 */
export const KERNEL_CMDLINE = 'root=/dev/vda rw console=ttyS0,115200n8 net.ifnames=1 quiet loglevel=4 8250.nr_uarts=1 no_timer_check cryptomgr.notests';

/**
 * VMs provisioned through cloud-init: images built here disable it with
 * /etc/cloud/cloud-init.disabled, which its generator reads after the command line.
 */
export const CLOUD_INIT_ON = 'cloud-init=enabled';

const blockdev = (o: Record<string, unknown>) => ['-blockdev', JSON.stringify(o)];

export function qemuArgs(s: QemuSpec): string[] {
  const args = [
    '-name', `guest=${optValue(s.name)},debug-threads=on`,
    '-machine', s.sharedMemory ? 'q35,memory-backend=ram0' : 'q35',
    '-accel', s.accel === 'tcg' ? 'tcg,thread=multi' : s.accel,
    '-cpu', s.accel === 'tcg' ? 'max' : 'host',
    '-smp', String(s.cpus),
    '-m', `${s.memoryMiB}M`,
    // virtiofs: the daemon maps guest RAM, so it must come from a shared memfd.
    ...(s.sharedMemory ? ['-object', `memory-backend-memfd,id=ram0,size=${s.memoryMiB}M,share=on`] : []),
    '-nodefaults', '-no-user-config', '-display', 'none', '-vga', 'none',
    '-pidfile', s.pidFile,
    '-qmp', `unix:${optValue(s.qmpSocket)},server=on,wait=off`,
    '-chardev', `socket,id=serial0,path=${optValue(s.serialSocket)},server=on,wait=off,logfile=${optValue(s.serialLog)},logappend=on`,
    '-serial', 'chardev:serial0',
  ];
  if (s.kernel) {
    args.push('-kernel', s.kernel, '-append', s.provision === 'devvm' ? KERNEL_CMDLINE : `${KERNEL_CMDLINE} ${CLOUD_INIT_ON}`);
    if (s.initrd) args.push('-initrd', s.initrd);
  }
  const { base, cache, layers } = s.disks;
  if (!layers.length) throw new Error('a disk chain needs an overlay');
  args.push(
    ...blockdev(protocolNode(base.file, 'base-file', true)),
    ...blockdev({ driver: base.format, file: 'base-file', 'node-name': 'base', 'read-only': true }),
    ...blockdev({ driver: 'file', filename: cache, 'node-name': 'cache-file' }),
    ...blockdev({ driver: 'qcow2', file: 'cache-file', backing: 'base', 'node-name': 'cache' }),
    ...blockdev({ driver: 'copy-on-read', file: 'cache', 'node-name': 'cache-cor' }),
  );
  // Node names are the layer ids: after a live snapshot the new top is found by its id.
  let below = 'cache-cor';
  layers.forEach((l, i) => {
    const top = i === layers.length - 1;
    const ro = top ? { discard: 'unmap' } : { 'read-only': true };
    args.push(
      ...blockdev({ driver: 'file', filename: l.file, 'node-name': `${l.id}-file`, ...ro }),
      ...blockdev({ driver: 'qcow2', file: `${l.id}-file`, backing: below, 'node-name': l.id, ...ro }),
    );
    below = l.id;
  });
  args.push('-device', `virtio-blk-pci,drive=${below},id=disk0,addr=0x3`);
  if (s.seed && s.provision === 'devvm') {
    // A file path only: the seed's secrets never appear on the command line, which other
    // local users can read in /proc/PID/cmdline. QEMU reads the file when it starts.
    args.push('-fw_cfg', `name=${DEVVM_SEED_FWCFG},file=${optValue(s.seed)}`);
  } else if (s.seed) {
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
    // qemu-guest-agent: Debian's unit starts when the guest sees this port's name.
    '-chardev', `socket,id=qga0,path=${optValue(s.agentSocket)},server=on,wait=off`,
    '-device', 'virtio-serial-pci,id=vserial0,addr=0x7',
    '-device', 'virtserialport,bus=vserial0.0,chardev=qga0,name=org.qemu.guest_agent.0',
  );
  HOTPLUG_PORTS.forEach((id, i) => args.push('-device', `pcie-root-port,id=${id},chassis=${i + 1},addr=${(0x10 + i).toString(16)}`));
  if (s.sharedMemory) SHARE_PORTS.forEach((id, i) => args.push('-device', `pcie-root-port,id=${id},chassis=${HOTPLUG_PORTS.length + i + 1},addr=${(0x14 + i).toString(16)}`));
  args.push(...shareArgs(s));
  if (s.display) {
    if (!s.vncSocket) throw new Error('a display needs a VNC socket');
    // virtio-vga: the guest takes the size a VNC client asks for (SetDesktopSize); its first
    // mode is the boot size. A tablet gives the VNC pointer absolute coordinates. VNC only
    // on a unix socket in the VM's 0700 directory, never a TCP port.
    args.push(
      '-device', `virtio-vga,id=video0,addr=0x1,xres=${s.display.width},yres=${s.display.height}`,
      '-device', 'usb-tablet,id=tablet0,bus=xhci.0',
      '-vnc', `unix:${optValue(s.vncSocket)}`,
    );
  }
  if (s.incoming) args.push('-incoming', 'defer');
  return args;
}

/** A share's tag as devvm makes them ("devvm0".."devvm31"): never user text inside an option string. */
export const SHARE_TAG = /^devvm[0-9]{1,2}$/;

function shareArgs(s: QemuSpec): string[] {
  const out: string[] = [];
  const ninep = s.ninep ?? [];
  if (ninep.length > MAX_9P) throw new Error(`at most ${MAX_9P} 9p shares`);
  ninep.forEach((d, i) => {
    if (!SHARE_TAG.test(d.tag)) throw new Error(`bad share tag ${d.tag}`);
    // readonly=on: QEMU itself refuses writes, whatever the guest's mount says.
    out.push(
      '-fsdev', `local,id=fsd-${d.tag},path=${optValue(d.hostPath)},security_model=${s.root ? 'passthrough' : 'none'}${d.readOnly ? ',readonly=on' : ''}`,
      '-device', `virtio-9p-pci,fsdev=fsd-${d.tag},mount_tag=${d.tag},id=${d.tag},addr=0x${(0x8 + i).toString(16)}`,
    );
  });
  for (const d of s.virtiofs ?? []) {
    if (!s.sharedMemory) throw new Error('virtiofs needs shared memory');
    if (!SHARE_TAG.test(d.tag) || !SHARE_PORTS.includes(d.port)) throw new Error(`bad virtiofs device ${d.tag} on ${d.port}`);
    out.push('-chardev', `socket,id=fsc-${d.tag},path=${optValue(d.socket)}`, '-device', `vhost-user-fs-pci,chardev=fsc-${d.tag},tag=${d.tag},id=${d.tag},bus=${d.port}`);
  }
  return out;
}

export function randomMac(bytes: Buffer): string {
  // 52:54:00 is QEMU's locally administered prefix.
  return ['52', '54', '00', ...[...bytes.subarray(0, 3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}
