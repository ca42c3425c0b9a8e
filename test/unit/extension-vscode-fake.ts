/**
 * A stand-in for the `vscode` module so unit tests can load the extension's command
 * files (which import it) without VS Code. Import it before anything that imports
 * `vscode`. Enough of the API for activate() to run (commands are recorded in `fake`, and
 * registering one id twice throws, as VS Code does); dialogs answer "dismissed".
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
    return new Disposable();
  };
  fire(v: T): void {
    for (const l of this.listeners) l(v);
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
  showErrorMessage: async (m: string) => void fake.errors.push(m),
  showInformationMessage: async (m: string) => void fake.infos.push(m),
  showWarningMessage: async (m: string) => void fake.infos.push(m),
  showOpenDialog: async () => undefined,
  showQuickPick: async () => undefined,
  showInputBox: async () => undefined,
  createOutputChannel: () => channel,
  createTreeView: () => ({ message: undefined as string | undefined, dispose: () => {} }),
  createStatusBarItem: () => ({ text: '', tooltip: '', show: () => {}, dispose: () => {} }),
  withProgress: async (_o: unknown, f: (p: { report(): void }) => Promise<unknown>) => f({ report: () => {} }),
  onDidChangeWindowState: noop,
};
export const commands = {
  registerCommand: (id: string, f: (...args: unknown[]) => unknown) => {
    if (fake.commands.has(id)) throw new Error(`command '${id}' already exists`);
    fake.commands.set(id, f);
    return new Disposable(() => fake.commands.delete(id));
  },
  executeCommand: async () => undefined,
};
export const workspace = {
  textDocuments: [],
  workspaceFolders: undefined,
  getConfiguration: () => ({ get: (k: string) => fake.settings[k] }),
  registerTextDocumentContentProvider: noop,
  onDidChangeConfiguration: noop,
};
export const extensions = { getExtension: () => undefined };
export const env = {
  appName: 'Fake Code',
  uriScheme: 'fake',
  clipboard: { writeText: async (t: string) => void fake.clipboard.push(t) },
  openExternal: async (u: { toString(): string }) => (fake.opened.push(u.toString()), true),
};
export const Uri = {
  parse: (s: string) => ({ toString: () => s }),
  from: (o: { scheme: string; path: string }) => ({ toString: () => `${o.scheme}:${o.path}` }),
  file: (p: string) => ({ fsPath: p, toString: () => `file://${p}` }),
  joinPath: (u: { toString(): string }, ...p: string[]) => ({ toString: () => [u.toString(), ...p].join('/') }),
};
export const ProgressLocation = { Notification: 15 };
export const ViewColumn = { Active: -1, Beside: -2 };
export const QuickPickItemKind = { Separator: -1 };
export const StatusBarAlignment = { Left: 1, Right: 2 };
export const TreeItemCollapsibleState = { None: 0, Collapsed: 1, Expanded: 2 };
export { Disposable, EventEmitter, MarkdownString, ThemeColor, ThemeIcon, TreeItem };
