/**
 * `devvm up DIR` and the extension's "Open Folder in Dev VM": make or reuse the VM a
 * folder's devvm.json declares, share the folder, provision, and say where to connect.
 * One implementation for both clients (issue 14); the interface is fixed here first so the
 * CLI and the extension can be built against it at the same time.
 */
import type { MessageConnection } from 'vscode-jsonrpc';
import { DevvmError } from '../errors';

/** Where long work reports to: the CLI's progress line and stdout, the extension's notification and output channel. */
export interface UpReporter {
  /** A step, for a progress line ("creating VM web", "provisioning 2/4: setup.sh"). */
  step(message: string): void;
  /** Provisioning output as it comes, with each script's exit status. */
  output(chunk: string): void;
}

export interface UpOptions {
  /** The folder holding devvm.json (or .devvm/devvm.json). */
  dir: string;
  /** The folder is trusted (the extension: workspace trust; the CLI: the user ran it). Nothing from the repository runs otherwise. */
  trusted: boolean;
  /** devvm.json changed since the VM was made: make a new VM from the file (the old one is kept until the new one works). */
  rebuild?: boolean;
  /** devvm.json changed: apply what can change in place (ports, env, size with a restart). */
  apply?: boolean;
}

export interface UpResult {
  name: string;
  created: boolean;
  /** The folder's path in the guest (what Remote-SSH opens). */
  guestPath: string;
  /** The ssh_config host: devvm-<name>. */
  sshHost: string;
  /** devvm.json fields that differ from the VM (empty: up to date). Reported, not acted on, unless rebuild or apply. */
  changed: string[];
}

/** The devvm.json path for a folder, or null when it has none. */
export function findManifest(_dir: string): string | null {
  return null;
}

export async function up(_conn: MessageConnection, _opts: UpOptions, _report: UpReporter): Promise<UpResult> {
  throw new DevvmError('not-supported', 'devvm up is not built yet');
}

/** Stops the folder's VM; returns its name. */
export async function down(_conn: MessageConnection, _dir: string): Promise<string> {
  throw new DevvmError('not-supported', 'devvm down is not built yet');
}
