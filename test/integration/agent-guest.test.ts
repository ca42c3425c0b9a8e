/**
 * The guest agent on a real Debian guest (one VM): it answers after boot and `info`
 * shows the guest's IP, OS and host name; the clock is right straight after a resume
 * from a 30 s suspend; a clone of a VM writing continuously has a consistent copy of the
 * file (the filesystems were frozen) and the source stalled less than 200 ms; and a
 * guest that ignores the ACPI button still shuts down cleanly through its agent.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { bootDebian, Sandbox, waitFor } from './harness';

const sb = new Sandbox('agent');
// The ACPI button gets half of this, the agent's shutdown the other half.
sb.env.DEVVM_STOP_TIMEOUT_MS = '40000';
const VM = 'ga';
const helperLog = () => readFileSync(path.join(sb.home, 'helper.log'), 'utf8');
const figures: Record<string, number> = {};

interface Agent {
  state: string;
  ip?: string;
  os?: string;
  hostname?: string;
  uptimeSec?: number;
}

before(async () => {
  await bootDebian(sb, VM);
});

after(() => {
  console.log(`agent figures: ${JSON.stringify(figures)}`);
  sb.cleanup();
});

test('the agent answers after boot; info shows the guest IP, OS and host name; its socket is 0600', async () => {
  const sock = statSync(path.join(sb.home, 'vms', VM, 'qga.sock'));
  assert.ok(sock.isSocket());
  assert.equal(sock.mode & 0o777, 0o600);
  const a = await waitFor('the agent to answer', 60_000, () => {
    const agent = sb.json<{ agent?: Agent }>(['info', VM]).agent;
    return agent?.state === 'answering' && agent.ip ? agent : undefined;
  });
  assert.match(a.ip!, /^10\.0\.2\.\d+$/);
  assert.match(a.os ?? '', /Debian GNU\/Linux 12/);
  assert.equal(a.hostname, VM);
  assert.ok((a.uptimeSec ?? 0) > 0, 'uptime read through the agent');
  assert.match(sb.ok(['info', VM]), /agent: IP 10\.0\.2\.\d+, Debian GNU\/Linux 12/);
});

/** The guest's clock minus the host's, in ms: one line over an open SSH session, corrected for its round trip. */
async function guestSkewMs(): Promise<{ skewMs: number; rttMs: number }> {
  const child = spawn('ssh', ['-F', path.join(sb.home, 'ssh_config'), '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', `devvm-${VM}`, 'echo ready; read x; date +%s.%N']);
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  await waitFor('the SSH session', 60_000, () => out.includes('ready\n'));
  // Timed on the data event itself (waitFor polls every 500 ms, too coarse for this).
  const dated = new Promise<{ line: string; t1: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the guest never printed its date')), 20_000);
    child.stdout.on('data', () => {
      const m = /ready\n(\d+\.\d+)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ line: m[1]!, t1: Date.now() });
      }
    });
  });
  const t0 = Date.now();
  child.stdin.write('\n');
  const { line, t1 } = await dated;
  child.kill();
  return { skewMs: Number(line) * 1000 - (t0 + t1) / 2, rttMs: t1 - t0 };
}

