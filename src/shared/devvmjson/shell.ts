/** Quoting for text that becomes part of a bash program (sent on stdin, never on a command line). */
import { DevvmError } from '../errors';

/** One word for bash: single quotes; a quote inside is closed, escaped and reopened ('\''). */
export function shellQuote(value: string): string {
  if (value.includes('\0')) throw new DevvmError('invalid-argument', 'a value for the guest contains a NUL character');
  return `'${value.replace(/'/g, `'\\''`)}'`;
}
