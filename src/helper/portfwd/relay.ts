/**
 * A host listener for a guest port that only a guest-local address serves (127.0.0.1 in
 * the guest): QEMU's hostfwd connects to the guest's NIC address, which such a socket never
 * answers, so each connection is carried over SSH instead (`ssh -W ADDR:PORT`, the VM's
 * own Host block with ProxyCommand=none: a relay must never wake or boot anything).
 */
import net from 'node:net';
import { log } from '../log';
import { spawnPiped } from '../proc';

export class SshRelay {
  private readonly sockets = new Set<net.Socket>();
  private readonly kills = new Set<() => void>();

  private constructor(private readonly server: net.Server, private readonly argv: readonly string[]) {
    server.on('connection', (s) => this.relay(s));
  }

  /** Listens on `address:port`; null when the port cannot be bound (taken, privileged). */
  static listen(address: string, port: number, argv: readonly string[]): Promise<SshRelay | null> {
    return new Promise((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(null));
      server.listen({ host: address, port, exclusive: true }, () => {
        server.removeAllListeners('error');
        server.on('error', (e) => log.warn(`relay on ${address}:${port}: ${e.message}`));
        resolve(new SshRelay(server, argv));
      });
    });
  }

  private relay(sock: net.Socket): void {
    const child = spawnPiped('ssh', this.argv);
    this.sockets.add(sock);
    this.kills.add(child.kill);
    const done = () => {
      this.sockets.delete(sock);
      this.kills.delete(child.kill);
      child.kill();
      sock.destroy();
    };
    sock.on('error', done);
    sock.on('close', done);
    child.onExit(done);
    sock.pipe(child.stdin);
    child.stdout.pipe(sock);
  }

  close(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
    for (const k of this.kills) k();
  }
}
