/**
 * The Virtual Machines and Images views. State comes from the helper: a full list on each
 * (re)connection, then `vm/changed` / `vm/removed` / `image/changed` / `usb/event`
 * notifications. VM details (disk layers, snapshots, attached disks and USB devices) are
 * fetched when a VM's groups are expanded and dropped when the VM changes, so an expanded
 * group re-reads them. A VM's forwards also come from `vm/ports` notifications (a guest
 * process started or stopped listening), which replace vm/info's list until the VM changes.
 */
import * as vscode from 'vscode';
import { Rpc } from '../shared/rpc';
import type { ImageInfo, PortForward, VmInfo, VmSummary } from '../shared/types';
import type { HelperClient } from './helperclient';
import { diskItem, groupChildren, groupItem, imageItem, INFO_GROUPS, layerItem, normalizeInfo, noteItem, portItem, snapshotItem, usbItem, visibleGroups, vmItem, type ItemSpec, type Node } from './model';
import { forwardItem, shareItem } from './sharesPorts';

function toTreeItem(spec: ItemSpec): vscode.TreeItem {
  const item = new vscode.TreeItem(
    spec.label,
    spec.collapsible === 'none' ? vscode.TreeItemCollapsibleState.None : spec.collapsible === 'expanded' ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.Collapsed,
  );
  item.id = spec.id;
  item.description = spec.description;
  const tip = new vscode.MarkdownString(spec.tooltip, true);
  item.tooltip = tip;
  if (spec.icon) item.iconPath = new vscode.ThemeIcon(spec.icon.id, spec.icon.color ? new vscode.ThemeColor(spec.icon.color) : undefined);
  item.contextValue = spec.contextValue;
  return item;
}

export class VmTree implements vscode.TreeDataProvider<Node> {
  private vms = new Map<string, VmSummary>();
  private infos = new Map<string, Promise<VmInfo | undefined>>();
  /** The latest `vm/ports` list per VM, newer than its vm/info until the next vm/changed. */
  private ports = new Map<string, PortForward[]>();
  private nodes = new Map<string, Node>();
  private readonly emitter = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  private readonly listeners = new vscode.EventEmitter<readonly VmSummary[]>();
  /** Fires with the full list after every change (status bar, form). */
  readonly onDidChangeVms = this.listeners.event;
  loaded = false;

  constructor(private readonly client: HelperClient) {}

