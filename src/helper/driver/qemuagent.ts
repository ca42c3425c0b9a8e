/** The QEMU driver's guest agent part: qemu-guest-agent over the VM's agent socket (qemu/qga.ts), its port's state over QMP. */
import { DevvmError } from '../../shared/errors';
import { QgaClient, type QgaSession } from '../qemu/qga';
import type { Qmp } from '../qemu/qmp';
import type { AgentOps, FrozenRun, GuestExecResult, GuestFacts } from './driver';

/** The chardev id of the agent's channel (qemu/args.ts). */
const AGENT_CHARDEV = 'qga0';

/** The guest agent: commands over its socket (qemu/qga.ts), whether the guest opened its port over QMP. */
export class QemuAgent implements AgentOps {
  private readonly qga: QgaClient;

  constructor(
    private readonly qmp: Qmp,
    socket: string,
  ) {
    this.qga = new QgaClient(socket);
  }

  async connected(): Promise<boolean> {
    // A virtserialport's chardev is "frontend-open" while a process in the guest holds the port open.
    const chardevs = await this.qmp.execute<Array<{ label: string; 'frontend-open'?: boolean }>>('query-chardev');
    return chardevs.find((c) => c.label === AGENT_CHARDEV)?.['frontend-open'] === true;
  }

  async ping(timeoutMs: number): Promise<void> {
    await this.qga.execute({ command: 'guest-ping' }, timeoutMs);
  }

  async setClock(nowNs: () => number, timeoutMs: number): Promise<{ applied: Promise<void> }> {
    let sent!: () => void;
    const gone = new Promise<void>((r) => (sent = r));
    const applied = this.qga.session(timeoutMs, async (s) => {
      const reply = s.execute({ command: 'guest-set-time', args: { time: Math.round(nowNs()) } }, timeoutMs);
      sent(); // execute() has written the command
      await reply;
    });
    await Promise.race([gone, applied]);
    return { applied };
  }

  freeze(timeoutMs: number): Promise<number> {
    return this.qga.execute<number>({ command: 'guest-fsfreeze-freeze' }, timeoutMs);
  }

  thaw(timeoutMs: number): Promise<number> {
    return this.qga.execute<number>({ command: 'guest-fsfreeze-thaw' }, timeoutMs);
  }

  async whileFrozen<T>(fn: () => Promise<T>, timeoutMs: number, answerMs = timeoutMs): Promise<FrozenRun<T>> {
    let ran = false;
    let value!: T;
    let failure: { e: unknown } | null = null;
    const run = async () => {
      ran = true;
      try {
        value = await fn();
      } catch (e) {
        failure = { e };
      }
    };
    let attempted = false;
    let frozen = false;
    let thawed = false;
    let problem: string | undefined;
    let frozenMs = 0;
    try {
      await this.qga.session(answerMs, async (s) => {
        const t0 = performance.now();
        attempted = true;
        try {
          await s.execute({ command: 'guest-fsfreeze-freeze' }, timeoutMs);
          frozen = true;
        } catch (e) {
          problem = `freeze: ${(e as Error).message}`;
        }
        await run();
        try {
          await s.execute({ command: 'guest-fsfreeze-thaw' }, timeoutMs);
          thawed = true;
        } finally {
          frozenMs = performance.now() - t0;
        }
      });
    } catch (e) {
      problem = problem ?? `${ran ? 'thaw' : 'session'}: ${(e as Error).message}`;
    }
    if (!ran) await run();
    if (!attempted) thawed = true; // never asked to freeze: nothing to thaw
    if (!thawed) {
      // The session died (a freeze that timed out closes it): thaw over a new one.
      thawed = await this.thaw(timeoutMs).then(() => true, (e: unknown) => {
        problem = `${problem ?? ''}; thaw: ${(e as Error).message}`;
        return false;
      });
    }
    if (failure) throw (failure as { e: unknown }).e;
    return { value, frozen, thawed, frozenMs, ...(problem ? { problem } : {}) };
  }

  async shutdown(timeoutMs: number): Promise<void> {
    await this.qga.execute({ command: 'guest-shutdown', args: { mode: 'powerdown' }, noReply: true }, timeoutMs);
  }

  async facts(mac: string, timeoutMs: number): Promise<GuestFacts> {
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const ask = <T>(command: string, args?: Record<string, unknown>) => this.qga.execute<T>({ command, ...(args ? { args } : {}) }, left()).catch(() => null);
    const ip = await this.address(mac, left()).catch(() => null);
    const os = (await ask<{ 'pretty-name'?: string }>('guest-get-osinfo'))?.['pretty-name'] ?? null;
    const hostname = (await ask<{ 'host-name'?: string }>('guest-get-host-name'))?.['host-name'] ?? null;
    return { ip, os, hostname, uptimeSec: await this.uptime(ask) };
  }

  async address(mac: string, timeoutMs: number): Promise<string | null> {
    type Nic = { name: string; 'hardware-address'?: string; 'ip-addresses'?: Array<{ 'ip-address-type': string; 'ip-address': string }> };
    const nics = await this.qga.execute<Nic[]>({ command: 'guest-network-get-interfaces' }, timeoutMs);
    const nic = nics.find((n) => n['hardware-address']?.toLowerCase() === mac.toLowerCase());
    return nic?.['ip-addresses']?.find((a) => a['ip-address-type'] === 'ipv4')?.['ip-address'] ?? null;
  }

