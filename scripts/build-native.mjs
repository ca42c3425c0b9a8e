// Builds the optional native addon (native/). devvm works without it: a failed build
// is reported here and by `devvm doctor`, and never fails the install.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const native = path.join(root, 'native');
if (!existsSync(path.join(native, 'binding.gyp'))) process.exit(0);
const gyp = path.join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const args = existsSync(gyp) ? [gyp, 'rebuild'] : [];
const r = args.length
  ? spawnSync(process.execPath, args, { cwd: native, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' })
  : spawnSync('npx', ['--no-install', 'node-gyp', 'rebuild'], { cwd: native, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status === 0) {
  console.log('devvm: native addon built (native/build/Release/devvm_native.node)');
} else {
  const why = (r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ');
  console.warn(`devvm: native addon not built; devvm works without it, see \`devvm doctor\` (${why})`);
}
