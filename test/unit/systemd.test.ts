/** The helper's systemd user unit (devvm helper install): its text, and systemd's own reading of it. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { renderUnit, unitFile } from '../../src/cli/systemd';

test('the unit runs this node and dist/helper.js by absolute path, with the DEVVM_HOME and settings that were set', () => {
  const text = renderUnit({ node: '/usr/bin/node', helper: '/opt/devvm/dist/helper.js', env: { DEVVM_HOME: '/h', DEVVM_IDLE_SUSPEND: '30', PATH: '/usr/bin:/bin', OTHER: 'x' } });
  assert.equal(text, [
    '# Written by "devvm helper install"; "devvm helper uninstall" removes it.',
    '[Unit]',
    'Description=devvm helper (developer VMs)',
    '',
    '[Service]',
    'Type=simple',
    'ExecStart="/usr/bin/node" "/opt/devvm/dist/helper.js"',
    'Environment="DEVVM_HOME=/h"',
    'Environment="DEVVM_IDLE_SUSPEND=30"',
    'Environment="PATH=/usr/bin:/bin"',
    'KillMode=process',
    'Restart=on-failure',
    'RestartPreventExitStatus=3',
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ].join('\n'));
  assert.ok(!renderUnit({ node: '/n', helper: '/h.js', env: {} }).includes('Environment='), 'no DEVVM_HOME when none is set');
  assert.throws(() => renderUnit({ node: '/n', helper: '/a\nExecStartPre=/bin/evil', env: {} }), /line break/);
  assert.equal(unitFile({ XDG_CONFIG_HOME: '/x/cfg' }), '/x/cfg/systemd/user/devvm-helper.service');
  assert.equal(unitFile({ XDG_CONFIG_HOME: 'relative' }), path.join(os.homedir(), '.config/systemd/user/devvm-helper.service'));
});

test('systemd reads an odd install path (spaces, quotes, %, $, backslash) as the one argument it is', { skip: spawnSync('systemd-analyze', ['--version']).error ? 'no systemd-analyze' : false }, (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const odd = path.join(dir, `my "devvm" 100%n $HOME \\x`);
  mkdirSync(odd);
  const helper = path.join(odd, 'helper.js');
  writeFileSync(helper, '');
  const unit = path.join(dir, 'devvm-helper.service');
  writeFileSync(unit, renderUnit({ node: process.execPath, helper, env: { DEVVM_HOME: `${odd}/home` } }));
  const v = spawnSync('systemd-analyze', ['verify', '--man=no', unit], { encoding: 'utf8' });
  // Bad syntax is reported as "ignoring", a node path that did not come out whole as "not executable".
  assert.equal(v.status, 0, v.stderr);
  assert.ok(!/ignoring|Invalid|not executable/i.test(v.stderr), v.stderr);
});
