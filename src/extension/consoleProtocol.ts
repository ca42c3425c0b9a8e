/**
 * Messages between the console webview (xterm.js) and the extension. The webview is
 * untrusted: the extension parses every message with `parseFromConsole`. No `vscode` import.
 */

/** Webview -> extension. */
export type FromConsole = { type: 'ready'; cols: number; rows: number } | { type: 'input'; data: string } | { type: 'resize'; cols: number; rows: number };

/** Extension -> webview. */
export type ToConsole = { type: 'data'; data: string } | { type: 'status'; text: string };

/** A paste larger than this is refused rather than streamed into a serial line. */
export const MAX_INPUT = 64 * 1024;

const dim = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x > 0 && x <= 1000;

export function parseFromConsole(msg: unknown): FromConsole | null {
  if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return null;
  const m = msg as Record<string, unknown>;
  const keys = Object.keys(m).sort().join(',');
  if ((m.type === 'ready' || m.type === 'resize') && keys === 'cols,rows,type' && dim(m.cols) && dim(m.rows)) {
    return { type: m.type, cols: m.cols, rows: m.rows };
  }
  if (m.type === 'input' && keys === 'data,type' && typeof m.data === 'string' && m.data.length > 0 && m.data.length <= MAX_INPUT) {
    return { type: 'input', data: m.data };
  }
  return null;
}
