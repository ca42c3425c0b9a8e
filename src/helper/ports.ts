/** Loopback TCP ports: every port devvm forwards or serves binds 127.0.0.1 only. */
import net from 'node:net';

/** A port free on 127.0.0.1 now, not in `avoid` (ports other VMs are configured with). */
export function freePort(avoid: ReadonlySet<number> = new Set()): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => (avoid.has(port) ? freePort(avoid).then(resolve, reject) : resolve(port)));
    });
  });
}

export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
