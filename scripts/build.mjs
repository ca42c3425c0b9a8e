// Bundles each target with esbuild: dist/cli.js, dist/helper.js, dist/extension.js, and the
// webviews' scripts, dist/webview/{create,console,display}.js (browser; console.css beside). `--minify` for the VSIX.
// The Display tab's page is an ES module: noVNC (core/util/browser.js) uses a top-level await, which
// an IIFE cannot hold; the panel loads it with <script type="module" nonce>.
import { build } from 'esbuild';
import { readFileSync, chmodSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: 'linked',
  minify: process.env.DEVVM_MINIFY === '1' || process.argv.includes('--minify'),
  define: { DEVVM_VERSION: JSON.stringify(pkg.version) },
  logLevel: 'warning',
};
await Promise.all([
  build({ ...common, entryPoints: ['src/cli/main.ts'], outfile: 'dist/cli.js', banner: { js: '#!/usr/bin/env node' } }),
  build({ ...common, entryPoints: ['src/helper/main.ts'], outfile: 'dist/helper.js' }),
  // The banner times the whole bundle's load, not just activate(), for the activation figure.
  build({ ...common, entryPoints: ['src/extension/extension.ts'], outfile: 'dist/extension.js', external: ['vscode'], banner: { js: 'var __devvmLoadStart = performance.now();' } }),
  ...['create', 'console'].map((page) =>
    build({ ...common, platform: 'browser', target: 'chrome120', format: 'iife', entryPoints: [`webview/${page}.ts`], outfile: `dist/webview/${page}.js`, minify: true }),
  ),
  build({ ...common, platform: 'browser', target: 'chrome120', format: 'esm', entryPoints: ['webview/display.ts'], outfile: 'dist/webview/display.js', minify: true }),
]);
chmodSync('dist/cli.js', 0o755);
