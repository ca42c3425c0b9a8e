/** SSH readiness: something on the forwarded port speaks SSH, and (on a cold boot) a login works. */
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { DevvmError } from '../../shared/errors';
import { parseIdent } from '../../shared/sshident';
import type { Progress } from '../images';
import { log } from '../log';
import { run } from '../proc';
import { sshHostAlias } from '../sshconfig';
import { readJson, writeFileAtomic, writeJsonAtomic } from '../store';
import type { LaunchRecord } from '../vmconfig';
import type { VmContext } from './context';

/**
 * The identification line of whatever speaks SSH on the port (RFC 4253 4.2, without its
 * CR LF), or null (QEMU's forwarder accepts and drops before sshd is up).
 */
export function sshBanner(port: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const sock = net.createConnection(port, '127.0.0.1');
    let data = '';
    const done = (ident: string | null) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ident);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    sock.setEncoding('latin1');
    sock.on('data', (c: string) => {
      data += c;
      const r = parseIdent(data);
      if (r !== undefined) done(r?.ident ?? null);
    });
    sock.on('error', () => done(null));
    sock.on('close', () => done(null));
  });
}

/** Keeps the guest sshd's identification line for ssh-proxy (only written when it changed). */
function rememberIdent(ctx: VmContext, name: string, ident: string): void {
  const file = ctx.home.vm(name).sshIdent;
  try {
    if (readFileSync(file, 'utf8') === `${ident}\n`) return;
  } catch {
    // first time
  }
  writeFileAtomic(file, `${ident}\n`);
}

/** The identification line last seen from the VM's sshd, or null. */
export function knownIdent(ctx: VmContext, name: string): string | null {
  try {
    const text = readFileSync(ctx.home.vm(name).sshIdent, 'latin1');
    // Exactly one valid line: it goes to ssh as it is.
    const r = parseIdent(text);
    return r && r.end === text.length && r.ident.length + 1 === text.length ? r.ident : null;
  } catch {
    return null;
  }
}

export function tailLines(file: string, n: number): string {
  try {
    return readFileSync(file, 'utf8').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').trim().split('\n').slice(-n).join(' | ');
  } catch {
    return '';
  }
}

/** vms/<name>/launch.json: what the running VM was started with. */
export function launchRecord(ctx: VmContext, name: string): LaunchRecord {
  const f = ctx.home.vm(name);
  return existsSync(f.launch) ? readJson<LaunchRecord>(f.launch) : { seed: false };
}

/** How long after the guest opened the agent's port (or after it answered) its word is waited for before SSH is tried anyway. */
const AGENT_PATIENCE_MS = 30_000;

/**
 * Readiness through the guest agent. Once the guest has opened the agent's port, SSH is
 * only tried after the agent answered and the VM's NIC has its address: before that a
 * probe cannot reach sshd, and waiting out its timeout (which grows after every miss)
 * left SSH noticed up to 8 s late. A guest that never opens the port (an image without
 * the agent) is probed as before.
 */
class AgentGate {
  private answeredAt: number | null = null;
  private openedAt: number | null = null;
  /** The agent is not asked any more: the NIC had its address, or there is no agent to ask. */
  private settled = false;
  private readonly since = Date.now();

  /**
   * Whether a probe that timed out should make the next one wait longer: not while the
   * guest cannot have its address yet (early boot, before it opened the agent's port).
   */
  get backOff(): boolean {
    return this.settled || (this.openedAt === null && Date.now() - this.since > AGENT_PATIENCE_MS);
  }

  async ready(ctx: VmContext, name: string, mac: string, progress: Progress): Promise<boolean> {
    const a = ctx.instance(name)?.agent;
    if (!a) this.settled = true;
    if (!a || this.settled) return true;
    try {
      if (!(await a.connected())) return true;
      this.openedAt ??= Date.now();
      if (this.answeredAt === null) {
        await a.ping(1500);
        this.answeredAt = Date.now();
        progress('the guest agent answers; waiting for the network');
      }
      if ((await a.address(mac, 1500)) !== null || Date.now() - this.answeredAt > AGENT_PATIENCE_MS) {
        this.settled = true;
        progress('the guest has its address; waiting for sshd');
        return true;
      }
      return false;
    } catch {
      // An agent that opened its port and never answers does not hold SSH back for long.
      const since = this.answeredAt ?? this.openedAt;
      this.settled = since !== null && Date.now() - since > AGENT_PATIENCE_MS;
      return this.settled;
    }
  }

