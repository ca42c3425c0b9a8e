/**
 * Soak: several CLI clients at once for 60 s doing random create, clone, snapshot,
 * restore, delete, image import and image delete on blank images, with clients killed
 * at random and the helper killed once. Then every VM listed starts (or is refused with
 * one clear line), no layer is orphaned or missing, `qemu-img check` is clean on every
 * layer and cache, no half-made VM directory is left, and every base's sha256 is what
 * was recorded at import. Real CLI, helper, qemu-img and QEMU (blank disks: no guest OS).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CLI, Sandbox, waitFor } from './harness';

const SOAK_MS = Number(process.env.DEVVM_SOAK_MS || 60_000);
const WORKERS = 4;
const sb = new Sandbox('soak');
const blank = `${sb.home}-blank.qcow2`;

interface Outcome {
  args: string[];
  code: number | null;
  killed: boolean;
  /** Still running after HANG_MS without being asked to die: a hang, reported with the helper's log. */
  hung: boolean;
  stderr: string;
}

const HANG_MS = 180_000;

const outcomes: Outcome[] = [];
let seed = Number(process.env.DEVVM_SOAK_SEED) || 12345;
/** Deterministic pseudo-random numbers, so a failing run can be replayed with its seed. */
function rand(n: number): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
}
const pick = <T>(xs: T[]): T | undefined => (xs.length ? xs[rand(xs.length)] : undefined);

function cliKillable(args: string[], killAfterMs: number | null): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: sb.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let killed = false;
    let hung = false;
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      if (killAfterMs === null) hung = true;
      else killed = true;
      child.kill('SIGKILL');
    }, killAfterMs ?? HANG_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ args, code, killed, hung, stderr });
    });
  });
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

interface Vm { name: string; state: string }
interface Img { name: string; sha256: string | null; file: string; usedBy: string[] }
interface Snap { name: string }

before(() => {
  sb.env.DEVVM_STOP_TIMEOUT_MS = '2000';
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', blank, '256M']);
  sb.ok(['image', 'import', blank, '--name', 'base0']);
  for (const n of ['s0', 's1', 's2']) sb.ok(['create', n, '--image', 'base0', '--user', 'alice', '--memory', '256', '--cpus', '1']);
});

after(() => {
  sb.cleanup();
  rmSync(blank, { force: true });
});

/** A --json list, or nothing when the call was refused (a VM deleted meanwhile, the helper killed). */
function listed<T>(r: { code: number; stdout: string }): T[] {
  if (r.code !== 0) return [];
  try {
    const v = JSON.parse(r.stdout) as unknown;
    return Array.isArray(v) ? (v as T[]) : [];
  } catch {
    return [];
  }
}

async function worker(id: number, deadline: number): Promise<void> {
  let n = 0;
  while (Date.now() < deadline) {
    n++;
    // Asynchronous, so the kill timers, the helper kill and the test's own timeout keep running.
    const vms = listed<Vm>(await sb.cliAsync(['list', '--json'])).map((v) => v.name);
    const images = listed<Img>(await sb.cliAsync(['image', 'list', '--json'])).map((i) => i.name);
    const vm = pick(vms);
    const fresh = `w${id}-${n}`;
    let args: string[];
    switch (rand(9)) {
      case 0:
      case 1:
        args = ['create', fresh, '--image', pick(images) ?? 'base0', '--user', 'alice', '--memory', '256', '--cpus', '1'];
        break;
      case 2:
        args = vm ? ['clone', vm, fresh] : ['list'];
        break;
      case 3:
        args = vm ? ['snapshot', vm, `p${id}-${n}`] : ['list'];
        break;
      case 4: {
        const snaps = vm ? listed<Snap>(await sb.cliAsync(['snapshots', vm, '--json'])) : [];
        const s = pick(snaps);
        args = vm && s ? (rand(3) === 0 ? ['snapshot', vm, s.name, '--delete'] : ['restore', vm, s.name]) : ['list'];
        break;
      }
      case 5:
        args = vm ? ['delete', vm, '--force'] : ['list'];
        break;
      case 6:
        args = ['image', 'import', blank, '--name', `img${id}-${n}`];
        break;
      case 7:
        args = ['image', 'delete', pick(images.filter((i) => i !== 'base0')) ?? 'base0'];
        break;
      default:
        args = vm ? ['start', vm] : ['list'];
    }
    // One request in five loses its client at a random moment.
    outcomes.push(await cliKillable(args, rand(5) === 0 ? 20 + rand(600) : null));
  }
}

