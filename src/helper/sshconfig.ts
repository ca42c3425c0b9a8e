/**
 * DEVVM_HOME/ssh_config (one Host block per VM, rewritten whole and atomically) and the
 * opt-in Include line in ~/.ssh/config.
 */
import { closeSync, copyFileSync, existsSync, fchmodSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DevvmError } from '../shared/errors';
import { writeFileAtomic } from './store';

export interface SshHostEntry {
  vm: string;
  port: number;
  user: string;
  identityFile: string;
  knownHostsFile: string;
  /**
   * The command ssh runs instead of connecting itself (devvm ssh-proxy: wakes the VM, then
   * relays to its port), as an argument array; absent: ssh connects to the port directly.
   */
  proxy?: string[];
}

export const sshHostAlias = (vm: string) => `devvm-${vm}`;

/**
 * An ssh_config argument. Inside double quotes OpenSSH (8.2+, argv_split) takes `\\` and
 * `\"` as escapes, so any character but a line break can be written. File options that
 * expand tokens (IdentityFile, UserKnownHostsFile) get `%` doubled; they also expand
 * `${VAR}`, which has no escape, so a path containing it is refused. Include takes no
 * tokens but glob(7) wildcards, escaped for glob first. Plain paths stay unquoted, so the
 * Include line users already have still matches.
 */
export function sshConfigProblem(value: string): string | null {
  if (/[\r\n\0]/.test(value)) return 'contains a line break';
  if (value.includes('${')) return 'contains "${", which ssh expands as an environment variable';
  return null;
}

type ArgKind = 'file' | 'include';

