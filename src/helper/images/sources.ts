/**
 * Which Debian mirrors an image is built from: the user's DEVVM_DEBIAN_MIRROR, else the
 * host's own apt configuration (one-line and deb822 files), else deb.debian.org.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { DevvmError } from '../../shared/errors';
import type { DebianRecipe } from './recipe';

export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

export interface AptFile {
  /** File name; `.sources` means deb822 format, anything else one-line format. */
  name: string;
  text: string;
}

/** Enabled binary (`deb`) entries of apt source files, in file order. */
export function parseAptSources(files: readonly AptFile[]): AptSource[] {
  const out: AptSource[] = [];
  for (const f of files) {
    if (f.name.endsWith('.sources')) out.push(...parseDeb822(f.text));
    else out.push(...parseOneLine(f.text));
  }
  return out;
}

function parseOneLine(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    // deb [ key=value ... ] uri suite [component...]
    const m = /^deb\s+(?:\[[^\]]*\]\s*)?(\S+)\s+(\S+)(.*)$/.exec(line);
    if (!m) continue;
    out.push({ uri: m[1], suites: [m[2]], components: m[3].trim().split(/\s+/).filter(Boolean) });
  }
  return out;
}

function parseDeb822(text: string): AptSource[] {
  const out: AptSource[] = [];
  // Paragraphs are separated by blank lines; comment lines are ignored entirely and
  // lines starting with white space continue the previous field (e.g. an inline key).
  for (const para of text.split(/\n[ \t]*\n/)) {
    const fields = new Map<string, string>();
    let last: string | null = null;
    for (const line of para.split('\n')) {
      if (line.startsWith('#')) continue;
      if (/^[ \t]/.test(line)) {
        if (last) fields.set(last, `${fields.get(last)} ${line.trim()}`);
        continue;
      }
      const m = /^([A-Za-z0-9-]+):(.*)$/.exec(line);
      if (!m) continue;
      last = m[1].toLowerCase();
      fields.set(last, m[2].trim());
    }
    const words = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    if (!words('types').includes('deb')) continue;
    if (/^(no|false|0)$/i.test(fields.get('enabled') ?? 'yes')) continue;
    for (const uri of words('uris')) out.push({ uri, suites: words('suites'), components: words('components') });
  }
  return out;
}

const DEBIAN_SUITES = /^(buster|bullseye|bookworm|trixie|forky|duke|sid|experimental|rc-buggy|(old)*stable|testing|unstable)([-/].*)?$/;
const isSecurity = (suite: string) => /-security$|\/updates$/.test(suite);
const usableUri = (uri: string) => /^https?:\/\/\S+$/.test(uri);

export const DEFAULT_DEBIAN_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_DEBIAN_SECURITY = 'http://deb.debian.org/debian-security';

export interface DebianSources {
  /** One-line apt entries for mmdebstrap, e.g. `deb http://deb.debian.org/debian bookworm main`. */
  entries: string[];
  origin: 'env' | 'host' | 'default';
}

/**
 * Which mirrors to build from: DEVVM_DEBIAN_MIRROR alone when set (the user chose it; only
 * the release suite, since a private mirror may carry nothing else); else the host's first
 * Debian mirror that has `main` (a Debian suite name tells it apart from third-party
 * repositories and Ubuntu), plus `-updates` when the host uses them from that mirror and
 * the host's security mirror; else deb.debian.org with updates and security.
 */
export function debianSources(recipe: Pick<DebianRecipe, 'suite' | 'components' | 'updates' | 'security'>, hostFiles: readonly AptFile[], envMirror?: string): DebianSources {
  const comps = recipe.components.join(' ');
  const line = (uri: string, suite: string) => `deb ${uri.replace(/\/+$/, '')} ${suite} ${comps}`;
  if (envMirror !== undefined && envMirror.trim() !== '') {
    const uri = envMirror.trim();
    if (!/^[a-z][a-z0-9+.-]*:\S+$/i.test(uri)) {
      throw new DevvmError('invalid-argument', `DEVVM_DEBIAN_MIRROR is not a URL: ${JSON.stringify(uri).slice(0, 100)}`, 'set it like http://deb.debian.org/debian');
    }
    return { entries: [line(uri, recipe.suite)], origin: 'env' };
  }
  const sources = parseAptSources(hostFiles).filter((s) => usableUri(s.uri) && s.components.includes('main'));
  const main = sources.find((s) => s.suites.some((x) => DEBIAN_SUITES.test(x) && !isSecurity(x)));
  if (!main) {
    const entries = [line(DEFAULT_DEBIAN_MIRROR, recipe.suite)];
    if (recipe.updates) entries.push(line(DEFAULT_DEBIAN_MIRROR, `${recipe.suite}-updates`));
    if (recipe.security) entries.push(line(DEFAULT_DEBIAN_SECURITY, `${recipe.suite}-security`));
    return { entries, origin: 'default' };
  }
  const entries = [line(main.uri, recipe.suite)];
  const sameUri = (s: AptSource) => s.uri.replace(/\/+$/, '') === main.uri.replace(/\/+$/, '');
  if (recipe.updates && sources.some((s) => sameUri(s) && s.suites.some((x) => DEBIAN_SUITES.test(x) && x.endsWith('-updates')))) {
    entries.push(line(main.uri, `${recipe.suite}-updates`));
  }
  const security = sources.find((s) => s.suites.some((x) => DEBIAN_SUITES.test(x) && isSecurity(x)));
  if (recipe.security && security) entries.push(line(security.uri, `${recipe.suite}-security`));
  return { entries, origin: 'host' };
}

/** The host's apt source files in the order apt reads them. */
export function hostAptFiles(): AptFile[] {
  const files: AptFile[] = [];
  const read = (file: string) => {
    try {
      files.push({ name: path.basename(file), text: readFileSync(file, 'utf8') });
    } catch {
      // unreadable or absent: not a Debian host, or a restricted one
    }
  };
  read('/etc/apt/sources.list');
  let names: string[] = [];
  try {
    names = readdirSync('/etc/apt/sources.list.d').sort();
  } catch {
    // no such directory
  }
  for (const n of names) if (/\.(list|sources)$/.test(n)) read(path.join('/etc/apt/sources.list.d', n));
  return files;
}
