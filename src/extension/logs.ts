/**
 * Show Logs: one output channel per VM with QEMU's log and the serial console log, kept
 * current by watching serial.log while the channel exists (no polling).
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import * as vscode from 'vscode';

const HEAD_BYTES = 64 * 1024;
// Terminal escapes and other control characters make output channels unreadable.
const CONTROL = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]/g;

export function plain(s: string): string {
  return s.replace(/\r\n/g, '\n').replace(CONTROL, '');
}

class VmLog {
  readonly channel: vscode.OutputChannel;
  private watcher: FSWatcher | null = null;
  private pos = 0;
  private file = '';

  constructor(readonly vm: string) {
    this.channel = vscode.window.createOutputChannel(`Dev VMs: ${vm}`);
  }

  show(dir: string, serialLog: string): void {
    this.watcher?.close();
    this.watcher = null;
    this.channel.clear();
    const qemuLog = path.join(dir, 'qemu.log');
    this.channel.appendLine(`==> ${qemuLog}`);
    this.channel.appendLine(existsSync(qemuLog) ? plain(readFileSync(qemuLog, 'utf8')).trimEnd() || '(empty)' : '(none yet)');
    this.channel.appendLine('');
    this.channel.appendLine(`==> ${serialLog} (serial console, followed live)`);
    this.file = serialLog;
    const size = existsSync(serialLog) ? statSync(serialLog).size : 0;
    this.pos = Math.max(0, size - HEAD_BYTES);
    if (this.pos > 0) this.channel.appendLine(`(… ${this.pos} earlier bytes …)`);
    this.drain();
    try {
      this.watcher = watch(path.dirname(serialLog), (_e, f) => {
        if (f === path.basename(serialLog)) this.drain();
      });
    } catch {
      // directory gone (VM deleted): nothing to follow
    }
    this.channel.show(true);
  }

  private drain(): void {
    let fd: number;
    try {
      fd = openSync(this.file, 'r');
    } catch {
      return;
    }
    try {
      const size = statSync(this.file).size;
      if (size < this.pos) this.pos = 0;
      if (size === this.pos) return;
      const buf = Buffer.alloc(size - this.pos);
      readSync(fd, buf, 0, buf.length, this.pos);
      this.pos = size;
      this.channel.append(plain(buf.toString('utf8')));
    } finally {
      closeSync(fd);
    }
  }

  dispose(): void {
    this.watcher?.close();
    this.channel.dispose();
  }
}

export class VmLogs implements vscode.Disposable {
  private logs = new Map<string, VmLog>();

  show(vm: string, dir: string, serialLog: string): void {
    let l = this.logs.get(vm);
    if (!l) this.logs.set(vm, (l = new VmLog(vm)));
    l.show(dir, serialLog);
  }

  remove(vm: string): void {
    this.logs.get(vm)?.dispose();
    this.logs.delete(vm);
  }

  dispose(): void {
    for (const l of this.logs.values()) l.dispose();
    this.logs.clear();
  }
}
