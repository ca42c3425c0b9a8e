/**
 * The Create VM webview panel: static markup with labels, a strict CSP (scripts and styles
 * only with this load's nonce, nothing remote), and a host side that re-checks every
 * message before anything reaches the helper.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import * as vscode from 'vscode';
import type { CreateParams } from '../shared/rpc';
import type { ImageInfo } from '../shared/types';
import { checkForm, parseFromWebview, type CreateForm, type InitMessage, type ToWebview } from './form';
import { bytes } from '../shared/format';

export interface CreatePanelDeps {
  extensionUri: vscode.Uri;
  images: () => Promise<ImageInfo[]>;
  vmNames: () => Promise<string[]>;
  defaults: () => Omit<CreateForm, 'password' | 'confirm'>;
  /** Creates the VM (not started); throws DevvmError. */
  create: (p: CreateParams) => Promise<void>;
  /** Runs after the panel closed: start, and connect when asked. */
  afterCreate: (name: string, connect: boolean) => void;
  log: (msg: string) => void;
}

let current: CreatePanel | undefined;

export class CreatePanel {
  static readonly viewType = 'devvm.create';

  static show(d: CreatePanelDeps): CreatePanel {
    if (current) {
      current.panel.reveal();
      return current;
    }
    const panel = vscode.window.createWebviewPanel(CreatePanel.viewType, 'Create Dev VM', vscode.ViewColumn.Active, {
      enableScripts: true,
      // Only the bundled script; no command links, no forms posting anywhere.
      localResourceRoots: [vscode.Uri.joinPath(d.extensionUri, 'dist', 'webview')],
    });
    panel.iconPath = vscode.Uri.joinPath(d.extensionUri, 'media', 'devvm.svg');
    return (current = new CreatePanel(panel, d));
  }

  private busy = false;

  private constructor(
    readonly panel: vscode.WebviewPanel,
    private readonly d: CreatePanelDeps,
  ) {
    panel.webview.html = this.html();
    panel.webview.onDidReceiveMessage((raw: unknown) => void this.onMessage(raw));
    panel.onDidDispose(() => {
      if (current === this) current = undefined;
    });
  }

  /** Keeps the form's duplicate-name check current while it is open. */
  static vmsChanged(names: string[]): void {
    void current?.post({ type: 'existing', names });
  }

  private post(m: ToWebview): Thenable<boolean> {
    return this.panel.webview.postMessage(m);
  }

  private async context(): Promise<{ images: ImageInfo[]; existing: string[]; hostCpus: number; hostMiB: number }> {
    const [images, existing] = await Promise.all([this.d.images(), this.d.vmNames()]);
    return { images, existing, hostCpus: os.cpus().length || 1, hostMiB: Math.floor(os.totalmem() / 1048576) };
  }