test('after a 30 s suspend the guest clock is within 1 s of the host right after resume', async () => {
  sb.ok(['suspend', VM]);
  await new Promise((r) => setTimeout(r, 30_000));
  const r = await sb.cliAsync(['start', VM]);
  assert.equal(r.code, 0, r.stderr);
  const { skewMs, rttMs } = await guestSkewMs();
  figures.clockSkewAfterResumeMs = Math.round(skewMs);
  figures.clockProbeRttMs = rttMs;
  assert.match(helperLog(), /ga: guest clock set to the host's/);
  assert.ok(Math.abs(skewMs) < 1000, `guest clock off by ${skewMs.toFixed(0)} ms (probe round trip ${rttMs} ms)`);
});

test("a clone of a VM writing continuously gets a consistent copy of the file; the source stalls < 200 ms", async () => {
  // Numbered lines, each synced: a crash image could hold a torn last line or lose synced ones.
  // One string: ssh hands it to the guest user's shell as it is.
  const writer = `nohup sh -c 'i=0; while :; do i=$((i+1)); echo "line $i $(date +%s%N) padding-padding-padding-padding" >> /home/dev/seq.txt; sync; done' </dev/null >/dev/null 2>&1 &`;
  assert.equal(sb.ssh(VM, [writer]).code, 0);
  await waitFor('the writer to get going', 60_000, () => Number(sb.ssh(VM, ['wc -l < /home/dev/seq.txt']).stdout.trim()) > 20);
  const snap = sb.json<{ pauseMs: number }>(['snapshot', VM, 'live']);
  figures.snapshotPauseMs = Math.round(snap.pauseMs);
  sb.ok(['clone', VM, 'gb']);
  const stalled = /ga: frozen live for clone gb, guest stalled ([\d.]+) ms/.exec(helperLog());
  assert.ok(stalled, 'the clone froze the running source');
  figures.clonePauseMs = Math.round(Number(stalled[1]));
  const lines = sb.ssh(VM, ['pkill -f "[p]adding-padding"; cat /home/dev/seq.txt']).stdout.trim().split('\n');
  // The guest's own view: the longest gap between two lines written around the freezes.
  const stamps = lines.map((l) => Number(l.split(' ')[2]) / 1e6);
  figures.guestMaxGapMs = Math.round(Math.max(...stamps.slice(1).map((t, i) => t - stamps[i]!)));
  assert.ok(snap.pauseMs < 200, `snapshot paused the guest ${snap.pauseMs} ms`);
  assert.ok(figures.clonePauseMs < 200, `clone paused the guest ${figures.clonePauseMs} ms`);

  // The clone's disk is the frozen layer: read the file from it offline (no second VM).
  const layer = (JSON.parse(readFileSync(path.join(sb.home, 'vms', 'gb', 'vm.json'), 'utf8')) as { clonedFrom: { layer: string } }).clonedFrom.layer;
  const raw = path.join(sb.home, 'clone.raw');
  const conv = spawnSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path.join(sb.home, 'layers', `${layer}.qcow2`), raw], { encoding: 'utf8' });
  assert.equal(conv.status, 0, conv.stderr);
  const cat = spawnSync('debugfs', ['-R', 'cat /home/dev/seq.txt', raw], { encoding: 'utf8', maxBuffer: 64 << 20 });
  rmSync(raw, { force: true });
  assert.equal(cat.status, 0, cat.stderr);
  assert.ok(cat.stdout.endsWith('\n'), 'the copy ends with a whole line');
  const copy = cat.stdout.trimEnd().split('\n');
  assert.ok(copy.length > 20, `${copy.length} lines in the copy`);
  copy.forEach((l, i) => assert.match(l, new RegExp(`^line ${i + 1} \\d+ padding-padding-padding-padding$`), `line ${i + 1} of the copy is whole and in sequence`));
  assert.ok(copy.length <= lines.length);
  sb.ok(['delete', 'gb']);
});

test('stop of a guest that ignores the ACPI button still shuts it down cleanly through the agent, before the hard quit', async () => {
  const conf = "sudo -n mkdir -p /etc/systemd/logind.conf.d && printf '[Login]\\nHandlePowerKey=ignore\\n' | sudo -n tee /etc/systemd/logind.conf.d/ignore-power.conf >/dev/null && sudo -n systemctl restart systemd-logind";
  const r = sb.ssh(VM, [conf]);
  assert.equal(r.code, 0, r.stderr);
  const t0 = Date.now();
  const s = await sb.cliAsync(['stop', VM]);
  const took = Date.now() - t0;
  figures.agentShutdownStopMs = took;
  assert.equal(s.code, 0, s.stderr);
  const log = helperLog();
  assert.match(log, /no shutdown 20000 ms after the ACPI button; asked the guest agent/);
  assert.match(log, /the guest shut down through its agent/);
  assert.doesNotMatch(log, /no shutdown after 40000 ms, quitting/);
  assert.equal(sb.json<{ state: string }>(['info', VM]).state, 'stopped');
});
