/**
 * The debian-12-desktop recipe: what it adds to debian-12 and nothing else, and the shell
 * text it installs, run here against a scratch tree with stand-ins for the guest's tools.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { parse } from 'yaml';
import { DESKTOP_HOOK, DESKTOP_PACKAGES } from '../../src/helper/images/desktop';
import { BASE_CONFIGURE, BOOT_TUNING, CUSTOMIZE_HOOK, INITRAMFS } from '../../src/helper/images/hooks';
import { FIRSTBOOT_HOOK } from '../../src/helper/images/firstboot';
import { DEVVM_INITRD_HOOK } from '../../src/helper/images/initrd';
import { recipeHash } from '../../src/helper/images/recipe';
import { DEBIAN_12_DESKTOP_RECIPE, DEBIAN_12_RECIPE, DEBIAN_12_STOCK_RECIPE, recipeByName, RECIPE_NAMES } from '../../src/helper/images/recipes';
import { RECIPES } from '../../src/helper/images';
import { renderUserData } from '../../src/helper/provision';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-desktop-recipe-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A bin dir of stand-in commands: each logs "name args" to log and runs its body. */
function stubs(dir: string, log: string, bodies: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, body] of Object.entries(bodies)) {
    const f = path.join(dir, name);
    writeFileSync(f, `#!/bin/sh\necho "${name} $*" >> ${JSON.stringify(log)}\n${body}\n`);
    chmodSync(f, 0o755);
  }
  return dir;
}

const sh = (args: string[], env: NodeJS.ProcessEnv = {}, input = '') => spawnSync('/bin/sh', args, { encoding: 'utf8', env: { PATH: '/usr/bin:/bin', ...env }, input, timeout: 20_000 });

test('the recipes are known by name; the desktop and stock ones have their own hash', () => {
  assert.deepEqual(RECIPE_NAMES, ['debian-12', 'debian-12-desktop', 'debian-12-stock']);
  assert.deepEqual([...RECIPES], ['debian-12', 'debian-12-desktop', 'debian-12-stock']);
  assert.equal(recipeByName('debian-12'), DEBIAN_12_RECIPE);
  assert.equal(recipeByName('debian-12-desktop'), DEBIAN_12_DESKTOP_RECIPE);
  assert.equal(recipeByName('debian-12-Desktop'), undefined);
  assert.equal(recipeByName('toString'), undefined);
  assert.notEqual(recipeHash(DEBIAN_12_DESKTOP_RECIPE), recipeHash(DEBIAN_12_RECIPE));
  assert.notEqual(recipeHash(DEBIAN_12_STOCK_RECIPE), recipeHash(DEBIAN_12_RECIPE));
});

test("the stock baseline is debian-12 without the boot tuning: it keeps sshd -t, Debian's bzImage and Debian's initramfs", () => {
  const { name, customizeHook, kernel, initrd, ...rest } = DEBIAN_12_STOCK_RECIPE;
  const { name: n0, customizeHook: h0, kernel: k0, initrd: i0, ...rest0 } = DEBIAN_12_RECIPE;
  assert.equal(name, 'debian-12-stock');
  assert.equal(n0, 'debian-12');
  assert.deepEqual(rest, rest0, 'the same packages, disk and mkfs options');
  assert.equal(k0, 'pvh');
  assert.equal(kernel, undefined);
  assert.equal(i0, 'devvm');
  assert.equal(initrd, undefined);
  assert.ok(h0.includes(DEVVM_INITRD_HOOK) && !customizeHook.includes(DEVVM_INITRD_HOOK));
  assert.ok(h0.includes(BOOT_TUNING) && !customizeHook.includes(BOOT_TUNING));
  assert.doesNotMatch(h0, /ExecStartPre=\/usr\/sbin\/sshd -t/);
  assert.match(customizeHook, /ExecStartPre=\/usr\/sbin\/sshd -t/);
  for (const part of [FIRSTBOOT_HOOK, INITRAMFS, 'FSTYPE=ext4', 'serial-getty@ttyS0']) assert.ok(customizeHook.includes(part), part);
  assert.doesNotMatch(customizeHook, /MODULES=list|modprobe\.d\/devvm|apt-daily|systemd-networkd|system-generators/, "Debian's own initramfs, timers, network and generators");
});

