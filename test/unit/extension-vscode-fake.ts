/**
 * A stand-in for the `vscode` module so unit tests can load the extension's command
 * files (which import it) without VS Code. Import it before anything that imports
 * `vscode`. Enough of the API for activate() to run (commands are recorded in `fake`, and
 * registering one id twice throws, as VS Code does); dialogs answer "dismissed" unless a
 * test sets `fake.answer`. Messages, executed commands and output channels are recorded.
 */
import Module from 'node:module';

type Resolve = (request: string, ...rest: unknown[]) => string;
const mod = Module as unknown as { _resolveFilename: Resolve };
const resolve = mod._resolveFilename;
mod._resolveFilename = function (this: unknown, request: string, ...rest: unknown[]) {
  return request === 'vscode' ? __filename : resolve.call(this, request, ...rest);
};

class Disposable {
  constructor(private readonly f: () => void = () => {}) {}
  dispose(): void {
    this.f();
  }
}
class EventEmitter<T> {
  private listeners: ((v: T) => void)[] = [];
  event = (l: (v: T) => void) => {
    this.listeners.push(l);
    return new Disposable(() => (this.listeners = this.listeners.filter((x) => x !== l)));
  };
  fire(v: T): void {
    for (const l of [...this.listeners]) l(v);
  }
  get listenerCount(): number {
    return this.listeners.length;
  }
  dispose(): void {}
}
class ThemeIcon {
  constructor(
    readonly id: string,
    readonly color?: ThemeColor,
  ) {}
}
class ThemeColor {
  constructor(readonly id: string) {}
}
class MarkdownString {
  constructor(
    readonly value = '',
    readonly supportThemeIcons = false,
  ) {}
}
class TreeItem {
  id?: string;
  description?: string;
  tooltip?: MarkdownString | string;
  iconPath?: ThemeIcon;
  contextValue?: string;
  constructor(
    readonly label: string,
    readonly collapsibleState = 0,
  ) {}
}

interface FakeUri {
  scheme: string;
  authority?: string;
  path: string;
  fsPath: string;
  toString(): string;
}
const fileUri = (p: string): FakeUri => ({ scheme: 'file', path: p, fsPath: p, toString: () => `file://${p}` });

/** A plain output channel: what was written and whether it was shown. */
export interface FakeChannel {
  name: string;
  text: string;
  shown: number;
}

const grant = new EventEmitter<void>();

/** What the tests set and read. */
export const fake = {
  settings: {} as Record<string, unknown>,
  commands: new Map<string, (...args: unknown[]) => unknown>(),
  errors: [] as string[],
  /** Information and warning messages shown. */
  infos: [] as string[],
  /** URIs given to env.openExternal, text given to the clipboard. */
  opened: [] as string[],
  clipboard: [] as string[],
  log: [] as string[],
  /** Every information, warning and error message with its buttons (errors also in `errors`). */
  messages: [] as { kind: 'info' | 'warning' | 'error'; message: string; actions: string[] }[],
  /** The button a message is answered with (undefined: dismissed). */
  answer: (_message: string, _actions: string[]): string | undefined => undefined,
  /** executeCommand calls, in order (registered commands also run). */
  executed: [] as { id: string; args: unknown[] }[],
  channels: [] as FakeChannel[],
  progress: [] as string[],
  trusted: true,
  /** Listeners waiting for a trust grant. */
  get trustWaiters(): number {
    return grant.listenerCount;
  },
  folders: undefined as { name: string; uri: FakeUri; index: number }[] | undefined,
  installed: new Set<string>(),
  grantTrust(): void {
    this.trusted = true;
    grant.fire();
  },
  folder(p: string, name = p.split('/').pop()!) {
    return { name, uri: fileUri(p), index: 0 };
  },
  fileUri,
  reset(): void {
    this.errors.length = 0;
    this.messages.length = 0;
    this.executed.length = 0;
    this.channels.length = 0;
    this.progress.length = 0;
    this.answer = () => undefined;
    this.trusted = true;
    this.folders = undefined;
    this.installed.clear();
  },
};

