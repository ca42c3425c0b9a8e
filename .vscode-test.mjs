// @vscode/test-cli: extension-host tests in a desktop VS Code found by path (test/e2e/exthost.mjs
// sets DEVVM_VSCODE_PATH; nothing is downloaded). Run with `npm run test:exthost`.
import { defineConfig } from '@vscode/test-cli';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-exthost-'));
export default defineConfig({
  files: 'test/e2e/exthost/*.test.cjs',
  useInstallation: { fromPath: process.env.DEVVM_VSCODE_PATH },
  workspaceFolder: tmp,
  launchArgs: ['--disable-extensions', '--user-data-dir', path.join(tmp, 'user-data')],
  env: { DEVVM_HOME: path.join(tmp, 'devvm') },
  mocha: { timeout: 60_000 },
});
