// Puts a `devvm` command into the user's bin directory (XDG_BIN_HOME, else ~/.local/bin):
// a small sh wrapper that runs this checkout's dist/cli.js with the Node that ran `npm run up`.
// Idempotent; a file of that name that devvm did not write is never replaced.
import { chmodSync, lstatSync, mkdirSync, readFileSync, readlinkSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const MARK = '# devvm CLI wrapper, written by "npm run up"';

/** A POSIX sh single-quoted word. */
const shq = (s) => `'${s.replace(/'/g, `'\\''`)}'`;

const home = (env) => env.HOME || os.homedir();

export function binDir(env) {
  if (env.XDG_BIN_HOME && path.isAbsolute(env.XDG_BIN_HOME)) return env.XDG_BIN_HOME;
  return path.join(home(env), '.local', 'bin');
}

/** A word as typed in a shell: quoted only when it needs to be. */
const word = (s) => (/^[A-Za-z0-9_.\/@:+,=-]+$/.test(s) ? s : shq(s));

export function wrapperText(node, cli) {
  return `#!/bin/sh\n${MARK}; run it again to update.\nexec ${shq(node)} ${shq(cli)} "$@"\n`;
}

const same = (a, b) => {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return path.resolve(a) === path.resolve(b);
  }
};

/** What `devvm` typed in a shell with this PATH runs, or null. */
export function firstOnPath(name, envPath) {
  for (const dir of (envPath ?? '').split(':')) {
    if (!dir || !path.isAbsolute(dir)) continue;
    const f = path.join(dir, name);
    try {
      if (statSync(f).isFile()) return f;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * @returns {{ link: string, status: 'created' | 'updated' | 'unchanged' | 'foreign', onPath: boolean, command: string, advice: string[] }}
 * `command` is what to type for devvm now; `advice` the lines to tell the user.
 */
export function linkCli({ root, env = process.env, node = process.execPath }) {
  const cli = path.join(root, 'dist', 'cli.js');
  const dir = binDir(env);
  const link = path.join(dir, 'devvm');
  const text = wrapperText(node, cli);
  const advice = [];
  let status;
  let existing = null;
  try {
    existing = lstatSync(link);
  } catch {
    // none yet
  }
  const ours =
    existing === null ||
    (existing.isSymbolicLink() && same(path.resolve(dir, readlinkSync(link)), cli)) ||
    (existing.isFile() && readFileSync(link, 'utf8').includes(MARK));
  if (!ours) {
    status = 'foreign';
    advice.push(`${link} exists and was not written by devvm; left as it is (devvm is "${node} ${cli}")`);
  } else if (existing?.isFile() && readFileSync(link, 'utf8') === text) {
    status = 'unchanged';
  } else {
    status = existing ? 'updated' : 'created';
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const tmp = `${link}.tmp-${process.pid}`;
    writeFileSync(tmp, text, { mode: 0o755 });
    chmodSync(tmp, 0o755);
    renameSync(tmp, link); // replaces our own older wrapper or symlink in one step
  }
  const first = firstOnPath('devvm', env.PATH);
  const onPath = status !== 'foreign' && first !== null && same(first, link);
  if (status !== 'foreign' && !onPath) {
    if (first) {
      advice.push(`"devvm" on your PATH is ${first}, not this checkout's; use ${link} or put ${dir} earlier in PATH`);
    } else {
      const h = home(env);
      const shown = dir.startsWith(`${h}/`) ? `$HOME/${dir.slice(h.length + 1)}` : dir;
      advice.push(`${dir} is not on your PATH; add this line to ~/.profile (or your shell's rc file) and open a new shell:`);
      advice.push(`  export PATH="${shown}:$PATH"`);
    }
  }
  const command = onPath ? 'devvm' : status === 'foreign' ? `${word(node)} ${word(cli)}` : word(link);
  return { link, status, onPath, command, advice };
}
