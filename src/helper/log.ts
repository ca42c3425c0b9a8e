/**
 * Helper log: lines with an ISO timestamp, to helper.log (set by main) or stderr.
 * Kept trivial on purpose; the log is for humans reading what the helper did.
 */
import { appendFileSync } from 'node:fs';

let file: string | null = null;

export function setLogFile(path: string | null): void {
  file = path;
}

function write(level: string, msg: string): void {
  const line = `${new Date().toISOString()} ${level} ${msg}\n`;
  if (file) {
    try {
      appendFileSync(file, line, { mode: 0o600 });
      return;
    } catch {
      // fall through to stderr
    }
  }
  process.stderr.write(line);
}

export const log = {
  info: (msg: string) => write('info', msg),
  warn: (msg: string) => write('warn', msg),
  error: (msg: string) => write('error', msg),
};
