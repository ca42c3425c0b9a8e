/**
 * The Display tab: one editor-tab webview per VM (opened again, it is revealed), showing
 * the VM's screen with noVNC (webview/display.ts). It is a webview, so it works in
 * Restricted Mode. The webview has no network at all (no connect-src): its bytes go
 * through postMessage to a DisplaySession here, which alone talks to the VM's VNC socket.
 */
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';
import { Rpc } from '../shared/rpc';
import type { VmSummary } from '../shared/types';
import { DisplaySession } from './displaySession';
import type { HelperClient } from './helperclient';

export interface DisplayPanelDeps {
  extensionUri: vscode.Uri;
  client: HelperClient;
  /** The model's latest summary of a VM. */
  vm(name: string): VmSummary | undefined;
  /** The model's VM changes (VmTree.onDidChangeVms). */
  onDidChangeVms: vscode.Event<readonly VmSummary[]>;
  log: (m: string) => void;
}

const open = new Map<string, vscode.WebviewPanel>();

export const DISPLAY_VIEW_TYPE = 'devvm.display';

/** Opens (or reveals) the Display tab of `vm`. */
export function openDisplay(d: DisplayPanelDeps, vm: string): void {
  const have = open.get(vm);
  if (have) return have.reveal();
  const root = vscode.Uri.joinPath(d.extensionUri, 'dist', 'webview');
  const panel = vscode.window.createWebviewPanel(DISPLAY_VIEW_TYPE, `${vm} (display)`, vscode.ViewColumn.Active, {
    enableScripts: true,
    // The screen is redrawn from the VM on a reconnect, but a reconnect per tab switch is churn.
    retainContextWhenHidden: true,
    localResourceRoots: [root],
  });
  panel.iconPath = vscode.Uri.joinPath(d.extensionUri, 'media', 'devvm.svg');
  open.set(vm, panel);
  const w = panel.webview;
  w.html = html(w, root, vm);
  const session = new DisplaySession(
    {
      vm,
      display: (name) => d.client.request(Rpc.vmDisplay, { name }),
      resize: (name, s) => d.client.request(Rpc.vmDisplayResize, { name, width: s.width, height: s.height }),
      post: (m) => void w.postMessage(m),
      log: d.log,
    },
    d.vm(vm),
  );
  const subs = [
    w.onDidReceiveMessage((raw: unknown) => session.onMessage(raw)),
    d.onDidChangeVms(() => session.vmChanged(d.vm(vm))),
  ];
  panel.onDidDispose(() => {
    // Closing the tab closes the socket.
    session.dispose();
    for (const s of subs) s.dispose();
    if (open.get(vm) === panel) open.delete(vm);
  });
}

const esc = (s: string) => s.replace(/[<>&"']/g, '');

function html(w: vscode.Webview, root: vscode.Uri, vm: string): string {
  const nonce = randomBytes(18).toString('base64');
  // No connect-src: the page reaches nothing; noVNC draws cursors and JPEG rects from data: URLs.
  const csp = ["default-src 'none'", `script-src 'nonce-${nonce}'`, `style-src ${w.cspSource} 'nonce-${nonce}'`, 'img-src data:'].join('; ');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<title>${esc(vm)} (display)</title>
<style nonce="${nonce}">
  html, body { height: 100%; margin: 0; padding: 0; overflow: hidden; background: var(--vscode-editor-background); color: var(--vscode-foreground); font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); }
  /* The frame: a thin border in the theme's colors around the screen, which fills the rest. */
  #screen { position: absolute; inset: 4px; border: 1px solid var(--vscode-panel-border, var(--vscode-widget-border, transparent)); box-sizing: border-box; overflow: hidden; }
  #status { position: absolute; inset: 0; display: flex; align-items: center; justify-content: center; text-align: center; padding: 16px; font-size: 1.2em; color: var(--vscode-descriptionForeground); pointer-events: none; }
  #status:empty { display: none; }
  body.off #screen > div { visibility: hidden; }
  /* Over the screen, not beside it: showing it must not change the view's size. */
  #note { position: absolute; right: 10px; bottom: 10px; max-width: 60%; padding: 3px 8px; font-size: 12px; color: var(--vscode-editorWidget-foreground, var(--vscode-foreground)); background: var(--vscode-editorWidget-background); border: 1px solid var(--vscode-editorWidget-border, var(--vscode-widget-border, transparent)); border-radius: 3px; opacity: 0.9; pointer-events: none; }
  #note:empty { display: none; }
</style></head>
<body class="off"><div id="screen" role="application" aria-label="Screen of ${esc(vm)}"></div>
<div id="status" role="status">Connecting…</div><div id="note" role="note"></div>
<script type="module" nonce="${nonce}" src="${w.asWebviewUri(vscode.Uri.joinPath(root, 'display.js'))}"></script>
</body></html>`;
}
