/** The VM's screen in an editor tab (a webview, so also in Restricted Mode). */
import { openDisplay } from '../display';
import { onVm, type CommandEntry } from './command';

export const DISPLAY: CommandEntry[] = [
  onVm('devvm.openDisplay', 'VM whose display to open', (cx, s) =>
    openDisplay({ extensionUri: cx.context.extensionUri, client: cx.client, vm: (name) => cx.vms.get(name), onDidChangeVms: cx.vms.onDidChangeVms, log: (m) => cx.out.info(m) }, s.name),
  ),
];