test('soak: parallel clients, killed clients and a killed helper leave a consistent store', { timeout: SOAK_MS + 10 * 60_000 }, async () => {
  const deadline = Date.now() + SOAK_MS;
  let helperKilled = false;
  const helperKill = setTimeout(() => {
    try {
      process.kill(Number(readFileSync(path.join(sb.home, 'helper.pid'), 'utf8')), 'SIGKILL');
      helperKilled = true;
    } catch {
      // between a helper's exit and the next one's start: the next tick of a worker restarts it
    }
  }, SOAK_MS / 2);
  await Promise.all(Array.from({ length: WORKERS }, (_, i) => worker(i, deadline)));
  clearTimeout(helperKill);
  assert.ok(helperKilled, 'the helper was not running at mid-soak');

  const hung = outcomes.filter((o) => o.hung);
  if (hung.length) {
    let log = '';
    try {
      log = readFileSync(path.join(sb.home, 'helper.log'), 'utf8').split('\n').slice(-80).join('\n');
    } catch {
      // no log
    }
    assert.fail(`${hung.map((o) => `devvm ${o.args.join(' ')}`).join('; ')}: no answer in ${HANG_MS} ms\n${log}`);
  }
  // Every answer was a clean success or one clear line; never a crash, a usage error or an internal error.
  const finished = outcomes.filter((o) => !o.killed);
  assert.ok(finished.length > 40, `only ${finished.length} requests finished in ${SOAK_MS} ms`);
  for (const o of finished) {
    const line = `devvm ${o.args.join(' ')} -> ${o.code}: ${o.stderr}`;
    assert.ok(o.code === 0 || o.code === 1, line);
    if (o.code === 1) {
      assert.match(o.stderr, /^devvm: [^\n]+\n$/, line);
      assert.doesNotMatch(o.stderr, /internal|TypeError|ENOENT|is missing/i, line);
    }
  }
  const ok = finished.filter((o) => o.code === 0).length;
  process.stderr.write(`# soak: ${outcomes.length} requests, ${ok} succeeded, ${finished.length - ok} refused, ${outcomes.length - finished.length} clients killed\n`);

  // Let what the helper still runs finish, then restart it so start-up cleanup runs too.
  await waitFor('operations to settle', 120_000, async () => {
    const r = await sb.cliAsync(['list', '--json']);
    return r.code === 0 && (JSON.parse(r.stdout) as Vm[]).every((v) => ['stopped', 'running', 'suspended', 'error'].includes(v.state));
  });
  sb.ok(['helper', 'stop']);
  const vms = sb.json<Vm[]>(['list']);

  // No half-made VM directory; no layer file without its record or record without its file.
  for (const d of readdirSync(path.join(sb.home, 'vms'))) {
    assert.ok(existsSync(path.join(sb.home, 'vms', d, 'vm.json')), `vms/${d} has no vm.json`);
  }
  const layersDir = path.join(sb.home, 'layers');
  const files = readdirSync(layersDir);
  const tree = sb.json<Array<{ id: string; parent: string | null; usedBy: string[]; snapshots: string[] }>>(['layers']);
  for (const f of files) {
    const id = f.replace(/\.(qcow2|json)$/, '');
    assert.ok(tree.some((n) => n.id === id), `orphaned layer file layers/${f}`);
  }
  for (const n of tree) {
    assert.ok(files.includes(`${n.id}.qcow2`), `layer ${n.id} has no file`);
  }
  // Every kept layer is reachable from some VM or snapshot (ancestors included).
  const reachable = new Set<string>();
  for (const v of vms) {
    const info = sb.json<{ layers: Array<{ role: string; file: string; id?: string }> }>(['info', v.name]);
    for (const l of info.layers) {
      assert.ok(existsSync(l.file), `${v.name}: ${l.role} ${l.file} is missing`);
      if (l.id) reachable.add(l.id);
      if (l.role !== 'base') {
        const check = spawnSync('qemu-img', ['check', '-q', '-U', '-f', 'qcow2', l.file], { encoding: 'utf8' });
        assert.equal(check.status, 0, `qemu-img check ${l.file}: ${check.stdout}${check.stderr}`);
      }
    }
    const top = info.layers.find((l) => l.role === 'overlay');
    if (top) reachable.add(path.basename(top.file, '.qcow2'));
  }
  // A layer between two snapshots stays after its own snapshot is deleted: it is an ancestor.
  const byId = new Map(tree.map((n) => [n.id, n]));
  const kept = new Set<string>();
  const keep = (id: string | null): void => {
    for (let cur = id; cur && !kept.has(cur); cur = byId.get(cur)?.parent ?? null) kept.add(cur);
  };
  for (const n of tree) if (reachable.has(n.id) || n.snapshots.length > 0 || n.usedBy.length > 0) keep(n.id);
  for (const n of tree) {
    assert.ok(kept.has(n.id), `layer ${n.id} is kept but no VM, snapshot or descendant of one uses it`);
  }

  // Bases: unchanged since import.
  for (const img of sb.json<Img[]>(['image', 'list'])) {
    assert.equal(sha256(img.file), img.sha256, `image ${img.name}: base changed`);
  }

  // Every VM listed starts, or says in one line why it cannot.
  for (const v of vms) {
    const r = sb.cli(['start', v.name]);
    if (r.code !== 0) assert.match(r.stderr, /^devvm: [^\n]+\n$/, `start ${v.name}: ${r.stderr}`);
    else assert.equal(sb.json<Vm>(['info', v.name]).state, 'running');
    sb.cli(['stop', v.name, '--force']);
  }
});
