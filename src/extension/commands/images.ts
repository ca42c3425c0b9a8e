/** Base images: build (or download) Debian 12, import a disk file or an NBD base, delete an unused one. */
import path from 'node:path';
import * as vscode from 'vscode';
import { bytes, outdatedImageNote } from '../../shared/format';
import { Rpc } from '../../shared/rpc';
import * as validate from '../../shared/validate';
import { nbdUriProblem } from '../model';
import { plain, type CommandEntry, type Cx } from './command';
import { askDiskFormat } from './devices';
import { isNode } from './util';

function askImageName(cx: Cx, value: string): Thenable<string | undefined> {
  return vscode.window.showInputBox({
    prompt: 'Image name',
    value,
    validateInput: (v) => {
      try {
        validate.imageName(v);
        // An image from an older recipe may be named again: building it replaces it when unused.
        return cx.images.list().some((i) => i.name === v && !i.outdated) ? `an image named "${v}" already exists` : undefined;
      } catch (e) {
        return (e as Error).message;
      }
    },
  });
}

async function buildImage(cx: Cx): Promise<void> {
  const recipe = await vscode.window.showQuickPick(
    [
      { label: 'Debian 12 (build locally)', description: 'from Debian packages with mmdebstrap; minutes, cached', recipe: 'debian-12', pull: false },
      { label: 'Debian 12 with a desktop (build locally)', description: 'a small X session that follows the Display tab; create the VM with a display and autologin', recipe: 'debian-12-desktop', pull: false },
      { label: 'Debian 12 (download)', description: 'the official cloud image, checksum verified', recipe: 'debian-12', pull: true },
    ],
    { placeHolder: 'Image to build' },
  );
  if (!recipe) return;
  const name = await askImageName(cx, recipe.recipe);
  if (!name) return;
  const img = await cx.withProgress(`${recipe.pull ? 'Downloading' : 'Building'} image ${name}`, (progressToken) =>
    cx.client.request(recipe.pull ? Rpc.imagePull : Rpc.imageBuild, { recipe: recipe.recipe, name, progressToken }),
  );
  if (img.outdated) {
    void vscode.window.showWarningMessage(`${outdatedImageNote(img)}.`);
    return;
  }
  void vscode.window.showInformationMessage(`Image ${img.name} is ready (${bytes(img.actualSize)}).`, 'Create VM…').then((a) => {
    if (a) void vscode.commands.executeCommand('devvm.create');
  });
}

async function importImage(cx: Cx): Promise<void> {
  const kind = await vscode.window.showQuickPick(
    [
      { label: 'Disk image file', description: 'qcow2 or raw, copied in', nbd: false },
      { label: 'NBD server', description: 'a remote base used in place: each VM reads it once into its cache layer', nbd: true },
    ],
    { placeHolder: 'Import a base image from' },
  );
  if (!kind) return;
  let source: string | undefined;
  let kernel: { kernel?: string; initrd?: string } = {};
  let format: 'qcow2' | 'raw' | undefined;
  if (kind.nbd) {
    source = (await vscode.window.showInputBox({ prompt: 'NBD URI of the base', placeHolder: 'nbd://nas.local:10809/debian', validateInput: nbdUriProblem }))?.trim();
    if (!source) return;
    // A base built here boots a kernel from outside the disk: borrow one from a local image.
    const boot = await vscode.window.showQuickPick(
      [
        ...cx.images.list().filter((i) => i.kernel && i.initrd).map((i) => ({ label: `Kernel and initrd of ${i.name}`, kernel: i.kernel!, initrd: i.initrd! })),
        { label: 'None', description: 'the disk boots by itself (firmware and bootloader)', kernel: undefined, initrd: undefined },
      ],
      { placeHolder: 'How VMs on this base boot' },
    );
    if (!boot) return;
    kernel = { kernel: boot.kernel, initrd: boot.initrd };
  } else {
    source = (await vscode.window.showOpenDialog({ canSelectMany: false, openLabel: 'Import', title: 'Disk image to import (qcow2 or raw)', filters: { 'Disk images': ['qcow2', 'img', 'raw'], 'All files': ['*'] } }))?.[0]?.fsPath;
    if (!source) return;
    format = await askDiskFormat(source);
    if (!format) return;
  }
  const stem = kind.nbd ? (source.split('/').pop() ?? '') : path.basename(source).replace(/\.(qcow2|img|raw)$/i, '');
  const base = stem.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  const name = await askImageName(cx, base || 'imported');
  if (!name) return;
  const file = source;
  const img = await cx.withProgress(`Importing ${name}`, (progressToken) => cx.client.request(Rpc.imageImport, { file, name, ...kernel, ...(format ? { format } : {}), progressToken }));
  void vscode.window.showInformationMessage(img.sha256 ? `Image ${img.name} imported (${bytes(img.actualSize)}).` : `Image ${img.name} uses the base at ${img.file}; each VM reads it once into its cache layer.`);
}

async function deleteImage(cx: Cx, arg: unknown): Promise<void> {
  const name = isNode(arg) && arg.kind === 'image' ? arg.image : await vscode.window.showQuickPick(cx.images.list().filter((i) => !i.usedBy.length).map((i) => i.name), { placeHolder: 'Unused image to delete' });
  if (!name) return;
  const img = cx.images.list().find((i) => i.name === name);
  const ok = await vscode.window.showWarningMessage(`Delete the image "${name}"?`, { modal: true, detail: `This deletes ${img ? path.dirname(img.file) : 'its folder'} (${img ? bytes(img.actualSize) : '?'}). Images a VM uses cannot be deleted.` }, 'Delete');
  if (ok) await cx.client.request(Rpc.imageDelete, { name });
}

export const IMAGES: CommandEntry[] = [plain('devvm.buildImage', buildImage), plain('devvm.importImage', importImage), plain('devvm.deleteImage', deleteImage)];
