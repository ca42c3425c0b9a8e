/**
 * The Display tab: noVNC's RFB client drawing the VM's screen. noVNC never opens a socket
 * here: it is given a channel object shaped like a WebSocket (what its Websock.attach
 * accepts) whose bytes travel through postMessage to the extension, which owns the unix
 * socket. The view's size goes to the extension, which asks the helper to resize the guest;
 * noVNC scales whatever size the guest keeps to fit (never a blank area).
 */
import RFB from '@novnc/novnc';
import type { FromDisplay, ToDisplay } from '../src/extension/displayProtocol';

interface VsCodeApi {
  postMessage(msg: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;
const vscode = acquireVsCodeApi();
const post = (m: FromDisplay) => vscode.postMessage(m);

const screen = document.getElementById('screen')!;
const status = document.getElementById('status')!;
const note = document.getElementById('note')!;

type Handler<E> = ((e: E) => void) | null;

/**
 * What noVNC takes for a WebSocket. Websock.attach checks these property names exist
 * (own fields or prototype methods), sets binaryType and the on* handlers, and reads
 * readyState. It starts open: the extension says `open` only once its socket connected.
 */
class Channel {
  binaryType = 'arraybuffer';
  protocol = '';
  readyState: number = WebSocket.OPEN;
  onopen: Handler<Event> = null;
  onmessage: Handler<{ data: ArrayBuffer }> = null;
  onclose: Handler<{ code: number; reason: string; wasClean: boolean }> = null;
  onerror: Handler<Event> = null;

  constructor(readonly conn: number) {}

  send(data: ArrayBuffer | ArrayBufferView): void {
    if (this.readyState !== WebSocket.OPEN) return;
    // A copy: noVNC reuses its send buffer right after this returns.
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data.slice(0)) : new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    if (bytes.length) post({ type: 'data', conn: this.conn, data: bytes });
  }

  close(): void {
    if (this.readyState === WebSocket.CLOSED) return;
    this.readyState = WebSocket.CLOSED;
    post({ type: 'close', conn: this.conn });
    this.onclose?.({ code: 1000, reason: '', wasClean: true });
  }

  /** Bytes from the VM. */
  receive(data: Uint8Array): void {
    if (this.readyState === WebSocket.OPEN) this.onmessage?.({ data: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer });
  }

  /** The extension's socket closed. */
  ended(): void {
    if (this.readyState === WebSocket.CLOSED) return;
    this.readyState = WebSocket.CLOSED;
    this.onclose?.({ code: 1006, reason: 'the VM closed its display', wasClean: false });
  }
}

/** Keys VS Code needs (Command Palette, Quick Open, view switches) stay the workbench's, as in webview/console.ts. */
function workbenchKey(e: KeyboardEvent): boolean {
  const mod = e.ctrlKey || e.metaKey;
  if (e.key === 'F1') return true;
  if (mod && e.shiftKey && /^[pefxgd]$/i.test(e.key)) return true;
  if (mod && !e.shiftKey && !e.altKey && /^p$/i.test(e.key)) return true;
  return e.ctrlKey && (e.key === 'Tab' || e.key === '`' || e.key === 'PageUp' || e.key === 'PageDown');
}

let channel: Channel | null = null;
let rfb: RFB | null = null;
let shown = { width: 0, height: 0 };
/** Codes of keys held down that belong to the workbench: noVNC never sees their events. */
const workbenchCodes = new Set<string>();

type KeyListener = (e: KeyboardEvent) => void;
interface NoVncKeyboard {
  _eventHandlers: { keydown: KeyListener; keyup: KeyListener };
}

/**
 * VS Code's webview host forwards a keydown to the workbench (so its keybindings run) from a
 * listener on the window; noVNC's keyboard stops every key's propagation at the canvas. The
 * workbench's keys skip noVNC's listeners (noVNC 1.7.0 adds `_eventHandlers` when it grabs
 * the keyboard, after the constructor), so they bubble up and never reach the guest.
 */
function passWorkbenchKeys(r: RFB): void {
  const kb = (r as unknown as { _keyboard?: NoVncKeyboard })._keyboard;
  if (!kb?._eventHandlers) return;
  const { keydown, keyup } = kb._eventHandlers;
  kb._eventHandlers.keydown = (e) => {
    if (workbenchKey(e)) return void workbenchCodes.add(e.code);
    keydown(e);
  };
  kb._eventHandlers.keyup = (e) => {
    if (workbenchCodes.delete(e.code)) return;
    keyup(e);
  };
}

function start(conn: number): void {
  stop();
  const ch = new Channel(conn);
  channel = ch;
  const r = new RFB(screen, ch, { shared: true });
  rfb = r;
  r.scaleViewport = true; // a guest that keeps another size is scaled to fit
  r.resizeSession = false; // resizes go through the extension and the helper (debounced, limited)
  r.clipViewport = false;
  r.focusOnClick = true;
  r.background = 'var(--vscode-editor-background)';
  passWorkbenchKeys(r);
  r.addEventListener('connect', () => {
    post({ type: 'rfb', conn, event: 'connect' });
    r.focus({ preventScroll: true });
  });
  r.addEventListener('disconnect', () => post({ type: 'rfb', conn, event: 'disconnect' }));
  shown = { width: 0, height: 0 };
}

function stop(): void {
  const r = rfb;
  rfb = null;
  channel?.ended();
  channel = null;
  try {
    r?.disconnect();
  } catch {
    // already disconnected
  }
}

/** Tells the extension the screen's size once noVNC changes it (the guest took a new mode). */
function reportDesktop(conn: number): void {
  const fb = rfb as unknown as { _fbWidth?: number; _fbHeight?: number } | null;
  const width = fb?._fbWidth ?? 0;
  const height = fb?._fbHeight ?? 0;
  if (width > 0 && height > 0 && (width !== shown.width || height !== shown.height)) {
    shown = { width, height };
    post({ type: 'desktop', conn, width, height });
  }
}

window.addEventListener('message', (e: MessageEvent) => {
  const m = e.data as ToDisplay;
  if (!m || typeof m !== 'object') return;
  switch (m.type) {
    case 'open':
      if (typeof m.conn === 'number') start(m.conn);
      break;
    case 'data':
      if (channel && m.conn === channel.conn && m.data instanceof Uint8Array) {
        channel.receive(m.data);
        reportDesktop(m.conn);
      }
      break;
    case 'closed':
      if (channel && m.conn === channel.conn) stop();
      break;
    case 'status':
      status.textContent = typeof m.text === 'string' ? m.text : '';
      document.body.classList.toggle('off', status.textContent !== '');
      break;
    case 'note':
      note.textContent = typeof m.text === 'string' ? m.text : '';
      break;
  }
});

// The view's size in CSS pixels, once per frame at most; the extension debounces further.
let sent = { width: 0, height: 0 };
let frame = 0;
new ResizeObserver(() => {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    const rect = screen.getBoundingClientRect();
    const size = { width: Math.floor(rect.width), height: Math.floor(rect.height) };
    if (size.width < 1 || size.height < 1 || (size.width === sent.width && size.height === sent.height)) return;
    sent = size;
    post({ type: 'size', ...size });
  });
}).observe(screen);

screen.addEventListener('click', () => rfb?.focus({ preventScroll: true }));

post({ type: 'ready' });
