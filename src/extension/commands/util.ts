/** Small pieces several command families share. No `vscode` import. */
import type { DevvmError } from '../../shared/errors';
import { Rpc } from '../../shared/rpc';
import type { VmInfo } from '../../shared/types';
import { normalizeInfo, type Node } from '../model';
import type { Cx } from './command';

/** The tree node a command was invoked on, when it is of `kind`. */
export function nodeOf<K extends Node['kind']>(arg: unknown, kind: K): Extract<Node, { kind: K }> | undefined {
  return typeof arg === 'object' && arg !== null && (arg as { kind?: unknown }).kind === kind ? (arg as Extract<Node, { kind: K }>) : undefined;
}

export function isNode(x: unknown): x is Node {
  return typeof x === 'object' && x !== null && typeof (x as { kind?: unknown }).kind === 'string';
}

/** An input box check from a validate.* rule: its message and hint, or undefined when fine. */
export function inputCheck(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    const err = e as DevvmError;
    return err.hint ? `${err.message} — ${err.hint}` : err.message;
  }
}

export async function vmInfo(cx: Cx, name: string): Promise<VmInfo> {
  return normalizeInfo(await cx.client.request(Rpc.vmInfo, { name }));
}
