/** Watching a first boot's serial output until cloud-init or devvm-firstboot reports first setup done (or failed). */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { log } from '../log';
import * as provision from '../provision';
import type { VmConfig } from '../vmconfig';
import type { VmContext } from './context';

function readFrom(file: string, offset: number): { text: string; size: number } {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return { text: '', size: offset };
  }
  if (size <= offset) return { text: '', size };
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(Math.min(size - offset, 4 << 20));
    const n = readSync(fd, buf, 0, buf.length, offset);
    return { text: buf.subarray(0, n).toString('utf8'), size: offset + n };
  } finally {
    closeSync(fd);
  }
}

export class ProvisionWatch {
  private readonly watchers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly ctx: VmContext) {}

  /** Whether first setup is still being watched (SSH readiness waits for it). */
  has(name: string): boolean {
    return this.watchers.has(name);
  }

  /** Reads new serial output from `offset` until cloud-init's final message (success) or a known failure. */
  watch(name: string, offset: number): void {
    this.stop(name);
    const { ctx } = this;
    const serialLog = ctx.home.vm(name).serialLog;
    let pos = offset;
    let carry = '';
    const tick = () => {
      const { text, size } = readFrom(serialLog, pos);
      pos = size;
      const window = carry + text;
      carry = window.slice(-512);
      if (!text) return;
      let cfg: VmConfig;
      try {
        cfg = ctx.store.read(name);
      } catch {
        return this.stop(name);
      }
      // cloud-init's failures, and devvm-firstboot's (which names the step).
      const failed = /Failed to create user[^\r\n]*|cc_users_groups[^\r\n]*(?:Error|Traceback)[^\r\n]*|devvm-firstboot failed[^\r\n]*/.exec(window);
      if (failed && !cfg.provisionError) {
        ctx.store.update(name, (c) => ({ ...c, provisionError: `first-user setup failed in the guest: ${failed[0].slice(0, 160)}` }));
        ctx.changed(name);
      }
      // Trailing space: an id must not match as the prefix of a longer one.
      if (window.includes(`${provision.READY_MARKER} ${cfg.instanceId} `)) {
        ctx.store.update(name, (c) => ({ ...c, provisioned: true }));
        log.info(`${name}: first setup finished; the seed goes when this VM's process ends`);
        this.stop(name);
        ctx.changed(name);
      }
    };
    this.watchers.set(name, setInterval(tick, 250));
  }

  stop(name: string): void {
    const t = this.watchers.get(name);
    if (t) clearInterval(t);
    this.watchers.delete(name);
  }

  stopAll(): void {
    for (const name of [...this.watchers.keys()]) this.stop(name);
  }
}