  private async onMessage(raw: unknown): Promise<void> {
    const msg = parseFromWebview(raw);
    if (!msg) {
      this.d.log('ignored a malformed message from the Create VM webview');
      return;
    }
    if (msg.type === 'cancel') return this.panel.dispose();
    if (msg.type === 'pickFolder') {
      // The page has no file system; the host picks, and only a picked folder's path goes back.
      const picked = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, canSelectMany: false, openLabel: 'Share', title: 'Folder to share with the new VM' });
      const path = picked?.[0]?.fsPath;
      if (path) await this.post({ type: 'folderPicked', row: msg.row, path });
      return;
    }
    if (msg.type === 'ready') {
      try {
        const c = await this.context();
        const init: InitMessage = {
          type: 'init',
          images: c.images.map((i) => ({ name: i.name, detail: `${bytes(i.actualSize)} · ${i.source}` })),
          existing: c.existing,
          defaults: this.d.defaults(),
          hostCpus: c.hostCpus,
          hostMiB: c.hostMiB,
        };
        await this.post(init);
      } catch (e) {
        await this.post({ type: 'failed', message: (e as Error).message });
      }
      return;
    }
    if (this.busy) return;
    this.busy = true;
    try {
      const c = await this.context();
      const checked = checkForm(msg.form, { images: c.images.map((i) => i.name), existing: c.existing, hostCpus: c.hostCpus, hostMiB: c.hostMiB });
      if (!checked.params) {
        await this.post({ type: 'failed', message: 'Some fields need attention.', errors: checked.errors });
        return;
      }
      await this.post({ type: 'busy', message: `Creating ${checked.params.name}…` });
      await this.d.create(checked.params);
      this.d.log(`created VM "${checked.params.name}" from the form (image ${checked.params.image}, user ${checked.params.user})`);
      this.panel.dispose();
      this.d.afterCreate(checked.params.name, checked.connect);
    } catch (e) {
      const err = e as { message: string; hint?: string; code?: string };
      const field = err.code === 'already-exists' ? { name: err.message } : undefined;
      await this.post({ type: 'failed', message: err.hint ? `${err.message} (${err.hint})` : err.message, errors: field });
    } finally {
      this.busy = false;
    }
  }

  private html(): string {
    const w = this.panel.webview;
    const nonce = randomBytes(18).toString('base64');
    const script = w.asWebviewUri(vscode.Uri.joinPath(this.d.extensionUri, 'dist', 'webview', 'create.js'));
    const csp = [
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      `style-src ${w.cspSource} 'nonce-${nonce}'`,
      `font-src ${w.cspSource}`,
      `img-src ${w.cspSource} data:`,
    ].join('; ');
    const field = (id: string, label: string, input: string, help = '') => `
      <vscode-form-group variant="vertical">
        <vscode-label for="${id}">${label}</vscode-label>
        ${input}
        <vscode-form-helper><span id="${id}-help">${help}</span></vscode-form-helper>
        <vscode-form-helper><span id="${id}-error" class="error" aria-live="polite"></span></vscode-form-helper>
      </vscode-form-group>`;
    const check = (id: string, label: string, help: string, checked = false) => `
      <vscode-form-group variant="vertical">
        <vscode-checkbox id="${id}"${checked ? ' checked' : ''}>${label}</vscode-checkbox>
        <vscode-form-helper><span id="${id}-help">${help}</span></vscode-form-helper>
        <vscode-form-helper><span id="${id}-error" class="error" aria-live="polite"></span></vscode-form-helper>
      </vscode-form-group>`;
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Create Dev VM</title>
<style nonce="${nonce}">
  body { font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); color: var(--vscode-foreground); background: var(--vscode-editor-background); padding: 0 24px 24px; }
  main { max-width: 560px; }
  h1 { font-size: 1.5em; font-weight: 600; margin: 20px 0 4px; }
  h2 { font-size: 1.1em; font-weight: 600; margin: 20px 0 0; padding-top: 12px; border-top: 1px solid var(--vscode-widget-border, var(--vscode-panel-border)); }
  p.lead { color: var(--vscode-descriptionForeground); margin: 0 0 8px; }
  vscode-textfield, vscode-single-select { width: 100%; }
  .row { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
  .error { color: var(--vscode-errorForeground); }
  .error:empty { display: none; }
  #summary { color: var(--vscode-errorForeground); min-height: 1.4em; margin-top: 12px; }
  .actions { display: flex; gap: 8px; align-items: center; margin-top: 8px; }
  #busy { display: inline-flex; gap: 6px; align-items: center; color: var(--vscode-descriptionForeground); }
  #busy[hidden], #no-images[hidden] { display: none; }
  .share-row { display: grid; grid-template-columns: 1fr auto; gap: 4px 8px; align-items: center; padding: 8px 0; border-bottom: 1px solid var(--vscode-widget-border, var(--vscode-panel-border)); }
  .share-row .opts { display: flex; gap: 12px; align-items: center; }
  #shares:empty::before { content: 'No shared folders.'; color: var(--vscode-descriptionForeground); }
  #no-images { padding: 8px 12px; border-left: 3px solid var(--vscode-editorWarning-foreground); background: var(--vscode-textBlockQuote-background); }
</style>
</head>
<body>
<main>
<h1>Create a dev VM</h1>
<p class="lead">A new VM on a copy-on-write overlay of the image; its first user is set up on the first boot.</p>
<form id="form" novalidate>
  <p id="no-images" hidden>No images yet. Run <b>Dev VMs: Build Image…</b> or <b>Import Image…</b> first.</p>
  ${field('image', 'Image', '<vscode-single-select id="image" name="image"></vscode-single-select>', 'The read-only base disk, shared by every VM made from it.')}
  ${field('name', 'VM name', '<vscode-textfield id="name" name="name" autocomplete="off" placeholder="dev"></vscode-textfield>', 'Lowercase letters, digits and dashes. SSH host: devvm-&lt;name&gt;.')}
  <h2>First user</h2>
  ${field('fullName', 'Full name', '<vscode-textfield id="fullName" name="fullName" autocomplete="off" placeholder="Alice Example"></vscode-textfield>')}
  ${field('user', 'Short name', '<vscode-textfield id="user" name="user" autocomplete="off" placeholder="alice"></vscode-textfield>', 'The account name and home folder (/home/&lt;short name&gt;). Derived from the full name until you edit it.')}
  ${field('password', 'Password', '<vscode-textfield id="password" name="password" type="password" autocomplete="new-password"></vscode-textfield>', 'Optional. Without one the account is key-only (SSH) with passwordless sudo. Only a SHA-512 hash is stored.')}
  ${field('confirm', 'Confirm password', '<vscode-textfield id="confirm" name="confirm" type="password" autocomplete="new-password"></vscode-textfield>')}
  ${check('autologin', 'Log in automatically on the console', 'The serial console opens a shell for this user without a password prompt.')}
  ${check('ssh', 'Enable SSH', 'Forwards a port on 127.0.0.1 to the guest; needed to connect VS Code.', true)}
  <h2>Resources</h2>
  <div class="row">
    ${field('cpus', 'vCPUs', '<vscode-textfield id="cpus" name="cpus" type="number" min="1"></vscode-textfield>')}
    ${field('memoryMiB', 'Memory (MiB)', '<vscode-textfield id="memoryMiB" name="memoryMiB" type="number" min="256" step="256"></vscode-textfield>')}
    ${field('diskGiB', 'Disk (GiB)', '<vscode-textfield id="diskGiB" name="diskGiB" type="number" min="1"></vscode-textfield>', 'Grows on demand.')}
  </div>
  <h2>Shared folders</h2>
  <vscode-form-group variant="vertical">
    <div id="shares" aria-label="Shared folders"></div>
    <vscode-form-helper><span id="shares-help">Host folders the guest mounts at every boot (virtiofs where the host can run it, else 9p). The guest path defaults to the same path, so paths in logs and tools match.</span></vscode-form-helper>
    <vscode-form-helper><span id="shares-error" class="error" aria-live="polite"></span></vscode-form-helper>
    <div class="actions"><vscode-button id="share-add" secondary type="button">Add Folder…</vscode-button></div>
  </vscode-form-group>
  <h2>Ports</h2>
  ${field('ports', 'Static port forwards', '<vscode-textfield id="ports" name="ports" autocomplete="off" placeholder="8080:80 5432"></vscode-textfield>', 'HOST:GUEST, or one port for both; /udp for UDP; separated by spaces. Bound to 127.0.0.1 unless you write an address (ADDRESS:HOST:GUEST). Ports a guest process listens on are forwarded without this.')}
  <h2>Display</h2>
  ${check('display', 'Display', 'A screen for the Display tab (Dev VMs: Open Display), with keyboard and mouse. Its VNC server is a 0600 unix socket, never a network port.')}
  ${field('displaySize', 'Screen size', '<vscode-textfield id="displaySize" name="displaySize" autocomplete="off" placeholder="auto"></vscode-textfield>', '"auto" follows the Display tab\'s size (640x480 to 2560x1600); WIDTHxHEIGHT, like 1280x800, keeps one size.')}
  <h2>When ready</h2>
  ${check('connect', 'Connect VS Code when ready', 'Starts the VM, waits for SSH and opens its home folder over Remote-SSH.', true)}
  <div id="summary" role="alert"></div>
  <div class="actions">
    <vscode-button id="create" type="button">Create VM</vscode-button>
    <vscode-button id="cancel" secondary type="button">Cancel</vscode-button>
    <span id="busy" hidden><vscode-progress-ring aria-label="working"></vscode-progress-ring><span id="busy-text"></span></span>
  </div>
</form>
</main>
<script nonce="${nonce}" src="${script}"></script>
</body>
</html>`;
  }
}
