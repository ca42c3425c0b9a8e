/** Where devvm keeps things. DEVVM_HOME overrides everything (tests use temp dirs). */
import os from 'node:os';
import path from 'node:path';

export function devvmHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DEVVM_HOME) return path.resolve(env.DEVVM_HOME);
  const data = env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(data, 'devvm');
}

/** Build cache shared by every DEVVM_HOME of the user: images keyed by recipe hash. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DEVVM_CACHE) return path.resolve(env.DEVVM_CACHE);
  const cache = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cache, 'devvm');
}

export function helperSocket(home: string): string {
  return path.join(home, 'helper.sock');
}