test('the desktop recipe is debian-12 plus packages and a hook part, nothing else', () => {
  const { name, packages, customizeHook, ...rest } = DEBIAN_12_DESKTOP_RECIPE;
  const { name: n0, packages: p0, customizeHook: h0, ...rest0 } = DEBIAN_12_RECIPE;
  assert.equal(name, 'debian-12-desktop');
  assert.equal(n0, 'debian-12');
  assert.deepEqual(rest, rest0);
  // debian-12's packages first, in their order, then the desktop's
  assert.deepEqual(packages, [...p0, ...DESKTOP_PACKAGES]);
  for (const p of ['xserver-xorg-core', 'xserver-xorg-input-libinput', 'xinit', 'x11-xserver-utils']) assert.ok(packages.includes(p), p);
  // the plain hook is the two parts; the desktop part sits before the one initramfs run
  assert.equal(h0, CUSTOMIZE_HOOK);
  assert.equal(CUSTOMIZE_HOOK, BASE_CONFIGURE + FIRSTBOOT_HOOK + INITRAMFS);
  assert.equal(customizeHook, BASE_CONFIGURE + FIRSTBOOT_HOOK + DESKTOP_HOOK + INITRAMFS);
  // the lean recipe has none of it
  assert.ok(!DEBIAN_12_RECIPE.packages.some((p) => /xserver|xinit|x11|twm|xterm/.test(p)));
  assert.doesNotMatch(DEBIAN_12_RECIPE.customizeHook, /xorg|startx|xrandr/);
});

test('the hooks are valid shell', () => {
  for (const hook of [DEBIAN_12_RECIPE.customizeHook, DEBIAN_12_DESKTOP_RECIPE.customizeHook, DEBIAN_12_RECIPE.essentialHook]) {
    const r = sh(['-n', '-c', hook]);
    assert.equal(r.status, 0, r.stderr);
  }
});

// The desktop part run for real on a scratch tree, chroot standing in for the guest's tools.
const tree = path.join(tmp, 'root');
const hookLog = path.join(tmp, 'hook.log');
mkdirSync(path.join(tree, 'etc/profile.d'), { recursive: true });
const ran = sh(['-c', `set -eu\nR="$1"\n${DESKTOP_HOOK}`, 'hook', tree], { PATH: `${stubs(path.join(tmp, 'hookbin'), hookLog, { chroot: '' })}:/usr/bin:/bin` });
const guestFile = (p: string) => readFileSync(path.join(tree, p), 'utf8');

