/**
 * Which host port a forward gets: the one asked for (the guest's own port, or a static
 * forward's), else the next few above it, else any free one. The bind itself is the
 * test (`tryBind`: QEMU's hostfwd_add, or our relay's listen), so a port another process
 * takes between a check and the bind cannot be handed out twice.
 */
import { DevvmError } from '../../shared/errors';

/** How many ports above the wanted one are tried before any free port is taken. */
const NEARBY = 10;
const RANDOM_TRIES = 5;

export interface BoundPort {
  port: number;
  /** Set when it is not the port asked for. */
  note?: string;
}

export async function bindHostPort(
  want: number,
  avoid: ReadonlySet<number>,
  tryBind: (port: number) => Promise<boolean>,
  anyFree: () => Promise<number>,
): Promise<BoundPort> {
  const tried = new Set<number>();
  const attempt = async (port: number): Promise<boolean> => {
    if (tried.has(port) || avoid.has(port) || port < 1 || port > 65535) return false;
    tried.add(port);
    return tryBind(port);
  };
  if (await attempt(want)) return { port: want };
  const moved = (port: number): BoundPort => ({ port, note: `host port ${want} was taken; using ${port}` });
  for (let p = want + 1; p <= Math.min(65535, want + NEARBY); p++) if (await attempt(p)) return moved(p);
  for (let i = 0; i < RANDOM_TRIES; i++) {
    const p = await anyFree();
    if (await attempt(p)) return moved(p);
  }
  throw new DevvmError('busy', `no free host port for ${want}`, 'free some ports on 127.0.0.1 and try again');
}