function q(value: string, kind: ArgKind): string {
  const problem = sshConfigProblem(value);
  if (problem) throw new DevvmError('invalid-argument', `path not usable in ssh_config: ${JSON.stringify(value)} ${problem}`, 'use a DEVVM_HOME without it');
  const v = kind === 'file' ? value.replace(/%/g, '%%') : value.replace(/[\\*?[]/g, (c) => `\\${c}`);
  if (/^[A-Za-z0-9_.\/@:+,=%-]+$/.test(v)) return v;
  return `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * One word for the shell ssh runs a ProxyCommand with ($SHELL -c "exec ..."): single
 * quotes, with ' and \ written outside them as \' and \\, which sh, bash, zsh and fish all
 * read the same (fish takes those two escapes even inside single quotes, so they never go
 * there). ssh takes the rest of the line verbatim and expands only % tokens: % is doubled.
 */
export function shellWord(value: string): string {
  // ${ is inert here: single quotes, and ProxyCommand expands no variables.
  if (/[\r\n\0]/.test(value)) throw new DevvmError('invalid-argument', `argument not usable in ssh_config: ${JSON.stringify(value)} contains a line break`, 'use a DEVVM_HOME and install path without it');
  const v = value.replace(/%/g, '%%');
  if (v === '') return "''";
  if (/^[A-Za-z0-9_.\/@:+,=%-]+$/.test(v)) return v;
  return v
    .split(/(['\\])/)
    .map((part) => (part === "'" || part === '\\' ? `\\${part}` : part === '' ? '' : `'${part}'`))
    .join('');
}

/** A ProxyCommand line's value from an argument array. */
export function proxyCommand(argv: readonly string[]): string {
  if (argv.length === 0) throw new DevvmError('invalid-argument', 'empty ProxyCommand');
  return argv.map(shellWord).join(' ');
}

/** How the helper runs devvm's CLI: this node (or Electron as node) and dist/cli.js. */
export interface CliRunner {
  node: string;
  cli: string;
  home: string;
  /** The helper runs on Electron (started by the extension): the CLI needs ELECTRON_RUN_AS_NODE too. */
  electron: boolean;
}

/**
 * `devvm ssh-proxy VM` for the helper of `home`, whatever DEVVM_HOME the ssh caller has.
 * null when env(1) would take the node or cli path for an assignment (it contains "=").
 */
export function sshProxyArgv(r: CliRunner, vm: string): string[] | null {
  if (r.node.includes('=') || r.cli.includes('=')) return null;
  return ['/usr/bin/env', `DEVVM_HOME=${r.home}`, ...(r.electron ? ['ELECTRON_RUN_AS_NODE=1'] : []), r.node, r.cli, 'ssh-proxy', vm];
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
        `  IdentityFile ${q(e.identityFile, 'file')}`,
        '  IdentitiesOnly yes',
        // The guest's host key was made on the host and pinned here: no trust on first use.
        `  UserKnownHostsFile ${q(e.knownHostsFile, 'file')}`,
        `  HostKeyAlias ${alias}`,
        '  StrictHostKeyChecking yes',
        '  CheckHostIP no',
        '  LogLevel ERROR',
        // The connection never leaves this host (127.0.0.1 to QEMU's forward): X25519 alone,
        // without the post-quantum sntrup761 half ssh prefers, 0.09 s of an emulated guest's
        // 0.87 s "ssh true". Names every OpenSSH since 7.4 knows.
        '  KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256',
        // Wakes a stopped or suspended VM, then relays: ssh, devvm ssh and Remote-SSH alike.
        ...(e.proxy ? [`  ProxyCommand ${proxyCommand(e.proxy)}`] : []),
        // ssh's ConnectTimeout also bounds the wait for the greeting, i.e. a boot through the
        // proxy; Remote-SSH prefers a host's own value to its 15 s (vscode-remote-release#9894).
        ...(e.proxy ? ['  ConnectTimeout 900'] : []),
        '',
      ].join('\n');
    });
  return `# Written by devvm; changes are overwritten.\n\n${blocks.join('\n')}`;
}

export function writeSshConfig(file: string, entries: SshHostEntry[]): void {
  writeFileAtomic(file, renderSshConfig(entries));
}

export function includeLine(devvmSshConfig: string): string {
  return `Include ${q(devvmSshConfig, 'include')}`;
}

/**
 * The file a path finally names, following symlinks even when the last one dangles
 * (dotfile managers keep ~/.ssh/config as a link into their repository).
 */
function resolveLinks(file: string): string {
  let cur = file;
  for (let i = 0; i < 40; i++) {
    let st;
    try {
      st = lstatSync(cur);
    } catch {
      return cur; // does not exist (yet): written here
    }
    if (!st.isSymbolicLink()) return cur;
    cur = path.resolve(path.dirname(cur), readlinkSync(cur));
  }
  throw new DevvmError('invalid-argument', `too many levels of symbolic links at ${file}`);
}

/**
 * Replaces `file`'s content atomically: a temp file in its own directory (rename never
 * crosses a file system), given the old file's mode before the rename.
 */
function replaceFile(file: string, data: string, mode: number): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.devvm-tmp-${process.pid}`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, data);
    fchmodSync(fd, mode); // not subject to the umask, unlike open's mode
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
}

/**
 * Adds `Include <devvm ssh_config>` at the top of the user's ssh config (Include must come
 * before any Host block to apply globally), once, atomically, keeping a backup. A symlinked
 * config stays a symlink: its target is what gets rewritten.
 */
export function ensureInclude(
  devvmSshConfig: string,
  userConfig = path.join(os.homedir(), '.ssh', 'config'),
): { changed: boolean; file: string; backup: string | null } {
  const line = includeLine(devvmSshConfig);
  const target = resolveLinks(userConfig);
  const current = existsSync(target) ? readFileSync(target, 'utf8') : null;
  if (current !== null && current.split('\n').some((l) => l.trim() === line)) return { changed: false, file: userConfig, backup: null };
  mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 });
  let backup: string | null = null;
  let mode = 0o600;
  if (current !== null) {
    mode = statSync(target).mode & 0o7777;
    backup = `${userConfig}.devvm-backup`;
    rmSync(backup, { force: true }); // a symlink left there is replaced, never written through
    copyFileSync(target, backup);
  }
  replaceFile(target, `# Added by devvm: Host devvm-<name> entries\n${line}\n\n${current ?? ''}`, mode);
  return { changed: true, file: userConfig, backup };
}
