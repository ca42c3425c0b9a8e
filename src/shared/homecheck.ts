/**
 * DEVVM_HOME holds the install's private key, seeds with password hashes and the helper's
 * socket: it must be the user's own directory and private. Checked by the clients before
 * they start a helper (so the refusal is their one-line error) and by the helper, which
 * also makes an existing group- or world-accessible home 0700.
 */
import { chmodSync, lstatSync, mkdirSync, realpathSync, statSync } from 'node:fs';
import { DevvmError } from './errors';

export interface HomeCheck {
  /** The mode was changed to 0700 (from `from`). */
  fixedMode: number | null;
}

export function ensurePrivateHome(home: string, opts: { fix: boolean; uid?: number }): HomeCheck {
  const uid = opts.uid ?? process.getuid?.();
  try {
    mkdirSync(home, { recursive: true, mode: 0o700 });
  } catch (e) {
    // A file or a dangling symlink in the way: said below, in terms of DEVVM_HOME.
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const link = lstatSync(home);
  let st;
  try {
    st = statSync(home); // follows a symlink: its target is what holds the files
  } catch {
    throw new DevvmError('invalid-argument', `DEVVM_HOME ${home} is a symlink to nothing`, 'point DEVVM_HOME at a directory of your own');
  }
  const where = link.isSymbolicLink() ? `${home} (a symlink to ${realpathSync(home)})` : home;
  if (!st.isDirectory()) throw new DevvmError('invalid-argument', `DEVVM_HOME ${where} is not a directory`, 'point DEVVM_HOME at a directory of your own');
  if (uid !== undefined && st.uid !== uid) {
    throw new DevvmError('invalid-argument', `DEVVM_HOME ${where} is owned by uid ${st.uid}, not by you (uid ${uid})`, 'point DEVVM_HOME at a directory of your own');
  }
  if (link.isSymbolicLink() && uid !== undefined && link.uid !== uid && link.uid !== 0) {
    // Whoever owns the link can repoint it at will.
    throw new DevvmError('invalid-argument', `DEVVM_HOME ${home} is a symlink owned by uid ${link.uid}, not by you (uid ${uid})`, 'point DEVVM_HOME at a directory of your own');
  }
  const mode = st.mode & 0o7777;
  if ((mode & 0o077) === 0 || !opts.fix) return { fixedMode: null };
  chmodSync(home, 0o700);
  return { fixedMode: mode };
}
