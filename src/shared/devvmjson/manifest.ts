/**
 * devvm.json: found, parsed as JSON with comments (jsonc-parser, for offsets), checked
 * against schemas/devvm.schema.json (ajv, compiled ahead into schema-validator.generated.ts) and then by the rules validate.ts shares with
 * the helper. Every error is one line "devvm.json:LINE:COL: what", pointing at the value
 * (or the unknown key) that is wrong.
 */
import type { ErrorObject } from 'ajv';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
// The ESM build: the UMD one (package main) requires its parts at run time, which esbuild cannot bundle.
import { findNodeAtLocation, parseTree, printParseErrorCode, type Node, type ParseError } from 'jsonc-parser/lib/esm/main.js';
import { validate as compiled } from './schema-validator.generated';
import { DevvmError } from '../errors';
import * as v from '../validate';

export const MANIFEST_PATHS = ['devvm.json', path.join('.devvm', 'devvm.json')] as const;

export type Segment = string | number;

export interface ManifestShare {
  hostPath: string;
  guestPath?: string;
  readOnly?: boolean;
}

export interface ManifestPort {
  guestPort: number;
  hostPort?: number;
  protocol?: 'tcp' | 'udp';
  label?: string;
  forward?: 'static' | 'auto';
}

export interface ManifestStep {
  when: 'create' | 'start';
  as?: 'root' | 'user';
  run?: string;
  script?: string;
}

/** The file's fields as written (defaults are applied by the plan, up.ts). */
export interface ManifestFields {
  name?: string;
  image?: string;
  cpus?: number;
  memory?: number;
  disk?: number;
  user?: string;
  shares?: ManifestShare[];
  ports?: ManifestPort[];
  env?: Record<string, string>;
  provision?: ManifestStep[];
  dotfiles?: string;
  idleSuspendMinutes?: number;
  autostart?: boolean;
}

export interface Manifest {
  /** Absolute path of the file. */
  file: string;
  /** As shown in errors: devvm.json or .devvm/devvm.json. */
  shown: string;
  fields: ManifestFields;
  /** "devvm.json:LINE:COL" of the value at `at` (the nearest enclosing node that exists). */
  where(at: readonly Segment[]): string;
}

/** The devvm.json path for a folder, or null when it has none. */
export function findManifest(dir: string): string | null {
  for (const rel of MANIFEST_PATHS) {
    const file = path.join(dir, rel);
    if (existsSync(file)) return file;
  }
  return null;
}

/** `provision[2].run`, `env.HOME`, `env["A B"]`. */
export function jsonPath(at: readonly Segment[]): string {
  let out = '';
  for (const s of at) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(s)) out += out ? `.${s}` : s;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out || '(the file)';
}

function lineCol(text: string, offset: number): string {
  let line = 1;
  let col = 1;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text[i] === '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  return `${line}:${col}`;
}

const PARSE_ERRORS: Record<string, string> = {
  InvalidSymbol: 'unexpected character (names and text need double quotes)',
  InvalidNumberFormat: 'invalid number',
  PropertyNameExpected: 'a field name in double quotes was expected',
  ValueExpected: 'a value was expected',
  ColonExpected: 'a ":" was expected',
  CommaExpected: 'a "," was expected',
  CloseBraceExpected: 'a "}" was expected',
  CloseBracketExpected: 'a "]" was expected',
  EndOfFileExpected: 'nothing more was expected after the top-level value',
  InvalidCommentToken: 'invalid comment',
  UnexpectedEndOfComment: 'a comment is not closed',
  UnexpectedEndOfString: 'a string is not closed',
  UnexpectedEndOfNumber: 'a number is cut off',
  InvalidUnicode: 'invalid \\u escape',
  InvalidEscapeCharacter: 'invalid escape in a string',
  InvalidCharacter: 'a control character inside a string',
};

/** The schema's checks, compiled ahead by ajv (scripts/gen-devvm-validator.mjs): no schema compiler in the bundles. */
function validate(value: unknown): ErrorObject[] {
  const check = compiled as ((v: unknown) => boolean) & { errors?: ErrorObject[] | null };
  return check(value) ? [] : [...(check.errors ?? [])];
}

function segmentsOf(pointer: string): Segment[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s));
}

function typeName(t: string): string {
  return { integer: 'a whole number', number: 'a number', string: 'text', boolean: 'true or false', object: 'an object', array: 'a list' }[t] ?? t;
}

