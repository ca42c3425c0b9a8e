/**
 * A small typed schema for RPC parameters: each request's parameters are declared once
 * (src/shared/rpc.ts), their TypeScript type is inferred from that declaration, and the
 * helper parses every incoming message with it before a handler runs. Leaves reuse the
 * rules in validate.ts, so a bad value gets the same one-line message everywhere.
 */
import { DevvmError } from './errors';
import { preview } from './validate';

export interface Schema<T> {
  parse(value: unknown, at: string): T;
}

export interface OptionalSchema<T> extends Schema<T | undefined> {
  readonly optional: true;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

function invalid(at: string, what: string, value: unknown): never {
  throw new DevvmError('invalid-argument', `${at} must be ${what}, got ${preview(value)}`);
}

/** A leaf checked by one of validate.ts's rules (which throw their own message). */
export function rule<T>(check: (value: unknown) => T): Schema<T> {
  return { parse: (value) => check(value) };
}

export const bool: Schema<boolean> = {
  parse: (value, at) => (typeof value === 'boolean' ? value : invalid(at, 'true or false', value)),
};

export function text(maxLength = 4096): Schema<string> {
  return {
    parse: (value, at) => {
      if (typeof value !== 'string') invalid(at, 'text', value);
      if (value.length > maxLength) throw new DevvmError('invalid-argument', `${at} is longer than ${maxLength} characters`);
      return value;
    },
  };
}

export function int(min: number, max: number): Schema<number> {
  return {
    parse: (value, at) => (typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max ? value : invalid(at, `a whole number in ${min}-${max}`, value)),
  };
}

export function oneOf<T extends string>(...values: T[]): Schema<T> {
  return {
    parse: (value, at) => ((values as unknown[]).includes(value) ? (value as T) : invalid(at, `one of ${values.join(', ')}`, value)),
  };
}

export function list<T>(item: Schema<T>, maxItems: number): Schema<T[]> {
  return {
    parse: (value, at) => {
      if (!Array.isArray(value)) invalid(at, 'a list', value);
      if (value.length > maxItems) throw new DevvmError('invalid-argument', `${at} has more than ${maxItems} entries`);
      return value.map((x, i) => item.parse(x, `${at}[${i}]`));
    },
  };
}

/** An object used as a map: keys matching `key`, at most `maxKeys` of them. */
export function record<T>(key: RegExp, item: Schema<T>, maxKeys: number): Schema<Record<string, T>> {
  return {
    parse: (value, at) => {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid(at, 'an object', value);
      const entries = Object.entries(value as Record<string, unknown>);
      if (entries.length > maxKeys) throw new DevvmError('invalid-argument', `${at} has more than ${maxKeys} entries`);
      const out: Record<string, T> = Object.create(null) as Record<string, T>;
      for (const [k, x] of entries) {
        if (!key.test(k)) throw new DevvmError('invalid-argument', `${at} has an invalid key ${preview(k)}`);
        out[k] = item.parse(x, `${at}.${k}`);
      }
      return { ...out };
    },
  };
}

export function optional<T>(s: Schema<T>): OptionalSchema<T> {
  return { optional: true, parse: (value, at) => (value === undefined ? undefined : s.parse(value, at)) };
}

type Fields = Record<string, Schema<unknown>>;
type Required<F extends Fields> = { [K in keyof F as F[K] extends OptionalSchema<unknown> ? never : K]: Infer<F[K]> };
type Optional<F extends Fields> = { [K in keyof F as F[K] extends OptionalSchema<unknown> ? K : never]?: Exclude<Infer<F[K]>, undefined> };
type Flat<T> = { [K in keyof T]: T[K] };
export type ObjectOf<F extends Fields> = Flat<Required<F> & Optional<F>>;

/** Unknown keys are refused: a client that sends what the helper does not read has drifted. */
export function object<F extends Fields>(fields: F): Schema<ObjectOf<F>> & { fields: F } {
  return {
    fields,
    parse: (value, at) => {
      if (value === null || value === undefined) value = {};
      if (typeof value !== 'object' || Array.isArray(value)) invalid(at, 'an object', value);
      const input = value as Record<string, unknown>;
      for (const key of Object.keys(input)) {
        if (!(key in fields)) throw new DevvmError('invalid-argument', `unknown parameter ${preview(key)}${at === 'params' ? '' : ` in ${at}`}`);
      }
      const out: Record<string, unknown> = {};
      for (const [key, s] of Object.entries(fields)) {
        const parsed = s.parse(input[key], key);
        if (parsed === undefined && !(s as Partial<OptionalSchema<unknown>>).optional) throw new DevvmError('invalid-argument', `${key} is required`);
        if (parsed !== undefined) out[key] = parsed;
      }
      return out as ObjectOf<F>;
    },
  };
}

/** Requests without parameters: anything but nothing (or an empty object) is refused. */
export const none: Schema<void> = {
  parse: (value) => {
    if (value === undefined || value === null || (typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0)) return undefined;
    throw new DevvmError('invalid-argument', 'this request takes no parameters');
  },
};
