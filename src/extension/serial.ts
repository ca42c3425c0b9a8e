/**
 * Consoles: the serial console (QEMU's chardev server on serial.sock, opened with the tail
 * of serial.log so the latest output, often the login prompt, shows before typing) and
 * the SSH shell. In a trusted window they are integrated terminals; in Restricted Mode,
 * where VS Code asks for workspace trust before opening any terminal (even an extension's
 * pseudoterminal), they open in a webview with xterm.js instead, so they work untrusted.
 * QEMU serves one serial client at a time, so there is one serial console per VM.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import * as vscode from 'vscode';
import type { SshTarget } from '../shared/rpc';
import { parseFromConsole, type ToConsole } from './consoleProtocol';

const TAIL_BYTES = 4096;

/** The last bytes of the log, starting at a line boundary, with bare LFs made CRLF for a terminal. */
export function logTail(file: string, bytes = TAIL_BYTES): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const size = statSync(file).size;
    const start = Math.max(0, size - bytes);
    const buf = Buffer.alloc(size - start);
    readSync(fd, buf, 0, buf.length, start);
    let text = buf.toString('utf8');
    if (start > 0) text = text.slice(text.indexOf('\n') + 1);
    return text.replace(/\r?\n/g, '\r\n');
  } finally {
    closeSync(fd);
  }
}

/** A byte stream to a console: what the terminal and the webview have in common. */
interface Transport {
  open(write: (data: string) => void): void;
  input(data: string): void;
  close(): void;
}

const dim = (s: string) => `\x1b[2m${s}\x1b[0m`;

function serialTransport(vm: string, dir: string, serialLog: string, log: (m: string) => void): Transport {
  let sock: net.Socket | null = null;
  const decoder = new StringDecoder('utf8');
  return {
    open: (write) => {
      const tail = logTail(serialLog);
      if (tail) write(`${dim('--- recent console output (serial.log) ---')}\r\n${tail}`);
      write(`\r\n${dim(`--- live serial console of ${vm}; close this tab to detach ---`)}\r\n`);
      const s = net.createConnection(path.join(dir, 'serial.sock'));
      sock = s;
      s.on('connect', () => {
        log(`serial console of ${vm} attached`);
        // A fresh prompt, so there is something to answer even when the tail was empty.
        s.write('\r');
      });
      s.on('data', (d) => write(decoder.write(d)));
      s.on('error', (e: NodeJS.ErrnoException) => {
        const why = e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'the VM is not running' : e.message;
        write(`\r\n${dim(`--- cannot attach: ${why} ---`)}\r\n`);
      });
      s.on('close', () => {
        if (sock === s) write(`\r\n${dim('--- console closed (the VM stopped) ---')}\r\n`);
        sock = null;
      });
    },
    input: (data) => void sock?.write(data),
    close: () => {
      const s = sock;
      sock = null;
      s?.destroy();
    },
  };
}

/** ssh -tt through pipes: the remote side gets a tty, the webview does the rendering. */
function sshTransport(t: SshTarget, log: (m: string) => void): Transport {
  let child: ReturnType<typeof spawn> | null = null;
  const decoder = new StringDecoder('utf8');
  return {
    open: (write) => {
      const args = ['-tt', '-F', t.configFile, t.host];
      log(`ssh ${args.join(' ')}`);
      const c = spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'] });
      child = c;
      c.stdout!.on('data', (d: Buffer) => write(decoder.write(d)));
      c.stderr!.on('data', (d: Buffer) => write(d.toString('utf8').replace(/\r?\n/g, '\r\n')));
      c.on('error', (e) => write(`\r\n${dim(`--- cannot run ssh: ${e.message} ---`)}\r\n`));
      c.on('exit', (code) => {
        if (child === c) write(`\r\n${dim(`--- ssh exited (${code}) ---`)}\r\n`);
        child = null;
      });
    },
    input: (data) => void child?.stdin?.write(data),
    close: () => {
      const c = child;
      child = null;
      c?.kill();
    },
  };
}

/** Whether VS Code opens terminals in this window without asking for workspace trust. */
function terminalsAllowed(): boolean {
  return vscode.workspace.isTrusted || vscode.workspace.getConfiguration('terminal.integrated').get<boolean>('allowInUntrustedWorkspace') === true;
}

const open = new Map<string, { reveal(): void }>();

