/** The layer tree as a read-only text document (Show Layer Tree), re-read while open when VMs change. */
import path from 'node:path';
import * as vscode from 'vscode';
import { layerTreeText } from '../shared/format';
import { Rpc } from '../shared/rpc';
import type { HelperClient } from './helperclient';

const LAYER_SCHEME = 'devvm-layers';

export class LayerTreeDocument implements vscode.Disposable {
  private readonly uri = vscode.Uri.from({ scheme: LAYER_SCHEME, path: '/Layer Tree.txt' });
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  private timer: NodeJS.Timeout | undefined;
  private readonly disposables: vscode.Disposable[];

  constructor(
    client: HelperClient,
    home: string,
  ) {
    const provider: vscode.TextDocumentContentProvider = {
      onDidChange: this.changed.event,
      provideTextDocumentContent: async () => {
        try {
          return layerTreeText(await client.request(Rpc.layerTree), path.join(home, 'layers'));
        } catch (e) {
          return `The layer tree is not available: ${(e as Error).message}\n`;
        }
      },
    };
    const maybeChanged = () => this.maybeChanged();
    this.disposables = [this.changed, vscode.workspace.registerTextDocumentContentProvider(LAYER_SCHEME, provider), client.vmChanged.on(maybeChanged), client.vmRemoved.on(maybeChanged)];
  }

  async show(): Promise<void> {
    const doc = await vscode.workspace.openTextDocument(this.uri);
    this.changed.fire(this.uri);
    await vscode.window.showTextDocument(doc, { preview: true });
  }

  /** Only while the document is open; bursts of notifications re-read it once. */
  private maybeChanged(): void {
    if (!vscode.workspace.textDocuments.some((doc) => doc.uri.toString() === this.uri.toString())) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.changed.fire(this.uri), 500);
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const d of this.disposables) d.dispose();
  }
}
