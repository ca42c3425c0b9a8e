// `npm run up`: from a clean clone to a running VM you can SSH into. Idempotent: a second
// run only checks, starts the VM if needed and prints how to connect.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { linkCli } from './link-cli.mjs';

const step = (msg) => process.stderr.write(`\n==> ${msg}\n`);
const sh = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.status !== 0) {
    process.stderr.write(`devvm up: "${cmd} ${args.join(' ')}" failed (exit ${r.status ?? r.signal})\n`);
    process.exit(1);
  }
  return r;
};
const has = (cmd) => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' }).status === 0;

// 1. System packages.
const wanted = { 'qemu-system-x86_64': 'qemu-system-x86', 'qemu-img': 'qemu-utils', genisoimage: 'genisoimage', mmdebstrap: 'mmdebstrap', 'mkfs.ext4': 'e2fsprogs', xz: 'xz-utils', ssh: 'openssh-client', openssl: 'openssl' };
const missing = Object.entries(wanted).filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg);
if (missing.length) {
  const all = readFileSync('scripts/apt-packages.txt', 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
  const root = process.getuid?.() === 0;
  const sudo = !root && has('sudo') && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
  if (!root && !sudo) {
    process.stderr.write(`devvm up: missing system packages: ${missing.join(' ')}\ninstall them with:\n  sudo apt-get update && sudo apt-get install -y ${all.join(' ')}\nthen run "npm run up" again.\n`);
    process.exit(1);
  }
  step(`installing ${missing.join(' ')} with apt-get`);
  const pre = root ? [] : ['sudo'];
  const run = (args) => sh(pre[0] ?? args[0], pre.length ? args : args.slice(1), { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  run(['apt-get', 'update', '-q']);
  run(['apt-get', 'install', '-y', '-q', ...all]);
}

// 2. npm dependencies (skipped when node_modules is newer than the lock file).
const stamp = 'node_modules/.package-lock.json';
if (!existsSync(stamp) || statSync(stamp).mtimeMs < statSync('package-lock.json').mtimeMs) {
  step('npm ci');
  sh('npm', ['ci', '--no-audit', '--no-fund']);
}

// 3. Build.
step('building');
sh(process.execPath, ['scripts/build.mjs']);
const devvm = (args, opts) => sh(process.execPath, ['dist/cli.js', ...args], opts);

// 3b. A `devvm` command, so what the README and the end of this script say to type works.
const linked = linkCli({ root: fileURLToPath(new URL('..', import.meta.url)) });
if (linked.status === 'created' || linked.status === 'updated') step(`linked ${linked.link}`);
for (const line of linked.advice) process.stderr.write(`devvm up: ${line}\n`);

// 4. Default image (cached by recipe hash under ~/.cache/devvm).
step('default image (debian-12); the first build takes a few minutes');
devvm(['image', 'build', 'debian-12']);

// 5. The VM.
const name = process.env.DEVVM_UP_NAME || 'dev';
let user = os.userInfo().username;
if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user) || ['root', 'admin', 'sudo'].includes(user)) user = 'dev';
const list = JSON.parse(spawnSync(process.execPath, ['dist/cli.js', 'list', '--json'], { encoding: 'utf8' }).stdout || '[]');
if (!list.some((v) => v.name === name)) {
  step(`creating VM "${name}" with user "${user}"`);
  devvm(['create', name, '--image', 'debian-12', '--user', user, '--full-name', user]);
}
step(`starting "${name}" and waiting for SSH (about a minute under TCG)`);
devvm(['start', name, '--wait-ssh']);

const cmd = linked.command;
process.stdout.write(`
VM "${name}" is running; SSH answers as "${user}".
  ${cmd} ssh ${name}                 # uses devvm's own ssh_config
  ${cmd} ssh-config --include        # once: lets "ssh devvm-${name}" and VS Code Remote-SSH find it
  ssh devvm-${name}
${linked.onPath ? '' : linked.advice.map((l) => `${l}\n`).join('')}`);
