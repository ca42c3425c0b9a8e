/** `devvm up` and `down` in the CLI: what they print, and how streamed output meets the progress line. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectText, lineWriter } from '../../src/cli/commands/up';

test('the connect text: ssh host, devvm ssh, and the code --remote line with the path quoted when it must be', () => {
  const text = connectText({ name: 'web', created: true, guestPath: '/home/a/My App', sshHost: 'devvm-web', changed: [] });
  assert.equal(text, [
    'VM web is ready (new).',
    'connect: ssh devvm-web   (or: devvm ssh web; for plain ssh, once: devvm ssh-config --include)',
    "VS Code: code --remote ssh-remote+devvm-web '/home/a/My App'",
  ].join('\n'));
  assert.match(connectText({ name: 'web', created: false, guestPath: '/src/app', sshHost: 'devvm-web', changed: ['cpus'], unsupported: ['shares'], replaced: 'old' }), /^VM web is ready; it replaced old\.\nnot set up \(this helper does not support them yet\): shares\ndevvm\.json differs from the VM in: cpus\n.*\nVS Code: code --remote ssh-remote\+devvm-web \/src\/app$/);
});

test('output is written in whole lines (the progress line is cleared first), the rest when it ends', () => {
  const calls: string[] = [];
  const w = lineWriter({ step: (m) => calls.push(m === undefined ? 'clear' : `step ${m}`), output: (t) => calls.push(`out ${JSON.stringify(t)}`) });
  w.write('par');
  w.write('tial\nnext');
  w.write(' line\nlast');
  w.flush();
  assert.deepEqual(calls, ['clear', 'out "partial\\n"', 'clear', 'out "next line\\n"', 'out "last\\n"']);
});