interface Problem {
  at: Segment[];
  /** The key itself is wrong (an unknown field): point at the key, not its value. */
  key?: boolean;
  /** Where it is, when the path alone cannot say (the second of two equal keys). */
  offset?: number;
  message: string;
}

/** One schema error as a field and a reason; null for errors another error explains better. */
function problemOf(e: ErrorObject, root: unknown): Problem | null {
  const at = segmentsOf(e.instancePath);
  const p = jsonPath(at);
  const value = at.reduce<unknown>((o, s) => (o as Record<Segment, unknown> | undefined)?.[s], root);
  // The branches of anyOf (run | script): the anyOf error itself says it.
  if (e.schemaPath.includes('/anyOf/')) return null;
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      return { at: [...at, key], key: true, message: `unknown field "${jsonPath([...at, key])}"` };
    }
    case 'propertyNames':
      return null;
    case 'pattern':
      if (e.propertyName !== undefined) {
        return { at: [...at, e.propertyName], key: true, message: `${p}: ${v.preview(e.propertyName)} is not a valid variable name (letters, digits and "_", not starting with a digit)` };
      }
      if (at[0] === 'name') return { at, message: `name: ${new DevvmError('invalid-argument', `invalid VM name ${v.preview(value)}`, 'use 1-63 lowercase letters, digits and inner dashes, like "dev" or "web-1"').oneLine()}` };
      if (at[0] === 'user') return { at, message: `user: invalid user name ${v.preview(value)} (use up to 32 lowercase letters, digits, "_" and "-", starting with a letter or "_")` };
      if (at[0] === 'image') return { at, message: `image: invalid image name ${v.preview(value)} (use the name "devvm image list" shows, like "debian-12")` };
      if (at.at(-1) === 'guestPath') return { at, message: `${p} must be an absolute path in the guest, got ${v.preview(value)}` };
      return { at, message: `${p} is not valid: ${v.preview(value)}` };
    case 'type':
      return { at, message: `${p} must be ${typeName(String(params.type))}, got ${v.preview(value)}` };
    case 'minimum':
    case 'maximum':
      return { at, message: `${p} ${String(value)} is out of range (${e.keyword === 'minimum' ? 'at least' : 'at most'} ${String(params.limit)})` };
    case 'enum':
      return { at, message: `${p} must be one of ${(params.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(', ')}, got ${v.preview(value)}` };
    case 'required':
      return { at, message: `${p} needs "${String(params.missingProperty)}"` };
    case 'anyOf':
      return { at, message: `${p} needs "run" (inline shell) or "script" (a file in this folder)` };
    case 'not':
      return { at, message: `${p} has both "run" and "script" (give one)` };
    case 'minLength':
      return { at, message: `${p} must not be empty` };
    case 'maxLength':
      return { at, message: `${p} is longer than ${String(params.limit)} characters` };
    case 'maxItems':
      return { at, message: `${p} has more than ${String(params.limit)} entries` };
    default:
      return { at, message: `${p} ${e.message ?? 'is not valid'}` };
  }
}

/** Rules beyond the schema, the same ones the helper enforces (reserved user names, ".." in image names, NUL). */
function ruleProblems(f: ManifestFields): Problem[] {
  const out: Problem[] = [];
  const check = (at: Segment[], rule: () => unknown) => {
    try {
      rule();
    } catch (e) {
      if (e instanceof DevvmError) out.push({ at, message: `${jsonPath(at)}: ${e.oneLine()}` });
      else throw e;
    }
  };
  if (f.name !== undefined) check(['name'], () => v.vmName(f.name));
  if (f.image !== undefined) check(['image'], () => v.imageName(f.image));
  if (f.user !== undefined) check(['user'], () => v.userName(f.user));
  for (const [k, value] of Object.entries(f.env ?? {})) {
    if (value.includes('\0')) out.push({ at: ['env', k], message: `${jsonPath(['env', k])} contains a NUL character, which no environment variable can hold` });
  }
  (f.provision ?? []).forEach((s, i) => {
    if (s.script !== undefined && (path.isAbsolute(s.script) || s.script.split(/[\\/]/).includes('..') || s.script.includes('\0'))) {
      out.push({ at: ['provision', i, 'script'], message: `${jsonPath(['provision', i, 'script'])} must be a path inside this folder, relative to it, got ${v.preview(s.script)}` });
    }
  });
  const seen = new Map<string, number>();
  (f.ports ?? []).forEach((port, i) => {
    if ((port.forward ?? 'static') !== 'static') return;
    const key = `${port.protocol ?? 'tcp'}/${port.hostPort ?? port.guestPort}`;
    if (seen.has(key)) out.push({ at: ['ports', i], message: `ports[${i}] uses host port ${key} again (ports[${seen.get(key)}] has it)` });
    else seen.set(key, i);
  });
  return out;
}

