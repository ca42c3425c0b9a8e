/** Every file name under DEVVM_HOME, in one place. Nothing else builds these paths. */
import path from 'node:path';

export class Home {
  constructor(readonly root: string) {}

  get socket() { return path.join(this.root, 'helper.sock'); }
  get lock() { return path.join(this.root, 'helper.lock'); }
  get log() { return path.join(this.root, 'helper.log'); }
  get pid() { return path.join(this.root, 'helper.pid'); }
  get sshConfig() { return path.join(this.root, 'ssh_config'); }
  get keysDir() { return path.join(this.root, 'keys'); }
  get privateKey() { return path.join(this.keysDir, 'id_ed25519'); }
  get publicKey() { return path.join(this.keysDir, 'id_ed25519.pub'); }
  knownHosts(vm: string) { return path.join(this.keysDir, `known_hosts.${vm}`); }
  get imagesDir() { return path.join(this.root, 'images'); }
  get vmsDir() { return path.join(this.root, 'vms'); }
  get tmpDir() { return path.join(this.root, 'tmp'); }
  /** Every layer above the VMs' caches (see layerpool.ts). */
  get layersDir() { return path.join(this.root, 'layers'); }
  image(name: string) { return new ImageFiles(path.join(this.imagesDir, name)); }
  vm(name: string) { return new VmFiles(path.join(this.vmsDir, name)); }
  /**
   * Where a VM is built (create, clone) and where it goes while deleted: names starting
   * with "." that no VM name can take (see validate.ts), renamed into or out of place in
   * one step, removed at helper start when a killed helper left them.
   */
  vmStaging(name: string, tag: string) { return new VmFiles(path.join(this.vmsDir, `.new-${name}-${tag}`)); }
  vmDeleting(name: string, tag: string) { return path.join(this.vmsDir, `.del-${name}-${tag}`); }
}

export class ImageFiles {
  constructor(readonly dir: string) {}
  get meta() { return path.join(this.dir, 'image.json'); }
  get disk() { return path.join(this.dir, 'disk.qcow2'); }
  get kernel() { return path.join(this.dir, 'vmlinuz'); }
  get initrd() { return path.join(this.dir, 'initrd.img'); }
}

export class VmFiles {
  constructor(readonly dir: string) {}
  get meta() { return path.join(this.dir, 'vm.json'); }
  get cache() { return path.join(this.dir, 'cache.qcow2'); }
  /** Before the layer pool: the overlay lived here (moved into the pool on next start). */
  get legacyOverlay() { return path.join(this.dir, 'overlay.qcow2'); }
  get seed() { return path.join(this.dir, 'seed.iso'); }
  /** The devvm seed (fw_cfg), for images with devvm-firstboot (see devvmseed.ts). */
  get devvmSeed() { return path.join(this.dir, 'seed.devvm'); }
  get hostKey() { return path.join(this.dir, 'ssh_host_ed25519_key'); }
  get qmp() { return path.join(this.dir, 'qmp.sock'); }
  get serial() { return path.join(this.dir, 'serial.sock'); }
  get serialLog() { return path.join(this.dir, 'serial.log'); }
  /** QEMU's VNC server for the display (made 0600; the directory is 0700 too). */
  get vnc() { return path.join(this.dir, 'vnc.sock'); }
  /** Where QEMU writes a screenshot for the helper to read (removed right after). */
  get screendump() { return path.join(this.dir, 'screendump.png'); }
  /** The guest agent's channel (virtio-serial, made 0600). */
  get qga() { return path.join(this.dir, 'qga.sock'); }
  get qemuLog() { return path.join(this.dir, 'qemu.log'); }
  get pid() { return path.join(this.dir, 'pid'); }
  /** Devices the running QEMU was started with. */
  get launch() { return path.join(this.dir, 'launch.json'); }
  /** The guest sshd's identification line, as last seen (ssh-proxy answers with it while the VM boots). */
  get sshIdent() { return path.join(this.dir, 'ssh-ident'); }
  get ramDir() { return path.join(this.dir, 'ram'); }
  get suspendState() { return path.join(this.ramDir, 'suspend.ram'); }
  /** "snapshot." then a snapshot name (no dots): never the suspend state's file, whatever the name. */
  snapshotRam(snapshot: string) { return path.join(this.ramDir, `snapshot.${snapshot}.ram`); }
  /** Where earlier versions kept a snapshot's RAM (a snapshot named "suspend" shared the suspend state's file). */
  legacySnapshotRam(snapshot: string) { return path.join(this.ramDir, `${snapshot}.ram`); }
  /** Disks hot-plugged into the running QEMU (removed when it ends). */
  get attached() { return path.join(this.dir, 'attached.json'); }
  /** The running VM's virtiofsd daemons (pid, socket, root port), removed when they end. */
  get shareRecord() { return path.join(this.dir, 'shares.json'); }
  /** What the virtiofsd daemons print. */
  get virtiofsdLog() { return path.join(this.dir, 'virtiofsd.log'); }
  /** Host USB devices passed to the running QEMU (removed when it ends). */
  get usb() { return path.join(this.dir, 'usb.json'); }
  /** The read-only NBD export of one of its layers (qemu-nbd). */
  get nbdExport() { return path.join(this.dir, 'nbd.json'); }
  get nbdPid() { return path.join(this.dir, 'nbd.pid'); }
  get nbdLog() { return path.join(this.dir, 'nbd.log'); }
  /** The default export's unix socket (0600 in this 0700 directory). */
  get nbdSocket() { return path.join(this.dir, 'nbd.sock'); }
  /** A TCP export's TLS-PSK directory (qemu's tls-creds-psk dir, holding keys.psk). */
  get nbdTlsDir() { return path.join(this.dir, 'nbd-tls'); }
  /** The TLS-PSK directory (keys.psk) of an NBD disk attached with --tls-psk, by disk id. */
  attachTls(id: string) { return path.join(this.dir, `tls-${id}`); }
  /** Whether a name in this directory is one of attachTls(). */
  isAttachTls(entry: string) { return /^tls-xd[0-9]+$/.test(entry); }
}
