/**
 * Guest listeners timed from the host, for the ports guest test and the bench: a guest
 * command over an open SSH session prints "L" the moment its socket is in the guest's
 * /proc/net/tcp as LISTEN, and the host then tries the port until it answers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { Sandbox } from './harness';

/** An HTTP GET on 127.0.0.1:port: the status code, or null when nothing answered within `timeoutMs`. */
export function httpGet(port: number, timeoutMs = 2000): Promise<number | null> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode ?? null);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

/** Whether 127.0.0.1:port accepts a TCP connection (and keeps it a moment: a hostfwd with no guest listener resets). */
export function accepts(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ host: '127.0.0.1', port });
    const t = setTimeout(() => done(false), timeoutMs);
    const done = (v: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

const hexPort = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');

export interface GuestServer {
  /** When the guest saw its socket listening (host clock, at the "L" line's arrival). */
  listeningAt: number;
  child: ChildProcess;
}

/**
 * Starts `python3 -m http.server PORT [--bind ADDR]` in the guest and resolves once the
 * guest sees it listening. It runs until `stopGuestServer`.
 */
export function startGuestServer(sb: Sandbox, vm: string, port: number, bind?: string): Promise<GuestServer> {
  // The loop reads /proc/net/tcp{,6} with grep (no ss per round); Python 3.11's http.server
  // listens on :: (dual stack) unless bound.
  const script = [
    `(python3 -m http.server ${port}${bind ? ` --bind ${bind}` : ''} >/dev/null 2>&1 &)`,
    `while ! grep -qE ':${hexPort(port)} [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6; do sleep 0.05; done`,
    'echo L',
    'sleep 100000',
  ].join('; ');
  const child = spawn('ssh', ['-F', path.join(sb.home, 'ssh_config'), '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', `devvm-${vm}`, script]);
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`the guest server on ${port} never listened`)), 120_000);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      if (out.includes('L\n')) {
        clearTimeout(t);
        resolve({ listeningAt: Date.now(), child });
      }
    });
    child.on('exit', () => reject(new Error(`ssh for the guest server on ${port} ended: ${out}`)));
  });
}

export function stopGuestServer(sb: Sandbox, vm: string, s: GuestServer, port: number): void {
  s.child.kill();
  sb.ssh(vm, [`pkill -f '[h]ttp.server ${port}'; true`]);
}

/** Ms from `since` until the host's port answers HTTP (every 20 ms), or throws after `timeoutMs`. */
export async function untilAnswers(port: number, since: number, timeoutMs: number): Promise<number> {
  for (;;) {
    if ((await accepts(port, 500)) && (await httpGet(port, 3000)) !== null) return Date.now() - since;
    if (Date.now() - since > timeoutMs) throw new Error(`127.0.0.1:${port} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
