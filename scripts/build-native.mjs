// Builds the optional native addon (native/). devvm works without it: a failed build
// is reported here and by `devvm doctor`, and never fails the install.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const native = path.join(root, 'native');
const out = path.join(native, 'build', 'Release', 'devvm_native.node');

// node-gyp, best first: the one npm itself ships (npm sets npm_config_node_gyp during
// its scripts), a local install, then whatever npx finds without downloading.
function candidates() {
  const list = [];
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) list.push({ cmd: process.execPath, args: [fromNpm, 'rebuild'], name: fromNpm });
  const local = path.join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(local)) list.push({ cmd: process.execPath, args: [local, 'rebuild'], name: local });
  // npm's bundled copy when run outside npm (`node scripts/build-native.mjs`).
  const npmBundled = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(npmBundled)) list.push({ cmd: process.execPath, args: [npmBundled, 'rebuild'], name: npmBundled });
  list.push({ cmd: 'npx', args: ['--no-install', 'node-gyp', 'rebuild'], name: 'npx node-gyp' });
  return list;
}

// Headers next to this very node (e.g. /usr/include/node) spare node-gyp a download, which
// matters offline; npm passes its own nodedir setting, so only fill it in when absent.
function env() {
  const e = { ...process.env };
  if (e.npm_config_nodedir) return e;
  const prefix = path.join(path.dirname(process.execPath), '..');
  try {
    const h = readFileSync(path.join(prefix, 'include', 'node', 'node_version.h'), 'utf8');
    const v = ['MAJOR', 'MINOR', 'PATCH'].map((k) => h.match(new RegExp(`#define NODE_${k}_VERSION (\\d+)`))?.[1]).join('.');
    if (v === process.versions.node) e.npm_config_nodedir = path.resolve(prefix);
  } catch {
    // no local headers: node-gyp downloads them once
  }
  return e;
}

try {
  if (!existsSync(path.join(native, 'binding.gyp'))) process.exit(0);
  if (process.env.DEVVM_SKIP_NATIVE === '1') {
    console.log('devvm: DEVVM_SKIP_NATIVE=1, native addon not built');
    process.exit(0);
  }
  let why = '';
  let built = false;
  for (const c of candidates()) {
    const r = spawnSync(c.cmd, c.args, {
      cwd: native,
      env: env(),
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
      timeout: 300000,
    });
    if (r.status === 0 && existsSync(out)) {
      built = true;
      break;
    }
    // The compiler's own error lines say why; node-gyp's closing lines only say "not ok".
    const lines = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n');
    const own = lines.filter((l) => /error|not found|no such file/i.test(l) && !/^gyp (ERR|WARN)!/.test(l)).slice(0, 2);
    why = `${c.name}: ${(own.length ? own : lines.slice(-3)).join(' | ')}`;
    // A compile error will not go away with another node-gyp: stop at the first that ran.
    if (r.status !== null && !r.error && !/not found|could not determine executable|ENOENT/i.test(r.stderr ?? '')) break;
  }
  if (built) console.log(`devvm: native addon built (${path.relative(root, out)})`);
  else console.warn(`devvm: native addon not built; devvm works without it, see \`devvm doctor\` (${why})`);
} catch (e) {
  console.warn(`devvm: native addon not built; devvm works without it (${e?.message ?? e})`);
}
process.exit(0);
