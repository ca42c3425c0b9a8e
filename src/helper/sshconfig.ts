/**
 * DEVVM_HOME/ssh_config (one Host block per VM, rewritten whole and atomically) and the
 * opt-in Include line in ~/.ssh/config.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from './store';

export interface SshHostEntry {
  vm: string;
  port: number;
  user: string;
  identityFile: string;
  knownHostsFile: string;
}

export const sshHostAlias = (vm: string) => `devvm-${vm}`;

/** ssh_config values with spaces need quotes; a `"` cannot be quoted at all, so refuse it. */
function q(value: string): string {
  if (value.includes('"') || /[\r\n]/.test(value)) throw new Error(`path not usable in ssh_config: ${value}`);
  return /\s/.test(value) ? `"${value}"` : value;
}

export function renderSshConfig(entries: SshHostEntry[]): string {
  const blocks = entries
    .slice()
    .sort((a, b) => a.vm.localeCompare(b.vm))
    .map((e) => {
      const alias = sshHostAlias(e.vm);
      return [
        `Host ${alias}`,
        '  HostName 127.0.0.1',
        `  Port ${e.port}`,
        `  User ${e.user}`,
        `  IdentityFile ${q(e.identityFile)}`,
        '  IdentitiesOnly yes',
        // The guest's host key was made on the host and pinned here: no trust on first use.
        `  UserKnownHostsFile ${q(e.knownHostsFile)}`,
        `  HostKeyAlias ${alias}`,
        '  StrictHostKeyChecking yes',
        '  CheckHostIP no',
        '  LogLevel ERROR',
        '',
      ].join('\n');
    });
  return `# Written by devvm; changes are overwritten.\n\n${blocks.join('\n')}`;
}

export function writeSshConfig(file: string, entries: SshHostEntry[]): void {
  writeFileAtomic(file, renderSshConfig(entries));
}

export function includeLine(devvmSshConfig: string): string {
  return `Include ${q(devvmSshConfig)}`;
}

/**
 * Adds `Include <devvm ssh_config>` at the top of the user's ssh config (Include must come
 * before any Host block to apply globally), once, atomically, keeping a backup.
 */
export function ensureInclude(
  devvmSshConfig: string,
  userConfig = path.join(os.homedir(), '.ssh', 'config'),
): { changed: boolean; file: string; backup: string | null } {
  const line = includeLine(devvmSshConfig);
  const current = existsSync(userConfig) ? readFileSync(userConfig, 'utf8') : null;
  if (current !== null && current.split('\n').some((l) => l.trim() === line)) return { changed: false, file: userConfig, backup: null };
  mkdirSync(path.dirname(userConfig), { recursive: true, mode: 0o700 });
  let backup: string | null = null;
  if (current !== null) {
    backup = `${userConfig}.devvm-backup`;
    copyFileSync(userConfig, backup);
  }
  writeFileAtomic(userConfig, `# Added by devvm: Host devvm-<name> entries\n${line}\n\n${current ?? ''}`);
  return { changed: true, file: userConfig, backup };
}
