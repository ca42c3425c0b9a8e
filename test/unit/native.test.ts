import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  readSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { acquireLock, acquirePidLock } from '../../src/helper/lock';
import { addonCandidates, loadNative } from '../../src/helper/native';
import { softwareOnlyKvm } from '../hostfacts';

const ROOT = path.resolve(__dirname, '..', '..');
const { addon, detail } = loadNative();
const ADDON_FILE = addonCandidates().find((f) => existsSync(f)) ?? '';
const skip = addon ? false : `native addon not loaded: ${detail}`;
if (!addon) console.log(`# skipping native addon tests: ${detail}`);

const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-native-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));


const fdOf = (s: net.Socket) => (s as unknown as { _handle: { fd: number } })._handle.fd;

/** A plain node child that tries to flock FILE and prints true/false. */
function childFlock(file: string): string {
  const code = `const a = require(process.argv[1]); const fd = require('fs').openSync(process.argv[2], 'r+');
    process.stdout.write(String(a.flock(fd, true, true)));`;
  const r = spawnSync(process.execPath, ['-e', code, ADDON_FILE, file], { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/** A child running lock.ts from sources; prints "locked" or "busy", then holds or exits. */
function lockChild(fn: 'acquireLock' | 'acquirePidLock', file: string, hold: boolean, env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const code = `const l = require(process.argv[1]).${fn}(process.argv[2]);
    process.stdout.write(l ? 'locked\\n' : 'busy\\n');
    if (l && ${hold}) setInterval(() => {}, 1000);`;
  return spawn(process.execPath, ['--import', 'tsx', '-e', code, path.join(ROOT, 'src', 'helper', 'lock.ts'), file], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

async function firstLine(child: ChildProcess): Promise<string> {
  let out = '';
  for await (const chunk of child.stdout!) {
    out += String(chunk);
    if (out.includes('\n')) break;
  }
  return out.trim();
}

async function lockChildSays(fn: 'acquireLock' | 'acquirePidLock', file: string): Promise<string> {
  const c = lockChild(fn, file, false);
  const line = await firstLine(c);
  if (c.exitCode === null) await once(c, 'exit');
  return line;
}

test('kvmProbe returns by its deadline; a software-only nested KVM is rejected', { skip }, () => {
  const deadline = 1000;
  const t = performance.now();
  const r = addon!.kvmProbe(deadline);
  const took = performance.now() - t;
  console.log(`# kvmProbe(${deadline}): ${JSON.stringify(r)} in ${Math.round(took)} ms`);
  assert.ok(took < deadline + 500, `took ${took} ms`);
  assert.equal(typeof r.ok, 'boolean');
  assert.equal(typeof r.ms, 'number');
  assert.ok(r.reason.length > 0);
  if (!existsSync('/dev/kvm')) assert.match(r.reason, /\/dev\/kvm missing/);
  if (r.ok) {
    assert.ok(r.ms <= deadline);
    assert.match(r.reason, /^KVM ran \d+M instructions in [\d.]+ ms$/);
  }
  if (softwareOnlyKvm()) {
    assert.equal(r.ok, false);
    assert.match(r.reason, /KVM too slow: probe guest did not finish within 1000 ms/);
  }
});

test('kvmProbeAsync keeps the event loop running and honours a short deadline', { skip }, async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 20);
  const t = performance.now();
  const r = await addon!.kvmProbeAsync(300);
  const took = performance.now() - t;
  clearInterval(timer);
  assert.ok(took < 300 + 500, `took ${took} ms`);
  if (!r.ok && /too slow/.test(r.reason)) assert.ok(ticks >= 5, `only ${ticks} timer ticks during the probe`);
  if (softwareOnlyKvm()) assert.equal(r.ok, false);
});

test('flock excludes a second open file and another process; kill -9 releases it', { skip }, async () => {
  const a = addon!;
  const file = path.join(dir, 'flock');
  writeFileSync(file, '');
  const fd1 = openSync(file, 'r+');
  const fd2 = openSync(file, 'r+');
  assert.equal(a.flock(fd1, true, true), true);
  assert.equal(a.flock(fd2, true, true), false, 'a second open file description is excluded');
  assert.equal(a.flock(fd2, false, true), false, 'shared waits for exclusive too');
  assert.equal(childFlock(file), 'false', 'another process is excluded');
  a.funlock(fd1);
  assert.equal(childFlock(file), 'true', 'free after funlock (the child exits, dropping its lock)');
  // shared locks coexist
  assert.equal(a.flock(fd1, false, true), true);
  assert.equal(a.flock(fd2, false, true), true);
  a.funlock(fd1);
  a.funlock(fd2);

  const code = `const a = require(process.argv[1]); const fd = require('fs').openSync(process.argv[2], 'r+');
    a.flock(fd, true, false); console.log('locked'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['-e', code, ADDON_FILE, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  assert.equal(await firstLine(child), 'locked');
  assert.equal(a.flock(fd1, true, true), false);
  child.kill('SIGKILL');
  await once(child, 'exit');
  assert.equal(a.flock(fd1, true, true), true, 'the kernel dropped the dead holder\'s lock');
  a.funlock(fd1);
  closeSync(fd1);
  closeSync(fd2);

  assert.throws(() => a.flock(987654, true, true), (e: NodeJS.ErrnoException) => e.code === 'EBADF');
  assert.throws(() => a.flock('x' as unknown as number, true, true), TypeError);
});

test('sendFd passes a pipe fd over a unix socket; the receiver reads through it', { skip }, async () => {
  const a = addon!;
  const fifo = path.join(dir, 'fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  // O_RDWR on a FIFO opens without waiting for a peer (Linux): one fd is both ends.
  const pipeFd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
  const sockPath = path.join(dir, 'fd.sock');
  // pauseOnConnect: libuv must not read the accepted socket while recvFd does.
  const server = net.createServer({ pauseOnConnect: true });
  server.listen(sockPath);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(sockPath);
  await once(client, 'connect');
  const [conn] = await accepted;
  try {
    a.sendFd(fdOf(client), pipeFd, '{"execute":"getfd","arguments":{"fdname":"x"}}');
    const got = a.recvFd(fdOf(conn), 5000);
    assert.equal(got.data, '{"execute":"getfd","arguments":{"fdname":"x"}}');
    assert.ok(got.fd >= 0 && got.fd !== pipeFd, `received fd ${got.fd}`);
    assert.ok(fstatSync(got.fd).isFIFO());
    writeSync(pipeFd, 'through the pipe');
    closeSync(pipeFd); // the received fd keeps the pipe open on its own
    const buf = Buffer.alloc(64);
    const n = readSync(got.fd, buf);
    assert.equal(buf.subarray(0, n).toString(), 'through the pipe');
    closeSync(got.fd);

    // Empty data still carries the fd (one space, which JSON parsers skip).
    const fd3 = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    a.sendFd(fdOf(client), fd3, '');
    const got2 = a.recvFd(fdOf(conn), 5000);
    assert.equal(got2.data, ' ');
    assert.ok(got2.fd >= 0);
    closeSync(got2.fd);
    closeSync(fd3);

    assert.throws(() => a.sendFd(987654, 0, 'x'), (e: NodeJS.ErrnoException) => e.code === 'EBADF');
    assert.throws(() => a.recvFd(fdOf(conn), 50), (e: NodeJS.ErrnoException) => e.code === 'ETIMEDOUT');
  } finally {
    client.destroy();
    conn.destroy();
    server.close();
  }
});

test('acquireLock (flock): exclusive across processes, free again after kill -9', { skip, timeout: 60000 }, async () => {
  const file = path.join(dir, 'helper.lock');
  const lock = acquireLock(file);
  assert.ok(lock);
  assert.equal(lock.kind, 'flock');
  assert.equal(readFileSync(file, 'utf8'), `${process.pid}\n`);
  assert.equal(acquireLock(file), null, 'a second acquire in the same process fails');
  assert.equal(await lockChildSays('acquireLock', file), 'busy');
  lock.release();
  lock.release(); // idempotent

  const holder = lockChild('acquireLock', file, true);
  assert.equal(await firstLine(holder), 'locked');
  assert.equal(acquireLock(file), null);
  holder.kill('SIGKILL');
  await once(holder, 'exit');
  const again = acquireLock(file);
  assert.ok(again, 'a kill -9\'d holder does not block the next one');
  again.release();
});

test('acquirePidLock (no addon): exclusive, stale pids and unrelated processes are taken over', { timeout: 60000 }, async () => {
  const file = path.join(dir, 'pid.lock');
  const lock = acquirePidLock(file);
  assert.ok(lock);
  assert.equal(lock.kind, 'pidfile');
  assert.equal(readFileSync(file, 'utf8'), `${process.pid}\n`);
  assert.equal(acquirePidLock(file), null);
  assert.equal(await lockChildSays('acquirePidLock', file), 'busy');
  lock.release();
  assert.equal(existsSync(file), false, 'release removes the pid file');

  // A kill -9'd holder leaves its file; its pid is dead, so the file is stale.
  const holder = lockChild('acquirePidLock', file, true);
  assert.equal(await firstLine(holder), 'locked');
  assert.equal(acquirePidLock(file), null);
  holder.kill('SIGKILL');
  await once(holder, 'exit');
  assert.ok(existsSync(file));
  const again = acquirePidLock(file);
  assert.ok(again);
  again.release();

  // A live pid that is not node/devvm (pid reuse) does not hold the lock.
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    writeFileSync(file, `${sleeper.pid}\n`);
    const taken = acquirePidLock(file);
    assert.ok(taken);
    taken.release();
  } finally {
    sleeper.kill('SIGKILL');
  }

  // acquireLock without the addon uses the pid file.
  const child = lockChild('acquireLock', file, true, { ...process.env, DEVVM_NO_NATIVE: '1' });
  assert.equal(await firstLine(child), 'locked');
  assert.equal(Number(readFileSync(file, 'utf8')), child.pid);
  assert.equal(acquirePidLock(file), null);
  child.kill('SIGKILL');
  await once(child, 'exit');
});

/** Makes the kernel send a uevent ("change" on lo); false where sysfs is read-only. */
function kernelUevent(): boolean {
  try {
    writeFileSync('/sys/class/net/lo/uevent', 'change');
    return true;
  } catch {
    return false;
  }
}

/** Sends a fake uevent to the kernel's group from user space (needs python3 and CAP_NET_ADMIN). */
function userspaceUevent(devpath: string): boolean {
  const code = `import socket, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 15)
s.bind((0, 0))
p = sys.argv[1]
s.sendto(('add@' + p + '\\0ACTION=add\\0DEVPATH=' + p + '\\0SUBSYSTEM=usb\\0DEVTYPE=usb_device\\0').encode(), (0, 1))`;
  const r = spawnSync('python3', ['-c', code, devpath], { stdio: 'ignore', timeout: 10000 });
  return r.status === 0;
}

const until = async (cond: () => boolean, ms: number) => {
  for (const end = Date.now() + ms; !cond() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 10));
  return cond();
};

/** Starts the monitor, or asserts the clear error where this container may not bind. */
function startMonitor(onMessage: (m: string) => void): { stop(): void } | null {
  try {
    return addon!.ueventMonitor(onMessage);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code !== 'EPERM' && err.code !== 'EACCES') throw e;
    assert.match(err.message, /^ueventMonitor: bind to the kernel uevent group: /);
    console.log(`# ueventMonitor cannot bind here: ${err.message}`);
    return null;
  }
}

test('ueventMonitor delivers the kernel\'s uevents only, and nothing after stop()', { skip, timeout: 30000 }, async () => {
  const a = addon!;
  assert.throws(() => a.ueventMonitor(42 as unknown as () => void), TypeError);
  assert.throws(() => a.ueventMonitor(() => {}, 42 as unknown as () => void), TypeError);
  const got: string[] = [];
  const m = startMonitor((msg) => got.push(msg));
  if (!m) return;
  try {
    const faked = userspaceUevent('/devices/devvm-fake/1-9');
    if (!kernelUevent()) {
      console.log('# /sys/class/net/lo/uevent not writable: no kernel event to observe');
      return;
    }
    const isLo = (s: string) => s.startsWith('change@/devices/virtual/net/lo\n');
    assert.ok(await until(() => got.some(isLo), 5000), `no kernel uevent arrived: ${JSON.stringify(got)}`);
    const lo = got.find(isLo)!;
    assert.match(lo, /\nACTION=change\n/);
    assert.match(lo, /\nSUBSYSTEM=net\n/);
    assert.match(lo, /\nSEQNUM=\d+$/, 'NULs become newlines, none trailing');
    assert.ok(!lo.includes('\0'));
    // The fake went out first; the kernel's arrival means it would have been seen by now.
    if (faked) assert.ok(!got.some((s) => s.includes('devvm-fake')), 'a user-space sender was accepted');
    else console.log('# could not send a user-space uevent (python3 or CAP_NET_ADMIN missing)');
  } finally {
    m.stop();
    m.stop(); // idempotent
  }
  const seen = got.length;
  kernelUevent();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(got.length, seen, 'delivered after stop()');
});

test('ueventMonitor: start/stop leaks no fds', { skip }, () => {
  const count = () => readdirSync('/proc/self/fd').length;
  const probe = startMonitor(() => {});
  if (!probe) return;
  probe.stop();
  const before = count();
  for (let i = 0; i < 20; i++) addon!.ueventMonitor(() => {}).stop();
  assert.equal(count(), before);
});

test('ueventMonitor keeps the process alive while running, and not after stop()', { skip, timeout: 30000 }, () => {
  const run = (stop: boolean, timeout: number) =>
    spawnSync(
      process.execPath,
      [
        '-e',
        `let m; try { m = require(process.argv[1]).ueventMonitor(() => {}); } catch (e) { console.log(e.code); process.exit(0); }
         console.log('started'); if (${stop}) m.stop();`,
        ADDON_FILE,
      ],
      { encoding: 'utf8', timeout },
    );
  const stopped = run(true, 10000);
  assert.equal(stopped.status, 0, stopped.stderr);
  if (stopped.stdout.trim() !== 'started') {
    assert.match(stopped.stdout, /^E(PERM|ACCES)$/m);
    return;
  }
  const running = run(false, 1500);
  assert.equal(running.stdout.trim(), 'started');
  assert.equal(running.signal, 'SIGTERM', 'an unstopped monitor should hold the event loop');
});

test('ueventMonitor: a throwing listener becomes an uncaught exception, not a silent drop', { skip, timeout: 30000 }, () => {
  const code = `let m; try { m = require(process.argv[1]).ueventMonitor(() => { throw new Error('boom'); }); } catch (e) { console.log(e.code); process.exit(0); }
    process.on('uncaughtException', (e) => { console.log('uncaught ' + e.message); m.stop(); });
    try { require('fs').writeFileSync('/sys/class/net/lo/uevent', 'change'); } catch { console.log('no trigger'); m.stop(); }`;
  const r = spawnSync(process.execPath, ['-e', code, ADDON_FILE], { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 0, r.stderr);
  if (/^(E(PERM|ACCES)|no trigger)$/m.test(r.stdout)) return;
  assert.equal(r.stdout.trim(), 'uncaught boom');
  assert.doesNotMatch(r.stderr, /DEP0168/);
});
