/**
 * Test only: hot-plug events from a unix socket instead of the kernel, for end-to-end
 * tests on machines with no USB bus. The helper uses it only when DEVVM_USB_UEVENT_SOCKET
 * names a path. Clients write uevent messages in the native monitor's form ("ACTION@DEVPATH"
 * then KEY=VALUE lines), each ended by a blank line, as `udevadm monitor --property` prints
 * them and test/fixtures/usb/uevents.txt records them. The messages then take the kernel's
 * path: the same UsbMonitor, the same sysfs reads, the same notifications to clients.
 */
import { lstatSync, rmSync } from 'node:fs';
import net from 'node:net';
import type { UeventSource } from './monitor';

export const UEVENT_SOCKET_ENV = 'DEVVM_USB_UEVENT_SOCKET';

/** Cuts the complete messages off a stream's text; `rest` waits for more. */
export function splitUevents(text: string): { messages: string[]; rest: string } {
  const parts = text.split('\n\n');
  const rest = parts.pop() ?? '';
  // Extra blank lines between messages are not messages.
  return { messages: parts.map((p) => p.replace(/^\n+/, '')).filter(Boolean), rest };
}

export function socketUeventSource(file: string): UeventSource {
  return {
    name: `test events from ${file} (${UEVENT_SOCKET_ENV}), not the kernel`,
    start(onMessage, onTrouble) {
      // A socket left by a killed helper would make listen fail; any other file is not ours to remove.
      try {
        if (lstatSync(file).isSocket()) rmSync(file);
      } catch {
        // nothing there
      }
      const clients = new Set<net.Socket>();
      // The helper's umask (077) makes the socket 0600: only this user can inject events.
      const srv = net.createServer((c) => {
        clients.add(c);
        let buffered = '';
        c.setEncoding('utf8');
        c.on('data', (chunk: string) => {
          const { messages, rest } = splitUevents(buffered + chunk);
          buffered = rest;
          for (const m of messages) onMessage(m);
        });
        // A last message needs no blank line after it.
        c.on('end', () => {
          const last = buffered.replace(/^\n+|\n+$/g, '');
          buffered = '';
          if (last) onMessage(last);
          c.end();
        });
        c.on('error', () => {}); // a writer going away mid-message only loses its own message
        c.on('close', () => clients.delete(c));
      });
      srv.on('error', (e: NodeJS.ErrnoException) => onTrouble?.(e));
      srv.listen(file);
      return () => {
        srv.close();
        for (const c of clients) c.destroy();
      };
    },
  };
}
