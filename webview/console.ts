/**
 * A console (serial or SSH) in a webview, for windows where VS Code will not open a
 * terminal: in Restricted Mode every terminal, even an extension's pseudoterminal, waits
 * for workspace trust, and devvm runs nothing from the workspace. xterm.js renders; the
 * extension owns the connection.
 */
import { Terminal, type ITheme } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import type { ToConsole } from '../src/extension/consoleProtocol';

interface VsCodeApi {
  postMessage(msg: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;
const vscode = acquireVsCodeApi();

// xterm.js adds <style> elements at run time; the CSP only admits styles with this page's
// nonce, so every style element created here carries it (no 'unsafe-inline' needed).
const nonce = (document.currentScript as HTMLScriptElement | null)?.nonce ?? '';
const createElement = document.createElement.bind(document);
document.createElement = ((tag: string, options?: ElementCreationOptions) => {
  const el = createElement(tag, options);
  if (tag.toLowerCase() === 'style' && nonce) (el as HTMLStyleElement).nonce = nonce;
  return el;
}) as typeof document.createElement;

const ANSI = ['Black', 'Red', 'Green', 'Yellow', 'Blue', 'Magenta', 'Cyan', 'White'] as const;

/** The terminal colors of the current VS Code theme, from the webview's CSS variables. */
function theme(): ITheme {
  const css = getComputedStyle(document.body);
  const v = (name: string, fallback?: string) => css.getPropertyValue(`--vscode-${name}`).trim() || fallback;
  const t: Record<string, string | undefined> = {
    background: v('terminal-background', v('panel-background', v('editor-background'))),
    foreground: v('terminal-foreground', v('editor-foreground')),
    cursor: v('terminalCursor-foreground', v('terminal-foreground')),
    selectionBackground: v('terminal-selectionBackground', v('editor-selectionBackground')),
  };
  for (const c of ANSI) {
    t[c.toLowerCase()] = v(`terminal-ansi${c}`);
    t[`bright${c}`] = v(`terminal-ansiBright${c}`);
  }
  return t as ITheme;
}

const host = document.getElementById('terminal')!;
const status = document.getElementById('status')!;
const term = new Terminal({
  convertEol: false,
  cursorBlink: true,
  fontFamily: getComputedStyle(document.body).getPropertyValue('--vscode-editor-font-family').trim() || 'monospace',
  fontSize: 13,
  scrollback: 5000,
  theme: theme(),
});
term.open(host);

/** Rows and columns that fit the window, from the renderer's cell size. */
function fit(): { cols: number; rows: number } {
  const core = (term as unknown as { _core?: { _renderService?: { dimensions?: { css: { cell: { width: number; height: number } } } } } })._core;
  const cell = core?._renderService?.dimensions?.css.cell;
  const rect = host.getBoundingClientRect();
  if (!cell || !cell.width || !cell.height) return { cols: term.cols, rows: term.rows };
  const cols = Math.max(20, Math.floor((rect.width - 14) / cell.width));
  const rows = Math.max(5, Math.floor(rect.height / cell.height));
  if (cols !== term.cols || rows !== term.rows) term.resize(cols, rows);
  return { cols, rows };
}

let resizeTimer: ReturnType<typeof setTimeout> | undefined;
new ResizeObserver(() => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => vscode.postMessage({ type: 'resize', ...fit() }), 100);
}).observe(host);
// Theme switches change the body's class.
new MutationObserver(() => (term.options.theme = theme())).observe(document.body, { attributes: true, attributeFilter: ['class'] });

// Keys VS Code needs (Command Palette, Quick Open, view switches) go to the workbench, as
// in its own terminal: xterm would otherwise swallow them, leaving no way to the palette.
term.attachCustomKeyEventHandler((e) => {
  const mod = e.ctrlKey || e.metaKey;
  if (e.key === 'F1') return false;
  if (mod && e.shiftKey && /^[pefxgd]$/i.test(e.key)) return false;
  if (mod && !e.shiftKey && !e.altKey && /^p$/i.test(e.key)) return false;
  if (e.ctrlKey && (e.key === 'Tab' || e.key === '`' || e.key === 'PageUp' || e.key === 'PageDown')) return false;
  return true;
});

term.onData((data) => {
  for (let i = 0; i < data.length; i += 65536) vscode.postMessage({ type: 'input', data: data.slice(i, i + 65536) });
});

window.addEventListener('message', (e: MessageEvent) => {
  const m = e.data as ToConsole;
  if (!m || typeof m !== 'object') return;
  if (m.type === 'data' && typeof m.data === 'string') term.write(m.data);
  if (m.type === 'status' && typeof m.text === 'string') status.textContent = m.text;
});

term.focus();
vscode.postMessage({ type: 'ready', ...fit() });
