/**
 * The recorded USB fixture (test/fixtures/usb): a uevent stream of a flash drive plugged
 * in and pulled out, and a sysfs tree holding it and a receiver. These machines have no
 * USB bus, so unit and e2e tests replay it.
 */
import { cpSync, readFileSync, realpathSync, renameSync, symlinkSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { splitUevents } from '../src/helper/usb/socketsource';

export const USB_FIXTURES = path.join(__dirname, 'fixtures', 'usb');

/** Every recorded message ("#" lines are comments), split where the first unplug starts. */
export function recordedUevents(): { all: string[]; plugging: string[]; unplugging: string[] } {
  const text = readFileSync(path.join(USB_FIXTURES, 'uevents.txt'), 'utf8')
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n');
  const all = splitUevents(`${text}\n\n`).messages.map((m) => m.trim());
  const firstRemove = all.findIndex((m) => m.startsWith('remove@'));
  return { all, plugging: all.slice(0, firstRemove), unplugging: all.slice(firstRemove) };
}

/**
 * A private copy of the sysfs tree under `top`, where the flash drive (1-3.1) can be
 * pulled (its links and directory go, as the kernel removes them before the uevent) and
 * plugged back. `root` is what DEVVM_USB_SYSFS points at.
 */
export function sysfsCopy(top: string) {
  cpSync(path.join(USB_FIXTURES, 'sysfs'), top, { recursive: true, verbatimSymlinks: true });
  const root = path.join(top, 'bus', 'usb', 'devices');
  const flashDir = realpathSync(path.join(root, '1-3.1'));
  const aside = path.join(top, 'unplugged-1-3.1');
  const links = ['1-3.1', '1-3.1:1.0'].map((l) => ({ at: path.join(root, l), to: path.relative(root, realpathSync(path.join(root, l))) }));
  return {
    root,
    pull() {
      for (const l of links) unlinkSync(l.at);
      renameSync(flashDir, aside);
    },
    plug() {
      renameSync(aside, flashDir);
      for (const l of links) symlinkSync(l.to, l.at);
    },
  };
}

/**
 * Writes messages to a helper's DEVVM_USB_UEVENT_SOCKET, blank-line framed. Resolves once
 * the helper has closed the connection, i.e. after it has handled every message.
 */
export function sendUevents(socket: string, messages: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket, () => c.end(messages.join('\n\n')));
    c.on('error', reject);
    c.on('close', () => resolve());
  });
}