  list(): VmSummary[] {
    return [...this.vms.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): VmSummary | undefined {
    return this.vms.get(name);
  }

  replace(list: VmSummary[]): void {
    this.vms = new Map(list.map((s) => [s.name, s]));
    this.infos.clear();
    this.ports.clear();
    this.loaded = true;
    this.emitter.fire(undefined);
    this.listeners.fire(this.list());
  }

  upsert(s: VmSummary): void {
    const known = this.vms.has(s.name);
    this.vms.set(s.name, s);
    this.infos.delete(s.name);
    this.ports.delete(s.name);
    // A known VM: refresh its node (and so its expanded children); a new one: the root.
    this.emitter.fire(known ? this.node({ kind: 'vm', vm: s.name }) : undefined);
    this.listeners.fire(this.list());
  }

  remove(name: string): void {
    this.vms.delete(name);
    this.infos.delete(name);
    this.ports.delete(name);
    this.emitter.fire(undefined);
    this.listeners.fire(this.list());
  }

  /** Drops a VM's details and redraws it (a change vm/changed does not cover, e.g. a USB unplug). */
  refreshInfo(name: string): void {
    if (!this.vms.has(name)) return;
    this.infos.delete(name);
    // vm/info read from now on is newer than the last notification's forwards.
    this.ports.delete(name);
    this.emitter.fire(this.node({ kind: 'vm', vm: name }));
  }

  /** A `vm/ports` notification: the VM's forwards now; its node redraws (the Ports group may appear). */
  setPorts(name: string, ports: PortForward[]): void {
    if (!this.vms.has(name)) return;
    this.ports.set(name, ports);
    this.emitter.fire(this.node({ kind: 'vm', vm: name }));
  }

  /** VM details, fetched once per change of the VM; its forwards from the latest notification. */
  async info(name: string): Promise<VmInfo | undefined> {
    let p = this.infos.get(name);
    if (!p) {
      p = this.client.request(Rpc.vmInfo, { name }).then(normalizeInfo, () => undefined);
      this.infos.set(name, p);
    }
    const i = await p;
    const ports = this.ports.get(name);
    return i && ports ? { ...i, ports } : i;
  }

  /** Canonical node objects, so `reveal` and targeted refreshes find the same element. */
  private node<T extends Node>(n: T): T {
    const key = JSON.stringify(n);
    const have = this.nodes.get(key);
    if (have) return have as T;
    this.nodes.set(key, n);
    return n;
  }

  vmNode(name: string): Node {
    return this.node({ kind: 'vm', vm: name });
  }

  async getChildren(el?: Node): Promise<Node[]> {
    if (!el) return this.list().map((s) => this.node({ kind: 'vm', vm: s.name }));
    const s = this.vms.get('vm' in el ? el.vm : '');
    if (!s) return [];
    if (el.kind === 'vm') return visibleGroups(s, await this.info(s.name)).map((group) => this.node({ kind: 'group', vm: s.name, group }));
    if (el.kind === 'group') {
      const info = INFO_GROUPS.includes(el.group) ? await this.info(s.name) : undefined;
      return groupChildren(s, el.group, info).map((n) => this.node(n));
    }
    return [];
  }

  getParent(el: Node): Node | undefined {
    if (el.kind === 'vm' || el.kind === 'image') return undefined;
    if (el.kind === 'group') return this.vmNode(el.vm);
    const group = el.kind === 'layer' ? 'layers' : el.kind === 'port' || el.kind === 'forward' ? 'ports' : el.kind === 'share' ? 'shares' : el.kind === 'snapshot' ? 'snapshots' : el.kind === 'disk' ? 'disks' : el.kind === 'usb' ? 'usb' : el.group;
    return this.node({ kind: 'group', vm: el.vm, group });
  }

  async getTreeItem(el: Node): Promise<vscode.TreeItem> {
    const s = 'vm' in el ? this.vms.get(el.vm) : undefined;
    if (!s) return new vscode.TreeItem('?');
    switch (el.kind) {
      case 'vm':
        return toTreeItem(vmItem(s));
      case 'group': {
        const info = INFO_GROUPS.includes(el.group) ? await this.info(s.name) : undefined;
        return toTreeItem(groupItem(s, el.group, info));
      }
      case 'layer': {
        const layer = (await this.info(s.name))?.layers[el.index];
        return layer ? toTreeItem(layerItem(s.name, layer, el.index)) : new vscode.TreeItem('…');
      }
      case 'snapshot': {
        const snap = (await this.info(s.name))?.snapshots.find((x) => x.name === el.name);
        return snap ? toTreeItem(snapshotItem(s.name, snap)) : new vscode.TreeItem('…');
      }
      case 'disk': {
        const d = (await this.info(s.name))?.disks.find((x) => x.id === el.id);
        return d ? toTreeItem(diskItem(s.name, d)) : new vscode.TreeItem('…');
      }
      case 'usb': {
        const d = (await this.info(s.name))?.usb.find((x) => x.id === el.id);
        return d ? toTreeItem(usbItem(s.name, d)) : new vscode.TreeItem('…');
      }
      case 'port': {
        const spec = portItem(s);
        return spec ? toTreeItem(spec) : new vscode.TreeItem('—');
      }
      case 'share': {
        const x = (await this.info(s.name))?.shares.find((y) => y.guestPath === el.guestPath);
        return x ? toTreeItem(shareItem(s.name, s.state, x)) : new vscode.TreeItem('…');
      }
      case 'forward': {
        const f = (await this.info(s.name))?.ports.find((y) => y.protocol === el.protocol && y.hostPort === el.hostPort);
        return f ? toTreeItem(forwardItem(s.name, s.state, f)) : new vscode.TreeItem('…');
      }
      case 'note':
        return toTreeItem(noteItem(el.vm, el.group, el.text));
      default:
        return new vscode.TreeItem('?');
    }
  }
}

export class ImageTree implements vscode.TreeDataProvider<Node> {
  private images = new Map<string, ImageInfo>();
  private readonly emitter = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;

  replace(list: ImageInfo[]): void {
    this.images = new Map(list.map((i) => [i.name, i]));
    this.emitter.fire(undefined);
  }

  list(): ImageInfo[] {
    return [...this.images.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  getChildren(el?: Node): Node[] {
    return el ? [] : this.list().map((i) => ({ kind: 'image', image: i.name }));
  }

  getTreeItem(el: Node): vscode.TreeItem {
    const img = el.kind === 'image' ? this.images.get(el.image) : undefined;
    return img ? toTreeItem(imageItem(img)) : new vscode.TreeItem('?');
  }
}
