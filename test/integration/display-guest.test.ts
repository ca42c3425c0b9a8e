/**
 * The display on a real Debian guest: a virtio-vga screen behind a 0600 VNC socket, a
 * console that follows the sizes the Display tab asks for (through vm/displayResize, the
 * tab's own path) up to the size it booted at, screenshots of the exact size, limits,
 * and a suspend and resume that keep it all working.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import { CONSOLE_BOOT_SIZE } from '../../src/shared/display';
import { bootDebian, Sandbox, waitFor } from './harness';

const sb = new Sandbox('display');
const VM = 'shown';
interface Size {
  width: number;
  height: number;
}
interface Resize {
  requested: Size;
  size: Size;
  applied: boolean;
  ms: number;
}

const shotFile = (n: string) => path.join(sb.home, `${n}.png`);

/** devvm screenshot, then the PNG's size and whether any pixel is not black. */
function screenshot(n: string): Size & { lit: boolean } {
  const file = shotFile(n);
  sb.ok(['screenshot', VM, file]);
  const png = readFileSync(file);
  assert.equal(png.readUInt32BE(0), 0x89504e47, 'a PNG');
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length; ) {
    const len = png.readUInt32BE(at);
    if (png.toString('latin1', at + 4, at + 8) === 'IDAT') idat.push(png.subarray(at + 8, at + 8 + len));
    at += 12 + len;
  }
  // Rows of filter byte + RGB: any non-zero sample that is not a filter byte means something is drawn.
  const raw = inflateSync(Buffer.concat(idat));
  const width = png.readUInt32BE(16);
  const stride = 1 + width * 3;
  let lit = false;
  for (let i = 0; i < raw.length && !lit; i++) if (i % stride !== 0 && raw[i] !== 0) lit = true;
  return { width, height: png.readUInt32BE(20), lit };
}

/** The mode the guest's DRM connector prefers (what the VNC client asked for) and the console's rows and columns. */
function guestMode(): { mode: string; tty: string } {
  const modes = sb.ssh(VM, ['cat', '/sys/class/drm/card0-Virtual-1/modes']);
  assert.equal(modes.code, 0, modes.stderr);
  const tty = sb.ssh(VM, ['sudo', '-n', 'stty', '-F', '/dev/tty1', 'size']);
  assert.equal(tty.code, 0, tty.stderr);
  return { mode: modes.stdout.split('\n')[0]!, tty: tty.stdout.trim() };
}

const resize = (s: string) => sb.json<{ resize: Resize }>(['display', VM, '--size', s]).resize;
const current = () => sb.json<{ size: Size | null }>(['display', VM]).size;

before(async () => {
  await bootDebian(sb, VM, ['--display']);
  // SSH can answer a moment before the guest's GPU driver has taken over from VGA text mode.
  await waitFor('the guest to set its first mode', 60_000, () => current()?.width === CONSOLE_BOOT_SIZE.width);
});

after(() => sb.cleanup());

test('the screen is a 0600 unix socket in the VM directory; QEMU listens on no TCP port but SSH', () => {
  const sock = path.join(sb.home, 'vms', VM, 'vnc.sock');
  const st = statSync(sock);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
  const pid = sb.json<{ pid: number; sshPort: number }>(['info', VM]);
  const cmdline = readFileSync(`/proc/${pid.pid}/cmdline`, 'utf8').split('\0');
  assert.equal(cmdline[cmdline.indexOf('-vnc') + 1], `unix:${sock}`);
  const ss = spawnSync('ss', ['-Hltnp'], { encoding: 'utf8' });
  if (ss.status === 0) {
    const mine = ss.stdout.split('\n').filter((l) => l.includes(`pid=${pid.pid},`));
    assert.deepEqual(mine.map((l) => l.split(/\s+/)[3]), [`127.0.0.1:${pid.sshPort}`]);
  }
});

test('it boots at the console size: the guest mode, the framebuffer and the screenshot agree', () => {
  const boot = `${CONSOLE_BOOT_SIZE.width}x${CONSOLE_BOOT_SIZE.height}`;
  assert.deepEqual(current(), CONSOLE_BOOT_SIZE);
  assert.equal(guestMode().mode, boot);
  const shot = screenshot('boot');
  assert.deepEqual({ width: shot.width, height: shot.height }, CONSOLE_BOOT_SIZE);
  assert.ok(shot.lit, 'the console shows something (a login prompt)');
});

test('the guest follows two sizes asked for the way the tab asks, each within 2 s', async () => {
  for (const [w, h] of [[1024, 640], [1280, 720]] as const) {
    const r = resize(`${w}x${h}`);
    assert.equal(r.applied, true, JSON.stringify(r));
    assert.deepEqual(r.size, { width: w, height: h });
    assert.ok(r.ms < 2000, `took ${r.ms} ms`);
    assert.equal(guestMode().mode, `${w}x${h}`);
    // The console itself reflowed (the image's udev rule, 8x16 glyphs): it wraps at the new edge.
    const tty = `${Math.floor(h / 16)} ${w / 8}`;
    await waitFor(`tty1 to be ${tty}`, 5000, () => guestMode().tty === tty);
    const shot = screenshot(`${w}x${h}`);
    assert.deepEqual({ width: shot.width, height: shot.height }, { width: w, height: h });
    assert.ok(shot.lit);
  }
});

test('beyond the console limit the guest keeps a size it can show (the tab scales it), never a blank screen', () => {
  const r = resize('2048x1152');
  assert.equal(r.applied, false);
  assert.deepEqual(r.requested, { width: 2048, height: 1152 });
  assert.ok(r.size.width <= CONSOLE_BOOT_SIZE.width && r.size.height <= CONSOLE_BOOT_SIZE.height, JSON.stringify(r.size));
  const shot = screenshot('beyond');
  assert.deepEqual({ width: shot.width, height: shot.height }, r.size);
  assert.ok(shot.lit, 'not blank');
});

test('sizes are fitted to the limits: at least 640x480, the width a multiple of 8', () => {
  assert.deepEqual(resize('1001x700').requested, { width: 1000, height: 700 });
  const r = spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'dist', 'cli.js'), 'display', VM, '--size', '300x200'], { env: sb.env, encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^devvm: invalid display size "300x200" \(use "auto" or WIDTHxHEIGHT from 640x480 to 2560x1600/);
});

test('suspend and resume keep the display: same size after, and it still follows', () => {
  resize('1152x720');
  sb.ok(['suspend', VM]);
  const refused = sb.cli(['set', VM, '--display', 'off']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^devvm: cannot change VM "shown": it is suspended \(expected stopped; its saved state needs the machine it was saved from/);
  sb.ok(['resume', VM, '--wait-ssh']);
  assert.deepEqual(current(), { width: 1152, height: 720 });
  const shot = screenshot('resumed');
  assert.deepEqual({ width: shot.width, height: shot.height }, { width: 1152, height: 720 });
  const r = resize('1024x768');
  assert.equal(r.applied, true);
  assert.equal(guestMode().mode, '1024x768');
});

test('a stopped VM: no socket, the display says so, and screenshot is refused with the way out', () => {
  sb.ok(['stop', VM, '--force']);
  const info = sb.json<{ socket: string | null; size: Size | null; state: string }>(['display', VM]);
  assert.deepEqual([info.state, info.socket, info.size], ['stopped', null, null]);
  const r = sb.cli(['screenshot', VM, path.join(os.tmpdir(), 'never.png')]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `devvm: cannot take a screenshot of VM "shown": it is stopped (expected running; start it first: devvm start shown)\n`);
});
