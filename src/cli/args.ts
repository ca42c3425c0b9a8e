/** Argument parsing for the CLI's verbs: util.parseArgs plus the checks every verb shares. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as v from '../shared/validate';

/** A usage error: exit 2, `devvm: <message> (see "devvm --help")`. */
export class UsageError extends Error {}

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Parsed {
  values: Values;
  positionals: string[];
}

/**
 * Parses one verb's own arguments (`--json` is accepted everywhere). `positionals` is
 * the exact count or [min, max].
 */
export function parse(rawArgv: readonly string[], options: Options, positionals: number | readonly [number, number]): Parsed {
  // parseArgs reads `--cpus -1` as two options; join a negative number to its option so
  // validation can answer "out of range" instead of "ambiguous".
  const argv: string[] = [];
  for (let i = 0; i < rawArgv.length; i++) {
    const a = rawArgv[i]!;
    const next = rawArgv[i + 1];
    if (next !== undefined && /^-\d/.test(next) && options[a.replace(/^--/, '')]?.type === 'string') {
      argv.push(`${a}=${next}`);
      i++;
    } else {
      argv.push(a);
    }
  }
  let r;
  try {
    r = parseArgs({ args: argv, options: { ...options, json: { type: 'boolean' } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!.replace(/^TypeError \[\w+\]: /, ''));
  }
  const [min, max] = typeof positionals === 'number' ? [positionals, positionals] : positionals;
  if (r.positionals.length < min) throw new UsageError('missing argument');
  if (r.positionals.length > max) throw new UsageError(`unexpected argument "${r.positionals[max]}"`);
  return { values: r.values as Values, positionals: r.positionals };
}

export function int(what: string, s: unknown): number | undefined {
  if (s === undefined) return undefined;
  if (typeof s !== 'string' || !/^-?\d+$/.test(s)) throw new UsageError(`${what} must be a whole number, got ${v.preview(s)}`);
  return Number(s);
}

/** An option restricted to a few words, e.g. `--format qcow2|raw`. */
export function choice<T extends string>(what: string, s: unknown, allowed: readonly T[]): T | undefined {
  if (s === undefined) return undefined;
  if (typeof s !== 'string' || !(allowed as readonly string[]).includes(s)) throw new UsageError(`${what} must be ${allowed.join(' or ')}, got ${v.preview(s)}`);
  return s as T;
}

export function str(s: unknown): string | undefined {
  return typeof s === 'string' ? s : undefined;
}