  /** guest-exec with an argument array, then guest-exec-status until it exited (output captured, base64). */
  async exec(path: string, args: string[], timeoutMs: number): Promise<GuestExecResult> {
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const { pid } = await this.qga.execute<{ pid: number }>({ command: 'guest-exec', args: { path, arg: args, 'capture-output': true } }, left());
    for (let wait = 20; ; wait = Math.min(wait * 2, 250)) {
      type Status = { exited: boolean; exitcode?: number; signal?: number; 'out-data'?: string; 'err-data'?: string };
      const st = await this.qga.execute<Status>({ command: 'guest-exec-status', args: { pid } }, left());
      if (st.exited) {
        const text = (b?: string) => Buffer.from(b ?? '', 'base64').toString('utf8');
        return { exitCode: st.exitcode ?? (st.signal !== undefined ? 128 + st.signal : -1), stdout: text(st['out-data']), stderr: text(st['err-data']) };
      }
      if (Date.now() + wait > deadline) throw new DevvmError('timeout', `${path} in the guest did not finish within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  readFiles(paths: readonly string[], maxBytes: number, timeoutMs: number): Promise<Array<Buffer | null>> {
    const deadline = Date.now() + timeoutMs;
    // A background read: it gives the agent up to any call that queues meanwhile (a
    // readiness ping, a freeze) after at most one command, rather than make it wait.
    const yieldCheck = () => {
      if (this.qga.waiting > 0) throw new DevvmError('busy', 'the guest agent is wanted by another call');
    };
    return this.qga.session(timeoutMs, async (s) => {
      const out: Array<Buffer | null> = [];
      for (const path of paths) {
        out.push(await readWhole(s, path, maxBytes, deadline, yieldCheck).catch((e: unknown) => {
          // A file the agent cannot open is null; a dead session or a yield ends the read.
          if (e instanceof DevvmError && e.code === 'process-failed') return null;
          throw e;
        }));
      }
      return out;
    });
  }

  pollExec(argv: readonly string[], timeoutMs: number): Promise<{ exitCode: number; stdout: string }> {
    if (this.qga.waiting > 0) return Promise.reject(new DevvmError('busy', 'the guest agent is wanted by another call'));
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    return this.qga.session(timeoutMs, async (s) => {
      const { pid } = await s.execute<{ pid: number }>({ command: 'guest-exec', args: { path: argv[0], arg: argv.slice(1), 'capture-output': true } }, left());
      for (;;) {
        const st = await s.execute<{ exited: boolean; exitcode?: number; 'out-data'?: string }>({ command: 'guest-exec-status', args: { pid } }, left());
        if (st.exited) return { exitCode: st.exitcode ?? -1, stdout: Buffer.from(st['out-data'] ?? '', 'base64').toString('utf8') };
        if (Date.now() >= deadline) throw new DevvmError('timeout', `${argv[0]} in the guest did not end within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    });
  }

  /** /proc/uptime through the agent's file commands (the agent has no uptime command; guest-exec is not used). */
  private async uptime(ask: <T>(command: string, args?: Record<string, unknown>) => Promise<T | null>): Promise<number | null> {
    const handle = await ask<number>('guest-file-open', { path: '/proc/uptime', mode: 'r' });
    if (typeof handle !== 'number') return null;
    try {
      const r = await ask<{ 'buf-b64'?: string }>('guest-file-read', { handle, count: 128 });
      const sec = Number(Buffer.from(r?.['buf-b64'] ?? '', 'base64').toString('latin1').split(' ')[0]);
      return Number.isFinite(sec) && sec > 0 ? Math.floor(sec) : null;
    } finally {
      await ask('guest-file-close', { handle });
    }
  }
}


/** One file through guest-file-open/read/close on session `s`; rejects when it is larger than `maxBytes`. */
async function readWhole(s: QgaSession, path: string, maxBytes: number, deadline: number, yieldCheck: () => void): Promise<Buffer> {
  const left = () => Math.max(1, deadline - Date.now());
  yieldCheck();
  const handle = await s.execute<number>({ command: 'guest-file-open', args: { path, mode: 'r' } }, left());
  try {
    const chunks: Buffer[] = [];
    let got = 0;
    for (;;) {
      // 512 KiB a read: its base64 reply stays well under the session's 4 MiB bound.
      yieldCheck();
      const r = await s.execute<{ count: number; 'buf-b64'?: string; eof: boolean }>({ command: 'guest-file-read', args: { handle, count: Math.min(512 << 10, maxBytes + 1 - got) } }, left());
      const b = Buffer.from(r['buf-b64'] ?? '', 'base64');
      chunks.push(b);
      got += b.length;
      if (got > maxBytes) throw new DevvmError('io', `${path} in the guest is larger than ${maxBytes} bytes`);
      if (r.eof || b.length === 0) return Buffer.concat(chunks);
    }
  } finally {
    await s.execute({ command: 'guest-file-close', args: { handle } }, left()).catch(() => {});
  }
}
