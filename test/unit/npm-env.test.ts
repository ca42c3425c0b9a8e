import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { childNpmEnv } from '../e2e/codeserver';

test('the outer npm\'s configuration is not passed to a child npm; ours and the user\'s registry are', () => {
  const outer = {
    PATH: '/bin',
    HOME: '/home/u',
    npm_config_user_agent: 'npm/11.19.1 node/v20.20.2 linux x64 workspaces/false',
    npm_config_node_gyp: '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    NPM_CONFIG_GLOBAL_PREFIX: '/usr',
    npm_lifecycle_event: 'test',
    npm_package_name: 'devvm',
    npm_execpath: '/usr/lib/node_modules/npm/bin/npm-cli.js',
    npm_node_execpath: '/usr/bin/node',
    npm_config_registry: 'https://mirror.example/',
    NPM_CONFIG_CACHE: '/home/u/.npm',
    npm_config_https_proxy: 'http://proxy:3128',
  };
  const env = childNpmEnv(outer, { npm_config_nodedir: '/opt/node24' });
  assert.deepEqual(env, {
    PATH: '/bin',
    HOME: '/home/u',
    npm_config_registry: 'https://mirror.example/',
    NPM_CONFIG_CACHE: '/home/u/.npm',
    npm_config_https_proxy: 'http://proxy:3128',
    npm_config_nodedir: '/opt/node24',
  });
});

// The mechanism that broke code-server's install: a child npm takes npm_config_user_agent
// from its environment, so its scripts saw the outer npm's Node version instead of theirs.
test('a child npm\'s scripts see their own Node in npm_config_user_agent', { skip: spawnSync('npm', ['--version']).error ? 'no npm' : false }, (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-npmenv-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({
    private: true,
    scripts: { ua: 'node -e "process.stdout.write(process.env.npm_config_user_agent)"' },
  }));
  const outer = { ...process.env, npm_config_user_agent: 'npm/0.0.0 node/v1.2.3 linux x64 workspaces/false', npm_lifecycle_event: 'test' };
  const r = spawnSync('npm', ['run', '--silent', 'ua'], { cwd: dir, env: childNpmEnv(outer), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!r.stdout.includes('node/v1.2.3'), r.stdout);
  assert.ok(r.stdout.includes(`node/${process.version}`), r.stdout);
});
