/**
 * devvm set --cpus/--memory/--disk on a real Debian guest (one VM, 1 CPU and 1024 MiB,
 * two boots): refused while it runs and while it is suspended (nothing changes); after
 * `set --cpus 2 --memory 1536 --disk +2` and a boot the guest sees 2 CPUs, about 1.5 GiB
 * and a root filesystem grown by devvm-growfs. Prints setMs (the CLI's `set` with the
 * disk growth) and growfsMs (the unit's run at that boot).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { bootDebian, Sandbox } from './harness';

const sb = new Sandbox('resize');
const VM = 'rs';
const figures: Record<string, number> = {};
interface Info {
  state: string;
  cpus: number;
  memoryMiB: number;
  diskGiB: number;
}
const info = () => sb.json<Info>(['info', VM]);

/** What the guest sees: CPUs, MemTotal (MiB), the root filesystem's size (bytes). */
function guest(): { cpus: number; memMiB: number; rootBytes: number } {
  const r = sb.ssh(VM, ['nproc; grep MemTotal /proc/meminfo; df -B1 --output=size / | tail -1']);
  assert.equal(r.code, 0, r.stderr);
  const [cpus, mem, root] = r.stdout.trim().split('\n');
  return { cpus: Number(cpus), memMiB: Math.round(Number(/(\d+) kB/.exec(mem!)![1]) / 1024), rootBytes: Number(root!.trim()) };
}

let was: ReturnType<typeof guest>;

/** Under load a TCG boot can take longer than start's default 900 s SSH wait: waits on (start on a running VM only waits). */
async function sshAnswers(): Promise<void> {
  const r = await sb.cliAsync(['start', VM, '--wait-ssh', '--timeout', String(BOOT_WAIT_SEC)]);
  if (r.code !== 0) throw new Error(`devvm start ${VM} --wait-ssh exited ${r.code}: ${r.stderr}`);
}
const BOOT_WAIT_SEC = 1800;

before(async () => {
  await bootDebian(sb, VM, ['--cpus', '1']).catch(async (e: Error) => {
    if (!/did not answer within/.test(e.message)) throw e;
    await sshAnswers();
  });
  was = guest();
});

after(() => {
  console.log(`resize figures: ${JSON.stringify(figures)}`);
  sb.cleanup();
});

test('refused while running: one line with the way out, nothing changed', () => {
  assert.deepEqual([was.cpus, info().cpus, info().memoryMiB], [1, 1, 1024]);
  const files = sb.files([VM]);
  const r = sb.cli(['set', VM, '--cpus', '2', '--memory', '1536', '--disk', '+2']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `devvm: cannot change VM "${VM}": it is running (expected stopped; stop it first: devvm stop ${VM})\n`);
  assert.deepEqual(sb.files([VM]), files);
});

test('refused while suspended: the saved state belongs to the old size; nothing changed, and it resumes', () => {
  sb.ok(['suspend', VM]);
  const files = sb.files();
  const r = sb.cli(['set', VM, '--memory', '1536']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`^devvm: cannot change VM "${VM}": it is suspended \\(expected stopped; its saved state needs the machine it was saved from: resume and stop it, or drop the state with "devvm start ${VM} --discard-state" and stop it\\)\\n$`));
  assert.deepEqual(sb.files(), files);
  sb.ok(['resume', VM, '--wait-ssh', '--timeout', String(BOOT_WAIT_SEC)]);
  assert.equal(guest().cpus, 1);
});

test('stopped: set --cpus 2 --memory 1536 --disk +2, and after the next boot the guest has 2 CPUs, about 1.5 GiB and a larger root filesystem', async () => {
  sb.ok(['stop', VM]);
  const disk = info().diskGiB;
  const t0 = performance.now();
  const out = sb.ok(['set', VM, '--cpus', '2', '--memory', '1536', '--disk', '+2']);
  figures.setMs = Math.round(performance.now() - t0);
  assert.equal(out, `${VM}: 2 CPUs, 1536 MiB, disk ${disk + 2} GiB (grows at the next boot)\n`);
  const i = info();
  assert.deepEqual([i.state, i.cpus, i.memoryMiB, i.diskGiB], ['stopped', 2, 1536, disk + 2]);
  assert.match(sb.ok(['list']), new RegExp(`${VM} .*2 CPU, 1536 MiB, ${disk + 2} GiB`));
  await sshAnswers();
  const now = guest();
  assert.equal(now.cpus, 2);
  // MemTotal is RAM less what the kernel keeps for itself (~60-100 MiB here).
  assert.ok(now.memMiB > 1300 && now.memMiB <= 1536, `MemTotal ${now.memMiB} MiB`);
  assert.ok(now.memMiB - was.memMiB > 400, `MemTotal ${was.memMiB} -> ${now.memMiB} MiB`);
  const grown = now.rootBytes - was.rootBytes;
  assert.ok(grown > 1.8 * 1024 ** 3 && grown <= 2 * 1024 ** 3, `root filesystem ${was.rootBytes} -> ${now.rootBytes} bytes`);
  const j = sb.ssh(VM, ['sudo -n journalctl -b -u devvm-growfs --no-pager -o cat; systemctl show devvm-growfs -p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic']);
  assert.match(j.stdout, new RegExp(`growing the root filesystem from \\d+ MiB to ${(disk + 2) * 1024} MiB`), j.stdout);
  const mono = (k: string) => Number(new RegExp(`${k}=(\\d+)`).exec(j.stdout)?.[1] ?? NaN);
  figures.growfsMs = Math.round((mono('ExecMainExitTimestampMonotonic') - mono('ExecMainStartTimestampMonotonic')) / 1000);
});
