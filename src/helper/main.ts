/**
 * The helper daemon: one per DEVVM_HOME (a lock), serving RPC on helper.sock (0600).
 * Started detached by the CLI or the extension; survives them; re-attaches to running
 * VMs after its own restart.
 */
import { chmodSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { chooseAccelerator, type AccelChoice } from './accel';
import { Home } from './filenames';
import { Images } from './images';
import { acquireLock } from './lock';
import { log, setLogFile } from './log';
import { Server } from './server';
import { UsbMonitor } from './usb/monitor';
import { socketUeventSource, UEVENT_SOCKET_ENV } from './usb/socketsource';
import { SYSFS_USB_DEVICES } from './usb/sysfs';
import { Vms } from './vms';
import { asDevvmError } from '../shared/errors';
import { idleDefault } from '../shared/idle';
import { ensurePrivateHome } from '../shared/homecheck';
import { cacheDir, devvmHome } from '../shared/paths';

declare const DEVVM_VERSION: string;

async function main(): Promise<void> {
  // Every file and socket the helper or its QEMUs create is private to the user.
  process.umask(0o077);
  const home = new Home(devvmHome());
  let privacy;
  try {
    privacy = ensurePrivateHome(home.root, { fix: true });
  } catch (e) {
    // Nothing is written into a home that is not ours, not even the log.
    process.stderr.write(`devvm: ${asDevvmError(e).oneLine()}\n`);
    process.exit(1);
  }
  setLogFile(home.log);
  if (privacy.fixedMode !== null) log.warn(`${home.root} was mode ${privacy.fixedMode.toString(8).padStart(4, '0')}; made it 0700`);
  const lock = acquireLock(home.lock);
  if (!lock) {
    log.info(`another helper holds ${home.lock}; exiting`);
    process.stderr.write(`devvm: another helper is already running for ${home.root}\n`);
    process.exit(3);
  }
  const qemuBinary = process.env.DEVVM_QEMU || 'qemu-system-x86_64';
  let accel: Promise<AccelChoice> | null = null;
  const accelerator = () => (accel ??= chooseAccelerator({ qemu: qemuBinary }).then((a: AccelChoice) => {
    log.info(`accelerator: ${a.name} (${a.reason})`);
    return a;
  }));
  const images = new Images(home, cacheDir());
  // We hold the lock: whatever is in tmp was left by a helper that died mid-operation.
  const swept = images.sweepTmp();
  if (swept.length) log.info(`removed ${swept.length} stale temporary entries: ${swept.join(', ')}`);
  // ssh's ProxyCommand runs the CLI beside this bundle (dist/cli.js) with this node.
  const cli = path.join(__dirname, 'cli.js');
  let idleDefaultMin: number | null = null;
  try {
    idleDefaultMin = idleDefault(process.env.DEVVM_IDLE_SUSPEND);
  } catch (e) {
    log.warn(`DEVVM_IDLE_SUSPEND ignored: ${(e as Error).message}`);
  }
  const vms = new Vms(home, images, {
    qemuBinary,
    accelerator,
    stopTimeoutMs: Number(process.env.DEVVM_STOP_TIMEOUT_MS) || 90000,
    cliRunner: existsSync(cli) ? { node: process.execPath, cli, home: home.root, electron: Boolean(process.versions.electron) } : undefined,
    idleDefaultMin,
  });
  await vms.reattach();
  // Probe now, in the background, so the first start does not wait for it.
  void accelerator().catch((e: Error) => log.warn(`accelerator probe failed: ${e.message}`));

  // Host USB hot-plug; the helper works without it (doctor says why).
  const usbSysfsRoot = process.env.DEVVM_USB_SYSFS || SYSFS_USB_DEVICES;
  // Tests on machines with no USB bus inject events through a socket instead of netlink.
  const usbTestSocket = process.env[UEVENT_SOCKET_ENV];
  let usb: UsbMonitor | null = new UsbMonitor({ sysfsRoot: usbSysfsRoot, source: usbTestSocket ? socketUeventSource(usbTestSocket) : undefined });
  let usbUnavailable: string | undefined;
  try {
    usb.start();
    usb.on('error', (e) => log.warn(`USB monitor stopped: ${e.message}`));
    if (usbTestSocket) log.warn(`USB monitor: ${usb.sourceName}`);
  } catch (e) {
    usbUnavailable = (e as Error).message;
    log.warn(usbUnavailable);
    usb = null;
  }

  let server: Server;
  const srv = net.createServer((sock) => server.accept(sock));
  const shutdown = async (stopVms: boolean) => {
    log.info(`shutting down (stopVms=${stopVms})`);
    srv.close();
    server.closeAll();
    usb?.stop();
    await vms.shutdown(stopVms);
    rmSync(home.socket, { force: true });
    rmSync(home.pid, { force: true });
    lock.release();
    process.exit(0);
  };
  server = new Server({
    home,
    vms,
    images,
    qemuBinary,
    accelerator,
    info: { pid: process.pid, version: DEVVM_VERSION, home: home.root, startedAt: new Date().toISOString(), sshConfig: home.sshConfig },
    shutdown: (stopVms) => void shutdown(stopVms),
    usb,
    usbUnavailable,
    usbSysfsRoot,
  });
  // We hold the lock, so a leftover socket is from a dead helper.
  rmSync(home.socket, { force: true });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(home.socket, () => resolve());
  });
  chmodSync(home.socket, 0o600);
  writeFileSync(home.pid, `${process.pid}\n`, { mode: 0o600 });
  process.on('SIGTERM', () => void shutdown(false));
  process.on('SIGINT', () => void shutdown(false));
  process.on('uncaughtException', (e) => log.error(`uncaught: ${e.stack ?? e}`));
  process.on('unhandledRejection', (e) => log.error(`unhandled rejection: ${(e as Error)?.stack ?? e}`));
  log.info(`helper ${process.pid} listening on ${home.socket}`);
  vms.idle.start();
  void vms.autostart();
}

main().catch((e) => {
  log.error(`helper failed to start: ${(e as Error).stack ?? e}`);
  process.stderr.write(`devvm helper: ${(e as Error).message}\n`);
  process.exit(1);
});
