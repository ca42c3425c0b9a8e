/**
 * `devvm up` on a real Debian guest (issue 14): a folder with devvm.json (2 CPUs, a share
 * of the folder, a port, a root script writing under /etc, a user script, start steps, a
 * local dotfiles folder with install.sh). One VM, reused by every test in order.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { debianImage, Sandbox, type Result } from './harness';
import { startGuestServer, stopGuestServer } from './portprobe';

const VM = 'my-project';
const GREETING = `it's "quoted" $HOME \`x\` \\ done`;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function manifest(hostPort: number, extraStart = ''): string {
  return `{
  // JSON with comments, trailing commas too
  "$schema": "../schemas/devvm.schema.json",
  "cpus": 2,
  "memory": 1024,
  "ports": [{ "guestPort": 8000, "hostPort": ${hostPort}, "label": "web" }],
  "env": { "GREETING": ${JSON.stringify(GREETING)} },
  "provision": [
    { "when": "create", "as": "root", "script": "scripts/root.sh" },
    { "when": "create", "run": "echo created-by-$(id -un) >> ~/create.log" },
    { "when": "start", "run": "echo start >> ~/start.log; printf '%s' \\"$GREETING\\" > ~/greeting" },${extraStart}
  ],
  "dotfiles": "../dotfiles",
}
`;
}

describe('devvm up (debian guest)', { timeout: 40 * 60_000 }, () => {
  const sb = new Sandbox('devvmjson');
  const base = mkdtempSync(path.join(os.tmpdir(), 'devvm-up-'));
  const dir = path.join(base, 'My Project');
  let hostPort = 0;
  let first: Result;
  let firstMs = 0;

  before(async () => {
    mkdirSync(path.join(dir, 'scripts'), { recursive: true });
    mkdirSync(path.join(base, 'dotfiles'));
    hostPort = await freePort();
    writeFileSync(path.join(dir, 'devvm.json'), manifest(hostPort));
    writeFileSync(path.join(dir, 'scripts', 'root.sh'), 'echo "made by devvm up" > /etc/devvm-up-test\nid -u > /etc/devvm-up-uid\n');
    writeFileSync(path.join(dir, 'scripts', 'fail.sh'), 'echo before the failure\nfalse\necho never printed\n');
    writeFileSync(path.join(base, 'dotfiles', 'install.sh'), '#!/bin/sh\necho "dotfiles from $(pwd)" > "$HOME/.dotfiles-installed"\n', { mode: 0o755 });
    writeFileSync(path.join(base, 'dotfiles', '.testrc'), 'export FROM_DOTFILES=1\n');
    debianImage(sb);
  });

  after(() => {
    sb.cleanup();
    rmSync(base, { recursive: true, force: true });
  });

  test('a bad devvm.json is refused with its line and column, before any VM exists', () => {
    const bad = path.join(base, 'bad');
    mkdirSync(bad);
    writeFileSync(path.join(bad, 'devvm.json'), '{\n  "cpus": 2,\n  "cpu": 4\n}\n');
    const r = sb.cli(['up', bad]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'devvm: devvm.json:3:3: unknown field "cpu"\n');
    assert.deepEqual(sb.json<unknown[]>(['list']), []);
  });

  test('up creates, boots and provisions the VM, and says how to connect', async () => {
    const t0 = Date.now();
    first = await sb.cliAsync(['up', dir]);
    firstMs = Date.now() - t0;
    console.log(`first devvm up (create, first boot, provision): ${(firstMs / 1000).toFixed(1)} s`);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /==> scripts\/root\.sh \(as root\)/);
    assert.match(first.stdout, /<== scripts\/root\.sh: exit code 0/);
    assert.match(first.stdout, /==> dotfiles/);
    assert.match(first.stdout, new RegExp(`ssh devvm-${VM}\\b`));
    // Quoted for a shell: the folder's name has a space.
    assert.ok(first.stdout.includes(`code --remote ssh-remote+devvm-${VM} '${dir}'\n`), first.stdout);
    const info = sb.json<{ cpus: number; origin?: { dir: string; createDone?: boolean } }>(['info', VM]);
    assert.equal(info.cpus, 2);
    assert.equal(info.origin?.dir, dir);
    assert.equal(info.origin?.createDone, true);
  });

  test('the guest has everything devvm.json declares', () => {
    const sh = (cmd: string) => {
      // One word: the guest's shell parses it.
      const r = sb.ssh(VM, [cmd]);
      assert.equal(r.code, 0, `${cmd}: ${r.stderr}`);
      return r.stdout;
    };
    assert.equal(sh('nproc').trim(), '2');
    assert.equal(sh('cat /etc/devvm-up-test'), 'made by devvm up\n');
    assert.equal(sh('cat /etc/devvm-up-uid'), '0\n');
    assert.equal(sh('cat ~/create.log'), 'created-by-dev\n');
    assert.equal(sh('cat ~/start.log'), 'start\n');
    assert.equal(sh('cat ~/greeting'), GREETING);
    assert.match(sh('cat ~/.dotfiles-installed'), /^dotfiles from \/home\/dev\/dotfiles\n$/);
    assert.equal(sh('cat ~/dotfiles/.testrc'), 'export FROM_DOTFILES=1\n');
  });

  test('the folder is shared at the same path', () => {
    const info = sb.json<{ shares: Array<{ hostPath: string; guestPath: string }> }>(['info', VM]);
    assert.deepEqual(info.shares.map((x) => x.guestPath), [info.shares[0]?.hostPath], JSON.stringify(info.shares));
    const r = sb.ssh(VM, [`cat '${path.join(dir, 'scripts', 'root.sh')}'`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /made by devvm up/);
  });

  test('the declared port is forwarded on 127.0.0.1', async () => {
    const info = sb.json<{ ports: Array<{ kind: string; hostPort: number; guestPort: number; hostAddress: string }> }>(['info', VM]);
    const forward = info.ports.find((p) => p.kind === 'static' && p.guestPort === 8000);
    assert.ok(forward, JSON.stringify(info.ports));
    assert.equal(forward.hostAddress, '127.0.0.1');
    assert.equal(forward.hostPort, hostPort);
    // The server runs in an ssh session held open (portprobe.ts): a server put in the
    // background of a session that ends kept that ssh from returning (two runs, 120 s each).
    assert.equal(sb.ssh(VM, ['echo hello-from-guest > ~/index.html']).code, 0);
    const server = await startGuestServer(sb, VM, 8000);
    try {
      const body = await (await fetch(`http://127.0.0.1:${hostPort}/index.html`)).text();
      assert.equal(body, 'hello-from-guest\n');
    } finally {
      stopGuestServer(sb, VM, server, 8000);
    }
  });

  test('a second up reuses the VM and runs only the start steps', async () => {
    const r = await sb.cliAsync(['up', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /scripts\/root\.sh|dotfiles/);
    assert.match(r.stdout, /==> provision\[2\]/);
    assert.match(r.stdout, new RegExp(`VM ${VM} is ready\\.`));
    assert.equal(sb.json<unknown[]>(['list']).length, 1);
    assert.equal(sb.ssh(VM, ['cat', 'create.log']).stdout, 'created-by-dev\n');
    assert.equal(sb.ssh(VM, ['cat', 'start.log']).stdout, 'start\nstart\n');
  });

  test('a failing script is named with its exit code and line, and the VM stays running', async () => {
    writeFileSync(path.join(dir, 'devvm.json'), manifest(hostPort, '\n    { "when": "start", "script": "scripts/fail.sh" },'));
    const r = await sb.cliAsync(['up', dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /devvm\.json changed since VM my-project was made: provision/);
    assert.match(r.stderr, /^devvm: scripts\/fail\.sh failed with exit code 1 at line 2: false \(the VM is left running; look with: devvm ssh my-project\)$/m);
    assert.match(r.stdout, /before the failure/);
    assert.doesNotMatch(r.stdout, /never printed/);
    const vm = sb.json<Array<{ name: string; state: string }>>(['list']).find((s) => s.name === VM);
    assert.equal(vm?.state, 'running');
  });

  test('down stops the folder\'s VM', () => {
    const r = sb.cli(['down', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `stopped ${VM}\n`);
    assert.equal(sb.json<Array<{ state: string }>>(['list'])[0]?.state, 'stopped');
  });
});
