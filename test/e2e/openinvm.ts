/**
 * The e2e's Open Folder in Dev VM steps (issue 14), run by workbench.test.ts at the end, in
 * the window it opened in Restricted Mode: a devvm.json is written into the open folder;
 * the command first asks for trust and runs nothing (no VM, no provisioning output); after
 * Manage Workspace Trust → Trust it makes the VM from the file (one boot), streams the
 * provisioning output to the "Dev VMs: Provisioning" channel, and asks to open exactly
 * `vscode-remote://ssh-remote+devvm-<name><folder>` (read from the extension's log, as the
 * Connect step does: code-server has no Remote-SSH extension, so nothing opens).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Locator } from 'playwright-core';
import { up } from '../../src/shared/devvmjson/up';
import { until, type Workbench } from './ui';

export const UP_VM = 'e2e-up';
const MARK = 'provisioned-by-devvm-json';

export interface OpenInVmDeps {
  w: Workbench;
  folder: string;
  userDataDir: string;
  vms: Locator;
  cli: (args: string[], timeoutMs?: number) => string;
  metrics: Record<string, number | string>;
  log: (s: string) => void;
  failOnError: () => Promise<void>;
}

/** Files under `dir` whose name passes `test`. */
function findAll(dir: string, test: (name: string) => boolean, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) findAll(p, test, out);
    else if (test(e.name)) out.push(p);
  }
  return out;
}

const extensionLog = (d: OpenInVmDeps) => findAll(path.join(d.userDataDir, 'logs'), (n) => n === 'Dev VMs.log').map((f) => readFileSync(f, 'utf8')).join('\n');
/** The provisioning channel as VS Code keeps it on disk (one file per output channel). */
const provisioningText = (d: OpenInVmDeps) => findAll(path.join(d.userDataDir, 'logs'), (n) => n.includes('Provisioning')).map((f) => readFileSync(f, 'utf8')).join('\n');
const vmNames = (d: OpenInVmDeps) => (JSON.parse(d.cli(['list', '--json'])) as { name: string }[]).map((v) => v.name);

/** Whether src/shared/devvmjson/up.ts is built (the stub answers not-supported to everything). */
export async function upIsBuilt(): Promise<boolean> {
  return up(null as never, { dir: '/nonexistent', trusted: false }, { step: () => {}, output: () => {} }).then(
    () => true,
    (e: { code?: string }) => e?.code !== 'not-supported',
  );
}

export async function openInVmSteps(d: OpenInVmDeps): Promise<void> {
  const { w } = d;
  const page = w.page;
  writeFileSync(
    path.join(d.folder, 'devvm.json'),
    `// The e2e project's dev VM (JSON with comments).\n${JSON.stringify(
      {
        name: UP_VM,
        image: 'debian-12',
        cpus: 2,
        memory: 1024,
        user: 'dev',
        provision: [{ when: 'create', run: `echo ${MARK}; uname -s` }],
      },
      null,
      2,
    )}\n`,
  );

  // ---- Restricted Mode: it asks for trust and runs nothing ------------------------
  await page.locator('.statusbar-item', { hasText: 'Restricted Mode' }).waitFor({ timeout: 10_000 });
  await w.command('Dev VMs: Open Folder in Dev VM');
  const ask = w.notification(/Restricted Mode/).filter({ hasText: /Trust the folder first/ });
  await ask.waitFor({ timeout: 30_000 });
  const buttons = (await ask.locator('.monaco-button').allTextContents()).map((b) => b.trim());
  assert.deepEqual(buttons, ['Manage Workspace Trust']);
  await w.shot('open-in-vm-asks-for-trust');
  // A moment for anything that should not happen (a VM, provisioning output) to show.
  await new Promise((r) => setTimeout(r, 3000));
  assert.ok(!vmNames(d).includes(UP_VM), 'no VM made in Restricted Mode');
  assert.equal(provisioningText(d).includes(MARK), false, 'no provisioning in Restricted Mode');
  assert.match(extensionLog(d), /is in Restricted Mode; asking for trust/);
  assert.equal(await w.row(d.vms, UP_VM).count(), 0);

  // ---- trusted: the VM from devvm.json, its provisioning output, the exact URI ---------
  const s = Date.now();
  await ask.locator('.monaco-button', { hasText: 'Manage Workspace Trust' }).click();
  const trustEditor = page.locator('.workspace-trust-editor');
  await trustEditor.waitFor({ timeout: 30_000 });
  await w.shot('open-in-vm-trust-editor');
  await trustEditor.locator('.workspace-trust-buttons .monaco-button', { hasText: /^Trust/ }).first().click();
  await page.locator('.statusbar-item', { hasText: 'Restricted Mode' }).waitFor({ state: 'hidden', timeout: 30_000 });
  await until('the command to go on once trusted', 30_000, () => /trust granted for /.test(extensionLog(d)));
  await w.notification(/Dev VM for /).waitFor({ timeout: 60_000 }).catch(() => {});
  await w.shot('open-in-vm-progress');
  await w.row(d.vms, UP_VM).waitFor({ timeout: 2 * 60_000 });

  // The folder is shared at its own (real) path.
  const expected = `vscode-remote://ssh-remote+devvm-${UP_VM}${realpathSync(d.folder)}`;
  const requested = await until(
    'the Remote-SSH URI of the devvm.json VM',
    15 * 60_000,
    async () => {
      await d.failOnError();
      return [...extensionLog(d).matchAll(/connect: requesting (\S+)/g)].map((m) => m[1]!).find((u) => u.includes(`devvm-${UP_VM}`));
    },
    2000,
  );
  d.metrics.openInVmToRemoteMs = Date.now() - s;
  assert.equal(requested, expected);
  // (a) the provisioning output, in its channel (shown when provisioning started).
  const text = await until('the provisioning output', 30_000, () => (provisioningText(d).includes(MARK) ? provisioningText(d) : undefined));
  assert.ok(text.indexOf('Linux', text.indexOf(MARK)) > 0, 'the script ran in the guest (uname -s) and its output streamed');
  await page.locator('.panel', { hasText: MARK }).first().waitFor({ timeout: 10_000 }).catch(() => d.log('the Output panel did not show the provisioning channel'));
  await w.shot('open-in-vm-provisioning-output');
  // No Remote-SSH extension in code-server: the same offer as Connect.
  await w.notification(/needs a Remote-SSH extension/).waitFor({ timeout: 30_000 });
  d.log(`Open Folder in Dev VM: ${requested} after ${d.metrics.openInVmToRemoteMs} ms`);
}
