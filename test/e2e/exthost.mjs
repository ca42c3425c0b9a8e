// `npm run test:exthost`: extension-host tests (@vscode/test-cli) in a desktop VS Code given by
// DEVVM_VSCODE_PATH or found as `code` on PATH. @vscode/test-electron cannot download VS Code
// on machines without network access to its CDN, so without an installation this skips, saying why.
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';

let exe = process.env.DEVVM_VSCODE_PATH;
if (!exe) {
  const which = spawnSync('sh', ['-c', 'command -v code'], { encoding: 'utf8' });
  const found = which.stdout.trim();
  // The `code` CLI script sits in <install>/bin; the Electron binary is <install>/code.
  if (which.status === 0 && found) exe = realpathSync(found).replace(/\/bin\/code$/, '/code');
}
if (!exe || !existsSync(exe)) {
  process.stdout.write(`test:exthost skipped: no desktop VS Code installation (${exe ? `${exe} does not exist` : 'set DEVVM_VSCODE_PATH to the VS Code executable, or put `code` on PATH'}).\n`);
  process.exit(0);
}
const build = spawnSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
const r = spawnSync('npx', ['--no-install', 'vscode-test', '--config', '.vscode-test.mjs'], { stdio: 'inherit', env: { ...process.env, DEVVM_VSCODE_PATH: exe } });
process.exit(r.status ?? 1);