  /**
   * Whether the guest lets users log in, read through the agent: no /run/nologin (systemd
   * makes it early in boot and systemd-user-sessions removes it), checked beside a file that
   * is always there, so an agent that refuses file reads does not pass for "allowed".
   * 'unknown' when the agent cannot tell (none, or busy): a real login decides then.
   */
  async loginsAllowed(ctx: VmContext, name: string): Promise<'yes' | 'no' | 'unknown'> {
    const a = ctx.instance(name)?.agent;
    if (!a || this.answeredAt === null) return 'unknown';
    try {
      const [nologin, uptime] = await a.readFiles(['/run/nologin', '/proc/uptime'], 4096, 3000);
      if (uptime === null) return 'unknown';
      return nologin === null ? 'yes' : 'no';
    } catch {
      return 'unknown';
    }
  }
}

/** One login as the VM's user; false (after a pause) when it did not work yet. */
async function loginWorks(ctx: VmContext, name: string): Promise<boolean> {
  try {
    // ProxyCommand=none: the Host block's proxy (ssh-proxy) would wait for this very check.
    await run('ssh', ['-F', ctx.home.sshConfig, '-o', 'ProxyCommand=none', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', sshHostAlias(name), 'true'], { timeoutMs: 30000 });
    return true;
  } catch (e) {
    // sshd answers before cloud-init has installed the user's key: retry until the deadline
    log.info(`${name}: ssh not ready yet: ${(e as Error).message}`);
    await new Promise((r) => setTimeout(r, 2000));
    return false;
  }
}

/** Until SSH works, the VM stops, first setup fails, or the deadline passes. `settling`: first setup still watched. */
export async function waitSsh(ctx: VmContext, name: string, timeoutSec: number, settling: () => boolean, progress: Progress): Promise<void> {
  const started = Date.now();
  const deadline = started + timeoutSec * 1000;
  const f = ctx.home.vm(name);
  progress('waiting for SSH');
  const agent = new AgentGate();
  const restored = launchRecord(ctx, name).sshReady === true;
  // A probe that times out may leave a pre-auth sshd child in a slow guest; on a starved
  // host they piled up past sshd's MaxStartups (10) and locked SSH out. So a probe that
  // timed out waits longer next time (1.5 s up to 12 s), and so does a failed login. One
  // that was refused at once (no sshd yet) left nothing behind, nor did one made before
  // the guest had its address (early boot, or the agent said so): those do not back off.
  let bannerMs = 1500;
  for (;;) {
    const cfg = ctx.store.read(name);
    if (!ctx.instance(name)?.alive) {
      throw new DevvmError('invalid-state', `VM "${name}" stopped before SSH answered`, `serial log: ${tailLines(f.serialLog, 2) || 'empty'}; see ${f.qemuLog}`);
    }
    if (cfg.provisionError) throw new DevvmError('provisioning-failed', cfg.provisionError, `see ${f.serialLog}`);
    // On first boot sshd answers while cloud-init still works (and restarts sshd when it
    // applies its SSH settings): ready means first setup finished and SSH works.
    const firstSetup = settling();
    if (firstSetup) progress('first boot: waiting for first setup (cloud-init) to finish');
    let banner: string | null = null;
    const gated = !firstSetup && !(await agent.ready(ctx, name, cfg.mac, progress));
    if (!firstSetup && !gated) {
      const t0 = Date.now();
      banner = await sshBanner(cfg.sshPort, bannerMs);
      if (!banner && Date.now() - t0 >= bannerMs && agent.backOff) bannerMs = Math.min(12_000, bannerMs * 2);
    }
    if (banner) {
      rememberIdent(ctx, name, banner);
      // A restored guest: sshd answering suffices (a full login costs 1.5-2.5 s under TCG).
      // A booted one may answer before logins are allowed (systemd-user-sessions): its agent
      // says whether they are, or else it logs in once.
      if (restored) return;
      const logins = await agent.loginsAllowed(ctx, name);
      // While users may not log in yet (sshd often answers a moment before), asking again
      // costs far less than a login, which would be refused anyway.
      if (logins === 'yes' || (logins === 'unknown' && (await loginWorks(ctx, name)))) {
        if (ctx.instance(name)?.alive) writeJsonAtomic(f.launch, { ...launchRecord(ctx, name), sshReady: true } satisfies LaunchRecord);
        log.info(`${name}: SSH ready ${Date.now() - started} ms after the wait began (${logins === 'yes' ? 'the agent says logins are allowed' : 'a login worked'})`);
        return;
      }
    }
    if (Date.now() > deadline) {
      throw new DevvmError('timeout', `SSH to VM "${name}" did not answer within ${timeoutSec} s`, `serial log: ${tailLines(f.serialLog, 2)}`);
    }
    // The agent is asked less often than the port is probed: each question costs the guest CPU.
    await new Promise((r) => setTimeout(r, gated ? 500 : 200));
  }
}
