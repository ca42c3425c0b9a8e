/**
 * Messages between the Display tab's webview (noVNC) and the extension, which owns the
 * connection to the VM's VNC socket. The webview is untrusted: the extension parses every
 * message with `parseFromDisplay` (an unknown type, a missing, extra or bad field: null).
 * `conn` numbers the extension's socket connections, so bytes of an old one are never
 * mixed into a new one after a reconnect. No `vscode` import.
 */

/** Webview -> extension. */
export type FromDisplay =
  /** The page is loaded and listening; the extension connects only after this. */
  | { type: 'ready' }
  /** The view's size in CSS pixels (see docs/display.md), whole numbers. */
  | { type: 'size'; width: number; height: number }
  /** RFB bytes from noVNC to the VM's VNC server. */
  | { type: 'data'; conn: number; data: Uint8Array }
  /** noVNC closed its channel (it gave up on the connection). */
  | { type: 'close'; conn: number }
  /** noVNC's view of the connection, for the log. */
  | { type: 'rfb'; conn: number; event: 'connect' | 'disconnect' }
  /** The framebuffer size noVNC now shows, for the log and the resize timing. */
  | { type: 'desktop'; conn: number; width: number; height: number };

/** Extension -> webview. */
export type ToDisplay =
  /** A socket connection is open: start an RFB session on channel `conn`. */
  | { type: 'open'; conn: number }
  | { type: 'data'; conn: number; data: Uint8Array }
  /** The socket of `conn` closed. */
  | { type: 'closed'; conn: number }
  /** Shown over the screen when there is no screen to show ('' hides it). */
  | { type: 'status'; text: string }
  /** A small note in a corner, e.g. that the guest kept its size and the view scales ('' hides it). */
  | { type: 'note'; text: string };

/** noVNC sends at most its 10 KiB send buffer per message; a clipboard is chunked by it. */
export const MAX_DATA = 256 * 1024;
/** Base64 of MAX_DATA bytes. */
const MAX_BASE64 = Math.ceil(MAX_DATA / 3) * 4;

const int = (x: unknown, min: number, max: number): x is number => typeof x === 'number' && Number.isInteger(x) && x >= min && x <= max;
const conn = (x: unknown): x is number => int(x, 1, Number.MAX_SAFE_INTEGER);
const dim = (x: unknown): x is number => int(x, 1, 65535);

/**
 * The bytes of a `data` message: a Uint8Array (what postMessage carries natively, in VS Code
 * and in code-server alike) or, from older or other hosts, a base64 string. Anything else,
 * or nothing, or more than MAX_DATA: null.
 */
function bytes(x: unknown): Uint8Array | null {
  if (x instanceof Uint8Array) return x.length > 0 && x.length <= MAX_DATA ? x : null;
  if (typeof x === 'string' && x.length > 0 && x.length <= MAX_BASE64 && x.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(x)) {
    return new Uint8Array(Buffer.from(x, 'base64'));
  }
  return null;
}

export function parseFromDisplay(msg: unknown): FromDisplay | null {
  if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return null;
  const m = msg as Record<string, unknown>;
  const keys = Object.keys(m).sort().join(',');
  switch (m.type) {
    case 'ready':
      return keys === 'type' ? { type: 'ready' } : null;
    case 'size':
      return keys === 'height,type,width' && dim(m.width) && dim(m.height) ? { type: 'size', width: m.width, height: m.height } : null;
    case 'data': {
      if (keys !== 'conn,data,type' || !conn(m.conn)) return null;
      const data = bytes(m.data);
      return data ? { type: 'data', conn: m.conn, data } : null;
    }
    case 'close':
      return keys === 'conn,type' && conn(m.conn) ? { type: 'close', conn: m.conn } : null;
    case 'rfb':
      return keys === 'conn,event,type' && conn(m.conn) && (m.event === 'connect' || m.event === 'disconnect') ? { type: 'rfb', conn: m.conn, event: m.event } : null;
    case 'desktop':
      return keys === 'conn,height,type,width' && conn(m.conn) && dim(m.width) && dim(m.height) ? { type: 'desktop', conn: m.conn, width: m.width, height: m.height } : null;
    default:
      return null;
  }
}
