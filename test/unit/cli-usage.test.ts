/** The usage text is made from the command table: every verb and every option is in it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMANDS, commandUsage, usage } from '../../src/cli/commands';
import { cli } from './cli-fake';

test('the usage lists every verb of the table, in table order, each once', () => {
  const text = usage();
  let at = 0;
  for (const c of COMMANDS) {
    const re = new RegExp(`^  ${c.name}( |$)`, 'm');
    const m = re.exec(text.slice(at));
    assert.ok(m, `"${c.name}" listed after position ${at}`);
    at += m.index + 1;
  }
  assert.equal(new Set(COMMANDS.map((c) => c.name)).size, COMMANDS.length, 'no verb twice');
});

test("every option a verb parses is in its usage line (so the usage cannot fall behind the parser)", () => {
  for (const c of COMMANDS) {
    for (const opt of Object.keys(c.options ?? {})) assert.match(commandUsage(c), new RegExp(`--${opt}\\b`), `${c.name} --${opt}`);
  }
});

test('the CLI contract verbs of DESIGN.md are all there, with the new flags', () => {
  const names = COMMANDS.map((c) => c.name);
  for (const v of ['image build', 'image pull', 'image import', 'image list', 'create', 'start', 'stop', 'suspend', 'resume', 'snapshot', 'restore', 'clone', 'list', 'info', 'delete', 'ssh', 'doctor', 'usb list', 'usb attach', 'usb detach', 'disk attach']) {
    assert.ok(names.includes(v), v);
  }
  const text = usage();
  assert.match(text, /image import FILE.* --name N \[--format qcow2\|raw\] \[--flatten\]/);
  assert.match(text, /disk attach NAME FILE.*\[--format qcow2\|raw\]/);
  assert.match(text, /disk export NAME \[SNAP\] \[--tcp\]/);
});

test('usage lines fit: no line over 100 columns', () => {
  for (const l of usage().split('\n')) assert.ok(l.length <= 100, l);
});

test('--help, help, -h and no arguments print the usage (exit 0); "<verb> --help" and "<family> --help" print theirs', async () => {
  for (const argv of [[], ['help'], ['--help'], ['-h']]) {
    const r = await cli(argv);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${usage()}\n`);
  }
  const one = await cli(['create', '--help']);
  assert.equal(one.code, 0);
  assert.match(one.stdout, /^  create NAME --image N/);
  assert.deepEqual(one.session.calls, []);
  const fam = await cli(['disk', '--help']);
  assert.equal(fam.code, 0);
  assert.deepEqual(fam.stdout.match(/^  disk \w+/gm), ['  disk attach', '  disk detach', '  disk export', '  disk unexport']);
  // After `--`, --help belongs to the remote command.
  const ssh = await cli(['ssh', 'web', '--', 'ls', '--help'], { 'vm/wake': { configFile: '/c', host: 'devvm-web', user: 'a', port: 1 } });
  assert.deepEqual(ssh.session.execs, [['ssh', ['-F', '/c', '-o', 'ProxyCommand=none', 'devvm-web', '--', 'ls', '--help']]]);
});