function ptyTerminal(key: string, name: string, transport: Transport): void {
  const write = new vscode.EventEmitter<string>();
  const pty: vscode.Pseudoterminal = {
    onDidWrite: write.event,
    open: () => transport.open((d) => write.fire(d)),
    close: () => {
      transport.close();
      open.delete(key);
    },
    handleInput: (d) => transport.input(d),
  };
  const t = vscode.window.createTerminal({ name, pty, iconPath: new vscode.ThemeIcon('terminal') });
  open.set(key, { reveal: () => t.show() });
  t.show();
}

function webviewConsole(key: string, title: string, extensionUri: vscode.Uri, transport: Transport, log: (m: string) => void): void {
  const root = vscode.Uri.joinPath(extensionUri, 'dist', 'webview');
  const panel = vscode.window.createWebviewPanel('devvm.console', title, vscode.ViewColumn.Active, {
    enableScripts: true,
    retainContextWhenHidden: true, // the console's screen is its state
    localResourceRoots: [root],
  });
  panel.iconPath = vscode.Uri.joinPath(extensionUri, 'media', 'devvm.svg');
  const w = panel.webview;
  const nonce = randomBytes(18).toString('base64');
  const csp = ["default-src 'none'", `script-src 'nonce-${nonce}'`, `style-src ${w.cspSource} 'nonce-${nonce}'`, `font-src ${w.cspSource}`].join('; ');
  w.html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<link rel="stylesheet" href="${w.asWebviewUri(vscode.Uri.joinPath(root, 'console.css'))}">
<title>${title.replace(/[<>&"]/g, '')}</title>
<style nonce="${nonce}">
  html, body { height: 100%; margin: 0; padding: 0; overflow: hidden; background: var(--vscode-terminal-background, var(--vscode-panel-background)); }
  body { display: flex; flex-direction: column; }
  #status { font-family: var(--vscode-font-family); font-size: 12px; color: var(--vscode-descriptionForeground); padding: 4px 8px; }
  #status:empty { display: none; }
  #terminal { flex: 1; padding: 4px 0 0 8px; min-height: 0; }
</style></head>
<body><div id="status" role="status"></div><div id="terminal" role="application" aria-label="${title.replace(/[<>&"]/g, '')}"></div>
<script nonce="${nonce}" src="${w.asWebviewUri(vscode.Uri.joinPath(root, 'console.js'))}"></script>
</body></html>`;
  let started = false;
  const post = (m: ToConsole) => void w.postMessage(m);
  w.onDidReceiveMessage((raw: unknown) => {
    const m = parseFromConsole(raw);
    if (!m) return log(`ignored a malformed message from the ${title} webview`);
    if (m.type === 'ready' && !started) {
      started = true;
      post({ type: 'status', text: 'This window is in Restricted Mode, where VS Code opens no terminals, so this console runs in a tab. It runs nothing from the workspace.' });
      transport.open((data) => post({ type: 'data', data }));
    } else if (m.type === 'input') transport.input(m.data);
  });
  panel.onDidDispose(() => {
    transport.close();
    open.delete(key);
  });
  open.set(key, { reveal: () => panel.reveal() });
}

export interface ConsoleDeps {
  extensionUri: vscode.Uri;
  log: (m: string) => void;
}

export function openSerialConsole(d: ConsoleDeps, vm: string, dir: string, serialLog: string): void {
  const key = `serial:${vm}`;
  const have = open.get(key);
  if (have) return have.reveal();
  const transport = serialTransport(vm, dir, serialLog, d.log);
  if (terminalsAllowed()) ptyTerminal(key, `${vm} (serial)`, transport);
  else webviewConsole(key, `${vm} (serial)`, d.extensionUri, transport, d.log);
}

export function openSshShell(d: ConsoleDeps, vm: string, t: SshTarget): void {
  if (terminalsAllowed()) {
    // A real terminal: ssh with devvm's own config file, whether or not ~/.ssh/config includes it.
    const term = vscode.window.createTerminal({ name: `${vm} (ssh)`, shellPath: 'ssh', shellArgs: ['-F', t.configFile, t.host], iconPath: new vscode.ThemeIcon('remote') });
    term.show();
    return;
  }
  const key = `ssh:${vm}:${Date.now()}`;
  webviewConsole(key, `${vm} (ssh)`, d.extensionUri, sshTransport(t, d.log), d.log);
}