const message = (kind: 'info' | 'warning' | 'error') => async (m: string, ...rest: unknown[]) => {
  const actions = rest.filter((a): a is string => typeof a === 'string');
  fake.messages.push({ kind, message: m, actions });
  if (kind === 'error') fake.errors.push(m);
  else fake.infos.push(m);
  return fake.answer(m, actions);
};

const noop = () => new Disposable();
const channel = {
  info: (m: string) => void fake.log.push(`info: ${m}`),
  warn: (m: string) => void fake.log.push(`warn: ${m}`),
  error: (m: string) => void fake.log.push(`error: ${m}`),
  show: () => {},
  dispose: () => {},
};

export const window = {
  state: { focused: true },
  showErrorMessage: message('error'),
  showInformationMessage: message('info'),
  showWarningMessage: message('warning'),
  showOpenDialog: async () => undefined,
  showQuickPick: async () => undefined,
  showInputBox: async () => undefined,
  createOutputChannel: (name: string, opts?: unknown) => {
    if (opts) return channel; // the log channel
    const c: FakeChannel = { name, text: '', shown: 0 };
    fake.channels.push(c);
    return {
      append: (t: string) => void (c.text += t),
      appendLine: (t: string) => void (c.text += `${t}\n`),
      clear: () => void (c.text = ''),
      show: () => void c.shown++,
      dispose: () => {},
    };
  },
  createTreeView: () => ({ message: undefined as string | undefined, dispose: () => {} }),
  createStatusBarItem: () => ({ text: '', tooltip: '', show: () => {}, dispose: () => {} }),
  withProgress: async (_o: unknown, f: (p: { report(v: { message?: string }): void }) => Promise<unknown>) => f({ report: (v) => v.message && void fake.progress.push(v.message) }),
  onDidChangeWindowState: noop,
};
export const commands = {
  registerCommand: (id: string, f: (...args: unknown[]) => unknown) => {
    if (fake.commands.has(id)) throw new Error(`command '${id}' already exists`);
    fake.commands.set(id, f);
    return new Disposable(() => fake.commands.delete(id));
  },
  executeCommand: async (id: string, ...args: unknown[]) => {
    fake.executed.push({ id, args });
    return fake.commands.get(id)?.(...args);
  },
};
const watcher = () => ({ onDidCreate: noop, onDidDelete: noop, onDidChange: noop, dispose: () => {} });
export const workspace = {
  textDocuments: [],
  get workspaceFolders() {
    return fake.folders;
  },
  get isTrusted() {
    return fake.trusted;
  },
  onDidGrantWorkspaceTrust: grant.event,
  onDidChangeWorkspaceFolders: noop,
  findFiles: async () => [],
  createFileSystemWatcher: watcher,
  getConfiguration: () => ({ get: (k: string) => fake.settings[k] }),
  registerTextDocumentContentProvider: noop,
  onDidChangeConfiguration: noop,
};
export const extensions = { getExtension: (id: string) => (fake.installed.has(id) ? { id } : undefined) };
export const env = {
  appName: 'Fake Code',
  uriScheme: 'fake',
  clipboard: { writeText: async (t: string) => void fake.clipboard.push(t) },
  openExternal: async (u: { toString(): string }) => (fake.opened.push(u.toString()), true),
};
export const Uri = {
  parse: (s: string) => ({ toString: () => s }),
  from: (o: { scheme: string; authority?: string; path: string }) => ({ ...o, fsPath: o.path, toString: () => (o.authority !== undefined ? `${o.scheme}://${o.authority}${o.path}` : `${o.scheme}:${o.path}`) }),
  file: fileUri,
  joinPath: (u: { toString(): string }, ...p: string[]) => ({ toString: () => [u.toString(), ...p].join('/') }),
};
export const ProgressLocation = { Notification: 15 };
export const ViewColumn = { Active: -1, Beside: -2 };
export const QuickPickItemKind = { Separator: -1 };
export const StatusBarAlignment = { Left: 1, Right: 2 };
export const TreeItemCollapsibleState = { None: 0, Collapsed: 1, Expanded: 2 };
export { Disposable, EventEmitter, MarkdownString, ThemeColor, ThemeIcon, TreeItem };
