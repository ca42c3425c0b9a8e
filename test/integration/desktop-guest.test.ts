/**
 * The debian-12-desktop image on a real guest with a display: `create --display --autologin`
 * lands the user in the X session on tty1 by itself, SSH works as on debian-12, and the
 * session follows two resizes through the path the Display tab uses (`devvm display --size`,
 * the helper's SetDesktopSize), one of them beyond the text console's 1920x1200: the
 * guest's xrandr shows each new mode and `devvm screenshot` writes a PNG of that size.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Sandbox, waitFor } from './harness';

const sb = new Sandbox('desktop');
const VM = 'desk';
const USER = 'dora';
let startedAt = 0;

before(async () => {
  const t0 = Date.now();
  sb.ok(['image', 'build', 'debian-12-desktop']);
  console.log(`# image build (or cache hit): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  sb.ok(['create', VM, '--image', 'debian-12-desktop', '--user', USER, '--display', '--autologin', '--memory', '1024']);
  startedAt = Date.now();
  const r = await sb.cliAsync(['start', VM]);
  assert.equal(r.code, 0, r.stderr);
});

after(() => sb.cleanup());

/** A command in the user's X session (startx keeps the cookie in ~/.Xauthority). */
const inX = (cmd: string[]) => sb.ssh(VM, ['env', 'DISPLAY=:0', ...cmd]);

/** The screen's current size by the guest's xrandr, and the output's mode. */
function guestMode(): { screen: string; output: string } | null {
  const r = inX(['xrandr', '--current']);
  if (r.code !== 0) return null;
  const screen = /current (\d+) x (\d+)/.exec(r.stdout);
  const output = /^Virtual-1 connected (?:primary )?(\d+x\d+)\+0\+0/m.exec(r.stdout);
  return screen && output ? { screen: `${screen[1]}x${screen[2]}`, output: output[1]! } : null;
}

/** Width and height from a PNG's IHDR chunk. */
function pngSize(file: string): string {
  const b = readFileSync(file);
  assert.equal(b.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'a PNG');
  assert.equal(b.subarray(12, 16).toString('latin1'), 'IHDR');
  return `${b.readUInt32BE(16)}x${b.readUInt32BE(20)}`;
}

test('the autologin user lands in the X session on tty1, X runs as that user in software', async () => {
  const up = await waitFor('the X session', 600_000, () => {
    const x = sb.ssh(VM, ['pgrep', '-u', USER, '-x', 'Xorg']);
    return (x.code === 0 && guestMode()) || undefined;
  });
  console.log(`# start to X session up: ${((Date.now() - startedAt) / 1000).toFixed(1)} s (first boot, cloud-init included); mode ${up.output}`);
  assert.equal(up.output, '1920x1200', 'X came up at the boot size');
  // The session is devvm's: twm and the display watcher, on vt1, without glamor. Xsession
  // takes a while under emulation after the server is up.
  const ps = await waitFor('twm and the display watcher', 120_000, () => {
    const out = sb.ssh(VM, ['ps', '-u', USER, '-o', 'args=']).stdout;
    return /^twm -f \/usr\/local\/lib\/devvm\/twmrc$/m.test(out) && /^udevadm monitor --kernel --udev --subsystem-match=drm$/m.test(out) && out;
  });
  console.log(`# start to the whole session (twm, watcher): ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
  assert.match(ps, /Xorg .*vt1/);
  const log = sb.ssh(VM, ['cat', `/home/${USER}/.local/share/xorg/Xorg.0.log`]).stdout;
  assert.match(log, /modeset\(0\)/);
  assert.doesNotMatch(log, /glamor initialized/i);
  const shot = path.join(sb.home, 'boot.png');
  sb.ok(['screenshot', VM, shot]);
  assert.equal(pngSize(shot), '1920x1200');
});

test('SSH works as on debian-12: the user, sudo, the pinned host key', () => {
  const id = sb.ssh(VM, ['id', '-nG']);
  assert.equal(id.code, 0, id.stderr);
  assert.match(id.stdout, /\bsudo\b/);
  assert.equal(sb.ssh(VM, ['sudo', '-n', 'true']).code, 0, 'passwordless sudo for a user without a password');
  assert.match(readFileSync(path.join(sb.home, 'ssh_config'), 'utf8'), /StrictHostKeyChecking yes/);
  assert.equal(sb.cli(['ssh', VM, '--', 'hostname']).stdout.trim(), VM);
});

for (const size of ['1280x720', '2048x1152']) {
  test(`the desktop follows a resize to ${size}`, async () => {
    const t0 = Date.now();
    const out = sb.json<{ resize: { requested: { width: number; height: number }; size: { width: number; height: number }; applied: boolean; ms: number } }>(['display', VM, '--size', size]);
    const cliMs = Date.now() - t0;
    const got = `${out.resize.size.width}x${out.resize.size.height}`;
    console.log(`# resize to ${size}: helper ${out.resize.ms} ms (applied ${out.resize.applied}, size ${got}), CLI ${cliMs} ms`);
    const mode = await waitFor(`the guest's xrandr to show ${size}`, 10_000, () => {
      const m = guestMode();
      return (m && m.screen === size && m.output === size && m) || undefined;
    });
    const seenMs = Date.now() - t0;
    console.log(`# ${size} seen in the guest's xrandr ${seenMs} ms after the request`);
    assert.equal(out.resize.applied, true, `the helper saw the guest take ${size} within its wait (it shows ${got})`);
    assert.equal(got, size);
    assert.deepEqual(mode, { screen: size, output: size });
    const shot = path.join(sb.home, `${size}.png`);
    sb.ok(['screenshot', VM, shot]);
    assert.equal(pngSize(shot), size, 'the screendump has the new size');
  });
}
