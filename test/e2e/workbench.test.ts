/**
 * End to end in a real VS Code workbench: the packaged VSIX installed into code-server,
 * a folder opened in Restricted Mode, driven by Playwright + Chromium against the real
 * helper, QEMU and the Debian guest. One VM boot (~1-2 min under TCG).
 *
 *   node --import tsx --test test/e2e/workbench.test.ts      (npm run test:e2e)
 *
 * Screenshots of every step go to artifacts/e2e/ (light theme; dark for a few at the end).
 * Everything the run touches lives in a temp dir: HOME (so ~/.ssh/config is a scratch
 * copy), DEVVM_HOME, code-server's user data and extensions. The image cache
 * (~/.cache/devvm) is shared, so the Debian image and code-server are built once.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { Browser } from 'playwright-core';
import { cacheDir } from '../../src/shared/paths';
import { recordedUevents, sendUevents, sysfsCopy } from '../usbfixture';
import { ensureCodeServer, installExtension, startCodeServer, type RunningCodeServer } from './codeserver';
import { displayDark, displaySteps, type DisplayStepDeps } from './display';
import { openInVmSteps, upIsBuilt } from './openinvm';
import { launchBrowser, until, Workbench } from './ui';

const ROOT = path.resolve(__dirname, '..', '..');
const ARTIFACTS = path.join(ROOT, 'artifacts', 'e2e');
const VM = 'e2e';
const FULL_NAME = 'Erin Example';
const USER = 'erinexample';
const PASSWORD = 'p4ss: "w0rd" $(x) #';

const log = (s: string) => process.stderr.write(`[e2e ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30 * 60_000): string {
  const r = spawnSync(cmd, args, { cwd: ROOT, env, encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function findFile(dir: string, name: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      const f = findFile(p, name);
      if (f) return f;
    } else if (e.name === name) return p;
  }
  return undefined;
}

function settings(): string {
  return JSON.stringify(
    {
      // Light first; the run switches to dark with the Color Theme picker near the end.
      'workbench.colorTheme': 'Default Light Modern',
      'workbench.startupEditor': 'none',
      'workbench.secondarySideBar.defaultVisibility': 'hidden',
      'chat.disableAIFeatures': true,
      'extensions.autoCheckUpdates': false,
      'extensions.autoUpdate': false,
      'extensions.ignoreRecommendations': true,
      'telemetry.telemetryLevel': 'off',
      'workbench.tips.enabled': false,
      'window.restoreWindows': 'none',
      // Not disabled: the folder opens untrusted, in Restricted Mode, as a user's would.
      'security.workspace.trust.enabled': true,
      'devvm.connectAfterCreate': false,
    },
    null,
    2,
  );
}

test('Dev VMs in code-server: view, create form, running VM, layers, serial console, connect', { timeout: 40 * 60_000 }, async (t) => {
  const t0 = Date.now();
  const metrics: Record<string, number | string> = {};
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(ARTIFACTS, { recursive: true });

  const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-e2e-'));
  const dirs = {
    home: path.join(tmp, 'home'),
    devvm: path.join(tmp, 'devvm'),
    userData: path.join(tmp, 'user-data'),
    extensions: path.join(tmp, 'extensions'),
    folder: path.join(tmp, 'project'),
  };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true, mode: 0o700 });
  writeFileSync(path.join(dirs.folder, 'README.md'), '# a project opened untrusted\n');
  // No USB bus here: the helper reads a recorded sysfs tree (the flash drive pulled for
  // now) and takes hot-plug events from a socket instead of netlink.
  const usbSysfs = sysfsCopy(path.join(tmp, 'usb-sysfs'));
  usbSysfs.pull();
  const usbSocket = path.join(tmp, 'uevents.sock');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dirs.home,
    DEVVM_HOME: dirs.devvm,
    DEVVM_CACHE: cacheDir(),
    DEVVM_USB_SYSFS: usbSysfs.root,
    DEVVM_USB_UEVENT_SOCKET: usbSocket,
  };
  for (const k of ['DEVVM_QEMU', 'XDG_CONFIG_HOME', 'XDG_DATA_HOME', 'VSCODE_IPC_HOOK_CLI']) delete env[k];
  const cli = (args: string[], timeoutMs?: number) => run(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), ...args], env, timeoutMs);

  let server: RunningCodeServer | undefined;
  let browser: Browser | undefined;
  let wb: Workbench | undefined;
  t.after(async () => {
    // The last state of the workbench, useful when a step failed.
    if (wb && !wb.page.isClosed()) await wb.shot('end').catch(() => {});
    await browser?.close().catch(() => {});
    await server?.stop();
    spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'helper', 'stop', '--stop-vms'], { env, timeout: 120_000 });
    // A QEMU left behind by a crashed helper: end it by its own pid file.
    for (const vm of existsSync(path.join(dirs.devvm, 'vms')) ? readdirSync(path.join(dirs.devvm, 'vms')) : []) {
      const pidFile = path.join(dirs.devvm, 'vms', vm, 'pid');
      const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    // Anything else still running from this home (a virtiofsd, a QEMU the helper lost
    // under load) would keep writing its log while the tree is removed.
    spawnSync('pkill', ['-9', '-f', dirs.devvm]);
    for (let i = 0; i < 75 && spawnSync('pgrep', ['-f', dirs.devvm]).status === 0; i++) spawnSync('sleep', ['0.2']);
    if (process.env.DEVVM_E2E_KEEP !== '1') {
      try {
        rmSync(tmp, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
      } catch (e) {
        // A leftover in /tmp is not the product failing: say so, do not fail the run.
        log(`could not remove ${tmp}: ${(e as Error).message}`);
      }
    } else log(`kept ${tmp}`);
    metrics.totalSeconds = Math.round((Date.now() - t0) / 1000);
    writeFileSync(path.join(ARTIFACTS, 'metrics.json'), `${JSON.stringify(metrics, null, 2)}\n`);
    log(`metrics: ${JSON.stringify(metrics)}`);
  });

  // ---- the product, packaged as users get it ----------------------------------
  let s = Date.now();
  const vsix = path.join(tmp, 'devvm.vsix');
  run('npm', ['run', '--silent', 'package', '--', '--out', vsix], env, 5 * 60_000);
  metrics.bundleKb = Math.round(statSync(path.join(ROOT, 'dist', 'extension.js')).size / 102.4) / 10;
  metrics.vsixKb = Math.round(statSync(vsix).size / 102.4) / 10;
  log(`packaged ${vsix} (${metrics.vsixKb} KB) in ${Date.now() - s} ms`);

  s = Date.now();
  const cs = ensureCodeServer(log);
  log(`code-server ready in ${Date.now() - s} ms`);

  // The Debian image, registered in this DEVVM_HOME (built once, cached by recipe).
  s = Date.now();
  cli(['image', 'build', 'debian-12']);
  metrics.imageSeconds = Math.round((Date.now() - s) / 1000);
  log(`image debian-12 registered in ${metrics.imageSeconds} s`);
  // Stop the CLI's helper: the extension must start its own, as on a fresh machine.
  cli(['helper', 'stop']);

  mkdirSync(path.join(dirs.userData, 'User'), { recursive: true });
  writeFileSync(path.join(dirs.userData, 'User', 'settings.json'), settings());
  const csOpts = { userDataDir: dirs.userData, extensionsDir: dirs.extensions, env, log };
  installExtension(cs, vsix, csOpts);
  server = await startCodeServer(cs, dirs.folder, csOpts);
  log(`code-server on ${server.url}`);

  browser = await launchBrowser();
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) consoleErrors.push(m.text());
  });
  wb = new Workbench(page, ARTIFACTS, log);
  const w = wb;
  /** An error toast from the extension ends the test with its text, instead of a timeout later. */
  const failOnError = async () => {
    const err = w.notification(/Dev VMs: /).filter({ has: page.locator('.codicon-error') });
    if (await err.count()) throw new Error(`the extension reported: ${(await err.first().textContent())?.trim()}`);
  };

  await w.open(`${server.url}?folder=${encodeURIComponent(dirs.folder)}`);
  // If VS Code asks about trust, answer as a careful user: do not trust.
  const trust = w.dialog();
  if (await trust.isVisible().catch(() => false)) {
    await trust.locator('.monaco-button', { hasText: /No|Don't Trust/ }).first().click();
  }
  await page.locator('.statusbar-item', { hasText: 'Restricted Mode' }).waitFor({ timeout: 30_000 });
  await w.shot('workbench-restricted-mode');

  // ---- 1. the Dev VMs view, lazily activated, welcome content -----------------
  await page.locator('.activitybar .action-item a[aria-label^="Dev VMs"], .activitybar .action-item[aria-label^="Dev VMs"]').first().click();
  const vms = w.pane('Virtual Machines');
  const images = w.pane('Images');
  await vms.locator('.welcome-view-content', { hasText: 'No dev VMs yet' }).waitFor({ timeout: 60_000 });
  await w.row(images, 'debian-12').waitFor({ timeout: 30_000 });
  await page.locator('.statusbar-item', { hasText: /^\s*0\s*$/ }).first().waitFor({ timeout: 10_000 }).catch(() => {});
  await w.shot('view-welcome-and-images');

  // ---- 2. Create VM through the webview form -------------------------------
  await vms.locator('.welcome-view-content .monaco-button', { hasText: 'Create VM…' }).click();
  let form = await w.webview('Create Dev VM');
  await form.locator('#name').waitFor({ timeout: 30_000 });
  await until('the form to load the image list', 30_000, async () => (await form.locator('#image vscode-option').count()) > 0);
  // Live validation with the helper's rules: a bad name, a full name with ":".
  await form.locator('#name input').fill('Bad Name');
  await form.locator('#fullName input').fill('Erin: Example');
  await form.locator('#password input').fill(PASSWORD);
  await form.locator('#confirm input').fill('different');
  await form.locator('#confirm input').blur();
  await form.locator('#name input').focus();
  await form.locator('#name input').blur();
  await form.locator('#fullName input').focus();
  await form.locator('#fullName input').blur();
  await until('live validation errors', 10_000, async () => (await form.locator('#name-error').textContent())?.includes('invalid VM name'));
  assert.match((await form.locator('#fullName-error').textContent()) ?? '', /":"/);
  assert.match((await form.locator('#confirm-error').textContent()) ?? '', /do not match/);
  await w.shot('create-form-live-validation');
  await form.locator('#name input').fill(VM);
  await form.locator('#fullName input').fill(FULL_NAME);
  await form.locator('#confirm input').fill(PASSWORD);
  assert.equal(await form.locator('#user input').inputValue(), USER, 'short name derived from the full name');
  await form.locator('#cpus input').fill('2');
  await form.locator('#memoryMiB input').fill('1024');
  await form.locator('#diskGiB input').fill('8');
  // Connect is exercised on its own below; the console shows a login prompt (no auto-login).
  if (await form.locator('#connect').evaluate((el) => (el as unknown as { checked: boolean }).checked)) await form.locator('#connect').click();
  // A screen for the Display tab, following the tab's size (the size field's default, auto).
  await form.locator('#display').click();
  assert.equal(await form.locator('#displaySize input').inputValue(), 'auto');
  await until('no validation errors', 10_000, async () => (await form.locator('.error:not(:empty)').count()) === 0);
  await w.shot('create-form-filled');
  s = Date.now();
  await form.locator('#create').click();

  // ---- 3. it goes running -----------------------------------------------------
  const vmRow = w.row(vms, VM);
  await vmRow.waitFor({ timeout: 60_000 });
  await w.shot('vm-created-starting');
  await until('the VM to be running', 5 * 60_000, async () => {
    await failOnError();
    return /^running/.test((await vmRow.locator('.label-description').textContent()) ?? '');
  });
  metrics.createToRunningMs = Date.now() - s;
  log(`VM running ${metrics.createToRunningMs} ms after Create`);
  await page.locator('.statusbar-item', { hasText: /^\s*1\s*$/ }).first().waitFor({ timeout: 10_000 }).catch(() => {});
  await w.shot('vm-running');

  // ---- 4. its disk layers --------------------------------------------------
  await w.expand(vmRow);
  const layersRow = w.row(vms, 'Disk layers');
  await w.expand(layersRow);
  for (const role of ['overlay', 'cache', 'base']) await w.row(vms, role).waitFor({ timeout: 30_000 });
  const baseDesc = await w.row(vms, 'base').locator('.label-description').textContent();
  assert.match(baseDesc ?? '', /read-only/);
  await w.expand(w.row(vms, 'Ports'));
  await w.expand(w.row(vms, 'USB devices'));
  await w.shot('vm-layers-ports-usb');
  const menu = await w.contextMenuItems(vmRow);
  log(`context menu of a running VM: ${menu.join(' | ')}`);
  for (const item of ['Connect in Current Window', 'Open Serial Console', 'Stop', 'Suspend', 'Force Stop', 'Delete…']) assert.ok(menu.includes(item), `context menu has ${item}`);
  assert.ok(!menu.includes('Start'), 'no Start on a running VM');

  // ---- 4b. a USB device plugged into the host while the VM runs -------------------
  // The recorded plug-in (kernel and udev messages for the drive, its interface, its SCSI
  // host) goes to the helper the extension started, through its real monitor.
  s = Date.now();
  const usbCheck = JSON.parse(cli(['doctor', '--json'])).checks.find((c: { name: string }) => c.name === 'usb monitor');
  assert.match(usbCheck?.detail ?? '', /^running: test events from .*uevents\.sock/, 'the helper takes the injected events');
  const usbGroup = w.row(vms, 'USB devices');
  const hostDevices = async () => {
    await w.contextMenu(usbGroup, 'Attach USB Device…');
    const rows = page.locator('.quick-input-widget .monaco-list-row');
    await rows.first().waitFor({ timeout: 10_000 });
    // Each row's first label is the device's name; the detail line has one too.
    const labels = await Promise.all((await rows.all()).map(async (r) => ((await r.locator('.label-name').first().textContent()) ?? '').trim()));
    await page.keyboard.press('Escape');
    return labels;
  };
  const { plugging, unplugging } = recordedUevents();
  usbSysfs.plug();
  await sendUevents(usbSocket, plugging);
  const usbPrompt = w.notification(`Attach SanDisk 3.2Gen1 to ${VM}?`);
  await usbPrompt.waitFor({ timeout: 30_000 });
  const usbButtons = (await usbPrompt.locator('.monaco-button').allTextContents()).map((b) => b.trim());
  assert.deepEqual(usbButtons.sort(), ['Always for This Device', 'Attach', 'Ignore']);
  assert.equal(await w.notification(/Attach USB Receiver/).count(), 0, 'a device present before is not offered');
  // Past the toast's fade-in, for a clear screenshot.
  await until('the prompt to fade in', 5000, async () => /notification-fade-in-done/.test((await usbPrompt.getAttribute('class')) ?? ''));
  await w.shot('usb-attach-prompt');
  // Attach goes to the helper, which opens /dev/bus/usb/001/005 to hand it to QEMU; there
  // is no such node on this machine, and the error says so in one line.
  await usbPrompt.locator('.monaco-button', { hasText: /^Attach$/ }).click();
  await usbPrompt.waitFor({ state: 'detached', timeout: 10_000 });
  await w.notification(/USB device 1-3\.1 has no device node \/dev\/bus\/usb\/001\/005/).waitFor({ timeout: 15_000 });
  assert.deepEqual(await hostDevices(), ['USB Receiver', 'SanDisk 3.2Gen1'], 'the attach list offers the new device');
  await w.row(vms, 'No USB devices attached').waitFor({ timeout: 10_000 });
  // Pulled out: sysfs goes first, then the kernel's remove events.
  usbSysfs.pull();
  await sendUevents(usbSocket, unplugging);
  assert.deepEqual(await hostDevices(), ['USB Receiver'], 'the attach list no longer offers it');
  await w.row(vms, 'No USB devices attached').waitFor({ timeout: 10_000 });
  metrics.usbPlugToUnplugMs = Date.now() - s;

  // ---- 5. the serial console shows a login prompt ----------------------------
  // Restricted Mode: VS Code would ask for trust before any terminal, so the console
  // opens in a webview tab instead, with no prompt.
  await w.contextMenu(vmRow, 'Open Serial Console');
  await page.locator('.tab', { hasText: `${VM} (serial)` }).waitFor({ timeout: 30_000 });
  assert.equal(await w.dialog().isVisible(), false, 'no workspace trust prompt');
  await until('a login prompt on the serial console', 5 * 60_000, async () => {
    await failOnError();
    return /login:/.test(await w.consoleText(`${VM} (serial)`));
  }, 1000);
  metrics.createToLoginPromptMs = Date.now() - s;
  await w.shot('serial-console-login-prompt');

  // ---- 5b. the Display tab: the console on screen, following the tab's size ---------
  const display: DisplayStepDeps = { w, vm: VM, vmRow, cli, metrics, log, failOnError };
  assert.ok((await w.contextMenuItems(vmRow)).includes('Open Display'), 'a VM with a display offers Open Display');
  await displaySteps(display);

  // ---- 6. Connect: SSH answers, Include consent, exact Remote-SSH URI -----------
  await w.contextMenu(vmRow, 'Connect in Current Window');
  await w.notification(/Starting e2e and waiting for SSH/).waitFor({ timeout: 30_000 }).catch(() => {});
  await w.shot('connect-waiting-for-ssh');
  const consent = w.dialog();
  await consent.waitFor({ timeout: 10 * 60_000 });
  metrics.createToSshMs = Date.now() - s;
  assert.match((await consent.textContent()) ?? '', /Include/);
  await w.shot('connect-include-consent');
  await consent.locator('.monaco-button', { hasText: 'Add Include' }).click();
  const offer = w.notification(/needs a Remote-SSH extension/);
  await offer.waitFor({ timeout: 60_000 });
  assert.match((await offer.textContent()) ?? '', /jeanp413\.open-remote-ssh/, 'code-server is an Open VSX build');
  await w.shot('connect-offers-remote-ssh');

  // (a) ssh with devvm's config, as Remote-SSH would use it.
  const ssh = spawnSync('ssh', ['-F', path.join(dirs.devvm, 'ssh_config'), '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', `devvm-${VM}`, 'true'], { env, encoding: 'utf8', timeout: 60_000 });
  assert.equal(ssh.status, 0, `ssh devvm-${VM} true: ${ssh.stderr}`);
  const userSshConfig = readFileSync(path.join(dirs.home, '.ssh', 'config'), 'utf8');
  assert.ok(userSshConfig.includes(`Include ${path.join(dirs.devvm, 'ssh_config')}`), 'consent added the Include line');
  // (b) the URI the extension requested, from its log file.
  const logFile = await until('the extension log', 10_000, () => findFile(path.join(dirs.userData, 'logs'), 'Dev VMs.log'));
  const extLog = readFileSync(logFile, 'utf8');
  const requested = /connect: requesting (\S+)/.exec(extLog)?.[1];
  assert.equal(requested, `vscode-remote://ssh-remote+devvm-${VM}/home/${USER}`);
  const activation = /activated in ([\d.]+) ms/.exec(extLog);
  if (activation) metrics.activationMs = Number(activation[1]);

  // Meanwhile: an SSH terminal, as offered.
  await offer.locator('.monaco-button', { hasText: 'Open SSH Terminal' }).click();
  await until('a shell prompt over SSH', 60_000, async () => new RegExp(`${USER}@${VM}`).test(await w.consoleText(`${VM} (ssh)`)), 1000);
  await w.shot('ssh-terminal');

  // ---- 7a. a live disk-only snapshot from the palette, shown in the Snapshots group ----
  s = Date.now();
  const nameBox = page.locator('.quick-input-widget .quick-input-box input').first();
  // Seen once in five runs: the quick input closed as the new SSH console tab settled
  // (focus moved). Then the palette flow is opened again, once, and the run says so.
  for (let attempt = 1; ; attempt++) {
    await w.command('Dev VMs: Take Snapshot…');
    await w.pick(VM);
    await nameBox.waitFor({ timeout: 10_000 });
    await until('the suggested snapshot name', 10_000, async () => (await nameBox.inputValue()) === 'snap-1');
    try {
      await nameBox.fill('Bad Name', { timeout: 5_000 });
      break;
    } catch (e) {
      if (attempt > 1) throw e;
      log('the snapshot name box closed before it was typed into (focus moved); opening it again');
    }
  }
  await until('the name check', 10_000, async () => /invalid snapshot name/.test((await page.locator('.quick-input-widget').first().textContent()) ?? ''));
  await nameBox.fill('before-e2e');
  await nameBox.press('Enter');
  await w.pick('Disk only');
  await until('the snapshot to be taken', 2 * 60_000, async () => {
    await failOnError();
    return w.notification(/Snapshot "before-e2e" of e2e taken/).isVisible();
  });
  metrics.snapshotFromPaletteMs = Date.now() - s;
  await w.expand(w.row(vms, 'Snapshots'));
  const snapRow = w.row(vms, 'before-e2e');
  await snapRow.waitFor({ timeout: 30_000 });
  assert.doesNotMatch((await snapRow.locator('.label-description').textContent()) ?? '', /RAM/);
  await w.row(vms, 'snapshot').waitFor({ timeout: 10_000 });
  const snapMenu = await w.contextMenuItems(snapRow);
  for (const item of ['Restore Snapshot…', 'Clone…', 'Delete Snapshot…']) assert.ok(snapMenu.includes(item), `snapshot context menu has ${item}`);
  assert.ok((await w.contextMenuItems(vmRow)).includes('Take Snapshot…'));
  await w.shot('snapshot-in-tree');

  // ---- 7b. a VM created from the CLI shows up from a notification -------------------
  s = Date.now();
  cli(['create', 'from-cli', '--image', 'debian-12', '--user', 'cli']);
  await w.row(vms, 'from-cli').waitFor({ timeout: 5000 });
  metrics.cliCreateToTreeMs = Date.now() - s;
  log(`a VM created from the CLI appeared in the tree after ${metrics.cliCreateToTreeMs} ms`);
  await w.shot('vm-from-cli');
  cli(['delete', 'from-cli']);
  await w.row(vms, 'from-cli').waitFor({ state: 'detached', timeout: 5000 });

  // ---- 8. dark theme --------------------------------------------------------
  await w.command('Preferences: Color Theme');
  await w.pick('Dark Modern');
  w.theme = 'dark';
  await page.locator('.monaco-workbench.vs-dark').waitFor({ timeout: 20_000 });
  await w.shot('vm-tree-and-console');
  await displayDark(display);
  await w.command('Dev VMs: Create VM…');
  form = await w.webview('Create Dev VM');
  await form.locator('#name').waitFor({ timeout: 30_000 });
  await until('the form to be filled', 10_000, async () => (await form.locator('#name input').inputValue()) !== '');
  await w.shot('create-form');
  await form.locator('#cancel').click();

  // ---- 9. Delete, with a confirmation that says what goes ------------------------
  await w.contextMenu(vmRow, 'Delete…');
  const del = w.dialog();
  await del.waitFor({ timeout: 10_000 });
  const delText = (await del.textContent()) ?? '';
  assert.match(delText, /powered off first/);
  assert.match(delText, /base image "debian-12" is kept/);
  await w.shot('delete-confirmation');
  await del.locator('.monaco-button', { hasText: /^Delete$/ }).click();
  await vmRow.waitFor({ state: 'detached', timeout: 2 * 60_000 });
  await vms.locator('.welcome-view-content', { hasText: 'No dev VMs yet' }).waitFor({ timeout: 10_000 });
  await w.shot('deleted');

  // ---- 10. Open Folder in Dev VM: trust first, then the VM devvm.json declares -----------
  // Last: it trusts the folder, and the steps above are about Restricted Mode.
  const upBuilt = await upIsBuilt();
  await t.test('Open Folder in Dev VM: Restricted Mode asks for trust and runs nothing; trusted, provisioning output and the exact Remote-SSH URI', { skip: upBuilt ? false : 'up() in src/shared/devvmjson/up.ts is the stub (not built in this branch yet)' }, () =>
    openInVmSteps({ w, folder: dirs.folder, userDataDir: dirs.userData, vms, cli, metrics, log, failOnError }),
  );

  assert.deepEqual(consoleErrors, [], 'no CSP violations');
  metrics.e2eSeconds = Math.round((Date.now() - t0) / 1000);
});