/** A key given twice: JSON keeps the last silently, which hides mistakes. */
function duplicateKey(node: Node | undefined, at: Segment[] = []): Problem | null {
  if (!node) return null;
  if (node.type === 'object') {
    const names = new Set<string>();
    for (const prop of node.children ?? []) {
      const keyNode = prop.children?.[0];
      const key = String(keyNode?.value);
      if (names.has(key)) return { at: [...at, key], key: true, offset: prop.offset, message: `"${jsonPath([...at, key])}" is given twice` };
      names.add(key);
      const found = duplicateKey(prop.children?.[1], [...at, key]);
      if (found) return found;
    }
  } else if (node.type === 'array') {
    for (const [i, child] of (node.children ?? []).entries()) {
      const found = duplicateKey(child, [...at, i]);
      if (found) return found;
    }
  }
  return null;
}

/**
 * Parses and checks devvm.json's text. `shown` is the name errors use. Throws
 * DevvmError('invalid-argument', "devvm.json:L:C: ...") for the first problem in the file.
 */
export function parseManifest(text: string, file: string, shown = path.basename(file)): Manifest {
  const errors: ParseError[] = [];
  const tree = parseTree(text, errors, { allowTrailingComma: true, disallowComments: false, allowEmptyContent: false });
  const fail = (offset: number, message: string): never => {
    throw new DevvmError('invalid-argument', `${shown}:${lineCol(text, offset)}: ${message}`);
  };
  if (errors.length) {
    const e = errors[0]!;
    fail(e.offset, PARSE_ERRORS[printParseErrorCode(e.error)] ?? printParseErrorCode(e.error));
  }
  if (!tree || tree.type !== 'object') fail(tree?.offset ?? 0, 'devvm.json must hold one object ({ ... })');
  const root = parseValue(tree!);
  const offsetOf = (p: Problem): number => {
    if (p.offset !== undefined) return p.offset;
    for (let n = p.at.length; n >= 0; n--) {
      const node = findNodeAtLocation(tree!, p.at.slice(0, n));
      if (!node) continue;
      // An unknown key: its property node's first child is the key.
      if (p.key && n === p.at.length && node.parent?.type === 'property') return node.parent.offset;
      return node.offset;
    }
    return tree!.offset;
  };
  const dup = duplicateKey(tree);
  const problems = [...(dup ? [dup] : []), ...validate(root).map((e) => problemOf(e, root)).filter((x): x is Problem => x !== null)];
  if (!problems.length) problems.push(...ruleProblems(root as ManifestFields));
  if (problems.length) {
    // The first in the file: fixed top to bottom, as a compiler's errors are.
    const first = problems.map((p) => ({ p, offset: offsetOf(p) })).sort((a, b) => a.offset - b.offset)[0]!;
    fail(first.offset, first.p.message);
  }
  const { $schema: _s, ...fields } = root as ManifestFields & { $schema?: string };
  return {
    file,
    shown,
    fields,
    where: (at) => `${shown}:${lineCol(text, offsetOf({ at: [...at], message: '' }))}`,
  };
}

/** The tree's value (jsonc-parser's getNodeValue keeps the last duplicate too; the check above refuses those). */
function parseValue(node: Node): unknown {
  switch (node.type) {
    case 'object':
      return Object.fromEntries((node.children ?? []).map((p) => [String(p.children![0]!.value), p.children![1] ? parseValue(p.children![1]) : undefined]));
    case 'array':
      return (node.children ?? []).map(parseValue);
    default:
      return node.value;
  }
}

/** Reads and checks the folder's devvm.json; not-found when it has none. */
export function loadManifest(dir: string): Manifest {
  const file = findManifest(dir);
  if (!file) throw new DevvmError('not-found', `no devvm.json in ${dir}`, 'add one at the folder\'s root or in .devvm/; see the README');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DevvmError('io', `cannot read ${file}: ${(e as Error).message}`);
  }
  return parseManifest(text, file, path.relative(dir, file));
}