test('the desktop hook writes the X config, the session, the watcher and the login hook', () => {
  assert.equal(ran.status, 0, ran.stderr);
  assert.match(ran.stdout, /^devvm: configuring the desktop$/m);
  const xorg = guestFile('etc/X11/xorg.conf.d/20-devvm.conf');
  assert.match(xorg, /Driver "modesetting"/);
  assert.match(xorg, /Option "AccelMethod" "none"/);
  assert.match(xorg, /Option "BlankTime" "0"/);
  for (const f of ['usr/local/lib/devvm/display-follow', 'usr/local/lib/devvm/session']) {
    assert.equal(statSync(path.join(tree, f)).mode & 0o777, 0o755, f);
    assert.match(guestFile(f), /^#!\/bin\/sh\n/, f);
  }
  for (const f of ['usr/local/lib/devvm/display-follow', 'usr/local/lib/devvm/session', 'etc/profile.d/devvm-desktop.sh']) {
    const r = sh(['-n', path.join(tree, f)]);
    assert.equal(r.status, 0, `${f}: ${r.stderr}`);
  }
  // the profile snippet keeps its shell expansions for the guest (not expanded by the hook)
  assert.match(guestFile('etc/profile.d/devvm-desktop.sh'), /\[ -z "\$\{DISPLAY:-\}" \]/);
  // twm exits on a font the server lacks; the image has only the built-in "fixed" (seen on the guest: "unable to open fontset \"variable\"")
  const twmrc = guestFile('usr/local/lib/devvm/twmrc');
  for (const f of ['TitleFont', 'MenuFont', 'IconFont', 'ResizeFont', 'IconManagerFont']) assert.match(twmrc, new RegExp(`^${f} "fixed"$`, 'm'), f);
  assert.match(guestFile('usr/local/lib/devvm/session'), /^twm -f \/usr\/local\/lib\/devvm\/twmrc$/m);
  assert.match(readFileSync(hookLog, 'utf8'), /^chroot .* update-alternatives --quiet --install \/usr\/bin\/x-session-manager x-session-manager \/usr\/local\/lib\/devvm\/session 10$/m);
});

test('display-follow applies the preferred mode at start and on every drm change event, and ends when X is gone', () => {
  const log = path.join(tmp, 'follow.log');
  const events = [
    'monitor will print the received events for:',
    'KERNEL - the kernel uevent',
    'UDEV - the event which udev sends out after rule processing',
    '',
    'KERNEL[123.456789] change   /devices/pci0000:00/0000:00:01.0/drm/card0 (drm)',
    'UDEV  [123.800000] change   /devices/pci0000:00/0000:00:01.0/drm/card0 (drm)',
    'KERNEL[124.000001] add      /devices/virtual/drm/ttm (drm)',
  ].join('\\n');
  // two outputs, one of them connected, as xrandr --current prints them
  const current = `[ "$1" = --current ] && printf 'Screen 0: minimum 320 x 200, current 1920 x 1200, maximum 8192 x 8192\\nVirtual-1 connected primary 1920x1200+0+0 (normal) 0mm x 0mm\\n   1280x720      75.00 +\\n   1920x1200     75.00*\\nVirtual-2 disconnected (normal)\\n' && exit 0`;
  const follow = (name: string, xrandr: string) => {
    writeFileSync(log, '');
    const bin = stubs(path.join(tmp, name), log, {
      xrandr,
      udevadm: `[ "$*" = "monitor --kernel --udev --subsystem-match=drm" ] || exit 9\nprintf '${events}\\n'`,
    });
    const r = sh([path.join(tree, 'usr/local/lib/devvm/display-follow')], { PATH: `${bin}:/usr/bin:/bin` });
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(log, 'utf8').trim().split('\n');
  };
  // A bare "xrandr --auto" keeps an enabled output's mode (seen on the guest): each connected
  // output is named; listed once, then one xrandr per event, the kernel's and udev's (a probe
  // at the kernel's event alone sometimes still found the old mode on the guest).
  const auto = 'xrandr --output Virtual-1 --auto';
  assert.deepEqual(follow('followbin', `${current}\nexit 0`), ['xrandr --current', auto, 'udevadm monitor --kernel --udev --subsystem-match=drm', auto, auto]);
  // the output's xrandr failing at an event (outputs changed) lists them again
  const flaky = `${current}\necho x >> ${tmp}/applies; [ "$(wc -l < ${tmp}/applies)" -ne 2 ]`;
  assert.deepEqual(follow('flakybin', flaky), ['xrandr --current', auto, 'udevadm monitor --kernel --udev --subsystem-match=drm', auto, 'xrandr --current', auto, auto]);
  // X gone: the first xrandr that cannot reach it ends the watcher without reading on
  assert.deepEqual(follow('gonebin', 'exit 1'), ['xrandr --current']);
});

test('the login hook starts X only for a user on tty1 with a display device', () => {
  const log = path.join(tmp, 'profile.log');
  const run = (ttyName: string, uid: string, display?: string) => {
    writeFileSync(log, '');
    const bin = stubs(path.join(tmp, `profilebin-${ttyName.replace(/\W/g, '')}-${uid}`), log, {
      tty: `echo ${ttyName}`,
      id: `echo ${uid}`,
      startx: 'exit 0',
      udevadm: 'exit 0',
    });
    const r = sh(['-c', `. ${path.join(tree, 'etc/profile.d/devvm-desktop.sh')}`], { PATH: `${bin}:/usr/bin:/bin`, ...(display ? { DISPLAY: display } : {}) });
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(log, 'utf8');
  };
  const hasCard = (() => {
    try {
      statSync('/dev/dri/card0');
      return true;
    } catch {
      return false;
    }
  })();
  // not the first console, root, or already inside X: nothing at all
  for (const [t, u, d] of [['/dev/ttyS0', '1000'], ['/dev/pts/0', '1000'], ['/dev/tty1', '0'], ['/dev/tty1', '1000', ':0']] as const) {
    assert.doesNotMatch(run(t, u, d), /startx|udevadm/, `${t} uid ${u} DISPLAY ${d}`);
  }
  const onTty1 = run('/dev/tty1', '1000');
  if (hasCard) assert.match(onTty1, /^startx $/m);
  else assert.match(onTty1, /^udevadm settle --timeout=15$/m), assert.doesNotMatch(onTty1, /startx/, 'no display device, no X');
});

test('tty1 logs in the user whose serial autologin the seed sets up (the drop-in provision.ts writes), and no one without it', () => {
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq0kdUxVqrV2C9ONKmuyfwf8fSBK1Fi5NiXhz8QjX6l alice@laptop';
  const userData = (autologin: boolean) =>
    parse(
      renderUserData({
        hostname: 'dev', instanceId: 'devvm-1', user: 'alice_2', fullName: 'Alice', passwordHash: null, autologin, ssh: true, authorizedKeys: [key],
        hostKey: { privateKey: '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n', publicKey: key },
      }),
      { version: '1.1' },
    ) as { write_files?: Array<{ path: string; content: string }> };
  const dropin = path.join(tmp, 'autologin.conf');
  const agettyLog = path.join(tmp, 'agetty.log');
  const agetty = stubs(path.join(tmp, 'agettybin'), agettyLog, { agetty: '' });
  // The script as installed, with its two absolute paths pointed at the scratch files.
  const script = path.join(tmp, 'tty1-getty');
  writeFileSync(
    script,
    guestFile('usr/local/lib/devvm/tty1-getty').replaceAll('/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf', dropin).replaceAll('/sbin/agetty', path.join(agetty, 'agetty')),
  );
  const login = (content: string | null) => {
    writeFileSync(agettyLog, '');
    rmSync(dropin, { force: true });
    if (content !== null) writeFileSync(dropin, content);
    const r = sh([script], { TERM: 'linux' });
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(agettyLog, 'utf8').trim();
  };
  const written = userData(true).write_files?.find((f) => f.path === '/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf');
  assert.ok(written, 'provision writes the serial autologin drop-in');
  assert.equal(login(written.content), 'agetty --noclear --autologin alice_2 - linux');
  assert.equal(userData(false).write_files?.some((f) => f.path.includes('autologin')) ?? false, false);
  assert.equal(login(null), 'agetty -o -p -- \\u --noclear - linux');
  // anything else in the file names no user: a plain prompt
  assert.equal(login('[Service]\nExecStart=-/sbin/agetty --autologin "$(reboot)" - $TERM\n'), 'agetty -o -p -- \\u --noclear - linux');
  assert.match(guestFile('etc/systemd/system/getty@tty1.service.d/devvm-autologin.conf'), /^\[Service\]\nExecStart=\nExecStart=-\/usr\/local\/lib\/devvm\/tty1-getty\n$/);
});

test('the session ends its display watcher (not an X client) and the watcher children when twm ends', () => {
  const log = path.join(tmp, 'session.log');
  writeFileSync(log, '');
  const pids = path.join(tmp, 'follower.pids');
  // A stand-in watcher shaped like the real one: a shell with a pipeline of children.
  const follower = path.join(tmp, 'follower');
  writeFileSync(follower, `#!/bin/sh\nsleep 317 | cat &\necho $$ > ${pids}\nwait\n`);
  chmodSync(follower, 0o755);
  const bin = stubs(path.join(tmp, 'sessionbin'), log, { xsetroot: '', xterm: '', twm: `while [ ! -s ${pids} ]; do sleep 0.05; done; sleep 0.2` });
  const session = path.join(tmp, 'session');
  writeFileSync(session, guestFile('usr/local/lib/devvm/session').replaceAll('/usr/local/lib/devvm/display-follow', follower));
  // (its exit status is that of the last kill, which Xsession and xinit do not look at)
  const r = sh([session], { PATH: `${bin}:/usr/bin:/bin` });
  assert.equal(r.stderr, '');
  assert.match(readFileSync(log, 'utf8'), /^twm -f \/usr\/local\/lib\/devvm\/twmrc$/m);
  const pid = Number(readFileSync(pids, 'utf8'));
  const alive = () => spawnSync('pgrep', ['-f', '^sleep 317$'], { encoding: 'utf8' }).stdout.trim();
  // gone, or a zombie waiting for whoever inherited it
  const gone = () => {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) === 'Z';
    } catch {
      return true;
    }
  };
  for (let i = 0; i < 40 && (!gone() || alive()); i++) spawnSync('sleep', ['0.05']);
  assert.ok(gone(), 'the watcher is gone');
  assert.equal(alive(), '', 'its children are gone');
});
